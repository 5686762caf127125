/**
 * The operator protocol over real sockets: snapshot on connect, live fan-out to several operators,
 * decisions and their refusals, admin messages, and every bad input answered with a typed `error`
 * that echoes the id while the connection stays open (except an oversized frame: 1009).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Grant } from '../../host/model.js';
import { clientMessageSchema, parseClientMessage, type ServerMessage } from '../../host/operator/protocol.js';
import { connectReady, type Harness, sleep, startHarness, TOKENS } from './operator-harness.js';

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.close();
});

const isEvent = (type: 'created' | 'updated' | 'resolved', id: string) => (m: ServerMessage) =>
  (m.type === type && m.request.id === id);

function grant(id: string): Grant {
  return {
    id,
    subject: { digest: `sha256:${'b'.repeat(64)}` },
    capability: 'reports',
    methods: ['read'],
    mode: 'contained',
    approvals: 1,
    createdBy: 'ada',
    reason: 'reports are public',
    createdAt: 1,
  };
}

describe('snapshot', () => {
  it('lists every pending request on connect, and nothing resolved', async () => {
    h.backend.add({ id: 'r1' });
    h.backend.add({ id: 'r2', kind: 'escalation', method: undefined, requestedScope: { root: '/data' } });
    h.backend.add({ id: 'r3', status: 'denied' });
    const c = await connectReady(h.url, TOKENS.viewer);
    const snap = c.messages.find((m) => m.type === 'snapshot');
    expect(snap?.type === 'snapshot' && snap.requests.map((r) => r.id).sort()).toEqual(['r1', 'r2']);
    expect(c.invalid).toEqual([]);
  });

  it('arrives in chunks (snapshotChunkSize) with only the last complete; events during it come after', async () => {
    await h.close();
    h = await startHarness({ snapshotChunkSize: 2 });
    for (let i = 0; i < 5; i++) h.backend.add({ id: `r${i}` });
    // An event raised while the snapshot is being read is queued, then delivered after it.
    const pending = h.backend.pending.bind(h.backend);
    h.backend.pending = async (op) => {
      const list = await pending(op);
      h.backend.add({ id: 'late' });
      return list;
    };
    const c = await connectReady(h.url, TOKENS.viewer);
    await c.waitFor(isEvent('created', 'late'));
    const types = c.messages.map((m) => (m.type === 'snapshot' ? `snapshot:${m.requests.length}:${m.complete}` : m.type));
    expect(types).toEqual(['hello', 'snapshot:2:false', 'snapshot:2:false', 'snapshot:1:true', 'created']);
  });

  it('an empty snapshot is one complete message', async () => {
    const c = await connectReady(h.url, TOKENS.viewer);
    expect(c.messages[1]).toEqual({ type: 'snapshot', requests: [], complete: true });
  });
});

describe('live events and decisions', () => {
  it('created / updated / resolved reach three operators (viewer included); two distinct approvers', async () => {
    const viewer = await connectReady(h.url, TOKENS.viewer);
    const alice = await connectReady(h.url, TOKENS.alice);
    const bob = await connectReady(h.url, TOKENS.bob);
    const all = [viewer, alice, bob];

    h.backend.add({ id: 'two', approvalsRequired: 2, risk: { readOnly: false, destructive: true, reversible: false, openWorld: false, financial: false } });
    await Promise.all(all.map((c) => c.waitFor(isEvent('created', 'two'))));

    const first = await alice.request({ type: 'decide', requestId: 'two', verdict: 'approve', note: 'looks right' });
    expect(first).toMatchObject({ type: 'result', of: 'decide', result: { request: { id: 'two', status: 'pending' } } });
    const updated = await Promise.all(all.map((c) => c.waitFor(isEvent('updated', 'two'))));
    for (const u of updated) expect(u.type === 'updated' && u.request.approvals.map((a) => a.operator)).toEqual(['alice']);

    // The same operator cannot supply the second approval.
    expect(await alice.request({ type: 'decide', requestId: 'two', verdict: 'approve' })).toMatchObject({ type: 'error', code: 'DUPLICATE_APPROVER' });

    const second = await bob.request({ type: 'decide', requestId: 'two', verdict: 'approve' });
    expect(second).toMatchObject({ type: 'result', result: { request: { status: 'approved', resolvedBy: ['alice', 'bob'] } } });
    await Promise.all(all.map((c) => c.waitFor(isEvent('resolved', 'two'))));
    for (const c of all) expect(c.invalid).toEqual([]);
  });

  it('a viewer cannot decide (FORBIDDEN, backend never called, still connected)', async () => {
    h.backend.add({ id: 'r1' });
    const viewer = await connectReady(h.url, TOKENS.viewer);
    const reply = await viewer.request({ id: 'v1', type: 'decide', requestId: 'r1', verdict: 'approve' });
    expect(reply).toMatchObject({ type: 'error', id: 'v1', code: 'FORBIDDEN' });
    expect(h.backend.decisions).toEqual([]);
    expect(h.backend.requests.get('r1')?.status).toBe('pending');
    expect(await viewer.request({ type: 'ping' })).toMatchObject({ type: 'result', of: 'ping' });
  });

  it('approve with edited arguments; deny with a reason', async () => {
    h.backend.add({ id: 'e1' });
    h.backend.add({ id: 'd1' });
    const alice = await connectReady(h.url, TOKENS.alice);
    const edited = await alice.request({ type: 'decide', requestId: 'e1', verdict: 'approve', args: { to: 'team@example.com', subject: 'digest' } });
    // `args` stays what the agent asked; `proposal` is what runs, proposed and approved by alice.
    expect(edited).toMatchObject({
      type: 'result',
      result: { request: { status: 'approved', args: { to: 'ops@example.com' }, proposal: { args: { to: 'team@example.com' }, by: 'alice', approvedBy: ['alice'] } } },
    });
    const denied = await alice.request({ type: 'decide', requestId: 'd1', verdict: 'deny', reason: 'wrong recipient' });
    expect(denied).toMatchObject({ type: 'result', result: { request: { status: 'denied', denyReason: 'wrong recipient' } } });
  });

  it('escalation spans pass through', async () => {
    h.backend.add({ id: 'x1', kind: 'escalation' });
    const alice = await connectReady(h.url, TOKENS.alice);
    await alice.request({ type: 'decide', requestId: 'x1', verdict: 'approve', span: 'run' });
    expect(h.backend.decisions[0]?.input).toEqual({ requestId: 'x1', verdict: 'approve', span: 'run' });
  });

  it('repeated decision → ALREADY_RESOLVED; unknown request → NOT_FOUND; both echo the id, connection stays open', async () => {
    h.backend.add({ id: 'r1' });
    const alice = await connectReady(h.url, TOKENS.alice);
    expect(await alice.request({ id: 'a', type: 'decide', requestId: 'r1', verdict: 'approve' })).toMatchObject({ type: 'result', id: 'a' });
    expect(await alice.request({ id: 'b', type: 'decide', requestId: 'r1', verdict: 'deny', reason: 'changed my mind' })).toMatchObject({ type: 'error', id: 'b', code: 'ALREADY_RESOLVED' });
    expect(await alice.request({ id: 'c', type: 'decide', requestId: 'nope', verdict: 'approve' })).toMatchObject({ type: 'error', id: 'c', code: 'NOT_FOUND' });
    expect(alice.open).toBe(true);
    expect(h.backend.requests.get('r1')?.status).toBe('approved');
  });

  it('first decision wins: concurrent approve and deny from two operators, exactly one applied', async () => {
    h.backend.add({ id: 'race' });
    const alice = await connectReady(h.url, TOKENS.alice);
    const bob = await connectReady(h.url, TOKENS.bob);
    const [a, b] = await Promise.all([
      alice.request({ type: 'decide', requestId: 'race', verdict: 'approve' }),
      bob.request({ type: 'decide', requestId: 'race', verdict: 'deny', reason: 'no' }),
    ]);
    expect([a.type, b.type].sort()).toEqual(['error', 'result']);
    expect([a, b].find((m) => m.type === 'error')).toMatchObject({ code: 'ALREADY_RESOLVED' });
    expect(h.backend.decisions).toHaveLength(1);
  });
});

describe('admin messages', () => {
  it('grants.list / grants.revoke are admin only; revoke fans out a grant event', async () => {
    h.backend.addGrant(grant('g1'));
    const admin = await connectReady(h.url, TOKENS.admin);
    const alice = await connectReady(h.url, TOKENS.alice);
    expect(await alice.request({ type: 'grants.list' })).toMatchObject({ type: 'error', code: 'FORBIDDEN' });
    expect(await alice.request({ type: 'grants.revoke', grantId: 'g1', reason: 'x' })).toMatchObject({ type: 'error', code: 'FORBIDDEN' });
    expect(await admin.request({ type: 'grants.list' })).toMatchObject({ type: 'result', of: 'grants.list', result: { grants: [{ id: 'g1' }] } });
    expect(await admin.request({ type: 'grants.revoke', grantId: 'g1', reason: 'no longer needed' })).toMatchObject({
      type: 'result',
      result: { grant: { id: 'g1', revokedBy: 'ada' } },
    });
    await alice.waitFor((m) => m.type === 'grant' && m.change === 'revoked' && m.grant.id === 'g1');
    expect(await admin.request({ type: 'grants.revoke', grantId: 'g9', reason: 'x' })).toMatchObject({ type: 'error', code: 'NOT_FOUND' });
  });

  it('runs.list for every role; runs.cancel admin only, with a run event', async () => {
    h.backend.addRun({ id: 'run-1', subject: undefined, imageName: 'digest', status: 'running', input: {}, createdAt: 1 });
    const viewer = await connectReady(h.url, TOKENS.viewer);
    const admin = await connectReady(h.url, TOKENS.admin);
    expect(await viewer.request({ type: 'runs.list', limit: 10 })).toMatchObject({ type: 'result', result: { runs: [{ id: 'run-1' }] } });
    expect(await viewer.request({ type: 'runs.cancel', runId: 'run-1' })).toMatchObject({ type: 'error', code: 'FORBIDDEN' });
    expect(await admin.request({ type: 'runs.cancel', runId: 'run-1' })).toMatchObject({ type: 'result', result: { run: { status: 'cancelled' } } });
    await viewer.waitFor((m) => m.type === 'run' && m.run.id === 'run-1' && m.run.status === 'cancelled');
  });
});

describe('bad input', () => {
  it('malformed JSON → INVALID_ARGUMENT without id; connection stays open', async () => {
    const c = await connectReady(h.url, TOKENS.alice);
    c.send('{"type":"ping","id":"x"');
    const err = await c.waitFor((m) => m.type === 'error');
    expect(err).toEqual({ type: 'error', code: 'INVALID_ARGUMENT', message: 'message is not valid JSON' });
    c.send('[1,2]');
    c.send('null');
    await sleep(50);
    expect(c.messages.filter((m) => m.type === 'error')).toHaveLength(3);
    expect(await c.request({ type: 'ping' })).toMatchObject({ type: 'result' });
  });

  it('unknown type → INVALID_ARGUMENT echoing the id', async () => {
    const c = await connectReady(h.url, TOKENS.admin);
    for (const type of ['shutdown', '__proto__', 'Decide', 'decide ', 'constructor']) {
      expect(await c.request({ type }), type).toMatchObject({ type: 'error', code: 'INVALID_ARGUMENT', data: { path: 'type' } });
    }
    expect(await c.request({ id: 'no-type' })).toMatchObject({ type: 'error', id: 'no-type', code: 'INVALID_ARGUMENT' });
    expect(c.open).toBe(true);
  });

  it('schema mismatch → INVALID_ARGUMENT naming the field, echoing the id', async () => {
    h.backend.add({ id: 'r1' });
    const c = await connectReady(h.url, TOKENS.alice);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ type: 'decide', requestId: 'r1', verdict: 'deny' }, 'reason'],
      [{ type: 'decide', requestId: 'r1', verdict: 'deny', reason: '   ' }, 'reason'],
      [{ type: 'decide', requestId: 'r1', verdict: 'maybe' }, 'verdict'],
      [{ type: 'decide', requestId: 'r1', verdict: 'approve', span: 'forever' }, 'span'],
      [{ type: 'decide', requestId: 'r1', verdict: 'approve', reason: 'ok' }, 'reason'],
      [{ type: 'decide', requestId: 'r1', verdict: 'deny', reason: 'x', args: {} }, 'args'],
      [{ type: 'decide', requestId: 'r1', verdict: 'approve', approved: true }, ''],
      [{ type: 'decide', verdict: 'approve' }, 'requestId'],
      [{ type: 'runs.list', limit: 0 }, 'limit'],
      [{ type: 'ping', extra: 1 }, ''],
    ];
    for (const [message, path] of cases) {
      const reply = await c.request(message);
      expect(reply, JSON.stringify(message)).toMatchObject({ type: 'error', code: 'INVALID_ARGUMENT', data: { path } });
    }
    // An id that is not a usable string is not echoed, and the message is refused.
    c.send({ type: 'ping', id: 42 });
    await c.waitFor((m) => m.type === 'error' && m.id === undefined && m.message.includes('id'));
    expect(h.backend.decisions).toEqual([]);
    expect(h.backend.requests.get('r1')?.status).toBe('pending');
    expect(c.open).toBe(true);
  });

  it('binary frames → INVALID_ARGUMENT', async () => {
    const c = await connectReady(h.url, TOKENS.alice);
    c.ws.send(Buffer.from(JSON.stringify({ type: 'ping', id: 'b' })), { binary: true });
    expect(await c.waitFor((m) => m.type === 'error')).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(c.open).toBe(true);
  });

  it('a frame of exactly maxPayload bytes is read; one byte more closes 1009', async () => {
    const c = await connectReady(h.url, TOKENS.alice);
    const head = '{"type":"ping","id":"big","pad":"';
    const exact = `${head}${'x'.repeat(64 * 1024 - head.length - 2)}"}`;
    expect(Buffer.byteLength(exact)).toBe(64 * 1024);
    c.send(exact);
    expect(await c.waitFor((m) => m.type === 'error' && m.id === 'big')).toMatchObject({ code: 'INVALID_ARGUMENT' });
    c.send(`${exact} `);
    expect((await c.closed).code).toBe(1009);
    await sleep(20);
    expect(h.channel.clients()).toHaveLength(0);
  });
});

describe('protocol schemas', () => {
  it('parseClientMessage never throws, on anything', () => {
    for (const text of ['', ' ', '1', '"x"', 'true', '{}', '{"type":null}', '{"type":{}}', '{"__proto__":{"type":"ping"},"id":"x"}', '\u0000', '{"type":"ping","id":""}']) {
      const parsed = parseClientMessage(text);
      expect(parsed.ok, text).toBe(false);
      if (!parsed.ok) expect(parsed.error.code).toBe('INVALID_ARGUMENT');
    }
    expect(parseClientMessage('{"type":"ping","id":"p"}')).toEqual({ ok: true, message: { type: 'ping', id: 'p' } });
  });

  it('ids are bounded', () => {
    expect(clientMessageSchema.safeParse({ type: 'ping', id: 'x'.repeat(128) }).success).toBe(true);
    expect(clientMessageSchema.safeParse({ type: 'ping', id: 'x'.repeat(129) }).success).toBe(false);
  });
});
