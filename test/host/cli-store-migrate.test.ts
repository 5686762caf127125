/**
 * `contained store migrate --to postgres://…` through the real dispatcher: a real SQLite store in
 * a data folder (grants, a revoked one among them, tokens, agents, a stopped and a crashed host
 * with what they owned, runs, requests in every state, and an audit chain with signed checkpoints
 * written by the real audit log) copied into a fresh database of a throwaway PostgreSQL cluster.
 * Afterwards every record reads back equal through openPgStore, and the chain verifies on
 * PostgreSQL twice: every record recomputed from its row with the canonical hashing of
 * host/audit/record.ts and every checkpoint signature checked with the data folder's public key,
 * and `contained audit verify` with CONTAINED_STORE naming the database. A real host that ran on
 * SQLite, migrated, is followed by a host on PostgreSQL that knows its tokens and grants and extends
 * the same chain. Refusals: a database that already holds state, a data folder a host holds,
 * bad flags; a copy that fails half-way leaves the database empty.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../host/audit/log.js';
import { checkpointSignatureOk, loadOrCreateAuditKey, loadVerifyKey } from '../../host/audit/keys.js';
import { GENESIS, hashRecord, rowToStored } from '../../host/audit/record.js';
import { main } from '../../host/cli/main.js';
import { openPasskeyStore } from '../../host/store/credentials.js';
import { acquireHostLock } from '../../host/store/host-lock.js';
import { sqliteTrustTables } from '../../host/trust/sqlite-tables.js';
import { chain } from '../../host/trust/tables.js';
import { defaultStorePath, openSqliteStore } from '../../host/store/sqlite-store.js';
import type { Store } from '../../host/store/store.js';
import { startHost } from '../../host/host.js';
import { createToken, createTokenVerifier } from '../../host/tokens.js';
import { pgAvailable, type PgServer, startPostgres } from '../helpers/postgres.js';
import { startFixture } from './helpers/host-fixture.js';
import { agent, DIGEST, grant, KEY, request, run } from './store-fixtures.js';


async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
  return { code, stdout, stderr };
}

let dir: string;
let dataDir: string;
let file: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'contained-migrate-'));
  dataDir = path.join(dir, 'state');
  file = defaultStorePath(dataDir);
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * A data folder as a host leaves it: records in every state, the audit chain (with the grant and
 * token changes the triggers queued, drained into it), three signed checkpoints (the last one
 * written as the log closes), and one grant revocation made after the audit writer stopped (still
 * in the SQLite inbox).
 */
const LEGACY_HEX = 'e'.repeat(64);

async function populate(folder = dataDir): Promise<{ counts: Record<string, number> }> {
  const file = defaultStorePath(folder);
  const store = await openSqliteStore(file);
  const key = loadOrCreateAuditKey(folder);
  const audit = new AuditLog({ file, key, checkpointIntervalMs: 0, inboxPollMs: 0, checkpointEvery: 1_000 });
  try {
    await store.insertGrant(grant({ id: 'grt_contained', createdAt: 1_000 }));
    await store.insertGrant(
      grant({
        id: 'grt_assisted',
        subject: { name: 'refund-desk', signer: KEY },
        capability: 'payments',
        methods: ['refund'],
        mode: 'assisted',
        approvals: 2,
        scope: { maxAmountCents: 20_000 },
        budgets: { refund: { maxCalls: 5 } },
        expiresAt: 9_000_000_000_000,
        reviewSample: 0.5,
        signedApprovals: true,
        stageRuns: true,
        forced: { by: 'root', reason: 'SEC-42' },
        createdAt: 1_100,
      }),
    );
    await store.insertGrant(grant({ id: 'grt_revoked', createdAt: 1_200 }));
    await store.revokeGrant('grt_revoked', 'bob', 'leaked', 1_300);
    await createToken({ name: 'alice', role: 'approver', createdBy: 'root' }, store, { now: () => 1_400, id: 'tok_alice' });
    await createToken({ name: 'old-admin', role: 'admin', createdBy: 'root' }, store, { now: () => 1_500, id: 'tok_old' });
    await store.revokeToken('tok_old', 1_600);
    await store.insertAgent(agent({ id: 'agt_support' }));
    await store.insertAgent(agent({ id: 'agt_gone', name: 'gone-bot', hash: 'f'.repeat(64) }));
    await store.revokeAgent('agt_gone', 1_700);
    // One host that stopped cleanly, one that crashed (never restarted): what they owned keeps its owner.
    await store.registerHost({ id: 'hst_old', hostname: 'box-1', pid: 101, startedAt: 500, heartbeatAt: 900 });
    await store.stopHost('hst_old', 950);
    await store.registerHost({ id: 'hst_crashed', hostname: 'box-1', pid: 102, url: 'http://127.0.0.1:7400', startedAt: 960, heartbeatAt: 2_400 });
    await store.insertRun(run({ id: 'run_ok', status: 'ok', endedAt: 2_000, outcome: { status: 'ok', value: { n: 42 } }, submittedBy: 'ci', sensitiveSources: ['crm'] }));
    await store.insertRun(run({ id: 'run_live', createdAt: 1_800, hostId: 'hst_crashed' }));
    await store.insertRequest(request({ id: 'req_pending', args: null, runId: 'run_live', hostId: 'hst_crashed' }));
    await store.addApproval('req_pending', { operator: 'alice', at: 1_900, argsDigest: 'sha256:aa', span: 'once', note: 'ok by me' });
    await store.insertRequest(request({ id: 'req_done', runId: 'run_ok' }));
    await store.addApproval('req_done', { operator: 'alice', at: 1_900 });
    await store.addApproval('req_done', { operator: 'bob', at: 1_950 }, { resolve: true });
    await store.resolveRequest('req_done', { status: 'approved', at: 1_950, by: ['alice', 'bob'] });
    await store.claimExecution('req_done', 1_960);
    await store.completeExecution('req_done', { ok: true, result: { refundId: 'rf-1' } }, 1_970);
    await store.markUndone('req_done', { at: 1_990, by: 'bob', restored: 1 });
    await store.insertRequest(request({ id: 'req_denied', kind: 'escalation', method: undefined, args: undefined, requestedScope: { root: '/x' } }));
    await store.resolveRequest('req_denied', { status: 'denied', at: 2_100, by: ['carol'], denyReason: 'not today' });
    await store.insertRequest(request({ id: 'req_claimed' }));
    await store.resolveRequest('req_claimed', { status: 'approved', at: 2_200, by: ['alice', 'bob'] });
    await store.claimExecution('req_claimed', 2_210);
    await store.putImage(DIGEST, Buffer.from([0x1f, 0x8b, 8, 0, 1, 2, 3]), 2_300);
    await store.addImageClient(DIGEST, 'c'.repeat(64));

    // The chain: the grant/token inbox drained into it, calls, two checkpoints, a tail the close signs.
    await audit.append({ type: 'run.started', runId: 'run_ok', subject: DIGEST, data: { image: 'refund-desk', text: 'naïve ✓ "quoted" \\ \u0001' } });
    await audit.append({ type: 'call', runId: 'run_ok', subject: DIGEST, capability: 'payments', method: 'refund', callId: 'c1', data: { args: { orderId: 'o-1', amountCents: 500 } } });
    expect(audit.checkpoint()).toBeDefined();
    for (let i = 0; i < 5; i++) await audit.append({ type: 'outcome', runId: 'run_ok', callId: `c${i}`, data: { ok: true, i } });
    expect(audit.checkpoint()).toBeDefined();
    await audit.append({ type: 'run.ended', runId: 'run_ok', data: { status: 'ok' } });

    // What a fleet shares since PostgreSQL v3: the trust ledger, a review, a proposal, a passkey.
    const trust = sqliteTrustTables(audit.db);
    const refund = { subject: DIGEST, capability: 'payments', method: 'refund' };
    await audit.transact(chain(trust.recommended('req_done', refund, 1_800, 'grt_assisted', undefined, true), trust.verdict('req_done', refund, 'approved', 1_950, 'grt_assisted', undefined)));
    await audit.transact(trust.executed('c1', refund, 2_000, 'grt_contained', { readOnly: false, destructive: false, reversible: true, openWorld: false, financial: false }));
    const review = { id: 'rev_1', callId: 'c1', runId: 'run_ok', ...refund, grantId: 'grt_contained', action: { args: { orderId: 'o-1' } }, status: 'pending' as const, createdAt: 2_000 };
    await audit.append({ type: 'review.queued', data: { reviewId: 'rev_1' } }, trust.queueReview(review));
    await audit.append({ type: 'review.marked', data: { reviewId: 'rev_1' } }, chain(trust.reviewed('c1', 'error', 2_100), trust.markReview('rev_1', 'error', 'alice', 'wrong amount', 2_100)));
    await audit.append({ type: 'promotion.proposed', data: { proposalId: 'prm_1' } }, trust.insertProposal({ id: 'prm_1', ...refund, grantId: 'grt_assisted', status: 'proposed', evidence: { assistedReviews: 1 }, createdAt: 2_050 }, 1));
    const passkeys = openPasskeyStore(file);
    await audit.append({ type: 'passkey.registered', data: { credentialId: 'cred-1' } }, passkeys.insert({ id: 'cred-1', operator: 'alice', publicKey: 'AAAA', counter: 3, rpId: 'localhost', label: 'laptop', createdAt: 1_000 }));
    await passkeys.close();
  } finally {
    await audit.close();
  }
  // After the audit writer stopped: this revocation waits in the SQLite inbox.
  await store.revokeGrant('grt_contained', 'carol', 'retired', 2_500);
  await store.close();
  // A notification waiting for delivery, and an image an earlier version kept as a file (with its uploader marker).
  const outbox = new Database(file);
  outbox
    .prepare("INSERT INTO notify_outbox (target, event, event_key, order_key, payload, idempotency_key, status, attempts, next_at, created_at) VALUES ('ops', 'request.created', 'k1', 'req_pending', '{}', 'ntf_1', 'pending', 0, 2_600, 2_600)")
    .run();
  outbox.close();
  await mkdir(path.join(folder, 'images', 'clients', LEGACY_HEX), { recursive: true });
  await writeFile(path.join(folder, 'images', `${LEGACY_HEX}.tgz`), Buffer.from([0x1f, 0x8b, 8, 0, 9, 9]));
  await writeFile(path.join(folder, 'images', 'clients', LEGACY_HEX, 'd'.repeat(64)), '');
  // The mcp kind's accepted tools, kept in files by a host on SQLite.
  await mkdir(path.join(folder, 'mcp-tools'), { recursive: true });
  await writeFile(path.join(folder, 'mcp-tools', 'tracker.accepted.json'), JSON.stringify({ server: 'tracker', tools: {} }));
  const raw = new Database(file, { readonly: true });
  try {
    const count = (table: string): number => raw.prepare(`SELECT COUNT(*) FROM ${table}`).pluck().get() as number;
    const counts = Object.fromEntries(
      ['grants', 'tokens', 'agents', 'hosts', 'runs', 'requests', 'images', 'image_clients', 'audit_records', 'audit_checkpoints', 'audit_inbox', 'trust_events', 'reviews', 'promotions', 'passkeys', 'notify_outbox'].map((t) => [t, count(t)]),
    );
    return { counts };
  } finally {
    raw.close();
  }
}

describe('contained store migrate: usage', () => {
  it('needs --to with a postgres:// URL, and a SQLite store to copy', async () => {
    expect(await cli('store')).toMatchObject({ code: 2, stdout: expect.stringContaining('contained store migrate --to') });
    expect(await cli('store', 'migrate', '--help')).toMatchObject({ code: 0, stdout: expect.stringContaining('--to postgres://') });
    expect(await cli('store', 'migrate', '--data-dir', dataDir)).toMatchObject({ code: 2, stderr: expect.stringMatching(/^USAGE: --to is required/) });
    expect(await cli('store', 'migrate', '--to', '/tmp/other.db', '--data-dir', dataDir)).toMatchObject({ code: 2, stderr: expect.stringMatching(/^USAGE: --to takes a postgres:\/\/ URL/) });
    expect(await cli('store', 'migrate', '--to', 'postgres://x', 'extra', '--data-dir', dataDir)).toMatchObject({ code: 2, stderr: expect.stringMatching(/^USAGE: unexpected argument "extra"/) });
    expect(await cli('store', 'copy')).toMatchObject({ code: 2, stderr: expect.stringMatching(/^USAGE: unknown store command "copy"/) });
    const missing = await cli('store', 'migrate', '--to', 'postgres://nobody@127.0.0.1:1/none', '--data-dir', dataDir);
    expect(missing).toMatchObject({ code: 1, stderr: expect.stringMatching(/^NOT_FOUND: no SQLite store at .*contained\.db/) });
    expect(missing.stderr.split('\n').filter(Boolean)).toHaveLength(1);
  });
});

describe.skipIf(!pgAvailable)('contained store migrate: SQLite to PostgreSQL', { timeout: 60_000 }, () => {
  let server: PgServer;
  const open: Array<Store | pg.Client> = [];

  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });
  afterEach(async () => {
    for (const s of open.splice(0)) await ('end' in s ? s.end() : s.close()).catch(() => undefined);
  });

  async function pgStore(url: string): Promise<Store> {
    const { openPgStore } = await import('../../host/store/pg-store.js');
    const s = await openPgStore(url);
    open.push(s);
    return s;
  }

  async function client(url: string): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    open.push(c);
    return c;
  }

  async function count(url: string, table: string): Promise<number> {
    const { rows } = await (await client(url)).query<{ n: number }>(`SELECT COUNT(*)::int AS n FROM ${table}`);
    return rows[0]?.n ?? -1;
  }

  it('copies every record and the audit chain, which verifies on PostgreSQL; the pending inbox row is queued there', async () => {
    const { counts } = await populate();
    expect(counts).toMatchObject({ grants: 3, tokens: 2, agents: 2, hosts: 2, runs: 2, requests: 4, images: 1, image_clients: 1, audit_checkpoints: 3, audit_inbox: 1, trust_events: 2, reviews: 1, promotions: 1, passkeys: 1, notify_outbox: 1 });
    const url = await server.createDatabase();

    const result = await cli('store', 'migrate', '--to', url, '--data-dir', dataDir);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('copied grants: 3');
    expect(result.stdout).toContain('copied tokens: 2');
    expect(result.stdout).toContain('copied agents: 2');
    expect(result.stdout).toContain('copied hosts: 2');
    expect(result.stdout).toContain('copied runs: 2');
    expect(result.stdout).toContain('copied requests: 4');
    expect(result.stdout).toContain(`copied audit_records: ${counts.audit_records}`);
    expect(result.stdout).toContain('copied audit_checkpoints: 3');
    expect(result.stdout).toContain('queued 1 grant/token change');
    expect(result.stdout).toContain('copied images: 1');
    expect(result.stdout).toContain('copied 1 image an earlier version kept as files (1 uploader record)');
    for (const [table, n] of Object.entries({ trust_events: 2, reviews: 1, promotions: 1, passkeys: 1, notify_outbox: 1 })) expect(result.stdout).toContain(`copied ${table}: ${n}`);
    expect(result.stdout).toMatch(
      /migrated .*contained\.db to postgres:\/\/.* 3 grants, 2 tokens, 2 agents, 2 hosts, 2 runs, 4 requests, 2 images, 2 trust events, 1 reviews, 1 proposals, 1 passkeys, 1 notifications, \d+ audit records .*3 checkpoints, signatures verified\); everything reads back equal/,
    );
    expect(await count(url, 'trust_events')).toBe(2);
    expect(result.stdout).toContain('copied 1 mcp tool approval file');
    expect((await (await pgStore(url)).getDocument('mcp-tools/tracker.accepted'))?.text).toBe(JSON.stringify({ server: 'tracker', tools: {} }));
    expect(await count(url, 'image_clients')).toBe(2);

    // Every record reads back equal through the PostgreSQL store.
    const sqlite = await openSqliteStore(file);
    try {
      const target = await pgStore(url);
      expect(await target.listGrants()).toEqual(await sqlite.listGrants());
      expect(await target.getGrant('grt_revoked')).toMatchObject({ revokedAt: 1_300, revokedBy: 'bob', revokeReason: 'leaked' });
      expect(await target.getGrant('grt_assisted')).toEqual(await sqlite.getGrant('grt_assisted'));
      expect(await target.listTokens()).toEqual(await sqlite.listTokens());
      for (const t of await sqlite.listTokens()) expect(await target.findTokenByHash(t.hash)).toEqual(t);
      expect(await target.listAgents()).toEqual(await sqlite.listAgents());
      expect((await target.getImage(DIGEST))?.equals(Buffer.from([0x1f, 0x8b, 8, 0, 1, 2, 3]))).toBe(true);
      expect(await target.hasImageClient(DIGEST, 'c'.repeat(64))).toBe(true);
      expect((await target.getImage(`sha256:${LEGACY_HEX}`))?.equals(Buffer.from([0x1f, 0x8b, 8, 0, 9, 9]))).toBe(true);
      expect(await target.hasImageClient(`sha256:${LEGACY_HEX}`, 'd'.repeat(64))).toBe(true);
      const byId = (hosts: Awaited<ReturnType<Store['listHosts']>>): unknown => Object.fromEntries(hosts.map((h) => [h.id, h]));
      expect(byId(await target.listHosts())).toEqual(byId(await sqlite.listHosts()));
      expect((await target.listHosts()).find((h) => h.id === 'hst_old')).toMatchObject({ stoppedAt: 950 });
      expect(await target.listRuns({ hostId: 'hst_crashed' })).toEqual(await sqlite.listRuns({ hostId: 'hst_crashed' }));
      expect((await target.listRequests({ hostId: 'hst_crashed' })).map((r) => r.id)).toEqual(['req_pending']);
      // The crashed host is known to PostgreSQL, so the fleet can reap it (once), taking over what it owned.
      expect(await target.reapHost('hst_crashed', 'hst_new', 9_000)).toBe(true);
      expect(await target.reapHost('hst_old', 'hst_new', 9_000)).toBe(false);
      expect(await target.listRuns()).toEqual(await sqlite.listRuns());
      expect(await target.listRequests({})).toEqual(await sqlite.listRequests({}));
      expect(await target.getRequest('req_done')).toMatchObject({ status: 'approved', execution: { state: 'done', ok: true, undone: { by: 'bob' } } });
      // Decisions go on where they stopped: the claimed request is not claimed twice, the pending one takes bob's approval.
      expect(await target.claimExecution('req_claimed', 3_000)).toBe(false);
      expect(await target.addApproval('req_pending', { operator: 'bob', at: 3_000, argsDigest: 'sha256:aa' }, { resolve: true })).toMatchObject({ ok: true, request: { status: 'approved' } });
    } finally {
      await sqlite.close();
    }

    // The chain, row for row as SQLite had it, and verifying on PostgreSQL.
    const c = await client(url);
    const raw = new Database(file, { readonly: true });
    try {
      const sqliteRecords = raw.prepare('SELECT seq, at, type, run_id, subject, capability, method, call_id, data, prev_hash, hash FROM audit_records ORDER BY seq').raw(true).all() as unknown[][];
      const { rows } = await c.query({ text: 'SELECT seq, at, type, run_id, subject, capability, method, call_id, data, prev_hash, hash FROM audit_records ORDER BY seq', rowMode: 'array' });
      const pgRecords = (rows as unknown[][]).map((r) => r.map((v, i) => (i <= 1 ? Number(v) : v)));
      expect(pgRecords).toEqual(sqliteRecords);
      let prev = GENESIS;
      for (const [i, row] of pgRecords.entries()) {
        const r = rowToStored(row);
        expect(r.seq).toBe(i + 1);
        expect(r.prevHash).toBe(prev);
        expect(hashRecord(r)).toBe(r.hash);
        prev = r.hash;
      }
      // The grant and token changes made before the writer stopped are in the copied chain, once each.
      const types = pgRecords.map((r) => r[2]);
      expect(types.filter((t) => t === 'grant.added')).toHaveLength(3);
      expect(types.filter((t) => t === 'token.created')).toHaveLength(2);
      const key = loadVerifyKey(dataDir);
      expect(key).toBeDefined();
      const { rows: cps } = await c.query('SELECT seq, hash, at, key_id AS "keyId", signature FROM audit_checkpoints ORDER BY seq');
      expect(cps).toHaveLength(3);
      for (const cp of cps as Array<{ seq: string; hash: string; at: string; keyId: string; signature: string }>) {
        const checkpoint = { ...cp, seq: Number(cp.seq), at: Number(cp.at) };
        expect(pgRecords[checkpoint.seq - 1]?.[10]).toBe(checkpoint.hash);
        expect(checkpointSignatureOk(key as NonNullable<typeof key>, checkpoint)).toBe(true);
      }
      // Only the revocation the SQLite writer never chained waits in PostgreSQL's inbox (the copies' trigger rows are gone).
      const { rows: inbox } = await c.query('SELECT kind, ref FROM audit_inbox');
      expect(inbox).toEqual([{ kind: 'grant.revoked', ref: 'grt_contained' }]);
    } finally {
      raw.close();
    }

    // And `contained audit verify` on the PostgreSQL store (CONTAINED_STORE), with the data folder's key.
    const saved = process.env.CONTAINED_STORE;
    process.env.CONTAINED_STORE = url;
    try {
      const verify = await cli('audit', 'verify', '--data-dir', dataDir);
      expect(verify).toMatchObject({ code: 0, stdout: expect.stringContaining('OK: the chain and every checkpoint verify') });
      expect(verify.stdout).toContain(`${counts.audit_records} records`);
    } finally {
      if (saved === undefined) delete process.env.CONTAINED_STORE;
      else process.env.CONTAINED_STORE = saved;
    }
  });

  it('refuses a database that already holds host state, and changes nothing in it', async () => {
    await populate();
    const url = await server.createDatabase();
    expect((await cli('store', 'migrate', '--to', url, '--data-dir', dataDir)).code).toBe(0);
    const before = await count(url, 'audit_records');
    const again = await cli('store', 'migrate', '--to', url, '--data-dir', dataDir);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/^INVALID_ARGUMENT: store migrate: postgres:\/\/.* already holds host state \(grants 3, tokens 2, agents 2, hosts 2, runs 2, requests 4, images 2, image_clients 2, audit_records \d+, audit_checkpoints 3, trust_events 2, reviews 1, promotions 1, passkeys 1, notify_outbox 1, documents 1\)/);
    expect(again.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect(await count(url, 'grants')).toBe(3);
    expect(await count(url, 'audit_records')).toBe(before);
    expect(await count(url, 'audit_inbox')).toBe(1);

    // A single grant is enough to refuse.
    const used = await server.createDatabase();
    await (await pgStore(used)).insertGrant(grant({ id: 'grt_other' }));
    const refused = await cli('store', 'migrate', '--to', used, '--data-dir', dataDir);
    expect(refused).toMatchObject({ code: 2, stderr: expect.stringMatching(/already holds host state \(grants 1\)/) });
  });

  it('a real host that ran on SQLite, migrated: a host started on PostgreSQL knows its tokens and grants and extends the same chain', async () => {
    const fixture = await startFixture({}, dataDir);
    const granted = await fixture.grant(DIGEST, { capability: 'notes', methods: ['read'], mode: 'contained' });
    await fixture.close();
    const url = await server.createDatabase();
    const migrated = await cli('store', 'migrate', '--to', url, '--data-dir', dataDir, '--json');
    expect(migrated.code).toBe(0);
    const copied = (JSON.parse(migrated.stdout) as { audit: { records: number } }).audit.records;

    const host = await startHost({ config: { ...fixture.config, store: url }, isolation: 'in-process', logger: pino({ level: 'silent' }) });
    try {
      expect(await createTokenVerifier(host.store).verify(fixture.tokens.alice as string)).toMatchObject({ name: 'alice', role: 'approver' });
      expect(await host.store.getGrant(granted.id)).toEqual(granted);
      // The SQLite host stopped cleanly: known to the fleet, and not reaped.
      expect((await host.store.listHosts()).filter((h) => h.stoppedAt === undefined && h.reapedAt === undefined)).toHaveLength(1);
    } finally {
      await host.close();
    }
    const saved = process.env.CONTAINED_STORE;
    process.env.CONTAINED_STORE = url;
    try {
      const verify = await cli('audit', 'verify', '--data-dir', dataDir, '--json');
      expect(verify.code).toBe(0);
      const report = JSON.parse(verify.stdout.split('\n')[0] as string) as { ok: boolean; records: number };
      expect(report.ok).toBe(true);
      expect(report.records).toBeGreaterThan(copied);
    } finally {
      if (saved === undefined) delete process.env.CONTAINED_STORE;
      else process.env.CONTAINED_STORE = saved;
    }
  });

  it('after the copy, the old SQLite store is refused STORE_MOVED (a host restarted with its old config, a CLI write), not used as a second truth', async () => {
    const fixture = await startFixture({}, dataDir);
    await fixture.close();
    const url = await server.createDatabase();
    expect((await cli('store', 'migrate', '--to', url, '--data-dir', dataDir)).code).toBe(0);
    await expect(startHost({ config: fixture.config, isolation: 'in-process', logger: pino({ level: 'silent' }) })).rejects.toMatchObject({ code: 'STORE_MOVED' });
    const write = await cli('token', 'create', '--name', 'late', '--role', 'viewer', '--data-dir', dataDir, '--by', 'root');
    expect(write.code).toBe(1);
    expect(write.stderr).toMatch(/^STORE_MOVED: .*contained store migrate/);
    // The fleet's host on the same folder, with the PostgreSQL store, starts.
    const host = await startHost({ config: { ...fixture.config, store: url }, isolation: 'in-process', logger: pino({ level: 'silent' }) });
    await host.close();
  });

  it('two migrations into one database at once: one copies, the other is refused, nothing is mixed', async () => {
    const second = path.join(dir, 'second');
    await populate();
    await populate(second);
    const url = await server.createDatabase();
    const results = await Promise.all([dataDir, second].map((folder) => cli('store', 'migrate', '--to', url, '--data-dir', folder)));
    expect(results.map((r) => r.code).sort()).toEqual([0, 2]);
    expect(results.find((r) => r.code === 2)?.stderr).toMatch(/^INVALID_ARGUMENT: store migrate: .* already holds host state/);
    expect(await count(url, 'grants')).toBe(3);
    expect(await count(url, 'hosts')).toBe(2);
  });

  it('refuses while a host holds the data folder, copying nothing', async () => {
    await populate();
    const url = await server.createDatabase();
    const lock = acquireHostLock(dataDir);
    try {
      const result = await cli('store', 'migrate', '--to', url, '--data-dir', dataDir);
      expect(result).toMatchObject({ code: 1, stderr: expect.stringMatching(/^DATA_DIR_IN_USE: another contained host/) });
    } finally {
      lock.release();
    }
    await pgStore(url); // the schema, so the tables can be counted
    expect(await count(url, 'grants')).toBe(0);
    expect((await cli('store', 'migrate', '--to', url, '--data-dir', dataDir)).code).toBe(0);
  });

  it('a copy that fails half-way is rolled back: the database stays empty and a later migrate succeeds', async () => {
    await populate();
    // PostgreSQL text cannot hold a NUL byte: the runs copy fails after grants, tokens and agents went in.
    const raw = new Database(file);
    raw.prepare("UPDATE runs SET submitted_by = 'ci' || char(0) || 'x' WHERE id = 'run_ok'").run();
    raw.close();
    const url = await server.createDatabase();
    const failed = await cli('store', 'migrate', '--to', url, '--data-dir', dataDir);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/^INTERNAL: store migrate: the copy failed and was rolled back; nothing was copied/);
    expect(failed.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    for (const table of ['grants', 'tokens', 'agents', 'hosts', 'runs', 'requests', 'audit_records', 'audit_checkpoints', 'audit_inbox']) expect({ table, n: await count(url, table) }).toEqual({ table, n: 0 });

    const fix = new Database(file);
    fix.prepare("UPDATE runs SET submitted_by = 'ci' WHERE id = 'run_ok'").run();
    fix.close();
    expect((await cli('store', 'migrate', '--to', url, '--data-dir', dataDir)).code).toBe(0);
    expect(await count(url, 'grants')).toBe(3);
  });

  it('fails STORE_UNAVAILABLE, one line, when PostgreSQL cannot be reached', async () => {
    await populate();
    const result = await cli('store', 'migrate', '--to', `postgres://contained@127.0.0.1:${server.port + 1}/nowhere`, '--data-dir', dataDir);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^STORE_UNAVAILABLE: /);
    expect(result.stderr.split('\n').filter(Boolean)).toHaveLength(1);
  });

  it('--json prints the summary as JSON; --config finds the data folder', async () => {
    await populate();
    const url = await server.createDatabase();
    const config = path.join(dir, 'contained.config.json');
    await writeFile(config, JSON.stringify({ dataDir: './state', capabilities: {} }));
    const result = await cli('store', 'migrate', '--to', url, '--config', config, '--json');
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(summary).toMatchObject({
      from: file,
      copied: { grants: 3, tokens: 2, agents: 2, hosts: 2, runs: 2, requests: 4, audit_checkpoints: 3 },
      inboxQueued: 1,
      audit: { checkpoints: 3, signaturesChecked: 3 },
    });
  });
});
