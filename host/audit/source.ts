/**
 * Where the audit records are read from: the host's SQLite file, or the PostgreSQL database a fleet
 * shares (one chain for every host). Every reader — `contained audit verify|tail|query|export|
 * dangling|show`, the console's Audit page, the mcp tool watcher — goes through this one async
 * interface, so each works on either store.
 *
 * Reads are live: every call queries the rows as they are now (no cached copy), and whole-log
 * walks (`iterate`, `page`) go page by page in seq order, in bounded memory.
 *
 * PostgreSQL `dangling`: an intent without an outcome, from any host. There is no host restart to
 * compare with across a fleet (each host writes its own `audit.started`), so an intent is
 * `interrupted` when its run has ended since (`run.ended` after it: the run was finished or reaped,
 * no outcome can follow), else `open`.
 *
 * Fails: NOT_FOUND when there is no audit log yet; STORE_UNAVAILABLE when PostgreSQL cannot be
 * reached or a query fails (the URL redacted).
 */
import type Database from 'better-sqlite3';
import type pg from 'pg';
import { ContainedError } from '../../runtime/errors.js';
import type { StateLocation } from '../store/location.js';
import type { Checkpoint } from './keys.js';
import { openAuditPool, pgError } from './pg.js';
import { type AuditFilter, checkedLimit, type DanglingIntent, danglingIntents, openAuditReader, queryAudit, tailAudit, where } from './query.js';
import { type AuditRecord, RECORD_COLUMNS, rowToStored, type StoredRecord, toAuditRecord } from './record.js';

/** Records by type, call id and/or one string field of `data` (e.g. `['grant', 'id']`). */
export interface RecordQuery {
  types?: readonly string[];
  callId?: string;
  data?: { path: readonly string[]; equals: string };
}

export interface AuditSource {
  readonly kind: 'sqlite' | 'postgres';
  /** Matching records in seq order (the first `limit`). */
  query(filter?: AuditFilter): Promise<AuditRecord[]>;
  /** The last `n` matching records, oldest first. */
  tail(n: number, filter?: AuditFilter): Promise<AuditRecord[]>;
  /** Every matching record in seq order, page by page. */
  iterate(filter?: AuditFilter): AsyncGenerator<AuditRecord>;
  /** Intents with no outcome, oldest first. */
  dangling(): Promise<DanglingIntent[]>;
  /** Records for signed approvals and `audit show`, in seq order. */
  find(q: RecordQuery): Promise<AuditRecord[]>;
  /** Checkpoints in seq order. */
  checkpoints(): Promise<Checkpoint[]>;
  /** Up to `size` stored records after `afterSeq`, in seq order (verification). */
  page(afterSeq: number, size: number): Promise<StoredRecord[]>;
  /** The seq of the record with this hash. */
  seqOfHash(hash: string): Promise<number | undefined>;
  head(): Promise<{ seq: number; hash: string } | undefined>;
  count(): Promise<number>;
  close(): Promise<void>;
}

/** The records of a SQLite store (`db` open read-only or the writer's own connection). */
export function sqliteAuditSource(db: Database.Database, options: { ownsDb?: boolean } = {}): AuditSource {
  const stored = (sql: string, ...params: unknown[]): StoredRecord[] => (db.prepare(sql).raw(true).all(...params) as unknown[][]).map(rowToStored);
  return {
    kind: 'sqlite',
    query: async (filter = {}) => queryAudit(db, filter),
    tail: async (n, filter = {}) => tailAudit(db, n, filter),
    async *iterate(filter = {}) {
      let after = Number.MIN_SAFE_INTEGER;
      for (;;) {
        const rows = queryAudit(db, { ...filter, afterSeq: Math.max(after, filter.afterSeq ?? Number.MIN_SAFE_INTEGER), limit: 5000 });
        yield* rows;
        if (rows.length < 5000) return;
        after = rows[rows.length - 1]?.seq ?? after;
      }
    },
    dangling: async () => danglingIntents(db),
    async find(q) {
      const parts: string[] = [];
      const params: unknown[] = [];
      if (q.types) {
        parts.push(`type IN (${q.types.map(() => '?').join(', ')})`);
        params.push(...q.types);
      }
      if (q.callId !== undefined) {
        parts.push('call_id = ?');
        params.push(q.callId);
      }
      if (q.data) {
        parts.push('json_extract(data, ?) = ?');
        params.push(`$.${q.data.path.join('.')}`, q.data.equals);
      }
      return stored(`SELECT ${RECORD_COLUMNS} FROM audit_records${parts.length ? ` WHERE ${parts.join(' AND ')}` : ''} ORDER BY seq`, ...params).map(toAuditRecord);
    },
    checkpoints: async () => db.prepare('SELECT seq, hash, at, key_id AS keyId, signature FROM audit_checkpoints ORDER BY seq').all() as Checkpoint[],
    page: async (afterSeq, size) => stored(`SELECT ${RECORD_COLUMNS} FROM audit_records WHERE seq > ? ORDER BY seq LIMIT ?`, afterSeq, size),
    seqOfHash: async (hash) => db.prepare('SELECT seq FROM audit_records WHERE hash = ?').pluck().get(hash) as number | undefined,
    head: async () => db.prepare('SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string } | undefined,
    count: async () => db.prepare('SELECT COUNT(*) FROM audit_records').pluck().get() as number,
    async close() {
      if (options.ownsDb) db.close();
    },
  };
}

const PAGE = 5000;

/** `%…%` around the JSON text of a value, with LIKE's own characters escaped. */
function containsPattern(value: string): string {
  return `%${JSON.stringify(value).replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

function dataField(record: AuditRecord, path: readonly string[]): unknown {
  let v: unknown = record.data;
  for (const k of path) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  return v;
}

/** The records in a PostgreSQL store. `ownsPool`: `close` ends the pool. */
export function pgAuditSource(pool: pg.Pool, url: string, options: { ownsPool: boolean }): AuditSource {
  const q = async <T extends Record<string, unknown> = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> => {
    try {
      return (await pool.query<T>(sql, params)).rows;
    } catch (error) {
      throw pgError('STORE_UNAVAILABLE', url, 'cannot read the audit log', error);
    }
  };
  const raw = async (sql: string, params: unknown[] = []): Promise<StoredRecord[]> => {
    try {
      return (await pool.query({ text: sql, values: params, rowMode: 'array' })).rows.map((row: unknown[]) => rowToStored(row));
    } catch (error) {
      throw pgError('STORE_UNAVAILABLE', url, 'cannot read the audit log', error);
    }
  };
  const select = (filter: AuditFilter, order: 'ASC' | 'DESC', limit: number | undefined): Promise<StoredRecord[]> => {
    const { clause, params } = where(filter, 'postgres');
    return raw(`SELECT ${RECORD_COLUMNS} FROM audit_records${clause} ORDER BY seq ${order}${checkedLimit(limit)}`, params);
  };
  return {
    kind: 'postgres',
    query: async (filter = {}) => (await select(filter, 'ASC', filter.limit)).map(toAuditRecord),
    tail: async (n, filter = {}) => (await select(filter, 'DESC', n)).reverse().map(toAuditRecord),
    async *iterate(filter = {}) {
      let after = filter.afterSeq ?? Number.MIN_SAFE_INTEGER;
      for (;;) {
        const rows = await select({ ...filter, afterSeq: after }, 'ASC', PAGE);
        for (const r of rows) yield toAuditRecord(r);
        if (rows.length < PAGE) return;
        after = rows[rows.length - 1]?.seq ?? after;
      }
    },
    async dangling() {
      const cols = RECORD_COLUMNS.split(', ').map((c) => `i.${c}`).join(', ');
      const rows = await raw(
        `SELECT ${cols} FROM audit_records i
         WHERE i.type = 'intent' AND NOT EXISTS (SELECT 1 FROM audit_records o WHERE o.call_id = i.call_id AND o.type = 'outcome')
         ORDER BY i.seq`,
      );
      const ended = await q<{ seq: number }>(
        `SELECT i.seq FROM audit_records i WHERE i.type = 'intent'
           AND NOT EXISTS (SELECT 1 FROM audit_records o WHERE o.call_id = i.call_id AND o.type = 'outcome')
           AND EXISTS (SELECT 1 FROM audit_records e WHERE e.type = 'run.ended' AND e.run_id = i.run_id AND e.seq > i.seq)`,
      );
      const done = new Set(ended.map((r) => r.seq));
      return rows.map((r) => ({ record: toAuditRecord(r), state: done.has(r.seq) ? 'interrupted' : 'open' }));
    },
    async find(query) {
      const parts: string[] = [];
      const params: unknown[] = [];
      if (query.types) {
        params.push([...query.types]);
        parts.push(`type = ANY($${params.length}::text[])`);
      }
      if (query.callId !== undefined) {
        params.push(query.callId);
        parts.push(`call_id = $${params.length}`);
      }
      // A LIKE on the stored JSON text narrows the rows; the exact field is checked on the parsed data
      // (a hand-edited row that is not JSON must not make the whole query fail).
      if (query.data) {
        params.push(containsPattern(query.data.equals));
        parts.push(`data LIKE $${params.length}`);
      }
      const rows = (await raw(`SELECT ${RECORD_COLUMNS} FROM audit_records${parts.length ? ` WHERE ${parts.join(' AND ')}` : ''} ORDER BY seq`, params)).map(toAuditRecord);
      const field = query.data;
      return field ? rows.filter((r) => dataField(r, field.path) === field.equals) : rows;
    },
    checkpoints: () => q<Checkpoint & Record<string, unknown>>('SELECT seq, hash, at, key_id AS "keyId", signature FROM audit_checkpoints ORDER BY seq'),
    page: (afterSeq, size) => raw(`SELECT ${RECORD_COLUMNS} FROM audit_records WHERE seq > $1 ORDER BY seq LIMIT $2`, [afterSeq, size]),
    seqOfHash: async (hash) => (await q<{ seq: number }>('SELECT seq FROM audit_records WHERE hash = $1 LIMIT 1', [hash]))[0]?.seq,
    head: async () => (await q<{ seq: number; hash: string }>('SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1'))[0],
    count: async () => (await q<{ n: number }>('SELECT COUNT(*) AS n FROM audit_records'))[0]?.n ?? 0,
    async close() {
      if (options.ownsPool) await pool.end().catch(() => undefined);
    },
  };
}

/**
 * The audit records of a data folder's store, for the CLI: the SQLite file read-only, or the
 * PostgreSQL database the config (or CONTAINED_STORE) names. NOT_FOUND when there is no log yet.
 */
export async function openAuditSource(location: Pick<StateLocation, 'store' | 'storeFile'>): Promise<AuditSource> {
  if (location.store.kind === 'sqlite') return sqliteAuditSource(openAuditReader(location.store.file), { ownsDb: true });
  const url = location.store.url;
  const pool = openAuditPool(url, { max: 2 });
  const source = pgAuditSource(pool, url, { ownsPool: true });
  try {
    const [row] = (await pool.query<{ t: string | null }>("SELECT to_regclass('audit_records')::text AS t")).rows;
    if (!row?.t) throw new ContainedError('NOT_FOUND', 'the PostgreSQL store has no audit log yet (start a host on it once to create it)');
  } catch (error) {
    await source.close();
    throw pgError('STORE_UNAVAILABLE', url, 'cannot open the audit log', error);
  }
  return source;
}
