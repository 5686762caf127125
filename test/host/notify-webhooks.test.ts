/**
 * Webhook notifications against real loopback receivers and a real host: a receiver that checks
 * every signature, one that always fails (retried with backoff, then given up, visible), one that
 * hangs (bounded by the timeout; the gate and the decision never wait for it), one that redirects
 * (not followed), and a Slack-format one. Order per request: a `request.decided` waits for its
 * `request.created` while that one is still failing.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHost } from '../../host/host.js';
import { parseHostConfig } from '../../host/config.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';
import { type Receiver, startReceiver, waitUntil } from './helpers/webhook-receiver.js';

const SECRET = 'whsec_test_0123456789abcdef';
const MAIL = { capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'mail' };

/** A run whose mail.send waits for a human; resolves with its pending request. */
async function openRequest(fx: Fixture, subject: string): Promise<{ runId: string; requestId: string }> {
  const source = `export default async (input, caps) => (await caps.mail.send({ to: 'team@example.com', subject: ${JSON.stringify(subject)}, text: 'hello <b>' }, { reason: 'tell the team <!channel> & *all*' })).accepted;`;
    const image = fx.image(`notify-${subject.replace(/\W/g, '-')}`, source, [MAIL]);
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const { runId } = await fx.host.submit({ image: image.bytes });
    const request = await waitUntil(async () => (await fx.host.store.listRequests({ runId, status: 'pending' }))[0], 'the request');
    return { runId, requestId: request.id };
}

describe('webhook notifications', () => {
  let fx: Fixture;
  let checker: Receiver;
  let failing: Receiver;
  let slow: Receiver;
  let redirect: Receiver;
  let slack: Receiver;

  beforeAll(async () => {
    [checker, failing, slow, redirect, slack] = await Promise.all([
      startReceiver(SECRET),
      startReceiver(SECRET, 'fail'),
      startReceiver(SECRET, 'hang'),
      startReceiver(SECRET, 'redirect'),
      startReceiver(SECRET),
    ]);
    fx = await startFixture({
      notify: {
        secrets: { hook: SECRET, slackUrl: slack.url },
        webhooks: [
          { name: 'checker', url: checker.url, secret: { secret: 'hook' }, includeArguments: true },
          { name: 'failing', url: failing.url, secret: SECRET, events: ['request.created'] },
          { name: 'slow', url: slow.url, secret: SECRET, events: ['request.created'], timeoutMs: 300 },
          { name: 'redirect', url: redirect.url, secret: SECRET, events: ['request.created'] },
          { name: 'slack', url: { secret: 'slackUrl' }, secret: SECRET, format: 'slack', events: ['request.created'] },
        ],
        maxAttempts: 3,
        initialDelayMs: 50,
        maxDelayMs: 200,
        pollMs: 20,
      },
    });
  });
  afterAll(async () => {
    await fx?.close();
    await Promise.all([checker, failing, slow, redirect, slack].map((r) => r?.close()));
  });

  const pendingRequest = (subject: string) => openRequest(fx, subject);

  it('signs each delivery, sends created then decided with their own idempotency keys, and a console link', async () => {
    const started = Date.now();
    const { runId, requestId } = await pendingRequest('signed');
    // The hanging receiver holds one delivery for 300 ms; the decision does not wait for it.
    const alice = await fx.operator('alice');
    await alice.decide({ requestId, verdict: 'approve' });
    await fx.host.waitForRun(runId);
    const mine = await waitUntil(() => {
      const got = checker.accepted().filter((r) => r.json.request?.id === requestId);
      return got.length >= 2 ? got : undefined;
    }, 'created and decided at the checker');
    expect(mine.map((r) => r.json.event)).toEqual(['request.created', 'request.decided']);
    for (const r of mine) {
      expect(r.signature).toMatchObject({ ok: true });
      expect(r.headers['content-type']).toBe('application/json');
      expect(r.headers['idempotency-key']).toBe(r.json.id);
      expect(r.headers['contained-event']).toBe(r.json.event);
      expect(r.headers['contained-signature']).toMatch(/^v1=[0-9a-f]{64}$/);
      expect(Number(r.headers['contained-timestamp'])).toBeGreaterThanOrEqual(Math.floor(started / 1000) - 1);
      expect(r.json.url).toBe(`${fx.host.url}/console/#/pending/${requestId}`);
    }
    expect(mine[0]?.headers['idempotency-key']).not.toBe(mine[1]?.headers['idempotency-key']);
    expect(mine[0]?.json.request).toMatchObject({ id: requestId, kind: 'recommendation', status: 'pending', capability: 'mail', method: 'send', reason: 'tell the team <!channel> & *all*' });
    expect(mine[0]?.json.args).toMatchObject({ to: 'team@example.com', subject: 'signed' });
    expect(mine[1]?.json.request).toMatchObject({ id: requestId, status: 'approved', resolvedBy: ['alice'] });

    // A tampered body, another secret, or an old timestamp do not verify.
    const { verifyWebhook } = await import('../../host/notify/signing.js');
    const first = mine[0] as (typeof mine)[number];
    expect(verifyWebhook(SECRET, `${first.body} `, first.headers)).toEqual({ ok: false, reason: 'mismatch' });
    expect(verifyWebhook('another-secret-0123456789', first.body, first.headers)).toEqual({ ok: false, reason: 'mismatch' });
    expect(verifyWebhook(SECRET, first.body, first.headers, { nowMs: Date.now() + 3_600_000 })).toEqual({ ok: false, reason: 'stale' });
    expect(verifyWebhook(SECRET, first.body, { ...first.headers, 'contained-signature': 'v1=zz' })).toEqual({ ok: false, reason: 'mismatch' });
    expect(verifyWebhook(SECRET, first.body, { ...first.headers, 'contained-timestamp': '1e9' })).toEqual({ ok: false, reason: 'malformed' });
    expect(verifyWebhook(SECRET, first.body, {})).toEqual({ ok: false, reason: 'missing' });
  });

  it('leaves the arguments out unless the webhook asks for them; Slack format escapes the agent’s text', async () => {
    const { requestId } = await pendingRequest('slack format');
    const msg = await waitUntil(() => slack.accepted().find((r) => r.body.includes(requestId)), 'the Slack message');
    expect(Object.keys(msg.json)).toEqual(['text']);
    expect(msg.json.text).toContain('*Approval needed: mail.send*');
    expect(msg.json.text).toContain('> tell the team &lt;!channel&gt; &amp; *all*');
    expect(msg.json.text).not.toContain('<!channel>');
    expect(msg.json.text).toContain(`<${fx.host.url}/console/#/pending/${requestId}|`);
    expect(msg.json.text).not.toContain('slack format'); // the arguments (the subject) are not in it
    expect(msg.signature).toMatchObject({ ok: true });
    const alice = await fx.operator('alice');
    await alice.decide({ requestId, verdict: 'deny', reason: 'not now' });
  });

  it('retries a failing receiver with backoff, gives up after maxAttempts, and shows it; a hanging one times out; a redirect is not followed', async () => {
    const { requestId } = await pendingRequest('failures');
    const status = await waitUntil(async () => {
      const s = await fx.host.notify.status({ limit: 500 });
      const mine = (target: string) => s.deliveries.find((d) => d.target === target && d.requestId === requestId);
      const done = ['webhook:failing', 'webhook:slow', 'webhook:redirect'].every((t) => mine(t)?.status === 'failed');
      return done ? { s, mine } : undefined;
    }, 'three given-up deliveries', 20_000);
    const failed = status.mine('webhook:failing');
    expect(failed).toMatchObject({ status: 'failed', attempts: 3, lastStatus: 503 });
    expect(failed?.lastError).toMatch(/answered 503/);
    expect(failing.received.filter((r) => r.json.request?.id === requestId)).toHaveLength(3);
    // Backoff: the attempts were spread out, not sent back to back.
    const times = failing.received.filter((r) => r.json.request?.id === requestId).map((r) => r.at);
    expect((times[2] as number) - (times[0] as number)).toBeGreaterThanOrEqual(50);
    // One idempotency key for every attempt of the same delivery.
    expect(new Set(failing.received.filter((r) => r.json.request?.id === requestId).map((r) => r.headers['idempotency-key'])).size).toBe(1);
    expect(status.mine('webhook:slow')?.lastError).toMatch(/did not answer within 300 ms/);
    expect(status.mine('webhook:redirect')?.lastError).toMatch(/302 \(a redirect, not followed\)/);
    expect(redirect.followed).toBe(0);
    const targets = new Map(status.s.targets.map((t) => [t.target, t]));
    expect(targets.get('webhook:failing')).toMatchObject({ kind: 'webhook', to: `http://127.0.0.1:${failing.port}/…` });
    expect(targets.get('webhook:failing')?.failed).toBeGreaterThanOrEqual(1);
    expect(targets.get('webhook:failing')?.lastError).toMatch(/answered 503/);
    expect(targets.get('webhook:checker')?.delivered).toBeGreaterThanOrEqual(2);
    // No secret and no URL path (a Slack URL's path is a credential) in what the console is shown.
    const shown = JSON.stringify(status.s);
    expect(shown).not.toContain(SECRET);
    expect(shown).not.toContain('/hook');
    const alice = await fx.operator('alice');
    await alice.decide({ requestId, verdict: 'deny', reason: 'test over' });
  });

describe('order per request', () => {
  let fx: Fixture;
  let ordered: Receiver & { release(): void };

  beforeAll(async () => {
    // Fails every request.created until released; a request.decided would succeed at once.
    let createdFails = true;
    const r = await startReceiver(SECRET);
    r.mode = (x) => (x.json.event === 'request.created' && createdFails ? 'fail' : 'ok');
    ordered = Object.assign(r, { release: () => void (createdFails = false) });
    fx = await startFixture({
      notify: {
        webhooks: [{ name: 'ordered', url: ordered.url, secret: SECRET, events: ['request.created', 'request.decided'] }],
        maxAttempts: 100,
        initialDelayMs: 20,
        maxDelayMs: 40,
        pollMs: 10,
      },
    });
  });
  afterAll(async () => {
    await fx?.close();
    await ordered?.close();
  });

  it('keeps the order per request: decided waits while created is failing', async () => {
    const { requestId } = await openRequest(fx, 'ordered');
    await waitUntil(() => ordered.received.some((r) => r.json.request?.id === requestId), 'a first (failed) attempt');
    const alice = await fx.operator('alice');
    await alice.decide({ requestId, verdict: 'deny', reason: 'ordered test' });
    // Decided is queued and would succeed; it must not go before created.
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(ordered.received.filter((r) => r.json.request?.id === requestId).map((r) => r.json.event)).not.toContain('request.decided');
    ordered.release();
    const got = await waitUntil(() => {
      const mine = ordered.accepted().filter((r) => r.json.request?.id === requestId);
      return mine.length >= 2 ? mine : undefined;
    }, 'both events');
    expect(got.map((r) => r.json.event)).toEqual(['request.created', 'request.decided']);
  });
});
});

describe('webhook config', () => {
  it('refuses at start-up a secret reference that names nothing, a short secret, a duplicate name', async () => {
    const base = { dataDir: '/tmp/never-created-notify', listen: { host: '127.0.0.1', port: 0 } };
    const start = (notify: unknown) => startHost({ config: parseHostConfig({ ...base, notify }, '/tmp'), isolation: 'in-process', logger: pino({ level: 'silent' }) });
    await expect(start({ webhooks: [{ name: 'a', url: 'http://127.0.0.1:1/', secret: { secret: 'missing' } }] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', data: { path: ['notify', 'webhooks', '0', 'secret'] } });
    await expect(start({ webhooks: [{ name: 'a', url: 'http://127.0.0.1:1/', secret: 'short' }] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', data: { path: ['notify', 'webhooks', '0', 'secret'] } });
    await expect(start({ secrets: { u: 'ftp://x/' }, webhooks: [{ name: 'a', url: { secret: 'u' }, secret: SECRET }] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', data: { path: ['notify', 'webhooks', '0', 'url'] } });
    expect(() => parseHostConfig({ ...base, notify: { webhooks: [{ name: 'a', url: 'http://x/', secret: SECRET }, { name: 'a', url: 'http://y/', secret: SECRET }] } }, '/tmp')).toThrow(/unique/);
    expect(() => parseHostConfig({ ...base, notify: { webhooks: [{ name: 'a', url: 'file:///etc/passwd', secret: SECRET }] } }, '/tmp')).toThrow(/notify\.webhooks\.0\.url/);
    expect(() => parseHostConfig({ ...base, notify: { webhooks: [{ name: 'a', url: 'http://x/', secret: SECRET, extra: 1 }] } }, '/tmp')).toThrow(/notify\.webhooks\.0/);
    expect(() => parseHostConfig({ ...base, notify: { email: { from: 'a@b.c', to: ['x@y.z'] } } }, '/tmp')).toThrow(/exactly one of smtp or folder/);
    expect(() => parseHostConfig({ ...base, notify: { email: { folder: '/tmp/m', from: 'a@b.c', to: ['x@y.z\r\nBcc: evil@e.x'] } } }, '/tmp')).toThrow(/email address/);
  });
});

describe('expiry', () => {
  let fx: Fixture;
  let hook: Receiver;
  beforeAll(async () => {
    hook = await startReceiver(SECRET);
    fx = await startFixture({ requestTimeoutMs: 300, notify: { webhooks: [{ name: 'ops', url: hook.url, secret: SECRET, events: ['request.created', 'request.expired'] }], pollMs: 20 } });
  });
  afterAll(async () => {
    await fx?.close();
    await hook?.close();
  });

  it('a request nobody decides is notified as expired, after its created', async () => {
    const { runId, requestId } = await openRequest(fx, 'expires');
    const got = await waitUntil(() => {
      const mine = hook.accepted().filter((r) => r.json.request?.id === requestId);
      return mine.length >= 2 ? mine : undefined;
    }, 'created and expired');
    expect(got.map((r) => [r.json.event, r.json.request.status])).toEqual([
      ['request.created', 'pending'],
      ['request.expired', 'expired'],
    ]);
    expect(got[1]?.headers['contained-event']).toBe('request.expired');
    await fx.host.waitForRun(runId);
  });
});

describe('a receiver that never answers', () => {
  let fx: Fixture;
  let hook: Receiver;
  beforeAll(async () => {
    hook = await startReceiver(SECRET, 'hang');
    // One delivery at a time, each allowed 30 s: the outbox is stuck for the whole test.
    fx = await startFixture({ notify: { webhooks: [{ name: 'stuck', url: hook.url, secret: SECRET, timeoutMs: 30_000 }], maxConcurrent: 1, pollMs: 20 } });
  });
  afterAll(async () => {
    const closing = Date.now();
    await fx?.close();
    // Closing aborts the hanging attempt instead of waiting for its timeout.
    expect(Date.now() - closing).toBeLessThan(10_000);
    await hook?.close();
  });

  it('holds up neither the agent’s calls, the decisions, nor the event loop', async () => {
    let worst = 0;
    let last = performance.now();
    const probe = setInterval(() => {
      const t = performance.now();
      worst = Math.max(worst, t - last - 10);
      last = t;
    }, 10);
    try {
      const started = Date.now();
      const alice = await fx.operator('alice');
      for (const n of [1, 2, 3]) {
        const { runId, requestId } = await openRequest(fx, `stuck ${n}`);
        await alice.decide({ requestId, verdict: 'approve' });
        expect((await fx.host.waitForRun(runId)).status).toBe('ok');
      }
      // Three requests made, decided and performed while the first delivery still hangs.
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(hook.received).toHaveLength(1);
      const status = (await fx.host.notify.status()).targets[0];
      expect(status).toMatchObject({ target: 'webhook:stuck', delivered: 0, pending: 6 });
      expect(worst).toBeLessThan(500);
    } finally {
      clearInterval(probe);
    }
  });
});
