/**
 * One sql call, start to end: open the database, vet the statement (guard.ts), run it, and read its
 * rows within the caps. This runs inside a query process (query-process.ts), never on the host's
 * thread: better-sqlite3 is synchronous and SQLite cannot be interrupted through it, so a statement
 * that runs for ever, or builds a value of hundreds of megabytes, must happen where it can be
 * killed (engine.ts) without touching the host.
 *
 * Defends: statements that write through `query` (the driver's `Statement.readonly`, not a regex);
 * writes through a read-only scope (refused before prepare, and the connection itself is opened
 * read-only); several statements in one string (the driver refuses); SQL injection (parameters are
 * bound, never spliced); the table allowlist (guard.ts). Rows stop at `maxRows` or `maxBytes` bytes
 * of JSON (`truncated: true`); a cell is measured by a lower bound of its JSON size before it is
 * encoded, so a value that cannot fit is never base64-encoded or stringified.
 *
 * Fails with typed errors only: SQL_REFUSED, OUT_OF_SCOPE, INVALID_ARGUMENT, SQL_LIMIT (SQLite's
 * own length or memory limit), CAPABILITY_FAILED (`data.reason` the SQLite code).
 */
import Database from 'better-sqlite3';
import { ContainedError } from '../../runtime/errors.js';
import { checkProgram, refused, statementKind } from './guard.js';

/** Milliseconds to wait for another writer's lock before failing. */
export const SQL_LOCK_WAIT_MS = 5000;

/** Everything the query process needs for one call: the (attenuated) scope's facts and the argument. */
export interface SqlJob {
  method: 'query' | 'execute';
  file: string;
  readOnly: boolean;
  tables: string[];
  sql: string;
  /** Already validated: JSON scalars only (booleans included; they are stored as 1/0). */
  params?: Array<string | number | boolean | null> | Record<string, string | number | boolean | null>;
  maxRows: number;
  maxBytes: number;
  /**
   * Staged runs only (the file is then the run's scratch copy): record every row the statement
   * changes, with its values before and after, through temporary triggers (staging.ts).
   */
  capture?: boolean;
}

export type Cell = string | number | null | { base64: string };
export interface QueryResult {
  columns: string[];
  rows: Cell[][];
  truncated: boolean;
}
export interface ExecuteResult {
  changes: number;
  lastInsertRowid: number;
  /** With `capture`: each row changed, as `{ hex }` for BLOB cells (null before an insert, after a delete). */
  rows?: RowChange[];
}

/** One row a captured statement changed. */
export interface RowChange {
  table: string;
  rowid: number;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
}

const CHANGES = 'temp.__contained_changes';

/** A SQL string literal. */
function lit(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

/** A row as JSON text, BLOB cells as `{"hex": …}` (json_object cannot hold a BLOB). */
function rowJson(alias: 'OLD' | 'NEW', columns: readonly string[]): string {
  const cells = columns.map((c) => {
    const ref = `${alias}."${c.replaceAll('"', '""')}"`;
    return `${lit(c)}, CASE typeof(${ref}) WHEN 'blob' THEN json_object('hex', hex(${ref})) ELSE ${ref} END`;
  });
  return `json_object(${cells.join(', ')})`;
}

/**
 * Temporary triggers on each allowed rowid table recording the rows a statement changes. Created
 * after the statement was vetted (checkProgram saw only the agent's statement) on a connection to a
 * scratch copy; they live and die with the connection.
 */
function installCapture(db: Database.Database, tables: ReadonlySet<string>): void {
  db.exec(`CREATE TEMP TABLE __contained_changes (seq INTEGER PRIMARY KEY, tbl TEXT, rid INTEGER, before TEXT, after TEXT)`);
  const rows = db.prepare(`SELECT name FROM main.sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`).all() as { name: string }[];
  rows.forEach(({ name }, i) => {
    if (!tables.has(name.toLowerCase())) return;
    const columns = (db.prepare(`SELECT name FROM pragma_table_info(?)`).all(name) as { name: string }[]).map((c) => c.name);
    const t = `main."${name.replaceAll('"', '""')}"`;
    const tbl = lit(name);
    db.exec(`CREATE TEMP TRIGGER __contained_i${i} AFTER INSERT ON ${t} BEGIN INSERT INTO ${CHANGES} (tbl, rid, before, after) VALUES (${tbl}, NEW.rowid, NULL, ${rowJson('NEW', columns)}); END`);
    db.exec(`CREATE TEMP TRIGGER __contained_d${i} AFTER DELETE ON ${t} BEGIN INSERT INTO ${CHANGES} (tbl, rid, before, after) VALUES (${tbl}, OLD.rowid, ${rowJson('OLD', columns)}, NULL); END`);
    // An update that moves a row to another rowid is a delete and an insert.
    db.exec(`CREATE TEMP TRIGGER __contained_u${i} AFTER UPDATE ON ${t} BEGIN
      INSERT INTO ${CHANGES} (tbl, rid, before, after) SELECT ${tbl}, OLD.rowid, ${rowJson('OLD', columns)}, ${rowJson('NEW', columns)} WHERE OLD.rowid = NEW.rowid;
      INSERT INTO ${CHANGES} (tbl, rid, before, after) SELECT ${tbl}, OLD.rowid, ${rowJson('OLD', columns)}, NULL WHERE OLD.rowid <> NEW.rowid;
      INSERT INTO ${CHANGES} (tbl, rid, before, after) SELECT ${tbl}, NEW.rowid, NULL, ${rowJson('NEW', columns)} WHERE OLD.rowid <> NEW.rowid;
    END`);
  });
}

/** The captured changes, one per row: its first before and its last after. */
function capturedRows(db: Database.Database): RowChange[] {
  const out = new Map<string, RowChange>();
  for (const r of db.prepare(`SELECT tbl, rid, before, after FROM ${CHANGES} ORDER BY seq`).all() as Array<{ tbl: string; rid: number; before: string | null; after: string | null }>) {
    const key = `${r.tbl}\0${r.rid}`;
    const parse = (j: string | null): Record<string, unknown> | null => (j === null ? null : (JSON.parse(j) as Record<string, unknown>));
    const seen = out.get(key);
    if (seen) seen.after = parse(r.after);
    else out.set(key, { table: r.tbl, rowid: Number(r.rid), before: parse(r.before), after: parse(r.after) });
  }
  return [...out.values()];
}

type Bound = unknown[] | Record<string, unknown>;

/** better-sqlite3 binds numbers, strings, null; booleans become 1/0 as SQLite stores them. */
function bindable(p: SqlJob['params']): Bound {
  if (p === undefined) return [];
  const conv = (v: string | number | boolean | null): unknown => (typeof v === 'boolean' ? (v ? 1 : 0) : v);
  return Array.isArray(p) ? p.map(conv) : Object.fromEntries(Object.entries(p).map(([k, v]) => [k, conv(v)]));
}

function toCell(v: unknown): Cell {
  if (v === null || typeof v === 'string' || typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (Buffer.isBuffer(v)) return { base64: v.toString('base64') };
  return String(v);
}

/**
 * A lower bound of the JSON bytes of a raw row (`[a,b]` plus its newline), computed without
 * encoding anything: a string's JSON is at least its UTF-8 bytes plus two quotes, a BLOB's at least
 * its base64 plus `{"base64":""}`. A row whose bound does not fit would not fit encoded either.
 */
function rowBytesAtLeast(raw: readonly unknown[]): number {
  let n = 2 + Math.max(0, raw.length - 1) + 1;
  for (const v of raw) {
    if (typeof v === 'string') n += v.length + 2; // UTF-16 units ≤ UTF-8 bytes
    else if (Buffer.isBuffer(v)) n += 4 * Math.ceil(v.length / 3) + 13;
    else n += 1;
  }
  return n;
}

/** Run one call. Throws ContainedError only. */
export function runJob(job: SqlJob): QueryResult | ExecuteResult {
  return job.method === 'query' ? runQuery(job) : runExecute(job);
}

function runQuery(job: SqlJob): QueryResult {
  return withStatement(job, 'read', (stmt, bound) => {
    const columns = stmt.columns().map((c) => c.name);
    stmt.raw(true);
    const rows: Cell[][] = [];
    let bytes = 2;
    let truncated = false;
    const it = (Array.isArray(bound) ? stmt.iterate(...bound) : stmt.iterate(bound)) as IterableIterator<unknown[]>;
    try {
      for (const raw of it) {
        if (rows.length >= job.maxRows || bytes + rowBytesAtLeast(raw) > job.maxBytes) {
          truncated = true;
          break;
        }
        const row = raw.map(toCell);
        const size = Buffer.byteLength(JSON.stringify(row), 'utf8') + 1;
        if (bytes + size > job.maxBytes) {
          truncated = true;
          break;
        }
        rows.push(row);
        bytes += size;
      }
    } finally {
      it.return?.();
    }
    return { columns, rows, truncated };
  });
}

function runExecute(job: SqlJob): ExecuteResult {
  return withStatement(job, 'write', (stmt, bound, db) => {
    if (job.capture) installCapture(db, new Set(job.tables.map((t) => t.toLowerCase())));
    const r = Array.isArray(bound) ? stmt.run(...bound) : stmt.run(bound);
    const result: ExecuteResult = { changes: r.changes, lastInsertRowid: Number(r.lastInsertRowid) };
    if (job.capture) result.rows = capturedRows(db);
    return result;
  });
}

/** Open, prepare and vet a statement; `f` runs it. Every failure becomes a typed error. */
function withStatement<T>(job: SqlJob, want: 'read' | 'write', f: (stmt: Database.Statement, args: Bound, db: Database.Database) => T): T {
  statementKind(job.sql);
  if (want === 'write' && job.readOnly) throw new ContainedError('OUT_OF_SCOPE', 'sql: this database is read-only');
  const allow = new Set(job.tables.map((t) => t.toLowerCase()));
  let db: Database.Database;
  try {
    db = new Database(job.file, { readonly: job.readOnly, fileMustExist: true, timeout: SQL_LOCK_WAIT_MS });
  } catch (e) {
    throw new ContainedError('CAPABILITY_FAILED', 'sql: the database cannot be opened', { cause: e, data: { reason: 'OPEN' } });
  }
  try {
    // Triggers and views in the file must not call application-defined functions with side effects.
    db.pragma('trusted_schema = OFF');
    const bound = bindable(job.params);
    let stmt: Database.Statement;
    try {
      stmt = db.prepare(job.sql);
    } catch (e) {
      throw prepareError(e, allow);
    }
    if (want === 'read' && !(stmt.readonly && stmt.reader)) {
      throw new ContainedError('OUT_OF_SCOPE', 'sql: query runs only statements that read and return rows; this one writes (use execute, if granted)');
    }
    try {
      checkProgram(db, job.sql, bound, allow);
    } catch (e) {
      throw e instanceof ContainedError ? e : prepareError(e, allow);
    }
    try {
      return f(stmt, bound, db);
    } catch (e) {
      throw runError(e);
    }
  } finally {
    db.close();
  }
}

/** A failure while the statement ran. SQLite's own limits are SQL_LIMIT; the rest keeps its code. */
function runError(e: unknown): ContainedError {
  if (e instanceof ContainedError) return e;
  const code = (e as { code?: unknown }).code;
  if (code === 'SQLITE_TOOBIG') {
    return new ContainedError('SQL_LIMIT', 'sql: the statement built a string or BLOB longer than SQLite allows', { cause: e, data: { limit: 'length' } });
  }
  if (code === 'SQLITE_NOMEM') {
    return new ContainedError('SQL_LIMIT', 'sql: the statement needed more memory than it may use', { cause: e, data: { limit: 'memory' } });
  }
  if (e instanceof RangeError || e instanceof TypeError) return new ContainedError('INVALID_ARGUMENT', `sql: ${e.message}`, { data: { path: ['params'] } });
  return new ContainedError('CAPABILITY_FAILED', `sql: the statement failed${typeof code === 'string' ? ` (${code})` : ''}`, {
    cause: e,
    data: { reason: typeof code === 'string' ? code : 'SQLITE' },
  });
}

/**
 * A statement that does not compile. "no such table" for a name outside the allowlist reads the
 * same as an existing table outside it, so the error does not reveal which tables exist.
 */
function prepareError(e: unknown, allow: ReadonlySet<string>): ContainedError {
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof RangeError || e instanceof TypeError) {
    if (message.includes('more than one statement')) return refused('one statement per call');
    // The driver's binding errors: too few/many values, a named parameter missing.
    return new ContainedError('INVALID_ARGUMENT', `sql: ${message}`, { data: { path: ['params'] } });
  }
  const missing = /^no such table: (?:main\.)?(.+)$/.exec(message);
  if (missing?.[1] !== undefined && !allow.has(missing[1].toLowerCase())) {
    return new ContainedError('OUT_OF_SCOPE', `sql: table ${JSON.stringify(missing[1].toLowerCase())} is not in the allowlist`, {
      data: { tables: [missing[1].toLowerCase()] },
    });
  }
  // SQLite's compile messages ("near X: syntax error", "no such column") carry no host detail.
  return new ContainedError('INVALID_ARGUMENT', `sql: ${message}`, { data: { path: ['sql'] } });
}
