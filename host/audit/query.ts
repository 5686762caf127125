/**
 * Reading the audit log: tail, filtered queries, export, and dangling intents. Read-only; works on
 * a live host's file (WAL readers never block the writer).
 *
 * Dangling intents: an `intent` record with no `outcome` for the same callId. While a host runs,
 * actions in flight are dangling for a moment; an intent written before the latest host start
 * (`audit.started` with role `host`) can never get its outcome — the host died between intent and
 * outcome, and whether the action happened is unknown — and is reported as `interrupted`.
 *
 * Filters are bound parameters, never interpolated; a `--capability` of `cap.method` matches both.
 */
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { ContainedError } from '../../runtime/errors.js';
import { type AuditRecord, RECORD_COLUMNS, rowToStored, toAuditRecord } from './record.js';

export interface AuditFilter {
  runId?: string;
  subject?: string;
  /** `notes` or `notes.write`. */
  capability?: string;
  type?: string;
  /** Epoch ms, inclusive. */
  since?: number;
  /** Epoch ms, exclusive. */
  until?: number;
  /** Only records after this seq. */
  afterSeq?: number;
  limit?: number;
}

export interface DanglingIntent {
  record: AuditRecord;
  /** `interrupted`: the host restarted since (no outcome can follow); `open`: in flight, or the host died and has not restarted. */
  state: 'interrupted' | 'open';
}

/** Open the store file read-only for audit reading; INVALID_ARGUMENT/NOT_FOUND when there is none. */
export function openAuditReader(file: string): Database.Database {
  if (!existsSync(file)) throw new ContainedError('NOT_FOUND', `no host store at ${file} (pass --data-dir or --config)`);
  const db = new Database(file, { readonly: true, fileMustExist: true });
  db.pragma('trusted_schema = OFF');
  const has = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_records'").get();
  if (!has) {
    db.close();
    throw new ContainedError('NOT_FOUND', `${file} has no audit log yet (start the host once to create it)`);
  }
  return db;
}

/** The WHERE clause of a filter, with bound parameters (`?` for SQLite, `$n` for PostgreSQL). */
export function where(filter: AuditFilter, style: 'sqlite' | 'postgres' = 'sqlite'): { clause: string; params: unknown[] } {
  const parts: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, ...values: unknown[]): void => {
    let n = params.length;
    parts.push(style === 'sqlite' ? sql : sql.replace(/\?/g, () => `$${++n}`));
    params.push(...values);
  };
  if (filter.runId !== undefined) add('run_id = ?', filter.runId);
  if (filter.subject !== undefined) add('subject = ?', filter.subject);
  if (filter.capability !== undefined) {
    const dot = filter.capability.indexOf('.');
    if (dot < 0) add('capability = ?', filter.capability);
    else add('capability = ? AND method = ?', filter.capability.slice(0, dot), filter.capability.slice(dot + 1));
  }
  if (filter.type !== undefined) add('type = ?', filter.type);
  if (filter.since !== undefined) add('at >= ?', filter.since);
  if (filter.until !== undefined) add('at < ?', filter.until);
  if (filter.afterSeq !== undefined) add('seq > ?', filter.afterSeq);
  return { clause: parts.length > 0 ? ` WHERE ${parts.join(' AND ')}` : '', params };
}

export function checkedLimit(limit: number | undefined): string {
  if (limit === undefined) return '';
  if (!Number.isSafeInteger(limit) || limit < 0) throw new ContainedError('INVALID_ARGUMENT', `limit must be a whole number >= 0 (got ${String(limit)})`);
  return ` LIMIT ${limit}`;
}

/** Matching records in seq order (the first `limit`). */
export function queryAudit(db: Database.Database, filter: AuditFilter = {}): AuditRecord[] {
  const { clause, params } = where(filter);
  const rows = db.prepare(`SELECT ${RECORD_COLUMNS} FROM audit_records${clause} ORDER BY seq${checkedLimit(filter.limit)}`).raw(true).all(...params) as unknown[][];
  return rows.map((row) => toAuditRecord(rowToStored(row)));
}

/** The last `n` matching records, oldest first. */
export function tailAudit(db: Database.Database, n: number, filter: AuditFilter = {}): AuditRecord[] {
  const { clause, params } = where(filter);
  const rows = db.prepare(`SELECT ${RECORD_COLUMNS} FROM audit_records${clause} ORDER BY seq DESC${checkedLimit(n)}`).raw(true).all(...params) as unknown[][];
  return rows.reverse().map((row) => toAuditRecord(rowToStored(row)));
}

/** Every matching record in seq order, one at a time (export of any size in constant memory). */
export function* iterateAudit(db: Database.Database, filter: AuditFilter = {}): Generator<AuditRecord> {
  const { clause, params } = where(filter);
  for (const row of db.prepare(`SELECT ${RECORD_COLUMNS} FROM audit_records${clause} ORDER BY seq`).raw(true).iterate(...params) as IterableIterator<unknown[]>) {
    yield toAuditRecord(rowToStored(row));
  }
}

/** Intents with no outcome, oldest first. */
export function danglingIntents(db: Database.Database): DanglingIntent[] {
  const rows = db
    .prepare(
      `SELECT ${RECORD_COLUMNS.split(', ').map((c) => `i.${c}`).join(', ')} FROM audit_records i
       WHERE i.type = 'intent' AND NOT EXISTS (SELECT 1 FROM audit_records o WHERE o.call_id = i.call_id AND o.type = 'outcome')
       ORDER BY i.seq`,
    )
    .raw(true)
    .all() as unknown[][];
  const lastStart = (db
    .prepare("SELECT MAX(seq) FROM audit_records WHERE type = 'audit.started' AND json_extract(data, '$.role') = 'host'")
    .pluck()
    .get() as number | null) ?? 0;
  return rows.map((row) => {
    const record = toAuditRecord(rowToStored(row));
    return { record, state: record.seq < lastStart ? 'interrupted' : 'open' };
  });
}
