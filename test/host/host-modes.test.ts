/**
 * The host end to end: real store, real capabilities, real sandboxes, operators over real
 * WebSocket clients on loopback. Each mode from inside a sandbox; approve, edit-then-approve,
 * deny-with-reason; escalations once / run / always; the two-person rule; expiry; roles.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunOutcome } from '../../runtime/index.js';
import type { OperatorClient, OperatorEvent } from '../../host/operator/client.js';
import type { RequestView } from '../../host/operator/backend.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

let fx: Fixture;
beforeAll(async () => {
  fx = await startFixture();
});
afterAll(async () => {
  await fx.close();
});

const NOTES = { capability: 'notes', kind: 'fs', scope: {}, methods: ['read', 'write', 'remove'], why: 'notes' };
const MAIL = { capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'mail' };

/** Resolve with the next `created` request seen by this operator. */
function nextCreated(op: OperatorClient, filter: (r: RequestView) => boolean = () => true): Promise<RequestView> {
  return new Promise((resolve) => {
    const off = op.onEvent((event: OperatorEvent) => {
      if (event.type === 'created' && filter(event.request as RequestView)) {
        off();
        resolve(event.request as RequestView);
      }
    });
  });
}

async function run(image: { bytes: Buffer }, input: unknown = null): Promise<{ runId: string; outcome: Promise<RunOutcome> }> {
  const { runId } = await fx.host.submit({ image: image.bytes, input });
  return { runId, outcome: fx.host.waitForRun(runId) };
}

describe('contained mode', () => {
  it('runs an in-scope call at once, with no request to anyone', async () => {
    const image = fx.image('reader', "export default async (input, caps) => caps.notes.read('a.txt')", [NOTES]);
    await fx.grant(image.digest, { capability: 'notes', methods: ['read'], mode: 'contained' });
    const before = (await fx.host.requests.pending()).length;
    const { outcome } = await run(image);
    expect(await outcome).toMatchObject({ status: 'ok', value: 'hello' });
    expect((await fx.host.requests.pending()).length).toBe(before);
  });
});

describe('assisted mode', () => {
  it('turns the call into a recommendation; an operator edits and approves; the edited action is performed', async () => {
    const image = fx.image(
      'mailer',
      "export default async (input, caps) => { const r = await caps.mail.send({ to: 'team@example.com', subject: 'draft', text: 'hi' }, { reason: 'weekly digest' }); return r.accepted; }",
      [MAIL],
    );
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const alice = await fx.operator('alice');
    const seen = nextCreated(alice, (r) => r.capability === 'mail');
    const { outcome } = await run(image);
    const request = await seen;
    expect(request).toMatchObject({ kind: 'recommendation', method: 'send', reason: 'weekly digest', args: { to: 'team@example.com', subject: 'draft' } });
    expect(fx.mails().some((m) => m.includes('Subject: final'))).toBe(false);
    await alice.decide({ requestId: request.id, verdict: 'approve', args: { to: 'team@example.com', subject: 'final', text: 'hi' } });
    expect(await outcome).toMatchObject({ status: 'ok', value: ['team@example.com'] });
    expect(fx.mails().filter((m) => m.includes('Subject: final'))).toHaveLength(1);
    const stored = await fx.host.store.getRequest(request.id);
    expect(stored).toMatchObject({ status: 'approved', execution: { state: 'done', ok: true } });
  });

  it('refuses an edit outside the scope and keeps the request pending', async () => {
    const image = fx.image('mailer2', "export default async (input, caps) => caps.mail.send({ to: 'a@example.com', subject: 's', text: 't' })", [MAIL]);
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const alice = await fx.operator('alice');
    const seen = nextCreated(alice, (r) => r.subject === image.digest);
    const { outcome } = await run(image);
    const request = await seen;
    await expect(alice.decide({ requestId: request.id, verdict: 'approve', args: { to: 'evil@elsewhere.org', subject: 's', text: 't' } })).rejects.toMatchObject({ code: expect.stringMatching(/CAPABILITY_DENIED|OUT_OF_SCOPE/) });
    await expect(alice.decide({ requestId: request.id, verdict: 'approve', args: { to: 'a@example.com', subject: 's', text: 't', bcc: 'x' } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect((await fx.host.store.getRequest(request.id))?.status).toBe('pending');
    await alice.decide({ requestId: request.id, verdict: 'deny', reason: 'not this week' });
    expect(await outcome).toMatchObject({ status: 'error', error: { code: 'ESCALATION_DENIED' } });
  });

  it('a denial reaches the agent as ESCALATION_DENIED carrying the reviewer\'s reason', async () => {
    const image = fx.image(
      'denied',
      "export default async (input, caps) => { try { await caps.mail.send({ to: 'a@example.com', subject: 's', text: 't' }); return 'sent'; } catch (e) { return [e.code, e.message]; } }",
      [MAIL],
    );
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const bob = await fx.operator('bob');
    const seen = nextCreated(bob, (r) => r.subject === image.digest);
    const { outcome } = await run(image);
    await bob.decide({ requestId: (await seen).id, verdict: 'deny', reason: 'wrong recipient list' });
    const result = await outcome;
    expect(result).toMatchObject({ status: 'ok', value: ['ESCALATION_DENIED', expect.stringContaining('wrong recipient list')] });
  });

  it('destructive methods need two distinct approvers; the same operator cannot give both', async () => {
    const image = fx.image('cleaner', "export default async (input, caps) => { await caps.notes.write({ path: 'tmp.txt', content: 'x' }); await caps.notes.remove('tmp.txt'); return 'removed'; }", [NOTES]);
    await fx.grant(image.digest, { capability: 'notes', methods: ['write'], mode: 'contained' });
    await fx.grant(image.digest, { capability: 'notes', methods: ['remove'], mode: 'assisted', approvals: 1 });
    const alice = await fx.operator('alice');
    const bob = await fx.operator('bob');
    const seenByBob = nextCreated(bob, (r) => r.subject === image.digest);
    const { outcome } = await run(image);
    const request = await seenByBob;
    expect(request.approvalsRequired).toBe(2);
    const updated = new Promise<RequestView>((resolve) => {
      const off = bob.onEvent((e) => {
        if (e.type === 'updated' && e.request.id === request.id) {
          off();
          resolve(e.request as RequestView);
        }
      });
    });
    await alice.decide({ requestId: request.id, verdict: 'approve' });
    expect((await updated).approvals).toHaveLength(1);
    await expect(alice.decide({ requestId: request.id, verdict: 'approve' })).rejects.toMatchObject({ code: 'DUPLICATE_APPROVER' });
    await bob.decide({ requestId: request.id, verdict: 'approve' });
    expect(await outcome).toMatchObject({ status: 'ok', value: 'removed' });
    await expect(bob.decide({ requestId: request.id, verdict: 'approve' })).rejects.toMatchObject({ code: 'ALREADY_RESOLVED' });
  });

  it('a viewer sees requests but cannot decide; unknown ids are NOT_FOUND', async () => {
    const image = fx.image('viewed', "export default async (input, caps) => caps.mail.send({ to: 'a@example.com', subject: 'v', text: 't' })", [MAIL]);
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const vic = await fx.operator('vic');
    const seen = nextCreated(vic, (r) => r.subject === image.digest);
    const { outcome } = await run(image);
    const request = await seen;
    await expect(vic.decide({ requestId: request.id, verdict: 'approve' })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    const alice = await fx.operator('alice');
    await expect(alice.decide({ requestId: 'no-such-request', verdict: 'approve' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await alice.decide({ requestId: request.id, verdict: 'approve' });
    expect((await outcome).status).toBe('ok');
  });

  it('a request nobody decides expires and the agent gets ESCALATION_TIMEOUT; waiting does not count against wallMs', async () => {
    const image = fx.image('ignored', "export default async (input, caps) => { try { await caps.mail.send({ to: 'a@example.com', subject: 'x', text: 't' }); } catch (e) { return e.code; } }", [MAIL]);
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted', requestTimeoutMs: 400 });
    const { outcome } = await run(image);
    const result = await outcome;
    expect(result).toMatchObject({ status: 'ok', value: 'ESCALATION_TIMEOUT' });
    expect(result.usage.wallMs).toBeLessThan(400);
  });
});

describe('executed mode', () => {
  it('runs at once', async () => {
    const image = fx.image('writer', "export default async (input, caps) => caps.notes.write({ path: 'exec.txt', content: 'done' })", [NOTES]);
    await fx.grant(image.digest, { capability: 'notes', methods: ['write'], mode: 'executed' });
    const { outcome } = await run(image);
    expect((await outcome).status).toBe('ok');
  });
});

describe('escalation: calls outside every grant', () => {
  const source = "export default async (input, caps) => { await caps.notes.read('a.txt'); await caps.notes.read('a.txt'); return 'read twice'; }";

  it('once: asks again for the second call of the same run', async () => {
    const image = fx.image('esc-once', source, [NOTES]);
    const alice = await fx.operator('alice');
    const first = nextCreated(alice, (r) => r.subject === image.digest);
    const { outcome } = await run(image);
    const r1 = await first;
    expect(r1).toMatchObject({ kind: 'escalation', capability: 'notes', method: 'read' });
    const second = nextCreated(alice, (r) => r.subject === image.digest);
    await alice.decide({ requestId: r1.id, verdict: 'approve', span: 'once' });
    await alice.decide({ requestId: (await second).id, verdict: 'approve', span: 'once' });
    expect(await outcome).toMatchObject({ status: 'ok', value: 'read twice' });
  });

  it('run: allows the rest of the run, and the next run asks again', async () => {
    const image = fx.image('esc-run', source, [NOTES]);
    const alice = await fx.operator('alice');
    let created = 0;
    alice.onEvent((e) => {
      if (e.type === 'created' && e.request.subject === image.digest) created += 1;
    });
    const first = nextCreated(alice, (r) => r.subject === image.digest);
    const { outcome } = await run(image);
    await alice.decide({ requestId: (await first).id, verdict: 'approve', span: 'run' });
    expect(await outcome).toMatchObject({ status: 'ok' });
    expect(created).toBe(1);
    const again = nextCreated(alice, (r) => r.subject === image.digest);
    const next = await run(image);
    await alice.decide({ requestId: (await again).id, verdict: 'deny', reason: 'enough' });
    expect(await next.outcome).toMatchObject({ status: 'error', error: { code: 'ESCALATION_DENIED' } });
  });

  it('always: writes the narrowest grant, and later runs need nobody', async () => {
    const image = fx.image('esc-always', source, [NOTES]);
    const alice = await fx.operator('alice');
    const first = nextCreated(alice, (r) => r.subject === image.digest);
    const { outcome } = await run(image);
    await alice.decide({ requestId: (await first).id, verdict: 'approve', span: 'always' });
    expect(await outcome).toMatchObject({ status: 'ok' });
    const grants = (await fx.host.store.listGrants()).filter((g) => 'digest' in g.subject && g.subject.digest === image.digest);
    expect(grants).toHaveLength(1);
    expect(grants[0]).toMatchObject({ capability: 'notes', methods: ['read'], mode: 'contained', createdBy: 'alice' });
    const second = await run(image);
    expect(await second.outcome).toMatchObject({ status: 'ok', value: 'read twice' });
  });

  it('a call outside what the host itself offers is refused at once', async () => {
    const image = fx.image('esc-host', "export default async (input, caps) => { try { await caps.notes.read('../../etc/passwd'); } catch (e) { return e.code; } }", [NOTES]);
    const { outcome } = await run(image);
    expect(await outcome).toMatchObject({ status: 'ok', value: 'CAPABILITY_DENIED' });
  });

  it('requestCapability from inside the sandbox becomes an escalation', async () => {
    const image = fx.image(
      'asker',
      "export default async (input, caps) => { await requestCapability('notes', { readOnly: true }, 'I need to read the notes'); return caps.notes.read('a.txt'); }",
      [{ ...NOTES, methods: ['read'] }],
    );
    const alice = await fx.operator('alice');
    const seen = nextCreated(alice, (r) => r.subject === image.digest);
    const { outcome } = await run(image);
    const request = await seen;
    expect(request).toMatchObject({ kind: 'escalation', capability: 'notes', reason: 'I need to read the notes', requestedScope: { readOnly: true } });
    // Read-only: only read, list and stat can do anything (a "run" answer allows just those), so
    // one approver; without readOnly, write and remove would make it two (test/host/grants.test.ts).
    expect(request.approvalsRequired).toBe(1);
    await alice.decide({ requestId: request.id, verdict: 'approve', span: 'run' });
    expect(await outcome).toMatchObject({ status: 'ok', value: 'hello' });
  });
});
