/**
 * What only the PostgreSQL store (host/store/pg-store.ts) has, on a real throwaway server
 * (test/helpers/postgres.ts): hosts opening a new database at once migrate it once (advisory lock);
 * a database of a newer build is refused STORE_SCHEMA_NEWER; notifications carry changes made by
 * any writer (another store object, hand-written SQL) but never a store object's own; the change
 * counter ignores rolled-back changes; corrupt rows are INTERNAL naming table and id; BIGINT times
 * come back as numbers. And the server going away: calls fail STORE_UNAVAILABLE within seconds (no
 * hang, no crash from an idle connection's error), and once it is back calls work again and
 * watchers get `resync`, then new changes. The Store contract itself is store-contract.test.ts.
 */
import { Writable } from 'node:stream';
import pg from 'pg';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openPgStore, type PgStore } from '../../host/store/pg-store.js';
import { PG_SCHEMA_VERSION } from '../../host/store/pg/schema.js';
import type { Store, StoreChange } from '../../host/store/store.js';
import { ContainedError } from '../../runtime/errors.js';
import { pgAvailable, type PgServer, startPostgres } from '../helpers/postgres.js';
import { waitUntil } from './helpers/wait.js';
import { grant, request, token } from './store-fixtures.js';


let server: PgServer;
const stores: Store[] = [];

async function open(url: string, options: Parameters<typeof openPgStore>[1] = {}): Promise<PgStore> {
  const s = await openPgStore(url, options);
  stores.push(s);
  return s as PgStore;
}

/** Someone else's connection: a CLI, an operator with psql. */
async function sql<T = Record<string, unknown>>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text, params)).rows as T[];
  } finally {
    await client.end();
  }
}

async function failure(p: Promise<unknown>): Promise<ContainedError> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ContainedError);
  return error as ContainedError;
}

/** Wait until `s` hears a change another writer makes (LISTEN runs in the background after `watch`). */
async function heard(url: string, seen: StoreChange[]): Promise<void> {
  let n = 0;
  await waitUntil(async () => {
    await sql(url, `INSERT INTO grants (id, subject_digest, capability, methods, mode, approvals, created_by, reason, created_at) VALUES ($1, 'sha256:${'ab'.repeat(32)}', 'x', '["read"]', 'contained', 1, 'psql', 'priming', 1)`, [`prime-${n++}`]);
    return seen.some((c) => c.type === 'grants');
  }, 'the first change to reach the listener', 10_000);
}

describe.skipIf(!pgAvailable)('PostgreSQL store', { timeout: 60_000 }, () => {
  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close().catch(() => undefined);
  });

  describe('schema', () => {
    it('five hosts opening a new database at once all succeed and it is migrated once', async () => {
      const url = await server.createDatabase();
      const opened = await Promise.all(Array.from({ length: 5 }, () => open(url, { now: () => 1_234 })));
      expect(opened).toHaveLength(5);
      const versions = await sql<{ version: number; applied_at: string }>(url, 'SELECT version, applied_at FROM schema_version ORDER BY version');
      expect(versions.map((v) => v.version)).toEqual(Array.from({ length: PG_SCHEMA_VERSION }, (_, i) => i + 1));
      expect(versions.every((v) => Number(v.applied_at) === 1_234)).toBe(true);
      // Every one of them works on the one schema.
      await opened[0]?.insertGrant(grant());
      for (const s of opened) expect((await s.getGrant('g1'))?.id).toBe('g1');
      // Opening again later migrates nothing.
      await open(url);
      expect(await sql(url, 'SELECT version FROM schema_version')).toHaveLength(PG_SCHEMA_VERSION);
    });

    it('holds every durable table of the host, the trust ledger, passkeys and the notification outbox included', async () => {
      const url = await server.createDatabase();
      await open(url);
      const tables = (await sql<{ table_name: string }>(url, "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name")).map((t) => t.table_name);
      expect(tables).toEqual(
        [
          'agents', 'audit_checkpoints', 'audit_inbox', 'audit_records', 'change_counter', 'documents', 'grants', 'hosts', 'image_clients', 'images', 'notify_outbox', 'one_time_secrets', 'passkeys',
          'promotions', 'requests', 'reviews', 'runs', 'schema_version', 'sessions', 'tokens', 'trust_events',
        ].sort(),
      );
    });

    it('refuses a database migrated by a newer build: STORE_SCHEMA_NEWER with found and supported', async () => {
      const url = await server.createDatabase();
      await (await open(url)).close();
      await sql(url, 'INSERT INTO schema_version (version, applied_at) VALUES ($1, 1)', [PG_SCHEMA_VERSION + 5]);
      const error = await failure(openPgStore(url));
      expect(error.code).toBe('STORE_SCHEMA_NEWER');
      expect(error.data).toEqual({ found: PG_SCHEMA_VERSION + 5, supported: PG_SCHEMA_VERSION });
    });

    it('epoch-ms times past 2^31 come back as numbers', async () => {
      const url = await server.createDatabase();
      const s = await open(url);
      const far = 9_000_000_000_000;
      await s.insertGrant(grant({ expiresAt: far, createdAt: far - 1 }));
      expect(await s.getGrant('g1')).toMatchObject({ expiresAt: far, createdAt: far - 1 });
      expect(typeof (await s.changeCounter())).toBe('number');
    });
  });

  describe('rows', () => {
    it('a corrupt row is INTERNAL naming its table and id; a duplicate is INVALID_ARGUMENT duplicate', async () => {
      const url = await server.createDatabase();
      const s = await open(url);
      await s.insertRequest(request());
      await sql(url, "UPDATE requests SET approvals = '{not json' WHERE id = 'r1'");
      const corrupt = await failure(s.getRequest('r1'));
      expect(corrupt.code).toBe('INTERNAL');
      expect(corrupt.data).toEqual({ table: 'requests', id: 'r1' });
      await sql(url, "UPDATE requests SET approvals = '[]', status = 'maybe' WHERE id = 'r1'");
      expect((await failure(s.listRequests({}))).data).toEqual({ table: 'requests', id: 'r1' });
      const dup = await failure(s.insertToken(token()).then(() => s.insertToken(token())));
      expect(dup).toMatchObject({ code: 'INVALID_ARGUMENT', data: { reason: 'duplicate' } });
    });

    it('the change counter counts committed grant and token changes only: a rolled back one is not counted', async () => {
      const url = await server.createDatabase();
      const s = await open(url);
      const start = await s.changeCounter();
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query('BEGIN');
        await client.query("INSERT INTO tokens (id, name, role, hash, created_at, created_by) VALUES ('t9', 'zed', 'approver', $1, 1, 'psql')", ['9'.repeat(64)]);
        await client.query('ROLLBACK');
      } finally {
        await client.end();
      }
      expect(await s.changeCounter()).toBe(start);
      expect(await sql(url, 'SELECT * FROM audit_inbox')).toEqual([]);
      // A grant inserted by hand-written SQL is counted and queued for the audit chain like any other.
      await sql(url, `INSERT INTO grants (id, subject_digest, capability, methods, mode, approvals, created_by, reason, created_at) VALUES ('g-sql', 'sha256:${'ab'.repeat(32)}', 'x', '["read"]', 'contained', 1, 'psql', 'r', 1)`);
      expect(await s.changeCounter()).toBe(start + 1);
      expect(await sql(url, 'SELECT kind, ref FROM audit_inbox')).toEqual([{ kind: 'grant.added', ref: 'g-sql' }]);
    });

    it('insertRequest with deferSync and synced(): durable at COMMIT, synced resolves at once; a closed store is INTERNAL', async () => {
      const url = await server.createDatabase();
      const s = await open(url);
      await s.insertRequest(request(), { deferSync: true });
      await s.synced({ withinMs: 60_000 });
      expect(await sql(url, "SELECT id FROM requests WHERE id = 'r1'")).toHaveLength(1);
      await s.close();
      await s.close(); // idempotent
      expect((await failure(s.getRequest('r1'))).code).toBe('INTERNAL');
      expect((await failure(s.synced())).code).toBe('INTERNAL');
    });
  });

  describe('watch', () => {
    it('hears every writer but itself: another store object, hand-written SQL; request changes carry status and host', async () => {
      const url = await server.createDatabase();
      const a = await open(url);
      const b = await open(url);
      const seen: StoreChange[] = [];
      const own: StoreChange[] = [];
      b.watch((c) => seen.push(c));
      a.watch((c) => own.push(c));
      await heard(url, seen);
      await waitUntil(() => own.some((c) => c.type === 'grants'), 'a hears the SQL writer too');

      await a.insertRequest(request({ id: 'q1', hostId: 'host-a' }));
      await a.insertRequest(request({ id: 'q2' }));
      await a.addApproval('q1', { operator: 'alice', at: 2_000 });
      await a.resolveRequest('q1', { status: 'denied', at: 2_001, by: ['bob'], denyReason: 'no' });
      await waitUntil(() => seen.some((c) => c.type === 'request' && c.id === 'q1' && c.status === 'denied'), 'the denial');
      const requests = seen.filter((c) => c.type === 'request');
      expect(requests).toEqual([
        { type: 'request', id: 'q1', status: 'pending', hostId: 'host-a' },
        { type: 'request', id: 'q2', status: 'pending' },
        { type: 'request', id: 'q1', status: 'pending', hostId: 'host-a' }, // the approval
        { type: 'request', id: 'q1', status: 'denied', hostId: 'host-a' },
      ]);
      // A change that rolled back is never announced.
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query('BEGIN');
      await client.query("UPDATE requests SET status = 'expired' WHERE id = 'q2'");
      await client.query('ROLLBACK');
      await client.query("UPDATE requests SET status = 'cancelled' WHERE id = 'q2'");
      await client.end();
      await waitUntil(() => seen.some((c) => c.type === 'request' && c.id === 'q2' && c.status === 'cancelled'), 'the SQL change');
      expect(seen.some((c) => c.type === 'request' && c.status === 'expired')).toBe(false);
      expect(own.filter((c) => c.type === 'request')).toEqual([{ type: 'request', id: 'q2', status: 'cancelled' }]);
    });
  });

  describe('the server goes away and comes back', () => {
    it('calls fail STORE_UNAVAILABLE within seconds (no hang, no crash); afterwards calls work, watchers get resync, then new changes', async () => {
      const url = await server.createDatabase();
      const lines: string[] = [];
      const logger = pino({ level: 'warn' }, new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } }));
      const a = await open(url, { logger, connectTimeoutMs: 2_000 });
      const b = await open(url, { logger, connectTimeoutMs: 2_000 });
      const seen: StoreChange[] = [];
      b.watch((c) => seen.push(c));
      await heard(url, seen);
      // Idle pooled connections on both objects, to be cut by the shutdown.
      await Promise.all([a.insertRequest(request({ id: 'before' })), a.getRequest('before'), b.listRequests({}), b.getRequest('before')]);
      await waitUntil(() => seen.some((c) => c.type === 'request' && c.id === 'before'), 'the request made before');

      await server.halt();
      try {
        for (const call of [() => a.getRequest('before'), () => b.resolveRequest('before', { status: 'approved', at: 2_000, by: ['alice'] }), () => a.insertGrant(grant({ id: 'down' }))]) {
          const t0 = Date.now();
          const error = await failure(call());
          expect(error.code).toBe('STORE_UNAVAILABLE');
          expect(typeof error.data?.reason).toBe('string');
          expect(error.message).not.toContain('password');
          expect(Date.now() - t0).toBeLessThan(5_000);
        }
        expect(b.isListening).toBe(false);
        // Reconnect attempts go on (100 ms doubling to 2 s) while the server is down, without crashing.
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      } finally {
        await server.resume();
      }
      expect(lines.join('')).toContain('change listener lost its connection');

      // The pools make new connections; nothing of the failed calls was applied.
      const back = await waitUntil(() => a.getRequest('before').catch(() => undefined), 'a call to work again', 20_000);
      expect(back).toMatchObject({ status: 'pending' });
      expect(await b.getGrant('down')).toBeUndefined();
      await waitUntil(() => seen.some((c) => c.type === 'resync'), 'resync once listening again', 10_000);
      expect(b.isListening).toBe(true);
      const resyncAt = seen.findIndex((c) => c.type === 'resync');
      await a.resolveRequest('before', { status: 'approved', at: 3_000, by: ['alice'] });
      await waitUntil(() => seen.slice(resyncAt).some((c) => c.type === 'request' && c.id === 'before' && c.status === 'approved'), 'a change after the restart');
      expect(await b.claimExecution('before', 3_001)).toBe(true);
    });

    it('a connection cut mid-call: an approval is finished once on a new connection; a claim is confirmed by its own claim id, never guessed', async () => {
      const url = await server.createDatabase();
      const s = await open(url, { logger: pino({ level: 'silent' }) });
      await s.insertRequest(request({ id: 'cut' }));
      await s.insertRequest(request({ id: 'claim' }));
      await s.resolveRequest('claim', { status: 'approved', at: 2_000, by: ['alice', 'bob'] });
      /** Start `call` while another session holds the row, cut the store's connection waiting on it, then let go. */
      async function cutDuring<T>(id: string, call: () => Promise<T>): Promise<T> {
        const holder = new pg.Client({ connectionString: url });
        await holder.connect();
        try {
          await holder.query('BEGIN');
          await holder.query('SELECT 1 FROM requests WHERE id = $1 FOR UPDATE', [id]);
          const pending = call().then(
            (value) => ({ value }),
            (error: unknown) => ({ error }),
          );
          const waiting = await waitUntil(async () => {
            const rows = await holder.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE application_name = 'contained-host' AND wait_event_type = 'Lock'");
            return rows.rows[0]?.pid;
          }, 'the store call to wait on the row lock');
          await holder.query('SELECT pg_terminate_backend($1)', [waiting]);
          await holder.query('ROLLBACK');
          const settled = await pending;
          if ('error' in settled) throw settled.error;
          return settled.value;
        } finally {
          await holder.end();
        }
      }
      const approved = await cutDuring('cut', () => s.addApproval('cut', { operator: 'alice', at: 2_000 }));
      expect(approved).toMatchObject({ ok: true, request: { approvals: [{ operator: 'alice', at: 2_000 }] } });
      expect((await s.getRequest('cut'))?.approvals).toEqual([{ operator: 'alice', at: 2_000 }]);

      // The claim is confirmed on a new connection (its own claim id read back, or made again): exactly one winner.
      expect(await cutDuring('claim', () => s.claimExecution('claim', 3_000))).toBe(true);
      expect((await s.getRequest('claim'))?.execution).toEqual({ state: 'claimed', at: 3_000 });
      expect(await s.claimExecution('claim', 3_001)).toBe(false);
      const other = await open(url);
      expect(await other.claimExecution('claim', 3_002)).toBe(false);
    });

    it('opening a store that cannot be reached fails STORE_UNAVAILABLE at once, the URL\'s password redacted', async () => {
      const t0 = Date.now();
      const error = await failure(openPgStore('postgres://contained:s3cret@127.0.0.1:1/nothing', { connectTimeoutMs: 2_000 }));
      expect(error.code).toBe('STORE_UNAVAILABLE');
      expect(error.data).toMatchObject({ reason: 'ECONNREFUSED' });
      expect(error.message).not.toContain('s3cret');
      expect(Date.now() - t0).toBeLessThan(5_000);
    });

    it('close while the listener is reconnecting ends everything (no timer left behind)', async () => {
      const url = await server.createDatabase();
      const s = await open(url);
      const seen: StoreChange[] = [];
      s.watch((c) => seen.push(c));
      await waitUntil(() => s.isListening, 'listening');
      await server.halt();
      try {
        await waitUntil(() => !s.isListening, 'the listener to notice');
        await s.close();
        await new Promise((resolve) => setTimeout(resolve, 500));
      } finally {
        await server.resume();
      }
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      expect(s.isListening).toBe(false);
      expect(seen.filter((c) => c.type === 'resync')).toEqual([]);
    });
  });
});
