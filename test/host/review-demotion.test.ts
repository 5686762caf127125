/**
 * After-the-fact review end to end: a real host, real sandboxes, operators over real WebSocket
 * clients. An executed action enters the review queue; a critical verdict over the channel demotes
 * it at once (grant back to assisted, operators told), and the next call becomes a recommendation
 * whose request carries the agent's trust figures. Roles, first-verdict-wins, notes, sampling.
 */
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadVerifyKey } from '../../host/audit/keys.js';
import { verifyAudit } from '../../host/audit/verify.js';
import type { OperatorClient, OperatorTrustEvent } from '../../host/operator/client.js';
import type { WireRequestView as RequestView } from '../../host/operator/protocol.js';
import { defaultStorePath } from '../../host/store/sqlite-store.js';
import type { Review } from '../../host/trust/model.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

let fx: Fixture;
beforeAll(async () => {
  fx = await startFixture();
});
afterAll(async () => {
  await fx.close();
});

const NOTES = { capability: 'notes', kind: 'fs', scope: {}, methods: ['read', 'write', 'mkdir'], why: 'notes' };

function nextTrust<T extends OperatorTrustEvent['type']>(op: OperatorClient, type: T, filter: (e: Extract<OperatorTrustEvent, { type: T }>) => boolean = () => true): Promise<Extract<OperatorTrustEvent, { type: T }>> {
  return new Promise((resolve) => {
    const off = op.onTrustEvent((event) => {
      if (event.type === type && filter(event as Extract<OperatorTrustEvent, { type: T }>)) {
        off();
        resolve(event as Extract<OperatorTrustEvent, { type: T }>);
      }
    });
  });
}

function nextCreated(op: OperatorClient, subject: string): Promise<RequestView> {
  return new Promise((resolve) => {
    const off = op.onEvent((event) => {
      if (event.type === 'created' && event.request.subject === subject) {
        off();
        resolve(event.request);
      }
    });
  });
}

async function run(bytes: Buffer): Promise<{ runId: string; outcome: ReturnType<Fixture['host']['waitForRun']> }> {
  const { runId } = await fx.host.submit({ image: bytes });
  return { runId, outcome: fx.host.waitForRun(runId) };
}

describe('executed mode: review, then demotion on a critical verdict', () => {
  it('queues the action, a critical review over ws demotes it, the next call is a recommendation', async () => {
    // mkdir: reversible and low-stakes, the kind of action that runs in executed mode.
    const image = fx.image('exec-mkdir', "export default async (input, caps) => caps.notes.mkdir('reports/2030', { reason: 'keep notes' })", [NOTES]);
    const executed = await fx.grant(image.digest, { capability: 'notes', methods: ['read', 'mkdir'], mode: 'executed' });
    const alice = await fx.operator('alice');
    const bob = await fx.operator('bob');

    const queued = nextTrust(alice, 'review', (e) => e.review.subject === image.digest);
    const first = await run(image.bytes);
    expect((await first.outcome).status).toBe('ok');
    const { review } = await queued;
    expect(review).toMatchObject({ status: 'pending', capability: 'notes', method: 'mkdir', grantId: executed.id, runId: first.runId });
    expect(review.action).toMatchObject({ args: 'reports/2030', reason: 'keep notes', outcome: { ok: true } });
    expect((await alice.listReviews()).map((r) => r.id)).toContain(review.id);

    const demoted = nextTrust(bob, 'demotion', (e) => e.demotion.subject === image.digest);
    const marked = await alice.markReview({ reviewId: review.id, verdict: 'critical', note: 'made folders in the wrong year' });
    expect(marked.review).toMatchObject({ status: 'critical', markedBy: 'alice', note: 'made folders in the wrong year' });
    expect(marked.demotion).toMatchObject({ trigger: 'critical', method: 'mkdir', revokedGrants: [executed.id], by: 'alice' });
    const told = await demoted;
    expect(told.demotion.reviewId).toBe(review.id);

    // The executed grant is revoked; `read` stays executed (re-issued); `mkdir` is assisted now.
    const grants = (await fx.host.store.listGrants({ activeAt: Date.now() })).filter((g) => 'digest' in g.subject && g.subject.digest === image.digest);
    expect(grants.map((g) => [g.mode, g.methods, g.approvals])).toEqual(expect.arrayContaining([['executed', ['read'], 1], ['assisted', ['mkdir'], 1]]));
    expect(grants).toHaveLength(2);

    // The next call becomes a recommendation, and the approver sees the record.
    const created = nextCreated(alice, image.digest);
    const second = await run(image.bytes);
    const request = await created;
    expect(request).toMatchObject({ kind: 'recommendation', method: 'mkdir', approvalsRequired: 1 });
    expect(request.trust).toMatchObject({ action: 'notes.mkdir', mode: 'assisted', phase: 2, executed: { reviews: 1, critical: 1 }, bar: expect.stringContaining('1 critical review') });
    await alice.decide({ requestId: request.id, verdict: 'approve' });
    expect((await second.outcome).status).toBe('ok');

    // A second verdict on the same review loses.
    await expect(bob.markReview({ reviewId: review.id, verdict: 'ok' })).rejects.toMatchObject({ code: 'ALREADY_RESOLVED' });

    // All of it is in the audit log, in a chain that verifies.
    await fx.host.audit.flush();
    const db = new Database(defaultStorePath(fx.dir), { readonly: true });
    try {
      const types = db.prepare('SELECT type FROM audit_records WHERE subject = ? ORDER BY seq').pluck().all(image.digest) as string[];
      expect(types).toEqual(expect.arrayContaining(['call', 'decision', 'intent', 'outcome', 'review.queued', 'review.marked', 'grant.revoked', 'grant.added', 'demotion', 'request.created', 'request.resolved']));
      const intents = db.prepare("SELECT seq, call_id FROM audit_records WHERE type = 'intent' AND run_id = ?").all(first.runId) as Array<{ seq: number; call_id: string }>;
      const outcomes = db.prepare("SELECT seq, call_id FROM audit_records WHERE type = 'outcome' AND run_id = ?").all(first.runId) as Array<{ seq: number; call_id: string }>;
      expect(intents).toHaveLength(1);
      expect(outcomes[0]?.call_id).toBe(intents[0]?.call_id);
      expect(outcomes[0]?.seq).toBeGreaterThan(intents[0]?.seq ?? Infinity);
      expect(verifyAudit(db, loadVerifyKey(fx.dir)).ok).toBe(true);
    } finally {
      db.close();
    }
  });

  it('viewers cannot see or mark the queue; error and critical need a note; unknown ids are NOT_FOUND', async () => {
    const vic = await fx.operator('vic');
    await expect(vic.listReviews()).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(vic.markReview({ reviewId: 'rev_x', verdict: 'ok' })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    const alice = await fx.operator('alice');
    await expect(alice.markReview({ reviewId: 'rev_x', verdict: 'error' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(alice.markReview({ reviewId: 'rev_nope', verdict: 'ok' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(alice.decidePromotion({ proposalId: 'prm_x', verdict: 'accept', reason: 'r' })).rejects.toMatchObject({ code: 'FORBIDDEN' });
  });

  it('a grant reviewing a sample queues only that share; the rest still count as executed in the ledger', async () => {
    const image = fx.image('exec-sampled', "export default async (input, caps) => { for (let i = 0; i < 40; i++) await caps.notes.write({ path: 's' + i + '.txt', content: 'x' }); return 1; }", [NOTES]);
    await fx.grant(image.digest, { capability: 'notes', methods: ['write'], mode: 'executed', reviewSample: 0.25 });
    const { outcome } = await run(image.bytes);
    expect((await outcome).status).toBe('ok');
    await fx.host.audit.flush(); // reviews are queued with the next audit batch
    const queued: Review[] = await fx.host.trust.listReviews({ status: 'all', subject: image.digest, limit: 1000 });
    const stats = await fx.host.trust.tables.stats({ subject: image.digest, capability: 'notes', method: 'write' }, Date.now(), fx.config.trust);
    expect(queued.length).toBeGreaterThan(0);
    expect(queued.length).toBeLessThan(40);
    expect(stats.lifetime.executed).toBe(40);
  });

  it('the error rate demotes too: more than 5% errors over the last 50 reviews', async () => {
    const image = fx.image('exec-errors', "export default async (input, caps) => { for (let i = 0; i < 4; i++) await caps.notes.write({ path: 'e' + i + '.txt', content: 'x' }); return 1; }", [NOTES]);
    await fx.grant(image.digest, { capability: 'notes', methods: ['write'], mode: 'executed' });
    const { outcome } = await run(image.bytes);
    expect((await outcome).status).toBe('ok');
    await fx.host.audit.flush();
    const reviews = await fx.host.trust.listReviews({ subject: image.digest });
    expect(reviews).toHaveLength(4);
    const [a, b, c] = reviews as [Review, Review, Review];
    // 2 errors of max(2, 50) = 4% — kept; the third error makes 6% — demoted.
    expect((await fx.host.trust.markReview('alice', a.id, 'error', 'wrong name')).demotion).toBeUndefined();
    expect((await fx.host.trust.markReview('alice', b.id, 'error', 'wrong name again')).demotion).toBeUndefined();
    const third = await fx.host.trust.markReview('bob', c.id, 'error', 'and again');
    expect(third.demotion).toMatchObject({ trigger: 'error-rate', method: 'write' });
    const modes = (await fx.host.store.listGrants({ activeAt: Date.now() })).filter((g) => 'digest' in g.subject && g.subject.digest === image.digest).map((g) => g.mode);
    expect(modes).toEqual(['assisted']);
  });
});
