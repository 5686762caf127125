/**
 * Several hosts, one truth: two and three real `contained host` processes on one PostgreSQL
 * database. An operator on any host sees the fleet's requests and decides them; a decision made
 * through one host resumes the run waiting on another; two approvers on two hosts complete a
 * two-person rule; 200 requests raced by 5 operators over 3 hosts are each decided exactly once; a
 * host killed between the durable decision and the action has it performed once by another; a
 * dead host's escalations end `run_gone`; a PostgreSQL restart while runs wait loses nothing;
 * verdicts given through two hosts count toward one trust record (one proposal, promoted through
 * one host, executed on the other); a passkey registered through one host signs through another.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { OperatorClient } from '../../host/operator/client.js';
import { pgAvailable, type PgServer, startPostgres } from '../helpers/postgres.js';
import { type FleetFixture, startFleetFixture } from './helpers/fleet.js';
import { waitUntil } from './helpers/wait.js';
import { exited } from './helpers/host-process.js';
import { login, post, raw } from '../console/helpers.js';
import WebSocket from 'ws';
import { approvalChallenge } from '../../host/approvals/challenge.js';
import { argsDigest } from '../../host/gate/proposal.js';
import { registerPasskey, SoftAuthenticator } from './helpers/soft-authenticator.js';


const SEND = "export default async (input, caps) => { await caps.mail.send({ to: 'team@example.com', subject: 'fleet ' + input.i, text: 'once' }, { reason: 'test' }); return 'sent ' + input.i; }";
const MAIL_REQUEST = [{ capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'the email' }];

let pg: PgServer;
let fx: FleetFixture | undefined;

beforeAll(async () => {
  if (pgAvailable) pg = await startPostgres();
});
afterAll(async () => {
  await pg?.stop();
});
afterEach(async () => {
  await fx?.close();
  fx = undefined;
});

/**
 * A fleet on a fresh database. Hosts are declared dead after 10 s of silence, far beyond what a
 * loaded CI machine can starve a host for; the tests of reaping itself use 3 s.
 */
async function fleet(deadAfterMs = 10_000): Promise<FleetFixture> {
  fx = await startFleetFixture(await pg.createDatabase(), { heartbeatMs: 200, deadAfterMs });
  return fx;
}

function pendingOf(op: OperatorClient, digest: string): Array<{ id: string; status: string; hostId?: string }> {
  return [...op.pending.values()].filter((r) => r.subject === digest) as Array<{ id: string; status: string; hostId?: string }>;
}

describe.skipIf(!pgAvailable)('several hosts on one PostgreSQL', () => {
  it('a recommendation made on host A is seen and approved through host B; the run on A resumes and acts once', async () => {
    const f = await fleet();
    const [a, b] = await Promise.all([f.start(1), f.start(2)]);
    const image = f.image('sender', SEND, MAIL_REQUEST);
    await f.grant({ capability: 'mail', methods: ['send'], mode: 'assisted' }, image.digest);
    const opB = await f.operator(b.url, 'alice');
    const runId = await f.submit(a.url, image.bytes, { i: 1 });
    const request = await waitUntil(() => pendingOf(opB, image.digest)[0], 'the request on host B');
    expect(request.status).toBe('pending');
    await opB.decide({ requestId: request.id, verdict: 'approve' });
    const run = await f.waitRun(a.url, runId);
    expect(run.outcome).toMatchObject({ status: 'ok', value: 'sent 1' });
    expect(f.mails()).toHaveLength(1);
    const store = await f.store();
    expect(await store.getRequest(request.id)).toMatchObject({ status: 'approved', execution: { state: 'done', ok: true } });
  }, 60_000);

  it('an escalation on host A, approved through host B\'s WebSocket, resumes the run on A', async () => {
    const f = await fleet();
    const [a, b] = await Promise.all([f.start(1), f.start(2)]);
    const image = f.image('reader', "export default async (input, caps) => caps.notes.read('b.txt')", [{ capability: 'notes', kind: 'fs', scope: {}, methods: ['read'], why: 'notes' }]);
    await f.grant({ capability: 'notes', methods: ['read'], mode: 'executed', scope: { paths: ['a.txt'] } }, image.digest);
    const opB = await f.operator(b.url, 'bob');
    const runId = await f.submit(a.url, image.bytes);
    const request = await waitUntil(() => pendingOf(opB, image.digest)[0], 'the escalation on host B');
    await opB.decide({ requestId: request.id, verdict: 'approve', span: 'once' });
    expect((await f.waitRun(a.url, runId)).outcome).toMatchObject({ status: 'ok', value: 'secret of host 1' });
  }, 60_000);

  it('two approvers on two hosts complete a two-person rule; performed once', async () => {
    const f = await fleet();
    const [a, b] = await Promise.all([f.start(1), f.start(2)]);
    const image = f.image('sender', SEND, MAIL_REQUEST);
    await f.grant({ capability: 'mail', methods: ['send'], mode: 'assisted', approvals: 2 }, image.digest);
    const opA = await f.operator(a.url, 'alice');
    const opB = await f.operator(b.url, 'bob');
    const runId = await f.submit(b.url, image.bytes, { i: 2 });
    const request = await waitUntil(() => pendingOf(opA, image.digest)[0], 'the request on host A');
    await opA.decide({ requestId: request.id, verdict: 'approve' });
    // Bob on host B sees Alice's approval, then adds his.
    await waitUntil(() => ((opB.pending.get(request.id)?.approvals.length ?? 0) === 1 ? true : undefined), 'the first approval on host B');
    await expect(opA.decide({ requestId: request.id, verdict: 'approve' })).rejects.toMatchObject({ code: 'DUPLICATE_APPROVER' });
    await opB.decide({ requestId: request.id, verdict: 'approve' });
    expect((await f.waitRun(b.url, runId)).outcome).toMatchObject({ status: 'ok', value: 'sent 2' });
    expect(f.mails()).toHaveLength(1);
  }, 60_000);

  it('200 requests, 5 operators racing over 3 hosts: each decided exactly once, every run completes', async () => {
    const f = await fleet();
    const hosts = await Promise.all([f.start(1), f.start(2), f.start(3)]);
    const image = f.image('crowd', "export default async (input, caps) => (await caps.notes.read('a.txt')) + ':' + input.i", [{ capability: 'notes', kind: 'fs', scope: {}, methods: ['read'], why: 'notes' }]);
    await f.grant({ capability: 'notes', methods: ['read'], mode: 'assisted' }, image.digest);
    const RUNS = 200;
    const names = ['alice', 'bob', 'carol', 'dave', 'erin'];
    const operators = await Promise.all(names.map((n, k) => f.operator((hosts[k % 3] as { url: string }).url, n)));
    const wins = new Map<string, string>();
    const refusals: string[] = [];
    const decisions: Promise<void>[] = [];
    operators.forEach((op, k) => {
      op.onEvent((event) => {
        if (event.type !== 'created' || event.request.subject !== image.digest) return;
        const id = event.request.id;
        // Each takes its share (the channel rate-limits a connection); every tenth is raced by all five.
        const raced = Number.parseInt(id.slice(0, 2), 16) % 10 === 0;
        if (!raced && Number.parseInt(id.slice(0, 8), 16) % operators.length !== k) return;
        // The channel rate-limits each connection (20 messages/s, as a person clicks): a refused
        // message is sent again after a pause, as a client would.
        const decide = async (): Promise<void> => {
          for (;;) {
            try {
              await op.decide({ requestId: id, verdict: 'approve' });
              if (wins.has(id)) throw new Error(`request ${id} approved twice`);
              wins.set(id, names[k] as string);
              return;
            } catch (error) {
              const code = (error as { code?: string }).code ?? 'unknown';
              if (code !== 'RATE_LIMITED') return void refusals.push(code);
              await new Promise((r) => setTimeout(r, 250));
            }
          }
        };
        decisions.push(decide());
      });
    });
        // Submitted 20 at a time (a platform's client pool), all 200 waiting for a human at once.
    const runs: Array<{ runId: string; url: string }> = [];
    for (let from = 0; from < RUNS; from += 20) {
      runs.push(...(await Promise.all(Array.from({ length: Math.min(20, RUNS - from) }, (_, j) => {
        const host = hosts[(from + j) % 3] as { url: string };
        return f.submit(host.url, image.bytes, { i: from + j }).then((runId) => ({ runId, url: host.url }));
      }))));
    }
    const outcomes = await Promise.all(runs.map((r) => f.waitRun(r.url, r.runId)));
    await Promise.all(decisions);
    expect(outcomes.filter((o) => o.outcome?.status === 'ok')).toHaveLength(RUNS);
    expect(wins.size).toBe(RUNS);
    for (const code of refusals) expect(code).toBe('ALREADY_RESOLVED');
    const store = await f.store();
    const approved = (await store.listRequests({ status: 'approved', limit: 10_000 })).filter((r) => r.subject === image.digest);
    expect(approved).toHaveLength(RUNS);
    expect(approved.every((r) => r.approvals.length === 1 && r.execution?.state !== undefined)).toBe(true);
    // The requests came from all three hosts.
    expect(new Set(approved.map((r) => r.hostId)).size).toBe(3);
    // One chain, three hosts appending at once: it verifies with the three hosts' keys.
    const verified = await f.verifyAudit();
    expect(verified.code, verified.stderr + verified.stdout).toBe(0);
  }, 180_000);

  it('a host killed between the durable decision and the action: another host reaps it and performs it once', async () => {
    const f = await fleet(3_000);
    const a = await f.start(1, { CONTAINED_FAULT: 'kill-after-decision' });
    const b = await f.start(2);
    const image = f.image('sender', SEND, MAIL_REQUEST);
    await f.grant({ capability: 'mail', methods: ['send'], mode: 'assisted' }, image.digest);
    const opA = await f.operator(a.url, 'alice');
    const runId = await f.submit(a.url, image.bytes, { i: 3 });
    const request = await waitUntil(() => pendingOf(opA, image.digest)[0], 'the request on host A');
    await opA.decide({ requestId: request.id, verdict: 'approve' }).catch(() => undefined);
    await f.kill(a).catch(() => undefined);
    expect(a.child.signalCode).toBe('SIGKILL');
    expect(f.mails()).toHaveLength(0);
    // Host B notices A is gone (3 s without a heartbeat), ends its run, performs the recommendation.
    await waitUntil(() => (f.mails().length > 0 ? true : undefined), 'the email, sent by host B', 20_000);
    const store = await f.store();
    expect(await store.getRequest(request.id)).toMatchObject({ status: 'approved', execution: { state: 'done', ok: true } });
    expect(await store.getRun(runId)).toMatchObject({ status: 'error' });
    await new Promise((r) => setTimeout(r, 1_000));
    expect(f.mails()).toHaveLength(1);
    const verified = await f.verifyAudit();
    expect(verified.code, verified.stderr + verified.stdout).toBe(0);
    void b;
  }, 60_000);

  it('when a host dies, its escalations end run_gone for operators on the other hosts; its pending recommendations stay for any host', async () => {
    const f = await fleet(3_000);
    const [a, b] = await Promise.all([f.start(1), f.start(2)]);
    const reader = f.image('reader', "export default async (input, caps) => caps.notes.read('b.txt')", [{ capability: 'notes', kind: 'fs', scope: {}, methods: ['read'], why: 'notes' }]);
    await f.grant({ capability: 'notes', methods: ['read'], mode: 'executed', scope: { paths: ['a.txt'] } }, reader.digest);
    const sender = f.image('sender', SEND, MAIL_REQUEST);
    await f.grant({ capability: 'mail', methods: ['send'], mode: 'assisted' }, sender.digest);
    const opB = await f.operator(b.url, 'bob');
    await f.submit(a.url, reader.bytes);
    await f.submit(a.url, sender.bytes, { i: 4 });
    const escalation = await waitUntil(() => pendingOf(opB, reader.digest)[0], 'the escalation on host B');
    const recommendation = await waitUntil(() => pendingOf(opB, sender.digest)[0], 'the recommendation on host B');
    await f.kill(a);
    await waitUntil(() => (opB.pending.has(escalation.id) ? undefined : true), 'the escalation closed on host B', 20_000);
    const store = await f.store();
    expect(await store.getRequest(escalation.id)).toMatchObject({ status: 'run_gone' });
    expect(await store.getRequest(recommendation.id)).toMatchObject({ status: 'pending' });
    // The recommendation outlives its host: approved through B, B performs it, once.
    await opB.decide({ requestId: recommendation.id, verdict: 'approve' });
    await waitUntil(() => (f.mails().length > 0 ? true : undefined), 'the email', 20_000);
    expect(f.mails()).toHaveLength(1);
  }, 60_000);

  it('assisted verdicts given on two hosts count toward one trust record: one proposal, seen through either host, accepted through one, executed on the other', async () => {
    const f = await fleet();
    const extra = { trust: { minAssistedReviews: 4 } };
    const [a, b] = await Promise.all([f.start(1, {}, extra), f.start(2, {}, extra)]);
    const image = f.image('folders', "export default async (input, caps) => { await caps.notes.mkdir('d' + input.i, { reason: 'tidy' }); return 'made ' + input.i; }", [
      { capability: 'notes', kind: 'fs', scope: {}, methods: ['mkdir'], why: 'folders' },
    ]);
    await f.grant({ capability: 'notes', methods: ['mkdir'], mode: 'assisted' }, image.digest);
    const opA = await f.operator(a.url, 'alice');
    const opB = await f.operator(b.url, 'bob');
    // Four recommendations, two run on each host, each approved through the other host.
    for (let i = 0; i < 4; i++) {
      const [runsOn, decider] = i % 2 === 0 ? [a, opB] : [b, opA];
      const runId = await f.submit(runsOn.url, image.bytes, { i });
      const request = await waitUntil(() => [...decider.pending.values()].find((r) => r.runId === runId && r.status === 'pending'), `request ${i}`);
      // Figures come with the request on any host (they may lag verdicts given on another host by up to a second).
      expect(request.trust).toMatchObject({ action: 'notes.mkdir', mode: 'assisted' });
      await decider.decide({ requestId: request.id, verdict: 'approve' });
      expect((await f.waitRun(runsOn.url, runId)).outcome).toMatchObject({ status: 'ok', value: `made ${i}` });
    }
    // The fourth verdict met the bar on the fleet's record: one proposal, whichever host looks.
    const proposal = await waitUntil(async () => (await opA.listPromotions('proposed')).find((p) => p.subject === image.digest), 'the proposal');
    expect(proposal.evidence).toMatchObject({ assistedReviews: 4, approvedAsIs: 4 });
    expect((await opB.listPromotions()).filter((p) => p.subject === image.digest)).toHaveLength(1);
    await expect(opB.decidePromotion({ proposalId: proposal.id, verdict: 'accept', reason: 'clean on both hosts' })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    const admin = await f.operator(b.url, 'adam');
    const accepted = await admin.decidePromotion({ proposalId: proposal.id, verdict: 'accept', reason: 'clean on both hosts' });
    expect(accepted).toMatchObject({ status: 'accepted', decidedBy: 'adam' });
    // Promoted through host B, executed on host A: the next call runs without a request.
    const runId = await f.submit(a.url, image.bytes, { i: 4 });
    expect((await f.waitRun(a.url, runId)).outcome).toMatchObject({ status: 'ok', value: 'made 4' });
    expect((await opA.listPromotions()).filter((p) => p.subject === image.digest).map((p) => p.status)).toEqual(['accepted']);
    expect((await f.verifyAudit()).code).toBe(0);
  }, 90_000);

  it('a passkey registered through host A signs an approval made through host B; the signature verifies offline on the fleet chain', async () => {
    const f = await fleet();
    // One origin for the fleet, as behind a load balancer: the passkey is bound to it, not to a host.
    const origin = 'http://localhost:9';
    const extra = { approvals: { origin } };
    const [a, b] = await Promise.all([f.start(1, {}, extra), f.start(2, {}, extra)]);
    const aliceKey = new SoftAuthenticator(origin);
    const bobKey = new SoftAuthenticator(origin);
    const alice = await registerPasskey(a.url, f.tokens.alice as string, aliceKey, 'laptop');
    const bob = await registerPasskey(b.url, f.tokens.bob as string, bobKey, 'phone');
    const image = f.image('signed-sender', SEND, MAIL_REQUEST);
    await f.grant({ capability: 'mail', methods: ['send'], mode: 'assisted', approvals: 2, signedApprovals: true }, image.digest);
    const opA = await f.operator(a.url, 'bob');
    const opB = await f.operator(b.url, 'alice');
    const runId = await f.submit(a.url, image.bytes, { i: 9 });
    const request = await waitUntil(() => pendingOf(opB, image.digest)[0], 'the request on host B');
    const stored = await (await f.store()).getRequest(request.id);
    const digest = argsDigest(stored?.args);
    const challenge = approvalChallenge(request.id, digest, 'approve');
    // Unsigned: refused on either host.
    await expect(opB.decide({ requestId: request.id, verdict: 'approve' })).rejects.toMatchObject({ code: 'SIGNATURE_REQUIRED' });
    // Alice (registered through A) signs through B; Bob (registered through B) signs through A.
    await opB.decide({ requestId: request.id, verdict: 'approve', argsDigest: digest, assertion: aliceKey.assert(alice, challenge) as never });
    await opA.decide({ requestId: request.id, verdict: 'approve', argsDigest: digest, assertion: bobKey.assert(bob, challenge) as never });
    expect((await f.waitRun(a.url, runId)).outcome).toMatchObject({ status: 'ok', value: 'sent 9' });
    expect(f.mails()).toHaveLength(1);
    const done = await (await f.store()).getRequest(request.id);
    expect(done?.approvals.map((x) => [x.operator, x.signature?.credentialId])).toEqual([
      ['alice', alice.id],
      ['bob', bob.id],
    ]);
    const verified = await f.verifyAudit();
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/signed approvals: 2 verify with the registered public keys \(2 passkeys registered/);
  }, 90_000);

  it('a grant revoked through host A reaches operators watching host B as a grant event, and host B\'s gate at once', async () => {
    const f = await fleet();
    const [a, b] = await Promise.all([f.start(1), f.start(2)]);
    const image = f.image('sender-revoked', SEND, MAIL_REQUEST);
    const granted = await f.grant({ capability: 'mail', methods: ['send'], mode: 'contained' }, image.digest);
    const admin = await f.operator(a.url, 'adam');
    const watcher = await f.operator(b.url, 'alice');
    const seen: Array<{ change: string; id: string }> = [];
    watcher.onEvent((event) => {
      if (event.type === 'grant') seen.push({ change: event.change, id: event.grant.id });
    });
    expect((await f.waitRun(b.url, await f.submit(b.url, image.bytes, { i: 1 }))).outcome).toMatchObject({ status: 'ok' });
    await admin.revokeGrant(granted.id, 'no more mail');
    await waitUntil(() => (seen.some((e) => e.change === 'revoked' && e.id === granted.id) ? true : undefined), 'the revocation on host B');
    // The grant a test wrote straight into the store is announced too (any writer: a CLI, another host).
    const added = await f.grant({ capability: 'notes', methods: ['read'], mode: 'contained' }, image.digest);
    await waitUntil(() => (seen.some((e) => e.change === 'added' && e.id === added.id) ? true : undefined), 'the new grant on host B');
    // Host B's gate no longer lets the call through: it becomes a request for an operator.
    const runId = await f.submit(b.url, image.bytes, { i: 2 });
    const asked = await waitUntil(() => [...watcher.pending.values()].find((r) => r.runId === runId), 'the escalation on host B');
    await watcher.decide({ requestId: asked.id, verdict: 'deny', reason: 'revoked on purpose' });
    expect((await f.waitRun(b.url, runId)).outcome?.status).toBe('error');
  }, 60_000);

  it('an image uploaded to host A runs by digest on host B', async () => {
    const f = await fleet();
    const [a, b] = await Promise.all([f.start(1), f.start(2)]);
    const image = f.image('echo', 'export default async (input) => ({ echoed: input })', []);
    const uploaded = await fetch(`${a.url}/v1/images`, { method: 'POST', headers: { authorization: `Bearer ${f.tokens.plat}`, 'content-type': 'application/gzip' }, body: image.bytes });
    expect(uploaded.status).toBe(201);
    const res = await fetch(`${b.url}/v1/runs`, { method: 'POST', headers: { authorization: `Bearer ${f.tokens.plat}`, 'content-type': 'application/json' }, body: JSON.stringify({ digest: image.digest, input: { n: 7 } }) });
    expect(res.status).toBe(202);
    const { runId } = (await res.json()) as { runId: string };
    expect((await f.waitRun(b.url, runId)).outcome).toMatchObject({ status: 'ok', value: { echoed: { n: 7 } } });
  }, 60_000);

  it('a console session and a WebSocket ticket from host A work on host B, and after A restarts', async () => {
    const f = await fleet();
    const [a, b] = await Promise.all([f.start(1), f.start(2)]);
    const session = await login(a.url, { token: f.tokens.alice as string });
    const onB = await raw(b.url, 'GET', '/console/api/session', { headers: { cookie: session.cookie } });
    expect(onB.status).toBe(200);
    expect(onB.json()).toMatchObject({ operator: { name: 'alice' } });
    // A ticket issued by A opens B's operator channel, once.
    const ticket = await post(a.url, '/console/api/ticket', {}, session);
    const t = (ticket.json() as { ticket: string }).ticket;
    const ws = new WebSocket(`${b.url.replace(/^http/, 'ws')}/v1/operator?ticket=${encodeURIComponent(t)}`, ['contained.operator.v1'], { origin: b.url });
    const hello = await new Promise<unknown>((resolve, reject) => {
      ws.once('message', (data) => resolve(JSON.parse(String(data))));
      ws.once('error', reject);
    });
    expect(hello).toMatchObject({ type: 'hello' });
    ws.close();
    const again = new WebSocket(`${b.url.replace(/^http/, 'ws')}/v1/operator?ticket=${encodeURIComponent(t)}`, ['contained.operator.v1'], { origin: b.url });
    const refused = await new Promise<number>((resolve) => {
      again.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      again.once('open', () => resolve(101));
    });
    expect(refused).toBe(401);
    // Host A restarts: the session still works there; logging out on B ends it everywhere.
    a.child.kill('SIGTERM');
    await exited(a.child);
    const a2 = await f.start(1);
    expect((await raw(a2.url, 'GET', '/console/api/session', { headers: { cookie: session.cookie } })).status).toBe(200);
    expect((await post(b.url, '/console/api/logout', {}, session)).status).toBe(204);
    expect((await raw(a2.url, 'GET', '/console/api/session', { headers: { cookie: session.cookie } })).status).toBe(401);
  }, 60_000);

  it('a PostgreSQL restart while runs wait: hosts reconnect, nothing is lost, nothing decided twice', async () => {
    const f = await fleet();
    const [a, b] = await Promise.all([f.start(1), f.start(2)]);
    const image = f.image('sender', SEND, MAIL_REQUEST);
    await f.grant({ capability: 'mail', methods: ['send'], mode: 'assisted' }, image.digest);
    const opB = await f.operator(b.url, 'carol');
    const runIds = await Promise.all([1, 2, 3].map((i) => f.submit(a.url, image.bytes, { i })));
    await waitUntil(() => (pendingOf(opB, image.digest).length === 3 ? true : undefined), 'three requests on host B');
    await pg.halt();
    await new Promise((r) => setTimeout(r, 500));
    await pg.resume();
    // After the restart, decisions through B reach the runs waiting on A.
    for (const request of pendingOf(opB, image.digest)) {
      await waitUntil(() => opB.decide({ requestId: request.id, verdict: 'approve' }).then(() => true, (error: { code?: string }) => (error.code === 'STORE_UNAVAILABLE' ? undefined : Promise.reject(error))), 'a decision after the restart', 20_000);
    }
    for (const runId of runIds) expect((await f.waitRun(a.url, runId)).outcome).toEqual(expect.objectContaining({ status: 'ok' }));
    expect(f.mails()).toHaveLength(3);
    const store = await f.store();
    const approved = (await store.listRequests({ status: 'approved' })).filter((r) => r.subject === image.digest);
    expect(approved).toHaveLength(3);
    expect(approved.every((r) => r.approvals.length === 1)).toBe(true);
    // The shared chain after all of that.
    const verified = await f.verifyAudit();
    expect(verified.code, verified.stderr + verified.stdout).toBe(0);
  }, 90_000);
});
