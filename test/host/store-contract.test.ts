/**
 * The Store contract (host/store/store.ts), the same tests against both implementations: the
 * embedded SQLite store on a temp file and PostgreSQL on a fresh database per test (skipped with
 * one line when PostgreSQL is not installed). Every method: grants and the change counter,
 * requests and their compare-and-set decisions, runs, tokens, agents, hosts (heartbeat, reaping),
 * console sessions and one-time secrets; decisions raced by two store objects on one store (two
 * SQLite connections to one file, two PostgreSQL pools) with exactly one winner each time; and
 * `watch`, which carries another store object's changes on PostgreSQL and never fires on SQLite.
 *
 * What only SQLite has (file permissions, pragmas, corrupt rows, SIGKILL durability) is in
 * store.test.ts.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RequestRecord } from '../../host/model.js';
import type { ApprovalResult, Store, StoreChange } from '../../host/store/store.js';
import { ContainedError } from '../../runtime/errors.js';
import { postgresFactory, sqliteFactory, type StoreFactory } from './helpers/store-contract-factories.js';
import { waitUntil } from './helpers/wait.js';
import { agent, DIGEST, grant, host, KEY, OTHER_DIGEST, request, run, secret, session, token } from './store-fixtures.js';


async function rejectsWith(p: Promise<unknown>, code: string): Promise<ContainedError> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ContainedError);
  expect((error as ContainedError).code).toBe(code);
  return error as ContainedError;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe.each([sqliteFactory(), postgresFactory()])('Store contract: $name', (factory: StoreFactory) => {
  describe.skipIf(!factory.available)(factory.name, { timeout: 60_000 }, () => {
    beforeAll(() => factory.start(), 60_000);
    afterAll(() => factory.stop());
    beforeEach(() => factory.fresh());
    afterEach(() => factory.cleanup());

    const open = (): Promise<Store> => factory.open();
    /** Close `s` and open the same store again (survives a restart). */
    async function reopen(s: Store): Promise<Store> {
      await s.close();
      return open();
    }

    it('fails typed (a ContainedError, never a driver error) once closed; close is idempotent', async () => {
      const s = await open();
      await s.close();
      await s.close();
      const error = await s.listGrants().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ContainedError);
    });

    describe('grants', () => {
      it('round-trips every field, filters by subject and activity, and survives a reopen', async () => {
        let s = await open();
        const full = grant({
          id: 'full',
          scope: { root: '/srv/reports/2024' },
          methods: ['*'],
          mode: 'assisted',
          approvals: 2,
          expiresAt: 5_000,
          budgets: { read: { maxCalls: 10, perSecond: 0.5 } },
          requestTimeoutMs: 60_000,
          reviewSample: 0.25,
          forced: { by: 'root', reason: 'audited' },
          signedApprovals: true,
          stageRuns: true,
        });
        await s.insertGrant(full);
        await s.insertGrant(grant({ id: 'named', subject: { name: 'refund-desk', signer: KEY }, createdAt: 2_000 }));
        await s.insertGrant(grant({ id: 'other', subject: { digest: OTHER_DIGEST }, createdAt: 3_000 }));
        s = await reopen(s);
        expect(await s.getGrant('full')).toEqual(full);
        expect(await s.getGrant('nope')).toBeUndefined();
        expect((await s.listGrants()).map((g) => g.id)).toEqual(['full', 'named', 'other']);
        expect((await s.listGrants({ subjectDigest: DIGEST })).map((g) => g.id)).toEqual(['full']);
        expect((await s.listGrants({ subjectName: 'refund-desk' })).map((g) => g.id)).toEqual(['named']);
        expect((await s.listGrants({ subjectDigest: DIGEST, subjectName: 'refund-desk' })).map((g) => g.id)).toEqual(['full', 'named']);
        // Expired at 5 000: active at 4 999, not at 5 000.
        expect((await s.listGrants({ activeAt: 4_999 })).map((g) => g.id)).toEqual(['full', 'named', 'other']);
        expect((await s.listGrants({ activeAt: 5_000 })).map((g) => g.id)).toEqual(['named', 'other']);
      });

      it('revokes idempotently (the first revocation is kept) and answers undefined for an unknown id', async () => {
        const s = await open();
        await s.insertGrant(grant());
        const first = await s.revokeGrant('g1', 'bob', 'leaked', 2_000);
        expect(first).toEqual(grant({ revokedAt: 2_000, revokedBy: 'bob', revokeReason: 'leaked' }));
        expect(await s.revokeGrant('g1', 'carol', 'again', 3_000)).toEqual(first);
        expect(await s.listGrants({ activeAt: 2_500 })).toEqual([]);
        expect(await s.revokeGrant('nope', 'bob', 'x', 1)).toBeUndefined();
      });

      it('refuses invalid and duplicate grants', async () => {
        const s = await open();
        await s.insertGrant(grant());
        const dup = await rejectsWith(s.insertGrant(grant()), 'INVALID_ARGUMENT');
        expect(dup.data).toMatchObject({ reason: 'duplicate' });
        await rejectsWith(s.insertGrant(grant({ id: 'x', methods: [] })), 'INVALID_ARGUMENT');
        await rejectsWith(s.insertGrant({ ...grant({ id: 'y' }), extra: 1 } as never), 'INVALID_ARGUMENT');
        expect((await s.listGrants()).map((g) => g.id)).toEqual(['g1']);
      });

      it('changeCounter grows by exactly one per grant added or revoked and token created or revoked, seen by every store object', async () => {
        const a = await open();
        const b = await open();
        const start = await a.changeCounter();
        expect(await b.changeCounter()).toBe(start);
        const steps: Array<[string, () => Promise<unknown>, number]> = [
          ['grant added', () => a.insertGrant(grant()), 1],
          ['grant added (other object)', () => b.insertGrant(grant({ id: 'g2' })), 1],
          ['grant revoked', () => a.revokeGrant('g1', 'bob', 'x', 2_000), 1],
          ['grant revoked again (no change)', () => b.revokeGrant('g1', 'bob', 'x', 3_000), 0],
          ['token created', () => b.insertToken(token()), 1],
          ['token revoked', () => a.revokeToken('tok1', 2_000), 1],
          ['token revoked again (no change)', () => a.revokeToken('tok1', 3_000), 0],
          ['duplicate grant refused (no change)', () => a.insertGrant(grant()).catch(() => undefined), 0],
          ['request, run, agent (not counted)', async () => {
            await a.insertRequest(request());
            await a.insertRun(run());
            await a.insertAgent(agent());
            await a.revokeAgent('agt1', 2_000);
          }, 0],
        ];
        let expected = start;
        for (const [what, step, grows] of steps) {
          await step();
          expected += grows;
          expect({ what, a: await a.changeCounter(), b: await b.changeCounter() }).toEqual({ what, a: expected, b: expected });
        }
      });
    });

    describe('requests', () => {
      it('lists by status, run and host, oldest first, with a limit', async () => {
        const s = await open();
        const b = request({ id: 'b', createdAt: 1, runId: 'run2', hostId: 'h2', kind: 'escalation', method: undefined, args: undefined, requestedScope: { root: '/x' } });
        await s.insertRequest(request({ id: 'a', createdAt: 3, hostId: 'h1' }));
        await s.insertRequest(b);
        await s.insertRequest(request({ id: 'c', createdAt: 2, hostId: 'h1' }));
        await s.insertRequest(request({ id: 'd', createdAt: 4 }));
        await s.resolveRequest('c', { status: 'denied', at: 10, by: ['bob'], denyReason: 'no' });
        expect((await s.listRequests({})).map((r) => r.id)).toEqual(['b', 'c', 'a', 'd']);
        expect((await s.listRequests({ status: 'pending' })).map((r) => r.id)).toEqual(['b', 'a', 'd']);
        expect((await s.listRequests({ runId: 'run2' })).map((r) => r.id)).toEqual(['b']);
        expect((await s.listRequests({ hostId: 'h1' })).map((r) => r.id)).toEqual(['c', 'a']);
        expect((await s.listRequests({ hostId: 'h1', status: 'pending' })).map((r) => r.id)).toEqual(['a']);
        expect((await s.listRequests({ hostId: 'nobody' })).map((r) => r.id)).toEqual([]);
        expect((await s.listRequests({ limit: 1 })).map((r) => r.id)).toEqual(['b']);
        await rejectsWith(s.listRequests({ limit: Number.NaN }), 'INVALID_ARGUMENT');
        await rejectsWith(s.listRequests({ limit: -1 }), 'INVALID_ARGUMENT');
        expect(await s.getRequest('b')).toEqual(b);
        expect((await s.getRequest('a'))?.hostId).toBe('h1');
        expect(await s.getRequest('d')).not.toHaveProperty('hostId');
        expect(await s.getRequest('nope')).toBeUndefined();
      });

      it('keeps JSON null arguments distinct from absent ones, and refuses a duplicate id', async () => {
        const s = await open();
        await s.insertRequest(request({ id: 'null-args', args: null }));
        await s.insertRequest(request({ id: 'no-args', args: undefined }));
        expect((await s.getRequest('null-args'))?.args).toBeNull();
        expect('args' in ((await s.getRequest('null-args')) ?? {})).toBe(true);
        expect('args' in ((await s.getRequest('no-args')) ?? { args: 1 })).toBe(false);
        const dup = await rejectsWith(s.insertRequest(request({ id: 'no-args' })), 'INVALID_ARGUMENT');
        expect(dup.data).toMatchObject({ reason: 'duplicate' });
        await rejectsWith(s.insertRequest({ ...request({ id: 'bad' }), status: 'maybe' } as never), 'INVALID_ARGUMENT');
      });

      it('insertRequest and addApproval with deferSync are durable once synced() resolves', async () => {
        const s = await open();
        await s.insertRequest(request(), { deferSync: true });
        await s.addApproval('r1', { operator: 'alice', at: 2_000 }, { deferSync: true });
        await s.synced();
        await s.synced({ withinMs: 5 });
        const again = await reopen(s);
        expect(await again.getRequest('r1')).toMatchObject({ status: 'pending', approvals: [{ operator: 'alice', at: 2_000 }] });
      });

      it('addApproval: appends, refuses the same operator twice, unknown ids, resolved and expired requests', async () => {
        const s = await open();
        await s.insertRequest(request({ expiresAt: 10_000 }));
        const first = await s.addApproval('r1', { operator: 'alice', at: 2_000, args: { orderId: 'o-1', amountCents: 400 } });
        expect(first.ok).toBe(true);
        expect(await s.addApproval('r1', { operator: 'alice', at: 2_001 })).toMatchObject({ ok: false, code: 'DUPLICATE_APPROVER' });
        expect(await s.addApproval('nope', { operator: 'bob', at: 2_001 })).toEqual({ ok: false, code: 'NOT_FOUND' });
        // Past its expiry the request takes no approval, even before anyone marked it expired.
        expect(await s.addApproval('r1', { operator: 'bob', at: 10_000 })).toMatchObject({ ok: false, code: 'ALREADY_RESOLVED' });
        const second = await s.addApproval('r1', { operator: 'bob', at: 3_000 });
        expect(second.ok && second.request.approvals.map((a) => a.operator)).toEqual(['alice', 'bob']);
        await s.resolveRequest('r1', { status: 'approved', at: 3_001, by: ['alice', 'bob'] });
        expect(await s.addApproval('r1', { operator: 'carol', at: 3_002 })).toMatchObject({ ok: false, code: 'ALREADY_RESOLVED' });
        expect((await s.getRequest('r1'))?.approvals[0]?.args).toEqual({ orderId: 'o-1', amountCents: 400 });
      });

      it('addApproval: expectApprovals refuses STALE_REQUEST when another approval landed since', async () => {
        const s = await open();
        await s.insertRequest(request());
        expect(await s.addApproval('r1', { operator: 'alice', at: 2_000 }, { expectApprovals: 0 })).toMatchObject({ ok: true });
        const stale = await s.addApproval('r1', { operator: 'bob', at: 2_001 }, { expectApprovals: 0 });
        expect(stale).toMatchObject({ ok: false, code: 'STALE_REQUEST', request: { approvals: [{ operator: 'alice' }] } });
        expect(await s.addApproval('r1', { operator: 'bob', at: 2_002 }, { expectApprovals: 1 })).toMatchObject({ ok: true, request: { approvals: [{ operator: 'alice' }, { operator: 'bob' }] } });
      });

      it('addApproval: approvals count per argsDigest; the same operator may approve another digest; resolve approves by that digest alone', async () => {
        const s = await open();
        await s.insertRequest(request({ expiresAt: 10_000 }));
        expect(await s.addApproval('r1', { operator: 'alice', at: 2_000, argsDigest: 'sha256:old' }, { resolve: true })).toMatchObject({ ok: true, request: { status: 'pending' } });
        // Edited arguments: a new proposal; alice may approve it too.
        expect(await s.addApproval('r1', { operator: 'bob', at: 2_001, argsDigest: 'sha256:new' }, { resolve: true })).toMatchObject({ ok: true, request: { status: 'pending' } });
        expect(await s.addApproval('r1', { operator: 'bob', at: 2_002, argsDigest: 'sha256:new' }, { resolve: true })).toMatchObject({ ok: false, code: 'DUPLICATE_APPROVER' });
        const done = await s.addApproval('r1', { operator: 'alice', at: 2_003, argsDigest: 'sha256:new' }, { resolve: true });
        expect(done).toMatchObject({ ok: true, request: { status: 'approved', resolvedAt: 2_003, resolvedBy: ['bob', 'alice'] } });
        expect((await s.getRequest('r1'))?.approvals.map((a) => `${a.operator}:${a.argsDigest}`)).toEqual(['alice:sha256:old', 'bob:sha256:new', 'alice:sha256:new']);
      });

      it('addApproval with resolve: the completing approval resolves the request in the same commit', async () => {
        const s = await open();
        await s.insertRequest(request({ expiresAt: 10_000 }));
        const first = await s.addApproval('r1', { operator: 'alice', at: 2_000 }, { resolve: true });
        expect(first.ok && first.request.status).toBe('pending');
        const second = await s.addApproval('r1', { operator: 'bob', at: 3_000 }, { resolve: true });
        expect(second.ok && second.request).toMatchObject({ status: 'approved', resolvedAt: 3_000, resolvedBy: ['alice', 'bob'] });
        expect(await s.resolveRequest('r1', { status: 'denied', at: 3_001, by: ['carol'], denyReason: 'late' })).toMatchObject({ ok: false, code: 'ALREADY_RESOLVED' });
        expect((await (await reopen(s)).getRequest('r1'))?.status).toBe('approved');
      });

      it('resolveRequest: the first resolution wins and is kept; unknown ids are NOT_FOUND', async () => {
        const s = await open();
        await s.insertRequest(request());
        expect(await s.resolveRequest('r1', { status: 'denied', at: 2_000, by: ['bob'], denyReason: 'no' })).toEqual({
          ok: true,
          request: request({ status: 'denied', resolvedAt: 2_000, resolvedBy: ['bob'], denyReason: 'no' }),
        });
        expect(await s.resolveRequest('r1', { status: 'approved', at: 2_001, by: ['alice'] })).toMatchObject({ ok: false, code: 'ALREADY_RESOLVED', request: { status: 'denied', resolvedBy: ['bob'] } });
        expect(await s.resolveRequest('nope', { status: 'expired', at: 1 })).toEqual({ ok: false, code: 'NOT_FOUND' });
      });

      it('resolveRequest: approve and deny are refused after expiry; expired and run_gone are not', async () => {
        const s = await open();
        await s.insertRequest(request({ id: 'late', expiresAt: 5_000 }));
        expect(await s.resolveRequest('late', { status: 'approved', at: 5_000 })).toMatchObject({ ok: false, code: 'ALREADY_RESOLVED' });
        expect(await s.resolveRequest('late', { status: 'denied', at: 5_001, denyReason: 'x' })).toMatchObject({ ok: false, code: 'ALREADY_RESOLVED' });
        expect(await s.resolveRequest('late', { status: 'expired', at: 5_000 })).toMatchObject({ ok: true, request: { status: 'expired', resolvedAt: 5_000 } });
        await s.insertRequest(request({ id: 'gone', kind: 'escalation', expiresAt: 5_000 }));
        expect(await s.resolveRequest('gone', { status: 'run_gone', at: 9_000 })).toMatchObject({ ok: true, request: { status: 'run_gone' } });
        await s.insertRequest(request({ id: 'withdrawn' }));
        expect(await s.resolveRequest('withdrawn', { status: 'cancelled', at: 2_000 })).toMatchObject({ ok: true, request: { status: 'cancelled' } });
      });

      it('claimExecution: only for approved requests, once; completeExecution records the outcome once; markUndone once after a commit', async () => {
        const s = await open();
        await s.insertRequest(request());
        expect(await s.claimExecution('r1', 2_000)).toBe(false); // still pending
        await s.resolveRequest('r1', { status: 'approved', at: 2_000, by: ['alice', 'bob'] });
        expect(await s.claimExecution('r1', 3_000)).toBe(true);
        expect(await s.claimExecution('r1', 3_001)).toBe(false);
        expect(await s.claimExecution('nope', 1)).toBe(false);
        expect((await s.getRequest('r1'))?.execution).toEqual({ state: 'claimed', at: 3_000 });
        await rejectsWith(s.markUndone('r1', { at: 3_500, by: 'bob', restored: 1 }), 'ALREADY_RESOLVED'); // not done yet
        await s.completeExecution('r1', { ok: true, result: { refundId: 'rf-1' } }, 4_000);
        expect((await s.getRequest('r1'))?.execution).toEqual({ state: 'done', at: 4_000, ok: true, result: { refundId: 'rf-1' } });
        expect(await s.claimExecution('r1', 5_000)).toBe(false);
        await rejectsWith(s.completeExecution('r1', { ok: false, error: { code: 'X', message: 'y' } }, 5_000), 'ALREADY_RESOLVED');
        await rejectsWith(s.completeExecution('nope', { ok: true }, 5_000), 'NOT_FOUND');
        await s.insertRequest(request({ id: 'unclaimed' }));
        await s.resolveRequest('unclaimed', { status: 'approved', at: 2_000 });
        await rejectsWith(s.completeExecution('unclaimed', { ok: true }, 5_000), 'ALREADY_RESOLVED');

        await s.markUndone('r1', { at: 6_000, by: 'bob', restored: 3 });
        expect((await s.getRequest('r1'))?.execution).toEqual({ state: 'done', at: 4_000, ok: true, result: { refundId: 'rf-1' }, undone: { at: 6_000, by: 'bob', restored: 3 } });
        await rejectsWith(s.markUndone('r1', { at: 7_000, by: 'carol', restored: 1 }), 'ALREADY_RESOLVED');
        await rejectsWith(s.markUndone('nope', { at: 7_000, by: 'carol', restored: 1 }), 'NOT_FOUND');
        // A failed execution was not committed: nothing to undo.
        await s.insertRequest(request({ id: 'failed' }));
        await s.resolveRequest('failed', { status: 'approved', at: 2_000 });
        await s.claimExecution('failed', 2_001);
        await s.completeExecution('failed', { ok: false, error: { code: 'CAPABILITY_FAILED', message: 'down' } }, 2_002);
        expect((await s.getRequest('failed'))?.execution).toEqual({ state: 'done', at: 2_002, ok: false, error: { code: 'CAPABILITY_FAILED', message: 'down' } });
        await rejectsWith(s.markUndone('failed', { at: 7_000, by: 'carol', restored: 1 }), 'ALREADY_RESOLVED');
      });

      it('keeps pending, decided and claimed requests across a reopen', async () => {
        let s = await open();
        await s.insertRequest(request({ id: 'p' }));
        await s.insertRequest(request({ id: 'd' }));
        await s.addApproval('p', { operator: 'alice', at: 2_000 });
        await s.resolveRequest('d', { status: 'approved', at: 2_000, by: ['alice', 'bob'] });
        await s.claimExecution('d', 2_001);
        s = await reopen(s);
        expect(await s.getRequest('p')).toMatchObject({ status: 'pending', approvals: [{ operator: 'alice', at: 2_000 }] });
        expect(await s.getRequest('d')).toMatchObject({ status: 'approved', execution: { state: 'claimed', at: 2_001 } });
        expect(await s.claimExecution('d', 3_000)).toBe(false);
      });
    });

    describe('runs', () => {
      it('inserts, patches, lists newest first with status and host filters, and survives a reopen', async () => {
        let s = await open();
        await s.insertRun(run({ hostId: 'h1' }));
        await s.insertRun(run({ id: 'run2', subject: undefined, imageName: undefined, createdAt: 2_000, status: 'queued', submittedBy: 'ci' }));
        await s.insertRun(run({ id: 'run3', createdAt: 3_000, hostId: 'h2', sensitiveSources: ['crm'] }));
        await s.updateRun('run1', { status: 'ok', endedAt: 3_000, outcome: { status: 'ok', value: 42 } });
        await s.updateRun('run3', { sensitiveSources: ['crm', 'mail'] });
        s = await reopen(s);
        expect(await s.getRun('run1')).toEqual(run({ hostId: 'h1', status: 'ok', endedAt: 3_000, outcome: { status: 'ok', value: 42 } }));
        expect(await s.getRun('run2')).toEqual({ id: 'run2', subject: undefined, imageName: undefined, status: 'queued', input: { n: 1 }, createdAt: 2_000, submittedBy: 'ci' });
        expect(await s.getRun('run3')).toEqual(run({ id: 'run3', createdAt: 3_000, hostId: 'h2', sensitiveSources: ['crm', 'mail'] }));
        expect(await s.getRun('nope')).toBeUndefined();
        expect((await s.listRuns()).map((r) => r.id)).toEqual(['run3', 'run2', 'run1']);
        expect((await s.listRuns({ status: 'ok' })).map((r) => r.id)).toEqual(['run1']);
        expect((await s.listRuns({ hostId: 'h1' })).map((r) => r.id)).toEqual(['run1']);
        expect((await s.listRuns({ hostId: 'h2', status: 'running' })).map((r) => r.id)).toEqual(['run3']);
        expect((await s.listRuns({ hostId: 'h2', status: 'ok' })).map((r) => r.id)).toEqual([]);
        expect((await s.listRuns({ limit: 1 })).map((r) => r.id)).toEqual(['run3']);
        await rejectsWith(s.listRuns({ limit: -1 }), 'INVALID_ARGUMENT');
        await rejectsWith(s.updateRun('nope', { status: 'ok' }), 'NOT_FOUND');
        await rejectsWith(s.updateRun('run1', { status: 'exploded' as never }), 'INVALID_ARGUMENT');
        await rejectsWith(s.insertRun(run()), 'INVALID_ARGUMENT');
      });
    });

    describe('tokens', () => {
      it('finds by hash, lists, revokes idempotently, and keeps names unique among active tokens', async () => {
        let s = await open();
        await s.insertToken(token());
        await rejectsWith(s.insertToken(token({ id: 'tok2', hash: 'b'.repeat(64) })), 'INVALID_ARGUMENT'); // same active name
        await rejectsWith(s.insertToken(token({ id: 'tok3', name: 'bob' })), 'INVALID_ARGUMENT'); // same hash
        await rejectsWith(s.insertToken(token({ id: 'tok4', name: 'bob', hash: 'NOT-HEX' })), 'INVALID_ARGUMENT');
        expect(await s.findTokenByHash('a'.repeat(64))).toEqual(token());
        expect(await s.findTokenByHash('c'.repeat(64))).toBeUndefined();
        const revoked = await s.revokeToken('tok1', 2_000);
        expect(revoked).toEqual(token({ revokedAt: 2_000 }));
        expect((await s.revokeToken('tok1', 3_000))?.revokedAt).toBe(2_000);
        expect(await s.revokeToken('nope', 1)).toBeUndefined();
        // A revoked token is still found by its hash (the verifier refuses it); its name is free again.
        expect((await s.findTokenByHash('a'.repeat(64)))?.revokedAt).toBe(2_000);
        await s.insertToken(token({ id: 'tok5', hash: 'd'.repeat(64), createdAt: 2_500 }));
        s = await reopen(s);
        expect((await s.listTokens()).map((t) => [t.id, t.revokedAt])).toEqual([
          ['tok1', 2_000],
          ['tok5', undefined],
        ]);
      });
    });

    describe('agents', () => {
      it('finds by hash, lists, revokes idempotently, and keeps names unique among active agents', async () => {
        let s = await open();
        await s.insertAgent(agent());
        await rejectsWith(s.insertAgent(agent({ id: 'agt2', hash: 'f'.repeat(64) })), 'INVALID_ARGUMENT'); // same active name
        await rejectsWith(s.insertAgent(agent({ id: 'agt3', name: 'other-bot' })), 'INVALID_ARGUMENT'); // same hash
        await rejectsWith(s.insertAgent(agent({ id: 'agt4', name: 'x', hash: 'NOT-HEX' })), 'INVALID_ARGUMENT');
        expect(await s.findAgentByHash('e'.repeat(64))).toEqual(agent());
        expect(await s.findAgentByHash('0'.repeat(64))).toBeUndefined();
        expect(await s.revokeAgent('agt1', 2_000)).toEqual(agent({ revokedAt: 2_000 }));
        expect((await s.revokeAgent('agt1', 3_000))?.revokedAt).toBe(2_000);
        expect(await s.revokeAgent('nope', 1)).toBeUndefined();
        await s.insertAgent(agent({ id: 'agt5', hash: 'f'.repeat(64), createdAt: 2_500 }));
        s = await reopen(s);
        expect((await s.listAgents()).map((a) => [a.id, a.revokedAt])).toEqual([
          ['agt1', 2_000],
          ['agt5', undefined],
        ]);
      });
    });

    describe('hosts', () => {
      it('registers, lists, beats the heart until reaped; the first reap wins; a stopped host cannot be reaped', async () => {
        const s = await open();
        await s.registerHost(host({ url: 'http://127.0.0.1:7400' }));
        await s.registerHost(host({ id: 'hst2', hostname: 'box-2', pid: 7, startedAt: 1_100, heartbeatAt: 1_100 }));
        await s.registerHost(host({ id: 'hst3', hostname: 'box-3', pid: 8, startedAt: 1_200, heartbeatAt: 1_200 }));
        const byId = async (): Promise<Record<string, unknown>> => Object.fromEntries((await s.listHosts()).map((h) => [h.id, h]));
        expect(await byId()).toEqual({
          hst1: host({ url: 'http://127.0.0.1:7400' }),
          hst2: host({ id: 'hst2', hostname: 'box-2', pid: 7, startedAt: 1_100, heartbeatAt: 1_100 }),
          hst3: host({ id: 'hst3', hostname: 'box-3', pid: 8, startedAt: 1_200, heartbeatAt: 1_200 }),
        });
        expect(await s.heartbeat('hst1', 2_000)).toBe(true);
        expect((await byId()).hst1).toMatchObject({ heartbeatAt: 2_000 });

        expect(await s.reapHost('hst1', 'hst2', 9_000)).toBe(true);
        expect(await s.reapHost('hst1', 'hst3', 9_001)).toBe(false);
        expect(await s.heartbeat('hst1', 9_500)).toBe(false);
        expect((await byId()).hst1).toMatchObject({ reapedAt: 9_000, reapedBy: 'hst2', heartbeatAt: 2_000 });

        await s.stopHost('hst3', 9_100);
        expect(await s.reapHost('hst3', 'hst2', 9_200)).toBe(false);
        expect((await byId()).hst3).toMatchObject({ stoppedAt: 9_100 });
        expect((await byId()).hst3).not.toHaveProperty('reapedAt');
        expect(await s.reapHost('nope', 'hst2', 9_300)).toBe(false);
        expect(await s.heartbeat('hst2', 9_400)).toBe(true);
      });
    });

    describe('sessions and one-time secrets', () => {
      it('inserts, reads, touches, lists and deletes console sessions', async () => {
        const s = await open();
        await s.insertSession(session());
        await s.insertSession(session({ key: '3'.repeat(64), operator: { tokenId: 'tok2', name: 'bob', role: 'admin' }, csrf: 'csrf-2' }));
        expect(await s.getSession('1'.repeat(64))).toEqual(session());
        expect(await s.getSession('9'.repeat(64))).toBeUndefined();
        expect(await s.touchSession('1'.repeat(64), 5_000)).toBe(true);
        expect(await s.getSession('1'.repeat(64))).toEqual(session({ lastSeenAt: 5_000 }));
        expect(await s.touchSession('9'.repeat(64), 5_000)).toBe(false);
        expect((await s.listSessions()).map((x) => x.key).sort()).toEqual(['1'.repeat(64), '3'.repeat(64)]);
        expect(await s.deleteSession('3'.repeat(64))).toMatchObject({ key: '3'.repeat(64), operator: { name: 'bob' } });
        expect(await s.deleteSession('3'.repeat(64))).toBeUndefined();
        expect(await s.touchSession('3'.repeat(64), 6_000)).toBe(false);
        expect((await s.listSessions()).map((x) => x.key)).toEqual(['1'.repeat(64)]);
      });

      it('a one-time secret is taken once, by kind, whatever its expiry; a second take is undefined', async () => {
        const a = await open();
        const b = await open();
        await a.insertOneTimeSecret(secret());
        await a.insertOneTimeSecret(secret({ kind: 'login-code', hash: '4'.repeat(64), tokenHash: 'a'.repeat(64), expiresAt: 500 }));
        expect(await b.takeOneTimeSecret('login-code', '2'.repeat(64))).toBeUndefined(); // a ticket's hash, asked as a login code
        expect(await b.takeOneTimeSecret('ticket', '2'.repeat(64))).toEqual(secret());
        expect(await a.takeOneTimeSecret('ticket', '2'.repeat(64))).toBeUndefined();
        // Expired (500) but still returned: the caller checks expiry.
        expect(await a.takeOneTimeSecret('login-code', '4'.repeat(64))).toEqual(secret({ kind: 'login-code', hash: '4'.repeat(64), tokenHash: 'a'.repeat(64), expiresAt: 500 }));
        expect(await b.takeOneTimeSecret('login-code', '4'.repeat(64))).toBeUndefined();
      });

      it('sweepSessions deletes expired and idle sessions (returning them) and one-time secrets past expiry', async () => {
        const s = await open();
        await s.insertSession(session({ key: 'a'.repeat(64), lastSeenAt: 9_000, expiresAt: 10_000 })); // expired at 10 000
        await s.insertSession(session({ key: 'b'.repeat(64), lastSeenAt: 1_000, expiresAt: 100_000 })); // idle since 1 000
        await s.insertSession(session({ key: 'c'.repeat(64), lastSeenAt: 9_000, expiresAt: 100_000 })); // live
        await s.insertOneTimeSecret(secret({ hash: '5'.repeat(64), expiresAt: 9_999 }));
        await s.insertOneTimeSecret(secret({ hash: '6'.repeat(64), expiresAt: 20_000 }));
        const swept = await s.sweepSessions(10_000, 5_000);
        expect(swept.map((x) => x.key).sort()).toEqual(['a'.repeat(64), 'b'.repeat(64)]);
        expect(swept.find((x) => x.key === 'b'.repeat(64))).toEqual(session({ key: 'b'.repeat(64), lastSeenAt: 1_000, expiresAt: 100_000 }));
        expect((await s.listSessions()).map((x) => x.key)).toEqual(['c'.repeat(64)]);
        expect(await s.takeOneTimeSecret('ticket', '5'.repeat(64))).toBeUndefined();
        expect(await s.takeOneTimeSecret('ticket', '6'.repeat(64))).toMatchObject({ hash: '6'.repeat(64) });
        expect(await s.sweepSessions(10_000, 5_000)).toEqual([]);
      });
    });

    describe('documents', () => {
      it('writes with a version: unconditionally, only when absent, or only at the version read (first of two racers wins); lists by prefix; survives a reopen', async () => {
        let s = await open();
        expect(await s.getDocument('mcp-tools/a.accepted')).toBeUndefined();
        expect(await s.putDocument('mcp-tools/a.accepted', 'one', 1_000, null)).toBe(true);
        expect(await s.putDocument('mcp-tools/a.accepted', 'again', 1_001, null)).toBe(false);
        expect(await s.getDocument('mcp-tools/a.accepted')).toEqual({ text: 'one', version: 1 });
        const other = await open();
        const [x, y] = await Promise.all([s.putDocument('mcp-tools/a.accepted', 'from s', 1_002, 1), other.putDocument('mcp-tools/a.accepted', 'from other', 1_002, 1)]);
        expect([x, y].filter(Boolean)).toHaveLength(1);
        expect((await s.getDocument('mcp-tools/a.accepted'))?.version).toBe(2);
        expect(await s.putDocument('mcp-tools/a.accepted', 'blind', 1_003)).toBe(true);
        expect(await other.getDocument('mcp-tools/a.accepted')).toEqual({ text: 'blind', version: 3 });
        await s.putDocument('mcp-tools/b.pending', '[]', 1_004);
        await s.putDocument('other/c', 'x', 1_005);
        expect(await s.listDocuments('mcp-tools/')).toEqual(['mcp-tools/a.accepted', 'mcp-tools/b.pending']);
        expect(await s.listDocuments('mcp-tools/%')).toEqual([]);
        await other.close();
        s = await reopen(s);
        expect(await s.getDocument('mcp-tools/b.pending')).toEqual({ text: '[]', version: 1 });
        await s.close();
      });
    });

    describe('images', () => {
      it('stores an archive by digest (a later upload replaces it), records its uploaders idempotently, and both survive a reopen', async () => {
        let s = await open();
        const digest = `sha256:${'ef'.repeat(32)}`;
        expect(await s.getImage(digest)).toBeUndefined();
        const bytes = Buffer.from([0, 1, 2, 255, 0x1f, 0x8b]);
        await s.putImage(digest, bytes, 1_000);
        expect((await s.getImage(digest))?.equals(bytes)).toBe(true);
        const again = Buffer.from('other signatures, same code');
        await s.putImage(digest, again, 2_000);
        expect((await s.getImage(digest))?.equals(again)).toBe(true);
        expect(await s.hasImageClient(digest, 'c'.repeat(64))).toBe(false);
        await s.addImageClient(digest, 'c'.repeat(64));
        await s.addImageClient(digest, 'c'.repeat(64));
        expect(await s.hasImageClient(digest, 'c'.repeat(64))).toBe(true);
        expect(await s.hasImageClient(digest, 'd'.repeat(64))).toBe(false);
        s = await reopen(s);
        expect((await s.getImage(digest))?.equals(again)).toBe(true);
        expect(await s.hasImageClient(digest, 'c'.repeat(64))).toBe(true);
        await s.close();
      });
    });

    describe('concurrency: two store objects on one store', () => {
      const ROUNDS = 50;

      it(`resolveRequest: exactly one of the racing resolutions wins, ${ROUNDS} times`, async () => {
        const a = await open();
        const b = await open();
        for (let round = 0; round < ROUNDS; round++) {
          const id = `race-${round}`;
          await a.insertRequest(request({ id }));
          const results = await Promise.all(
            Array.from({ length: 4 }, (_, i) =>
              (i % 2 === 0 ? a : b).resolveRequest(id, i % 3 === 0 ? { status: 'denied', at: 2_000 + i, by: [`op${i}`], denyReason: `reason ${i}` } : { status: 'approved', at: 2_000 + i, by: [`op${i}`] }),
            ),
          );
          const winners = results.filter((r) => r.ok);
          expect(winners, `round ${round}`).toHaveLength(1);
          expect(results.filter((r) => !r.ok).every((r) => r.code === 'ALREADY_RESOLVED')).toBe(true);
          const winner = winners[0] as { ok: true; request: RequestRecord };
          const stored = await (round % 2 ? a : b).getRequest(id);
          expect(stored).toEqual(winner.request);
          // Every loser was told what the winner decided.
          for (const r of results) if (!r.ok) expect(r.request?.resolvedBy).toEqual(winner.request.resolvedBy);
        }
      });

      it(`claimExecution: exactly one claim wins, ${ROUNDS} times`, async () => {
        const a = await open();
        const b = await open();
        for (let round = 0; round < ROUNDS; round++) {
          const id = `claim-${round}`;
          await a.insertRequest(request({ id }));
          await b.resolveRequest(id, { status: 'approved', at: 2_000, by: ['alice', 'bob'] });
          const claims = await Promise.all(Array.from({ length: 4 }, (_, i) => (i % 2 ? a : b).claimExecution(id, 3_000 + i)));
          expect(claims.filter(Boolean), `round ${round}`).toHaveLength(1);
          const at = 3_000 + claims.indexOf(true);
          expect((await a.getRequest(id))?.execution).toEqual({ state: 'claimed', at });
        }
      });

      it(`addApproval: exactly one of racing approvals lands (expectApprovals, resolve), ${ROUNDS} times`, async () => {
        const a = await open();
        const b = await open();
        for (let round = 0; round < ROUNDS; round++) {
          const id = `approve-${round}`;
          await a.insertRequest(request({ id, approvalsRequired: 1 }));
          const results: ApprovalResult[] = await Promise.all(
            Array.from({ length: 4 }, (_, i) => (i % 2 ? a : b).addApproval(id, { operator: `op${i}`, at: 2_000 + i }, { resolve: true, expectApprovals: 0 })),
          );
          const winners = results.filter((r) => r.ok);
          expect(winners, `round ${round}`).toHaveLength(1);
          expect(results.filter((r) => !r.ok).every((r) => r.code === 'STALE_REQUEST' || r.code === 'ALREADY_RESOLVED')).toBe(true);
          const stored = await b.getRequest(id);
          const winner = (winners[0] as { ok: true; request: RequestRecord }).request;
          expect(stored?.approvals).toHaveLength(1);
          expect(stored).toMatchObject({ status: 'approved', resolvedBy: [winner.approvals[0]?.operator] });
        }
      });

      it(`addApproval: the same operator approving from both objects at once counts once, ${ROUNDS} times`, async () => {
        const a = await open();
        const b = await open();
        for (let round = 0; round < ROUNDS; round++) {
          const id = `dup-${round}`;
          await a.insertRequest(request({ id }));
          const results = await Promise.all([a, b, a, b].map((s, i) => s.addApproval(id, { operator: 'alice', at: 2_000 + i })));
          expect(results.filter((r) => r.ok), `round ${round}`).toHaveLength(1);
          expect(results.filter((r) => !r.ok).every((r) => r.code === 'DUPLICATE_APPROVER')).toBe(true);
          expect((await b.getRequest(id))?.approvals.map((x) => x.operator)).toEqual(['alice']);
        }
      });

      it('reapHost and takeOneTimeSecret: exactly one winner across the two objects', async () => {
        const a = await open();
        const b = await open();
        for (let round = 0; round < 20; round++) {
          await a.registerHost(host({ id: `dead-${round}` }));
          const reaps = await Promise.all([a, b, a, b].map((s, i) => s.reapHost(`dead-${round}`, `reaper${i}`, 5_000 + i)));
          expect(reaps.filter(Boolean), `round ${round}`).toHaveLength(1);
          const hash = round.toString(16).padStart(64, '7');
          await b.insertOneTimeSecret(secret({ hash }));
          const takes = await Promise.all([a, b, a, b].map((s) => s.takeOneTimeSecret('ticket', hash)));
          expect(takes.filter((t) => t !== undefined), `round ${round}`).toHaveLength(1);
        }
      });
    });

    describe('watch', () => {
      if (factory.watches) {
        it("carries another store object's committed changes to the listener, not its own, until unsubscribed", async () => {
          const a = await open();
          const b = await open();
          const seen: StoreChange[] = [];
          const own: StoreChange[] = [];
          const unsubscribe = b.watch((change) => seen.push(change));
          a.watch((change) => own.push(change));
          // LISTEN may start after watch() returns: write grants until the first one is heard.
          let n = 0;
          await waitUntil(async () => {
            await a.insertGrant(grant({ id: `prime-${n++}` }));
            return seen.some((c) => c.type === 'grants');
          }, 'the first grants change to reach the other store object', 10_000);

          await a.insertRequest(request({ id: 'w1', hostId: 'h1' }));
          await waitUntil(() => seen.some((c) => c.type === 'request' && c.id === 'w1' && c.status === 'pending'), 'the new request');
          expect(seen.find((c) => c.type === 'request' && c.id === 'w1')).toMatchObject({ type: 'request', id: 'w1', status: 'pending', hostId: 'h1' });
          await a.resolveRequest('w1', { status: 'approved', at: 2_000, by: ['alice'] });
          await waitUntil(() => seen.some((c) => c.type === 'request' && c.id === 'w1' && c.status === 'approved'), 'the decision');
          const grantsBefore = seen.filter((c) => c.type === 'grants').length;
          await a.insertToken(token());
          await waitUntil(() => seen.filter((c) => c.type === 'grants').length > grantsBefore, 'a token change (grants and tokens share one change kind)');

          // A's own changes are not echoed to a's listener.
          expect(own.filter((c) => c.type !== 'resync')).toEqual([]);
          // b's changes reach a.
          await b.insertRequest(request({ id: 'w2' }));
          await waitUntil(() => own.some((c) => c.type === 'request' && c.id === 'w2'), 'a change made through b, heard by a');

          unsubscribe();
          const count = seen.length;
          await a.insertRequest(request({ id: 'w3' }));
          await sleep(300);
          expect(seen.slice(count).filter((c) => c.type === 'request' && c.id === 'w3')).toEqual([]);
        });
      } else {
        it('never calls the listener (one host per file: no other writer of requests to hear)', async () => {
          const a = await open();
          const b = await open();
          const seen: StoreChange[] = [];
          const unsubscribe = b.watch((change) => seen.push(change));
          expect(typeof unsubscribe).toBe('function');
          a.watch((change) => seen.push(change));
          await a.insertGrant(grant());
          await a.insertToken(token());
          await a.insertRequest(request());
          await a.resolveRequest('r1', { status: 'approved', at: 2_000 });
          await b.insertRequest(request({ id: 'r2' }));
          await sleep(300);
          expect(seen).toEqual([]);
          unsubscribe();
        });
      }
    });
  });
});
