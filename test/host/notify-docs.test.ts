/**
 * docs/approvals.md stays true: its verification snippet (run as written) accepts a real signed
 * delivery and refuses a tampered or replayed one; the defaults in its configuration table are the
 * schema's. And the pure parts behind it: the signature predicate on lookalike inputs, the backoff's
 * doubling, cap and jitter, the chat formats' escaping.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { notifyConfigSchema } from '../../host/notify/config.js';
import { renderEmail, renderWebhook } from '../../host/notify/format.js';
import { signHeaders, verifyWebhook } from '../../host/notify/signing.js';
import { backoffMs } from '../../host/notify/worker.js';
import type { OutboxRow } from '../../host/store/notify-outbox.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';
import { type Receiver, startReceiver, waitUntil } from './helpers/webhook-receiver.js';

const DOC = readFileSync(path.resolve('docs/approvals.md'), 'utf8');
const SECRET = 'whsec_docs_0123456789abcdef';

type Verify = (secret: string, rawBody: string, headers: Record<string, unknown>, nowMs?: number) => boolean;

describe('docs/approvals.md', () => {
  let fx: Fixture;
  let hook: Receiver;
  let dir: string;
  let verifyContained: Verify;

  beforeAll(async () => {
    const section = DOC.slice(DOC.indexOf('### Verifying a delivery'));
    const snippet = /```js\n([\s\S]*?)```/.exec(section)?.[1];
    expect(snippet).toBeDefined();
    dir = mkdtempSync(path.join(os.tmpdir(), 'contained-docs-snippet-'));
    const file = path.join(dir, 'verify.mjs');
    writeFileSync(file, snippet as string);
    verifyContained = ((await import(pathToFileURL(file).href)) as { verifyContained: Verify }).verifyContained;
    hook = await startReceiver(SECRET);
    fx = await startFixture({ notify: { webhooks: [{ name: 'docs', url: hook.url, secret: SECRET, events: ['request.created'] }], pollMs: 20 } });
  });
  afterAll(async () => {
    await fx?.close();
    await hook?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the verification snippet accepts a real delivery and refuses a tampered, re-signed or replayed one', async () => {
    const source = "export default async (input, caps) => (await caps.mail.send({ to: 'team@example.com', subject: 'docs', text: 'x' }, { reason: 'r' })).accepted;";
    const image = fx.image('notify-docs', source, [{ capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'mail' }]);
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    await fx.host.submit({ image: image.bytes });
    const got = await waitUntil(() => hook.accepted()[0], 'a delivery');
    expect(verifyContained(SECRET, got.body, got.headers)).toBe(true);
    expect(verifyContained(SECRET, got.body.replace('"request.created"', '"request.expired"'), got.headers)).toBe(false);
    expect(verifyContained('another-secret-0123456789', got.body, got.headers)).toBe(false);
    expect(verifyContained(SECRET, got.body, got.headers, Date.now() + 10 * 60_000)).toBe(false);
    expect(verifyContained(SECRET, got.body, { ...got.headers, 'contained-signature': undefined })).toBe(false);
    // The header names and shapes the page documents are the ones sent.
    expect(Object.keys(got.headers)).toEqual(expect.arrayContaining(['contained-timestamp', 'contained-signature', 'idempotency-key', 'contained-event']));
    expect(got.headers['idempotency-key']).toMatch(/^ntf_[0-9a-f]{24}$/);
    await fx.operator('alice').then(async (alice) => alice.decide({ requestId: got.json.request.id, verdict: 'deny', reason: 'docs test over' }));
  });

  it('the configuration table gives the schema defaults', () => {
    const defaults = notifyConfigSchema.parse({});
    for (const key of ['maxAttempts', 'initialDelayMs', 'maxDelayMs', 'maxConcurrent', 'pollMs'] as const) {
      const row = new RegExp(`^\\| \`${key}\` \\| ([0-9 ]+) \\|`, 'm').exec(DOC)?.[1];
      expect(Number(row?.replace(/ /g, '')), key).toBe(defaults[key]);
    }
    expect(DOC).toMatch(/^\| `keepMs` \| 7 days \|/m);
    expect(defaults.keepMs).toBe(7 * 86_400_000);
    const hook = notifyConfigSchema.parse({ webhooks: [{ name: 'a', url: 'http://x/', secret: SECRET }] }).webhooks[0];
    expect(hook).toMatchObject({ format: 'json', includeArguments: false, timeoutMs: 10_000, events: ['request.created', 'request.decided', 'request.expired', 'demotion', 'promotion.proposed', 'mcp.tool.pending'] });
    expect(DOC).toMatch(/^\| `webhooks\[\]\.timeoutMs` \| 10 000 \|/m);
  });
});

describe('signatures on lookalike inputs', () => {
  const body = '{"a":1}';
  const now = 1_733_312_345_000;
  const headers = signHeaders(SECRET, body, now);

  it('accepts the signature among several (a secret being rotated) and refuses every lookalike', () => {
    expect(verifyWebhook(SECRET, body, headers, { nowMs: now })).toEqual({ ok: true, timestamp: 1_733_312_345 });
    const v1 = headers['contained-signature'] as string;
    expect(verifyWebhook(SECRET, body, { ...headers, 'contained-signature': `v1=${'0'.repeat(64)}, ${v1}` }, { nowMs: now })).toMatchObject({ ok: true });
    const lookalikes: Array<[Record<string, string | undefined>, string]> = [
      [{ 'contained-signature': v1.toUpperCase() }, 'malformed'], // V1= and upper-case hex
      [{ 'contained-signature': v1.replace('v1=', 'v0=') }, 'malformed'],
      [{ 'contained-signature': `${v1}00` }, 'mismatch'], // longer than a sha256
      [{ 'contained-signature': v1.slice(0, -1) }, 'mismatch'],
      [{ 'contained-timestamp': `+${headers['contained-timestamp']}` }, 'malformed'],
      [{ 'contained-timestamp': ` ${headers['contained-timestamp']}` }, 'malformed'],
      [{ 'contained-timestamp': `${headers['contained-timestamp']}.0` }, 'malformed'],
      [{ 'contained-timestamp': String(Number(headers['contained-timestamp']) + 1) }, 'mismatch'],
      [{ 'contained-timestamp': undefined }, 'missing'],
    ];
    for (const [change, reason] of lookalikes) expect(verifyWebhook(SECRET, body, { ...headers, ...change }, { nowMs: now }), JSON.stringify(change)).toEqual({ ok: false, reason });
    expect(verifyWebhook(SECRET, body, { ...headers, 'contained-signature': [v1, v1] as unknown as string }, { nowMs: now })).toEqual({ ok: false, reason: 'missing' });
    // Five minutes either way by default.
    expect(verifyWebhook(SECRET, body, headers, { nowMs: now + 300_000 })).toMatchObject({ ok: true });
    expect(verifyWebhook(SECRET, body, headers, { nowMs: now + 301_000 })).toEqual({ ok: false, reason: 'stale' });
    expect(verifyWebhook(SECRET, body, headers, { nowMs: now - 301_000 })).toEqual({ ok: false, reason: 'stale' });
  });
});

describe('backoff', () => {
  const policy = { initialDelayMs: 1000, maxDelayMs: 60_000 };
  it('doubles from the initial delay, stops at the cap, and is jittered within the upper half', () => {
    expect([1, 2, 3, 4].map((n) => backoffMs(n, policy, () => 1))).toEqual([1000, 2000, 4000, 8000]);
    expect([1, 2, 3, 4].map((n) => backoffMs(n, policy, () => 0))).toEqual([500, 1000, 2000, 4000]);
    expect(backoffMs(7, policy, () => 1)).toBe(60_000);
    expect(backoffMs(1000, policy, () => 1)).toBe(60_000);
    expect(backoffMs(1000, policy, () => 0)).toBe(30_000);
    const spread = new Set(Array.from({ length: 50 }, () => backoffMs(3, policy)));
    expect(spread.size).toBeGreaterThan(10);
    for (const d of spread) expect(d >= 2000 && d <= 4000).toBe(true);
  });
});

describe('message formats', () => {
  const row: OutboxRow = {
    id: 1,
    target: 'webhook:x',
    event: 'request.created',
    eventKey: 'request.created:r1',
    orderKey: 'r1',
    idempotencyKey: 'ntf_000000000000000000000001',
    status: 'pending',
    attempts: 0,
    nextAt: 0,
    createdAt: 0,
    payload: {
      at: 0,
      request: { id: 'r1', kind: 'recommendation', status: 'pending', runId: 'run1', capability: 'mail', method: 'send', why: 'assisted mode', argsDigest: 'sha256:ab', approvalsRequired: 2, approvedBy: [], createdAt: 0, expiresAt: 0, reason: '[click](http://evil.example) *now*\r\nSubject: forged <@U123>' },
    },
  };

  it('teams: an Adaptive Card with the agent’s markdown escaped and the console link as its action', () => {
    const body = JSON.parse(renderWebhook(row, 'teams', 'https://c.example/console/').body);
    expect(body.type).toBe('message');
    const card = body.attachments[0].content;
    expect(body.attachments[0].contentType).toBe('application/vnd.microsoft.card.adaptive');
    expect(card.type).toBe('AdaptiveCard');
    expect(card.actions).toEqual([{ type: 'Action.OpenUrl', title: 'Open in the console', url: 'https://c.example/console/#/pending/r1' }]);
    const quoted = JSON.stringify(card.body);
    expect(quoted).toContain('\\\\[click\\\\]\\\\(http://evil\\\\.example\\\\)');
    expect(quoted).not.toContain('[click](http');
  });

  it('email: the subject is one line; the agent’s reason is quoted line by line', () => {
    const { subject, text } = renderEmail(row, 'https://c.example/console');
    expect(subject).toBe('[contained] Approval needed: mail.send');
    expect(text).toContain('  | Subject: forged <@U123>');
    expect(text).not.toMatch(/^Subject: forged/m);
    expect(text).toContain('approvals         0 of 2');
    expect(text).toContain('https://c.example/console/#/pending/r1');
  });
});
