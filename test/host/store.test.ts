/**
 * The SQLite store on real files: schema and pragmas, every record kind round-trips and survives
 * close + reopen, compare-and-set decisions (one winner across connections, no double approval, no
 * double execution), corrupt rows fail typed, and a decision acknowledged by a process survives
 * SIGKILL of that process.
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContainedError } from '../../runtime/errors.js';
import { defaultStorePath, openSqliteStore } from '../../host/store/sqlite-store.js';
import { SCHEMA_VERSION } from '../../host/store/schema.js';
import type { Store } from '../../host/store/store.js';
import { DIGEST, grant, KEY, OTHER_DIGEST, request, run, token } from './store-fixtures.js';

let dir: string;
let file: string;
const open: Store[] = [];

async function store(f = file, options: Parameters<typeof openSqliteStore>[1] = {}): Promise<Store> {
  const s = await openSqliteStore(f, options);
  open.push(s);
  return s;
}

async function reopen(s: Store): Promise<Store> {
  await s.close();
  return store();
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<ContainedError> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ContainedError);
  expect((error as ContainedError).code).toBe(code);
  return error as ContainedError;
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'contained-store-'));
  file = defaultStorePath(path.join(dir, 'data'));
});
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
  await rm(dir, { recursive: true, force: true });
});

describe('opening', () => {
  it('creates the data folder (owner-only) and a WAL database with synchronous=FULL and every schema migration', async () => {
    expect(file).toBe(path.join(dir, 'data', 'contained.db'));
    await store();
    expect(statSync(path.join(dir, 'data')).mode & 0o777).toBe(0o700);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const raw = new Database(file, { readonly: true });
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(raw.prepare('SELECT version FROM schema_version').all()).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((version) => ({ version })));
      // v6: the runs' sensitive sources (the data-flow rule).
      expect((raw.prepare("SELECT name FROM pragma_table_info('runs')").all() as Array<{ name: string }>).map((c) => c.name)).toContain('sensitive_sources');
      // v7: signed approvals required by a grant, and by the request raised under it.
      for (const table of ['grants', 'requests']) {
        expect((raw.prepare(`SELECT name FROM pragma_table_info('${table}')`).all() as Array<{ name: string }>).map((c) => c.name)).toContain('signed_approvals');
      }
    } finally {
      raw.close();
    }
    expect(SCHEMA_VERSION).toBe(8);
  });

  it('opens an existing file without migrating it again', async () => {
    const s = await store();
    await s.insertGrant(grant());
    const again = await reopen(s);
    expect(await again.getGrant('g1')).toEqual(grant());
    const raw = new Database(file, { readonly: true });
    expect(raw.prepare('SELECT COUNT(*) AS n FROM schema_version').get()).toEqual({ n: SCHEMA_VERSION });
    raw.close();
  });

  it('refuses a database written by a newer schema', async () => {
    await (await store()).close();
    const raw = new Database(file);
    raw.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)').run(SCHEMA_VERSION + 1, 0);
    raw.close();
    const error = await rejectsWith(openSqliteStore(file), 'INTERNAL');
    expect(error.message).toMatch(/newer than this build/);
  });

  it('refuses a folder where the file is expected, naming the fix', async () => {
    const error = await rejectsWith(openSqliteStore(dir), 'INTERNAL');
    expect(error.message).toContain('contained.db');
  });

  it('fails typed after close', async () => {
    const s = await store();
    await s.close();
    await rejectsWith(s.listGrants(), 'INTERNAL');
  });
});

describe('grants', () => {
  it('round-trips every field, filters by subject and activity, and survives a restart', async () => {
    let s = await store();
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
    });
    await s.insertGrant(full);
    await s.insertGrant(grant({ id: 'named', subject: { name: 'refund-desk', signer: KEY }, createdAt: 2_000 }));
    await s.insertGrant(grant({ id: 'other', subject: { digest: OTHER_DIGEST }, createdAt: 3_000 }));
    s = await reopen(s);
    expect(await s.getGrant('full')).toEqual(full);
    expect((await s.listGrants()).map((g) => g.id)).toEqual(['full', 'named', 'other']);
    expect((await s.listGrants({ subjectDigest: DIGEST })).map((g) => g.id)).toEqual(['full']);
    expect((await s.listGrants({ subjectName: 'refund-desk' })).map((g) => g.id)).toEqual(['named']);
    expect((await s.listGrants({ subjectDigest: DIGEST, subjectName: 'refund-desk' })).map((g) => g.id)).toEqual(['full', 'named']);
    // Expired at 5 000: active at 4 999, not at 5 000.
    expect((await s.listGrants({ activeAt: 4_999 })).map((g) => g.id)).toEqual(['full', 'named', 'other']);
    expect((await s.listGrants({ activeAt: 5_000 })).map((g) => g.id)).toEqual(['named', 'other']);
  });

  it('revokes idempotently (the first revocation is kept) and answers undefined for an unknown id', async () => {
    const s = await store();
    await s.insertGrant(grant());
    const first = await s.revokeGrant('g1', 'bob', 'leaked', 2_000);
    expect(first).toMatchObject({ revokedAt: 2_000, revokedBy: 'bob', revokeReason: 'leaked' });
    expect(await s.revokeGrant('g1', 'carol', 'again', 3_000)).toEqual(first);
    expect(await s.listGrants({ activeAt: 2_500 })).toEqual([]);
    expect(await s.revokeGrant('nope', 'bob', 'x', 1)).toBeUndefined();
  });

  it('refuses invalid and duplicate grants', async () => {
    const s = await store();
    await s.insertGrant(grant());
    const dup = await rejectsWith(s.insertGrant(grant()), 'INVALID_ARGUMENT');
    expect(dup.data).toMatchObject({ reason: 'duplicate' });
    await rejectsWith(s.insertGrant(grant({ id: 'x', methods: [] })), 'INVALID_ARGUMENT');
    await rejectsWith(s.insertGrant({ ...grant({ id: 'y' }), extra: 1 } as never), 'INVALID_ARGUMENT');
  });
});

describe('requests: compare-and-set', () => {
  it('lists by status and run, oldest first, with a limit', async () => {
    const s = await store();
    await s.insertRequest(request({ id: 'a', createdAt: 3 }));
    await s.insertRequest(request({ id: 'b', createdAt: 1, runId: 'run2', kind: 'escalation', method: undefined, args: undefined, requestedScope: { root: '/x' } }));
    await s.insertRequest(request({ id: 'c', createdAt: 2 }));
    await s.resolveRequest('c', { status: 'denied', at: 10, by: ['bob'], denyReason: 'no' });
    expect((await s.listRequests({})).map((r) => r.id)).toEqual(['b', 'c', 'a']);
    expect((await s.listRequests({ status: 'pending' })).map((r) => r.id)).toEqual(['b', 'a']);
    expect((await s.listRequests({ runId: 'run2' })).map((r) => r.id)).toEqual(['b']);
    expect((await s.listRequests({ limit: 1 })).map((r) => r.id)).toEqual(['b']);
    await rejectsWith(s.listRequests({ limit: Number.NaN }), 'INVALID_ARGUMENT');
    await rejectsWith(s.listRuns({ limit: -1 }), 'INVALID_ARGUMENT');
    expect(await s.getRequest('b')).toEqual(request({ id: 'b', createdAt: 1, runId: 'run2', kind: 'escalation', method: undefined, args: undefined, requestedScope: { root: '/x' } }));
  });

  it('keeps JSON null arguments distinct from absent ones', async () => {
    const s = await store();
    await s.insertRequest(request({ id: 'null-args', args: null }));
    expect((await s.getRequest('null-args'))?.args).toBeNull();
    expect('args' in ((await s.getRequest('null-args')) ?? {})).toBe(true);
  });

  it('addApproval: appends, refuses the same operator twice, unknown ids, resolved and expired requests', async () => {
    const s = await store();
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

  it('addApproval with resolve: the completing approval resolves the request in the same commit', async () => {
    const s = await store();
    await s.insertRequest(request({ expiresAt: 10_000 }));
    const first = await s.addApproval('r1', { operator: 'alice', at: 2_000 }, { resolve: true });
    expect(first.ok && first.request.status).toBe('pending');
    const second = await s.addApproval('r1', { operator: 'bob', at: 3_000 }, { resolve: true });
    expect(second.ok && second.request).toMatchObject({ status: 'approved', resolvedAt: 3_000, resolvedBy: ['alice', 'bob'] });
    expect(await s.resolveRequest('r1', { status: 'denied', at: 3_001, by: ['carol'], denyReason: 'late' })).toMatchObject({ ok: false, code: 'ALREADY_RESOLVED' });
    expect((await (await reopen(s)).getRequest('r1'))?.status).toBe('approved');
  });

  it('resolveRequest: only the first of many racing resolutions wins, across two connections', async () => {
    const a = await store();
    const b = await store();
    await a.insertRequest(request());
    const attempts = Array.from({ length: 20 }, (_, i) =>
      (i % 2 === 0 ? a : b).resolveRequest('r1', i % 3 === 0 ? { status: 'denied', at: 2_000 + i, by: [`op${i}`], denyReason: `reason ${i}` } : { status: 'approved', at: 2_000 + i, by: [`op${i}`] }),
    );
    const results = await Promise.all(attempts);
    const winners = results.filter((r) => r.ok);
    expect(winners).toHaveLength(1);
    expect(results.filter((r) => !r.ok).every((r) => r.code === 'ALREADY_RESOLVED')).toBe(true);
    const stored = await b.getRequest('r1');
    expect(stored?.status).toBe(winners[0]?.ok ? winners[0].request.status : 'none');
    expect(stored?.resolvedBy).toEqual(['op0']);
    expect(await a.resolveRequest('nope', { status: 'expired', at: 1 })).toEqual({ ok: false, code: 'NOT_FOUND' });
  });

  it('resolveRequest: approve and deny are refused after expiry; expired and run_gone are not', async () => {
    const s = await store();
    await s.insertRequest(request({ id: 'late', expiresAt: 5_000 }));
    expect(await s.resolveRequest('late', { status: 'approved', at: 5_000 })).toMatchObject({ ok: false, code: 'ALREADY_RESOLVED' });
    expect(await s.resolveRequest('late', { status: 'expired', at: 5_000 })).toMatchObject({ ok: true, request: { status: 'expired', resolvedAt: 5_000 } });
    await s.insertRequest(request({ id: 'gone', kind: 'escalation', expiresAt: 5_000 }));
    expect(await s.resolveRequest('gone', { status: 'run_gone', at: 9_000 })).toMatchObject({ ok: true, request: { status: 'run_gone' } });
  });

  it('claimExecution: only for approved requests, exactly once across connections; completeExecution records the outcome once', async () => {
    const a = await store();
    const b = await store();
    await a.insertRequest(request());
    expect(await a.claimExecution('r1', 2_000)).toBe(false); // still pending
    await a.resolveRequest('r1', { status: 'approved', at: 2_000, by: ['alice', 'bob'] });
    const claims = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).claimExecution('r1', 3_000 + i)));
    expect(claims.filter(Boolean)).toHaveLength(1);
    expect(await a.claimExecution('nope', 1)).toBe(false);
    await a.completeExecution('r1', { ok: true, result: { refundId: 'rf-1' } }, 4_000);
    expect((await b.getRequest('r1'))?.execution).toEqual({ state: 'done', at: 4_000, ok: true, result: { refundId: 'rf-1' } });
    expect(await b.claimExecution('r1', 5_000)).toBe(false);
    await rejectsWith(a.completeExecution('r1', { ok: false, error: { code: 'X', message: 'y' } }, 5_000), 'ALREADY_RESOLVED');
    await rejectsWith(a.completeExecution('nope', { ok: true }, 5_000), 'NOT_FOUND');
    await a.insertRequest(request({ id: 'unclaimed' }));
    await a.resolveRequest('unclaimed', { status: 'approved', at: 2_000 });
    await rejectsWith(a.completeExecution('unclaimed', { ok: true }, 5_000), 'ALREADY_RESOLVED');
  });

  it('keeps pending, decided and claimed requests across a restart', async () => {
    let s = await store();
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
  it('inserts, patches, lists newest first, and survives a restart', async () => {
    let s = await store();
    await s.insertRun(run());
    await s.insertRun(run({ id: 'run2', subject: undefined, imageName: undefined, createdAt: 2_000, status: 'queued', submittedBy: 'ci' }));
    await s.updateRun('run1', { status: 'ok', endedAt: 3_000, outcome: { status: 'ok', value: 42 } });
    s = await reopen(s);
    expect(await s.getRun('run1')).toEqual(run({ status: 'ok', endedAt: 3_000, outcome: { status: 'ok', value: 42 } }));
    expect(await s.getRun('run2')).toEqual({ id: 'run2', subject: undefined, imageName: undefined, status: 'queued', input: { n: 1 }, createdAt: 2_000, submittedBy: 'ci' });
    expect((await s.listRuns()).map((r) => r.id)).toEqual(['run2', 'run1']);
    expect((await s.listRuns({ status: 'ok' })).map((r) => r.id)).toEqual(['run1']);
    expect((await s.listRuns({ limit: 1 })).map((r) => r.id)).toEqual(['run2']);
    await rejectsWith(s.updateRun('nope', { status: 'ok' }), 'NOT_FOUND');
    await rejectsWith(s.updateRun('run1', { status: 'exploded' as never }), 'INVALID_ARGUMENT');
  });
});

describe('tokens', () => {
  it('finds by hash, lists, revokes idempotently, and keeps names unique among active tokens', async () => {
    let s = await store();
    await s.insertToken(token());
    await rejectsWith(s.insertToken(token({ id: 'tok2', hash: 'b'.repeat(64) })), 'INVALID_ARGUMENT'); // same active name
    await rejectsWith(s.insertToken(token({ id: 'tok3', name: 'bob' })), 'INVALID_ARGUMENT'); // same hash
    await rejectsWith(s.insertToken(token({ id: 'tok4', name: 'bob', hash: 'NOT-HEX' })), 'INVALID_ARGUMENT');
    expect(await s.findTokenByHash('a'.repeat(64))).toEqual(token());
    expect(await s.findTokenByHash('c'.repeat(64))).toBeUndefined();
    const revoked = await s.revokeToken('tok1', 2_000);
    expect(revoked?.revokedAt).toBe(2_000);
    expect((await s.revokeToken('tok1', 3_000))?.revokedAt).toBe(2_000);
    expect(await s.revokeToken('nope', 1)).toBeUndefined();
    // The name is free again once the old token is revoked.
    await s.insertToken(token({ id: 'tok5', hash: 'd'.repeat(64), createdAt: 2_500 }));
    s = await reopen(s);
    expect((await s.listTokens()).map((t) => [t.id, t.revokedAt])).toEqual([
      ['tok1', 2_000],
      ['tok5', undefined],
    ]);
  });
});

describe('corrupt rows', () => {
  async function corrupt(sql: string, ...params: unknown[]): Promise<void> {
    const raw = new Database(file);
    raw.prepare(sql).run(...params);
    raw.close();
  }

  it('fail with INTERNAL naming the table and id, and leave other rows readable', async () => {
    const s = await store();
    await s.insertGrant(grant({ id: 'bad-json' }));
    await s.insertGrant(grant({ id: 'bad-mode' }));
    await s.insertGrant(grant({ id: 'two-subjects' }));
    await s.insertGrant(grant({ id: 'fine' }));
    await s.insertRequest(request({ id: 'bad-status' }));
    await s.insertRun(run({ id: 'bad-run' }));
    await s.insertToken(token({ id: 'bad-token' }));
    await corrupt("UPDATE grants SET methods = '[\"read\",' WHERE id = 'bad-json'");
    await corrupt("UPDATE grants SET mode = 'autonomous' WHERE id = 'bad-mode'");
    await corrupt("UPDATE grants SET subject_name = 'x', subject_signer = 'y' WHERE id = 'two-subjects'");
    await corrupt("UPDATE requests SET status = 'maybe' WHERE id = 'bad-status'");
    await corrupt("UPDATE runs SET input = '{' WHERE id = 'bad-run'");
    await corrupt("UPDATE tokens SET role = 'root' WHERE id = 'bad-token'");

    const e1 = await rejectsWith(s.getGrant('bad-json'), 'INTERNAL');
    expect(e1.message).toMatch(/grants row "bad-json" is corrupt/);
    expect(e1.data).toEqual({ table: 'grants', id: 'bad-json' });
    await rejectsWith(s.getGrant('bad-mode'), 'INTERNAL');
    await rejectsWith(s.getGrant('two-subjects'), 'INTERNAL');
    await rejectsWith(s.listGrants(), 'INTERNAL');
    await rejectsWith(s.getRequest('bad-status'), 'INTERNAL');
    await rejectsWith(s.listRequests({ status: 'maybe' as never }), 'INTERNAL');
    // A CAS on a corrupt row fails typed too, and changes nothing.
    expect(await s.resolveRequest('bad-status', { status: 'denied', at: 1, denyReason: 'x' }).catch((e: ContainedError) => e.code)).toBe('INTERNAL');
    await rejectsWith(s.addApproval('bad-status', { operator: 'a', at: 1 }), 'INTERNAL');
    await rejectsWith(s.getRun('bad-run'), 'INTERNAL');
    await rejectsWith(s.findTokenByHash('a'.repeat(64)), 'INTERNAL');
    expect(await s.getGrant('fine')).toEqual(grant({ id: 'fine' }));
  });
});

describe('durability', () => {
  it('a decision acknowledged by a process survives SIGKILL of that process', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.resolve('test/host/store-sigkill-child.ts'), file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.trim());
      });
      child.on('exit', (code) => reject(new Error(`child exited ${code}: ${stderr}`)));
    });
    expect(line).toBe('acknowledged true true');
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    // Nothing was checkpointed: the decision is in the WAL the killed process left behind.
    expect(existsSync(`${file}-wal`) && statSync(`${file}-wal`).size).toBeGreaterThan(0);
    const s = await store();
    expect(await s.getRequest('killed')).toMatchObject({
      status: 'approved',
      resolvedBy: ['alice', 'bob'],
      approvals: [{ operator: 'alice' }, { operator: 'bob' }],
      execution: { state: 'claimed', at: 2_003 },
    });
    expect(await s.claimExecution('killed', 9_000)).toBe(false);
  }, 30_000);

  it('uses synchronous=FULL by default and NORMAL on request', async () => {
    const sync = (s: Store): unknown => (s as unknown as { db: Database.Database }).db.pragma('synchronous', { simple: true });
    expect(sync(await store())).toBe(2);
    expect(sync(await store(path.join(dir, 'normal.db'), { synchronous: 'normal' }))).toBe(1);
  });
});
