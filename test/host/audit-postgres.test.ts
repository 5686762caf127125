/**
 * The audit log on a real PostgreSQL (test/helpers/postgres.ts), as a fleet uses it: two AuditLog
 * objects with their own pools and keys (two hosts) appending to one database at once, grants added
 * through the PostgreSQL store meanwhile (its triggers fill the inbox the logs drain) — one chain,
 * no gaps, checkpoints from both keys. Then tampering done the way an attacker would (SQL on the
 * database) named exactly as on SQLite, `contained audit verify|dangling` with CONTAINED_STORE,
 * `within` on the host's own SQLite file, and an append while the server is down failing
 * AUDIT_FAILED (not hanging) and working again once it is back.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { auditCommand } from '../../host/cli/audit.js';
import { trustCommand } from '../../host/cli/trust.js';
import { auditSearch, createVerifier } from '../../host/console/oversight.js';
import { AUDIT_PUBLIC_KEY_FILE, type AuditKey, loadOrCreateAuditKey, loadVerifyKey, loadVerifyKeys } from '../../host/audit/keys.js';
import { AuditLog, type AuditLogOptions } from '../../host/audit/log.js';
import { AUDIT_LOCK_KEY } from '../../host/audit/pg.js';
import { hashRecord, type StoredRecord } from '../../host/audit/record.js';
import { openAuditSource } from '../../host/audit/source.js';
import { verifyAuditSource, type VerifyKeys } from '../../host/audit/verify.js';
import type { Grant } from '../../host/model.js';
import { openPgStore } from '../../host/store/pg-store.js';
import { defaultStorePath } from '../../host/store/sqlite-store.js';
import { createToken } from '../../host/tokens.js';
import type { Store } from '../../host/store/store.js';
import { type PgServer, pgAvailable, startPostgres } from '../helpers/postgres.js';
import { RISK, startTrust, SUBJECT, type TrustHarness } from './trust-harness.js';
import { showCall } from '../../host/audit/signatures.js';


/** The PostgreSQL store (host/store/pg-store.ts) creates the schema and its audit triggers on open. */
const openShared = (url: string): Promise<Store> => openPgStore(url);

let server: PgServer;
let root: string;
const logs: AuditLog[] = [];
const closers: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  if (pgAvailable) server = await startPostgres();
}, 120_000);
afterAll(async () => {
  await server?.stop();
});
beforeEach(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'contained-audit-pg-'));
});
afterEach(async () => {
  for (const log of logs.splice(0)) await log.close().catch(() => undefined);
  for (const close of closers.splice(0)) await close().catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
});

interface Host {
  dir: string;
  key: AuditKey;
  open(options?: Partial<AuditLogOptions>): AuditLog;
}

function host(name: string, url: string): Host {
  const dir = path.join(root, name);
  const key = loadOrCreateAuditKey(dir);
  return {
    dir,
    key,
    open(options = {}) {
      const log = new AuditLog({ file: defaultStorePath(dir), postgres: url, key, checkpointIntervalMs: 0, inboxPollMs: 0, synchronous: 'normal', ...options });
      logs.push(log);
      return log;
    },
  };
}

async function database(): Promise<{ url: string; store: Store }> {
  const url = await server.createDatabase();
  const store = await openShared(url);
  closers.push(() => store.close());
  return { url, store };
}

/** The attacker's own connection. */
async function sql<T = Record<string, unknown>>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text, params)).rows as T[];
  } finally {
    await client.end();
  }
}

async function verify(url: string, keys: VerifyKeys): ReturnType<typeof verifyAuditSource> {
  const source = await openAuditSource({ store: { kind: 'postgres', url }, storeFile: '' });
  try {
    return await verifyAuditSource(source, keys, 7); // small pages: the walk crosses many page boundaries
  } finally {
    await source.close();
  }
}

function grant(i: number): Grant {
  return { id: `grt_pg${String(i).padStart(4, '0')}`, subject: { digest: `sha256:${'a'.repeat(64)}` }, capability: 'notes', methods: ['read'], mode: 'contained', approvals: 1, createdBy: 'erin', reason: `r${i}`, createdAt: 1000 + i };
}

async function stored(url: string, seq: number): Promise<StoredRecord> {
  const [r] = await sql<Record<string, unknown>>(url, 'SELECT * FROM audit_records WHERE seq = $1', [seq]);
  const n = (v: unknown): number => Number(v);
  return { seq: n(r?.seq), at: n(r?.at), type: String(r?.type), runId: (r?.run_id as string | null) ?? null, subject: (r?.subject as string | null) ?? null, capability: (r?.capability as string | null) ?? null, method: (r?.method as string | null) ?? null, callId: (r?.call_id as string | null) ?? null, data: String(r?.data), prevHash: String(r?.prev_hash), hash: String(r?.hash) };
}

/** Move records seq >= from by delta, through negative seqs (the primary key is checked per row). */
async function renumber(url: string, from: number, delta: number): Promise<void> {
  await sql(url, 'UPDATE audit_records SET seq = -seq WHERE seq >= $1', [from]);
  await sql(url, 'UPDATE audit_records SET seq = -seq + $1 WHERE seq < 0', [delta]);
}

const pgDescribe = describe.skipIf(!pgAvailable);

pgDescribe('the audit log on PostgreSQL: several hosts, one chain', () => {
  it('two hosts appending 2×500 records at once, grants added meanwhile: seq 1..N without gaps, verifies with both keys, fails with one', async () => {
    const { url, store } = await database();
    const a = host('a', url);
    const b = host('b', url);
    const logA = a.open({ checkpointEvery: 97 });
    const logB = b.open({ checkpointEvery: 89 });
    const pending: Array<Promise<unknown>> = [];
    for (let i = 0; i < 500; i++) {
      pending.push(logA.append({ type: 'call', runId: 'run-a', capability: 'notes', method: 'read', callId: `a${i}`, data: { i } }, undefined, i % 3 === 0 ? {} : { soon: true }));
      pending.push(logB.append({ type: 'call', runId: 'run-b', capability: 'notes', method: 'read', callId: `b${i}`, data: { i } }, undefined, i % 5 === 0 ? {} : { soon: true }));
      if (i % 50 === 0) pending.push(store.insertGrant(grant(i)));
      if (i % 25 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(pending);
    await logA.flush();
    await logB.flush();
    await logA.close();
    await logB.close();

    const seqs = (await sql<{ seq: string }>(url, 'SELECT seq FROM audit_records ORDER BY seq')).map((r) => Number(r.seq));
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    // The hosts' batches interleave in the one chain (each took the advisory lock in turn).
    const runs = (await sql<{ run_id: string | null }>(url, "SELECT run_id FROM audit_records WHERE type = 'call' ORDER BY seq")).map((r) => r.run_id);
    expect(runs.filter((r, i) => i > 0 && r !== runs[i - 1]).length).toBeGreaterThan(2);
    const types = await sql<{ type: string; n: string }>(url, 'SELECT type, COUNT(*) AS n FROM audit_records GROUP BY type');
    const count = Object.fromEntries(types.map((t) => [t.type, Number(t.n)]));
    expect(count).toMatchObject({ call: 1000, 'grant.added': 10 });
    expect(await sql(url, 'SELECT 1 FROM audit_inbox')).toEqual([]);
    const keyIds = (await sql<{ key_id: string }>(url, 'SELECT DISTINCT key_id FROM audit_checkpoints')).map((r) => r.key_id).sort();
    expect(keyIds).toEqual([a.key.keyId, b.key.keyId].sort());

    const both = await verify(url, [loadVerifyKey(a.dir) as AuditKey, loadVerifyKey(b.dir) as AuditKey]);
    expect(both).toMatchObject({ ok: true, records: seqs.length, headSeq: seqs.length, firstBad: undefined });
    const onlyA = await verify(url, loadVerifyKey(a.dir));
    expect(onlyA.ok).toBe(false);
    expect(onlyA.firstBad).toMatchObject({ kind: 'checkpoint' });
    expect(onlyA.firstBad?.message).toContain(`signed by key ${b.key.keyId}, which is not among the given public keys`);
  }, 60_000);

  it('the drained grant and token records carry the row read from PostgreSQL (added and revoked), never the token hash', async () => {
    const { url, store } = await database();
    const log = host('a', url).open();
    await store.insertGrant(grant(1));
    await store.revokeGrant(grant(1).id, 'erin', 'no longer needed', 2000);
    await log.flush();
    const source = await openAuditSource({ store: { kind: 'postgres', url }, storeFile: '' });
    closers.push(() => source.close());
    const records = await source.query({ type: 'grant.added' });
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ type: 'grant.added', capability: 'notes', at: 1001, data: { grant: { id: grant(1).id, methods: ['read'], mode: 'contained' } } });
    expect(await source.query({ type: 'grant.revoked' })).toMatchObject([{ at: 2000, data: { grantId: grant(1).id, by: 'erin', reason: 'no longer needed' } }]);
    expect(await source.find({ types: ['grant.added'], data: { path: ['grant', 'id'], equals: grant(1).id } })).toHaveLength(1);

    const { record } = await createToken({ name: 'plat', role: 'platform', createdBy: 'test' }, store);
    await (store).revokeToken(record.id, 3000);
    await log.flush();
    expect(await source.query({ type: 'token.created' })).toMatchObject([{ data: { tokenId: record.id, name: 'plat', role: 'platform', createdBy: 'test' } }]);
    expect(await source.query({ type: 'token.revoked' })).toMatchObject([{ at: 3000, data: { tokenId: record.id, name: 'plat' } }]);
    expect(JSON.stringify(await source.query())).not.toContain(record.hash);
  });
});

pgDescribe('keys of a fleet', () => {
  it('audit.publicKeyFiles adds the other hosts\' keys; a shared audit.keyFile lets one public key verify every checkpoint', async () => {
    const { url } = await database();
    const a = host('a', url);
    const b = host('b', url);
    const logA = a.open();
    const logB = b.open();
    await logA.append({ type: 'call', data: { n: 1 } });
    await logA.close();
    await logB.append({ type: 'call', data: { n: 2 } });
    await logB.close();
    expect((await verify(url, loadVerifyKeys(a.dir, []))).ok).toBe(false);
    expect(await verify(url, loadVerifyKeys(a.dir, [], { publicKeyFiles: [path.join(b.dir, AUDIT_PUBLIC_KEY_FILE)] }))).toMatchObject({ ok: true, keyIds: [a.key.keyId, b.key.keyId] });

    // One key for the fleet: both hosts sign with the file audit.keyFile names.
    const other = await database();
    const sharedKey = path.join(a.dir, 'audit-key.pem');
    const c = path.join(root, 'c');
    const d = path.join(root, 'd');
    mkdirSync(c);
    mkdirSync(d);
    const keyC = loadOrCreateAuditKey(c, sharedKey);
    const keyD = loadOrCreateAuditKey(d, path.relative(d, sharedKey));
    expect(keyC.keyId).toBe(a.key.keyId);
    expect(keyD.keyId).toBe(a.key.keyId);
    for (const [dir, key] of [[c, keyC], [d, keyD]] as const) {
      const log = new AuditLog({ file: defaultStorePath(dir), postgres: other.url, key, checkpointIntervalMs: 0, inboxPollMs: 0 });
      logs.push(log);
      await log.append({ type: 'call', data: { dir } });
      await log.close();
    }
    expect(await verify(other.url, loadVerifyKeys(c, [], { keyFile: sharedKey }))).toMatchObject({ ok: true, checkpoints: 2 });
    expect(() => loadOrCreateAuditKey(c, 'missing.pem')).toThrow(expect.objectContaining({ code: 'INTERNAL' }));
  });
});

pgDescribe('the console Audit page on PostgreSQL', () => {
  it('searches and verifies the fleet chain (newest first; both hosts\' keys from audit.publicKeyFiles)', async () => {
    const { url } = await database();
    const a = host('a', url);
    const b = host('b', url);
    const logB = b.open();
    await logB.append({ type: 'run.started', runId: 'rb', data: {} });
    await logB.close();
    const logA = a.open();
    await logA.append({ type: 'run.started', runId: 'ra', data: {} });
    logA.checkpoint(); // written by the next batch (PostgreSQL)
    await logA.flush();
    const records = await auditSearch({ audit: logA }, { limit: 5 });
    expect(records.map((r) => r.runId)).toEqual(['ra', 'rb']);
    expect((await auditSearch({ audit: logA }, { run: 'rb' })).map((r) => r.seq)).toEqual([1]);
    const own = await createVerifier({ audit: logA }, a.dir, Date.now)();
    expect(own.ok).toBe(false);
    const fleet = await createVerifier({ audit: logA }, a.dir, Date.now, { publicKeyFiles: [path.join(b.dir, AUDIT_PUBLIC_KEY_FILE)] })();
    expect(fleet).toMatchObject({ ok: true, records: 2, checkpoints: 2 });
  });
});

pgDescribe('verify on PostgreSQL names the first bad record', () => {
  let url: string;
  let keys: VerifyKeys;
  beforeEach(async () => {
    ({ url } = await database());
    const a = host('a', url);
    const log = a.open({ checkpointEvery: 1000 });
    for (let i = 0; i < 40; i++) await log.append({ type: 'call', runId: `run-${i % 3}`, capability: 'notes', method: 'read', callId: `c${i}`, data: { i } });
    await log.close();
    keys = loadVerifyKey(a.dir);
    expect((await verify(url, keys)).ok).toBe(true);
  });

  it('edit: a record changed in place', async () => {
    await sql(url, `UPDATE audit_records SET data = '{"i":999}' WHERE seq = 17`);
    expect((await verify(url, keys)).firstBad).toMatchObject({ seq: 17, kind: 'edited' });
  });

  it('edit: a record changed and its own hash recomputed', async () => {
    const r = await stored(url, 17);
    const changed = { ...r, data: '{"forged":true}' };
    await sql(url, 'UPDATE audit_records SET data = $1, hash = $2 WHERE seq = 17', [changed.data, hashRecord(changed)]);
    expect((await verify(url, keys)).firstBad).toMatchObject({ seq: 17, kind: 'edited' });
  });

  it('delete: a gap, and a gap closed by renumbering', async () => {
    await sql(url, 'DELETE FROM audit_records WHERE seq = 23');
    expect((await verify(url, keys)).firstBad).toMatchObject({ seq: 23, kind: 'deleted' });
    await renumber(url, 24, -1);
    expect((await verify(url, keys)).firstBad).toMatchObject({ seq: 23, kind: 'deleted' });
  });

  it('delete: the tail cut off after the last checkpoint', async () => {
    await sql(url, 'DELETE FROM audit_records WHERE seq > 30');
    expect((await verify(url, keys)).firstBad).toMatchObject({ seq: 31, kind: 'deleted' });
  });

  it('insert: a forged record with a correct hash and link, later records renumbered', async () => {
    await renumber(url, 12, +1);
    const before = await stored(url, 11);
    const forged = { seq: 12, at: before.at, type: 'decision', runId: 'run-0', subject: null, capability: 'notes', method: 'read', callId: 'forged', data: '{"allow":true}', prevHash: before.hash };
    await sql(url, 'INSERT INTO audit_records (seq, at, type, run_id, subject, capability, method, call_id, data, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)', [
      forged.seq, forged.at, forged.type, forged.runId, forged.subject, forged.capability, forged.method, forged.callId, forged.data, forged.prevHash, hashRecord(forged),
    ]);
    expect((await verify(url, keys)).firstBad).toMatchObject({ seq: 12, kind: 'inserted' });
  });

  it('reorder: two records swapped', async () => {
    await sql(url, 'UPDATE audit_records SET seq = -1 WHERE seq = 30');
    await sql(url, 'UPDATE audit_records SET seq = 30 WHERE seq = 31');
    await sql(url, 'UPDATE audit_records SET seq = 31 WHERE seq = -1');
    expect((await verify(url, keys)).firstBad).toMatchObject({ seq: 30, kind: 'reordered' });
  });

  it('a checkpoint with a forged signature', async () => {
    await sql(url, `UPDATE audit_checkpoints SET signature = $1`, [Buffer.alloc(64).toString('base64')]);
    expect((await verify(url, keys)).firstBad).toMatchObject({ seq: 40, kind: 'checkpoint' });
  });
});

pgDescribe('the CLI with CONTAINED_STORE=postgres://…', () => {
  async function cli(argv: string[], url: string): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const before = process.env.CONTAINED_STORE;
    process.env.CONTAINED_STORE = url;
    try {
      const code = await auditCommand(argv, { stdout: (t) => (out += t), stderr: (t) => (err += t) });
      return { code, out, err };
    } finally {
      if (before === undefined) delete process.env.CONTAINED_STORE;
      else process.env.CONTAINED_STORE = before;
    }
  }

  it('verify checks both hosts\' checkpoints with one --public-key per host, and fails naming the key it was not given', async () => {
    const { url } = await database();
    const a = host('a', url);
    const b = host('b', url);
    const logA = a.open();
    const logB = b.open();
    await Promise.all([logA.append({ type: 'run.started', runId: 'r1', data: {} }), logB.append({ type: 'run.started', runId: 'r2', data: {} })]);
    await logA.close(); // each close signs a final checkpoint with its own key
    await logB.append({ type: 'run.ended', runId: 'r2', data: {} });
    await logB.close();

    const both = await cli(['verify', '--data-dir', a.dir, '--public-key', path.join(a.dir, AUDIT_PUBLIC_KEY_FILE), '--public-key', path.join(b.dir, AUDIT_PUBLIC_KEY_FILE)], url);
    expect(both.err).toBe('');
    expect(both.out).toContain('OK: the chain and every checkpoint verify');
    expect(both.out).toContain('audit log: 3 records');
    expect(both.code).toBe(0);

    const one = await cli(['verify', '--data-dir', a.dir], url);
    expect(one.code).toBe(1);
    expect(one.err).toContain(`AUDIT_TAMPERED: first bad record: seq 3 (checkpoint): checkpoint at seq 3 is signed by key ${b.key.keyId}, which is not among the given public keys`);

    const json = await cli(['tail', '-n', '2', '--json', '--data-dir', a.dir], url);
    expect(json.out.trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq)).toEqual([2, 3]);
  });

  it('dangling lists intents without outcomes from every host; an intent whose run ended since is interrupted', async () => {
    const { url } = await database();
    const a = host('a', url);
    const b = host('b', url);
    const logA = a.open();
    const logB = b.open();
    await logA.append({ type: 'intent', runId: 'run-a', capability: 'notes', method: 'write', callId: 'call-a', data: { basis: 'grant:g' } });
    await logB.append({ type: 'intent', runId: 'run-b', capability: 'notes', method: 'write', callId: 'call-b', data: { basis: 'grant:g' } });
    await logB.append({ type: 'intent', runId: 'run-b', capability: 'notes', method: 'read', callId: 'call-done', data: { basis: 'grant:g' } });
    await logB.append({ type: 'outcome', runId: 'run-b', capability: 'notes', method: 'read', callId: 'call-done', data: { ok: true } });
    // Host A died mid-action; its run was ended by the host that reaped it.
    await logB.append({ type: 'run.ended', runId: 'run-a', data: { status: 'crashed' } });
    const listed = await cli(['dangling', '--data-dir', b.dir], url);
    expect(listed.code).toBe(0);
    expect(listed.out).toContain('2 intents without an outcome');
    expect(listed.out).toMatch(/interrupted #1 .*intent/);
    expect(listed.out).toMatch(/open +#2 .*intent/);
    expect(listed.out).not.toContain('call-done');
    const json = JSON.parse((await cli(['dangling', '--json', '--data-dir', b.dir], url)).out) as Array<{ state: string; record: { callId: string } }>;
    expect(json.map((d) => [d.record.callId, d.state])).toEqual([['call-a', 'interrupted'], ['call-b', 'open']]);
  });

  it('trust report reads the ledger from the host\'s file and the active grants from PostgreSQL', async () => {
    const { url, store } = await database();
    const a = host('a', url);
    await a.open().close(); // the host's own file exists (ledger tables), the records are in PostgreSQL
    await store.insertGrant({ ...grant(7), mode: 'executed', methods: ['mkdir'] });
    let out = '';
    const before = process.env.CONTAINED_STORE;
    process.env.CONTAINED_STORE = url;
    try {
      expect(await trustCommand(['report', '--json', '--data-dir', a.dir], { stdout: (t) => (out += t), stderr: () => undefined })).toBe(0);
    } finally {
      if (before === undefined) delete process.env.CONTAINED_STORE;
      else process.env.CONTAINED_STORE = before;
    }
    expect(JSON.parse(out)).toMatchObject([{ subject: `sha256:${'a'.repeat(64)}`, actions: [{ action: 'notes.mkdir', mode: 'executed' }] }]);
  });

  it('a database with no audit log yet is NOT_FOUND', async () => {
    const url = await server.createDatabase();
    await expect(cli(['verify', '--data-dir', path.join(root, 'x')], url)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});

pgDescribe('within and failures on PostgreSQL', () => {
  it('`within` runs on the host\'s own SQLite file: committed with its record, dropped with it when it throws', async () => {
    const { url } = await database();
    const a = host('a', url);
    const log = a.open();
    log.db.exec('CREATE TABLE side (n INTEGER)');
    const ok = log.append({ type: 'review.marked', data: { n: 1 } }, (db) => db.prepare('INSERT INTO side VALUES (1)').run());
    const bad = log.append({ type: 'review.marked', data: { n: 2 } }, (db) => {
      db.prepare('INSERT INTO side VALUES (2)').run();
      throw new Error('lost the race');
    });
    const after = log.append({ type: 'call', data: { n: 3 } });
    await expect(bad).rejects.toThrow('lost the race');
    expect((await ok).seq).toBe(1);
    expect((await after).seq).toBe(2);
    const local = new Database(defaultStorePath(a.dir), { readonly: true });
    try {
      expect(local.prepare('SELECT n FROM side').pluck().all()).toEqual([1]);
      // The records are in PostgreSQL, not in the local file.
      expect(local.prepare('SELECT COUNT(*) FROM audit_records').pluck().get()).toBe(0);
    } finally {
      local.close();
    }
    expect((await sql<{ n: string }>(url, 'SELECT COUNT(*) AS n FROM audit_records'))[0]?.n).toBe('2');
  });

  it('a `pg` step runs in the batch transaction on PostgreSQL: committed with its record, its value returned, dropped with it when it throws', async () => {
    const { url } = await database();
    await sql(url, 'CREATE TABLE side (n INTEGER)');
    const log = host('a', url).open();
    const insert = (n: number, fail = false) => ({
      pg: async (client: pg.PoolClient) => {
        await client.query('INSERT INTO side VALUES ($1)', [n]);
        if (fail) throw new Error('lost the race');
        return n * 10;
      },
    });
    const ok = log.appendWith({ type: 'review.marked', data: { n: 1 } }, insert(1));
    const bad = log.append({ type: 'review.marked', data: { n: 2 } }, insert(2, true));
    const none = log.transact(insert(3));
    const after = log.append({ type: 'call', data: { n: 4 } });
    await expect(bad).rejects.toThrow('lost the race');
    expect(await ok).toMatchObject({ record: { seq: 1 }, value: 10 });
    expect(await none).toBe(30);
    expect((await after).seq).toBe(2);
    expect((await sql<{ n: number }>(url, 'SELECT n FROM side ORDER BY n')).map((r) => r.n)).toEqual([1, 3]);
    // A step with only a PostgreSQL form cannot run on SQLite: that append alone fails INTERNAL.
    const b = host('b', url);
    const local = new AuditLog({ file: defaultStorePath(b.dir), key: b.key, checkpointIntervalMs: 0, inboxPollMs: 0, synchronous: 'normal' });
    closers.push(() => local.close());
    await expect(local.append({ type: 'call', data: {} }, insert(5))).rejects.toMatchObject({ code: 'INTERNAL' });
    expect((await local.append({ type: 'call', data: {} })).seq).toBeGreaterThan(0);
  });

  it('a host stuck holding the chain lock makes appends fail AUDIT_FAILED after busyTimeoutMs, not hang', async () => {
    const { url } = await database();
    const log = host('a', url).open({ busyTimeoutMs: 300 });
    await log.append({ type: 'call', data: { n: 1 } });
    const stuck = new pg.Client({ connectionString: url });
    await stuck.connect();
    try {
      await stuck.query('BEGIN');
      await stuck.query('SELECT pg_advisory_xact_lock($1::bigint)', [AUDIT_LOCK_KEY]);
      const t0 = Date.now();
      await expect(log.append({ type: 'intent', callId: 'y', data: {} })).rejects.toMatchObject({ code: 'AUDIT_FAILED' });
      expect(Date.now() - t0).toBeLessThan(5000);
      await stuck.query('ROLLBACK');
    } finally {
      await stuck.end();
    }
    expect((await log.append({ type: 'call', data: { n: 2 } })).seq).toBe(2);
  });

  it('an append while PostgreSQL is down rejects AUDIT_FAILED (no hang) and rolls its local rows back; appends work again after resume', async () => {
    const { url } = await database();
    const a = host('a', url);
    const log = a.open({ busyTimeoutMs: 2000 });
    log.db.exec('CREATE TABLE side (n INTEGER)');
    await log.append({ type: 'call', data: { n: 1 } });
    await server.halt();
    try {
      const t0 = Date.now();
      await expect(log.append({ type: 'intent', callId: 'x', data: { n: 2 } }, (db) => db.prepare('INSERT INTO side VALUES (2)').run())).rejects.toMatchObject({ code: 'AUDIT_FAILED' });
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(log.db.prepare('SELECT COUNT(*) FROM side').pluck().get()).toBe(0);
      await expect(log.append({ type: 'call', data: { n: 3 } })).rejects.toMatchObject({ code: 'AUDIT_FAILED' });
    } finally {
      await server.resume();
    }
    expect((await log.append({ type: 'call', data: { n: 4 } })).seq).toBe(2);
    await log.close();
    expect(await verify(url, loadVerifyKey(a.dir))).toMatchObject({ ok: true, records: 2 });
  }, 60_000);
});

pgDescribe('trust when the grants live in PostgreSQL', () => {
  let t: TrustHarness | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('figures, promotion and demotion see the grants in PostgreSQL; the ledger, reviews and proposals are in PostgreSQL too, with the records of the fleet chain', async () => {
    const url = await server.createDatabase();
    const store = await openShared(url);
    t = await startTrust({ minAssistedReviews: 5 }, { url, store });
    const key = { subject: SUBJECT, capability: 'notes', method: 'mkdir' };
    const assisted = await t.grant('notes', ['mkdir']);
    // The local file has no grants; the figures still see the assisted grant.
    expect(t.audit.db.prepare('SELECT COUNT(*) FROM grants').pluck().get()).toBe(0);
    const request = { id: 'req-x', kind: 'recommendation', runId: 'run', subject: SUBJECT, capability: 'notes', method: 'mkdir', why: 'w', approvalsRequired: 1, approvals: [], status: 'pending', createdAt: t.clock.now, expiresAt: t.clock.now + 1000 } as const;
    expect(await t.trust.figuresFor(request as never)).toMatchObject({ action: 'notes.mkdir', mode: 'assisted' });

    for (let i = 0; i < 5; i++) await t.verdict(key, 'approved', RISK.lowStakes, assisted.id);
    const [proposal] = await t.trust.promotions.list();
    expect(proposal).toMatchObject({ status: 'proposed', grantId: assisted.id });
    const accepted = await t.trust.promotions.decide('erin', proposal?.id ?? '', 'accept', 'clean record');
    const executed = await store.getGrant(accepted.newGrantId ?? '');
    expect(executed).toMatchObject({ mode: 'executed', methods: ['mkdir'] });
    t.clock.now += 5000;
    expect(await t.trust.figuresFor({ ...request, id: 'req-y' } as never)).toMatchObject({ mode: 'executed' });

    // A critical review demotes: the executed grant in PostgreSQL is revoked.
    await t.audit.append({ type: 'decision', runId: 'run-1', subject: SUBJECT, capability: 'notes', method: 'mkdir', callId: 'call-1', data: { allow: true, basis: `grant:${executed?.id}`, grantId: executed?.id, mode: 'executed' } });
    await t.trust.onExecuted({ callId: 'call-1', runId: 'run-1', subject: SUBJECT, capability: 'notes', method: 'mkdir', args: {}, risk: RISK.lowStakes } as never, executed as Grant, { ok: true, value: {} } as never);
    const [review] = await t.trust.listReviews();
    const marked = await t.trust.markReview('alice', review?.id ?? '', 'critical', 'wrong folder');
    expect(marked.demotion?.revokedGrants).toEqual([executed?.id]);
    expect((await store.getGrant(executed?.id ?? ''))?.revokedAt).toBeDefined();

    await t.audit.flush();
    const source = await openAuditSource({ store: { kind: 'postgres', url }, storeFile: '' });
    closers.push(() => source.close());
    const types = (await source.query()).map((r) => r.type);
    expect(types).toEqual(expect.arrayContaining(['grant.added', 'promotion.proposed', 'promotion.accepted', 'review.queued', 'review.marked', 'grant.revoked', 'demotion']));
    expect((await showCall(source, 'call-1'))[0]).toMatch(/allowed by an automatic rule: grant .* made by a promotion erin accepted/);
    expect((await verifyAuditSource(source, loadVerifyKey(t.dir))).ok).toBe(true);
    // The trust state is the fleet's: in PostgreSQL, none of it in the host's own file.
    const counts = await sql<{ events: number; reviews: number; proposals: number }>(
      url,
      'SELECT (SELECT COUNT(*) FROM trust_events)::int AS events, (SELECT COUNT(*) FROM reviews)::int AS reviews, (SELECT COUNT(*) FROM promotions)::int AS proposals',
    );
    expect(counts[0]).toEqual({ events: 6, reviews: 1, proposals: 1 });
    expect(t.audit.db.prepare('SELECT (SELECT COUNT(*) FROM trust_events) + (SELECT COUNT(*) FROM reviews) + (SELECT COUNT(*) FROM promotions)').pluck().get()).toBe(0);
  }, 60_000);
});
