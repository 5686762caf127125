/**
 * sql — queries against a SQLite database file the operator names, limited to a table allowlist,
 * optionally read-only, with row and byte caps on results. The seed scenario is "an internal tool
 * deleted the wrong records": here a DELETE through a read-only scope, a table outside the
 * allowlist, or an ATTACH/PRAGMA never runs.
 *
 * Defends (see guard.ts for the allowlist): statements that write through `query` (the driver's
 * `Statement.readonly`, not a regex); writes through a read-only scope (refused before prepare, and
 * the connection itself is opened read-only); several statements in one string (the driver
 * refuses); SQL injection (parameters are bound, never spliced). Results stop at `maxRows` rows or
 * `maxBytes` bytes of JSON and say `truncated: true`.
 *
 * Known limit: better-sqlite3 runs synchronously and exposes no progress handler, so a pathological
 * query (e.g. an aggregate over an unbounded recursive CTE) blocks the host thread until it ends.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import { defineCapability, IN_SCOPE, method, outOfScope } from '../sdk/define.js';
import { type CapabilityInstance, createInstance, type InstanceOptions } from '../sdk/instance.js';
import { formatBytes } from '../sdk/json.js';
import { narrowerLimit } from '../sdk/narrowing.js';
import { checkProgram, refused, statementKind } from './guard.js';

/** Rows returned by one query when the scope sets no `maxRows`. */
export const DEFAULT_MAX_ROWS = 1000;
/** Bytes (JSON of the rows) returned by one query when the scope sets no `maxBytes`: 1 MiB. */
export const DEFAULT_MAX_BYTES = 1024 * 1024;
/** Longest SQL text accepted, in characters. */
export const MAX_SQL_CHARS = 100_000;
/** Milliseconds to wait for another writer's lock before failing. */
export const BUSY_TIMEOUT_MS = 5000;

const tableName = z.string().min(1).max(128);

export const sqlScopeSchema = z.strictObject({
  /** Absolute path of an existing SQLite database file. */
  file: z.string().min(1).refine((p) => path.isAbsolute(p), 'file must be an absolute host path').transform((p) => path.resolve(p)),
  /** Tables the agent may read (and write, unless readOnly). Views expand to the tables they read. */
  tables: z.array(tableName).max(256),
  readOnly: z.boolean().optional(),
  maxRows: z.number().int().positive().optional(),
  maxBytes: z.number().int().positive().optional(),
});
export type SqlScope = z.output<typeof sqlScopeSchema>;
export type SqlDeps = Record<string, never>;

const param = z.union([z.string(), z.number(), z.boolean(), z.null()]);
const params = z.union([z.array(param).max(999), z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), param)]);
const sqlArgs = z.strictObject({
  sql: z.string().min(1).max(MAX_SQL_CHARS),
  /** Values for `?` (an array) or for `:name`/`@name`/`$name` (an object without the sigil). */
  params: params.optional(),
});
type SqlArgs = z.output<typeof sqlArgs>;
const cell = z.union([z.string(), z.number(), z.null(), z.strictObject({ base64: z.string() })]);
const queryResult = z.strictObject({ columns: z.array(z.string()), rows: z.array(z.array(cell)), truncated: z.boolean() });
const executeResult = z.strictObject({ changes: z.number().int(), lastInsertRowid: z.number() });

function sqlMethod<AS extends z.ZodType, RS extends z.ZodType>(m: Parameters<typeof method<AS, RS, SqlScope, SqlDeps>>[0]) {
  return method<AS, RS, SqlScope, SqlDeps>(m);
}

/** better-sqlite3 binds numbers, strings, null; booleans become 1/0 as SQLite stores them. */
function bindable(p: SqlArgs['params']): unknown[] | Record<string, unknown> {
  if (p === undefined) return [];
  const conv = (v: z.output<typeof param>): unknown => (typeof v === 'boolean' ? (v ? 1 : 0) : v);
  return Array.isArray(p) ? p.map(conv) : Object.fromEntries(Object.entries(p).map(([k, v]) => [k, conv(v)]));
}

function toCell(v: unknown): z.input<typeof cell> {
  if (v === null || typeof v === 'string' || typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (Buffer.isBuffer(v)) return { base64: v.toString('base64') };
  return String(v);
}

/** Open, prepare and vet a statement; `f` runs it. Every failure becomes a typed error. */
function withStatement<T>(scope: SqlScope, a: SqlArgs, want: 'read' | 'write', f: (stmt: Database.Statement, args: unknown[] | Record<string, unknown>) => T): T {
  statementKind(a.sql);
  if (want === 'write' && scope.readOnly) throw new ContainedError('OUT_OF_SCOPE', 'sql: this database is read-only');
  const allow = new Set(scope.tables.map((t) => t.toLowerCase()));
  let db: Database.Database;
  try {
    db = new Database(scope.file, { readonly: scope.readOnly === true, fileMustExist: true, timeout: BUSY_TIMEOUT_MS });
  } catch (e) {
    throw new ContainedError('CAPABILITY_FAILED', 'sql: the database cannot be opened', { cause: e, data: { reason: 'OPEN' } });
  }
  try {
    // Triggers and views in the file must not call application-defined functions with side effects.
    db.pragma('trusted_schema = OFF');
    const bound = bindable(a.params);
    let stmt: Database.Statement;
    try {
      stmt = db.prepare(a.sql);
    } catch (e) {
      throw prepareError(e, allow);
    }
    if (want === 'read' && !(stmt.readonly && stmt.reader)) {
      throw new ContainedError('OUT_OF_SCOPE', 'sql: query runs only statements that read and return rows; this one writes (use execute, if granted)');
    }
    try {
      checkProgram(db, a.sql, bound, allow);
    } catch (e) {
      throw e instanceof ContainedError ? e : prepareError(e, allow);
    }
    try {
      return f(stmt, bound);
    } catch (e) {
      if (e instanceof ContainedError) throw e;
      if (e instanceof RangeError || e instanceof TypeError) throw new ContainedError('INVALID_ARGUMENT', `sql: ${e.message}`, { data: { path: ['params'] } });
      const code = (e as { code?: unknown }).code;
      throw new ContainedError('CAPABILITY_FAILED', `sql: the statement failed${typeof code === 'string' ? ` (${code})` : ''}`, {
        cause: e,
        data: { reason: typeof code === 'string' ? code : 'SQLITE' },
      });
    }
  } finally {
    db.close();
  }
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

export const sqlCapability = defineCapability<SqlScope, SqlDeps>({
  name: 'sql',
  description: 'A SQLite database, limited to the tables listed in its scope.',
  scope: sqlScopeSchema as unknown as z.ZodType<SqlScope>,
  intersect(parent, narrower) {
    if (parent.file !== narrower.file) throw new ContainedError('INVALID_SCOPE', 'sql: a narrower scope must keep the same database file');
    const allowed = new Set(parent.tables.map((t) => t.toLowerCase()));
    const scope: SqlScope = { file: parent.file, tables: [...new Set(narrower.tables.map((t) => t.toLowerCase()))].filter((t) => allowed.has(t)) };
    if (parent.readOnly || narrower.readOnly) scope.readOnly = true;
    // An unset parent limit is its default, not "unlimited": a child cannot raise it.
    const rows = narrowerLimit(parent.maxRows, narrower.maxRows, DEFAULT_MAX_ROWS);
    if (rows !== undefined) scope.maxRows = rows;
    const bytes = narrowerLimit(parent.maxBytes, narrower.maxBytes, DEFAULT_MAX_BYTES);
    if (bytes !== undefined) scope.maxBytes = bytes;
    return scope;
  },
  methodUsable: (s, m) => !s.readOnly || m.risk.readOnly,
  describeScope(s) {
    const tables = s.tables.length ? `tables ${s.tables.join(', ')}` : 'no tables';
    return `${tables}; ${s.readOnly ? 'read-only' : 'read-write'}; at most ${s.maxRows ?? DEFAULT_MAX_ROWS} rows and ${formatBytes(s.maxBytes ?? DEFAULT_MAX_BYTES)} per query; one statement per call, no PRAGMA/ATTACH/DDL`;
  },
  methods: {
    query: sqlMethod({
      description: 'Run one read-only SQL statement (SELECT/WITH/VALUES) with bound params; rows are arrays in column order.',
      args: sqlArgs,
      result: queryResult,
      risk: { readOnly: true, openWorld: false },
      precheck: (a) => void statementKind(a.sql),
      inScope: (a) => (statementKind(a.sql) === 'read' ? IN_SCOPE : outOfScope('sql: query runs read-only statements; use execute')),
      run(a, { scope }) {
        const maxRows = scope.maxRows ?? DEFAULT_MAX_ROWS;
        const maxBytes = scope.maxBytes ?? DEFAULT_MAX_BYTES;
        return withStatement(scope, a, 'read', (stmt, bound) => {
          const columns = stmt.columns().map((c) => c.name);
          stmt.raw(true);
          const rows: z.input<typeof cell>[][] = [];
          let bytes = 2;
          let truncated = false;
          const it = (Array.isArray(bound) ? stmt.iterate(...bound) : stmt.iterate(bound)) as IterableIterator<unknown[]>;
          try {
            for (const raw of it) {
              const row = raw.map(toCell);
              const size = Buffer.byteLength(JSON.stringify(row), 'utf8') + 1;
              if (rows.length >= maxRows || bytes + size > maxBytes) {
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
      },
    }),
    execute: sqlMethod({
      description: 'Run one INSERT/UPDATE/DELETE/REPLACE statement with bound params; returns rows changed.',
      args: sqlArgs,
      result: executeResult,
      risk: { readOnly: false, destructive: true, reversible: false, openWorld: false },
      precheck: (a) => void statementKind(a.sql),
      inScope: (_a, s) => (s.readOnly ? outOfScope('sql: this database is read-only') : IN_SCOPE),
      run(a, { scope }) {
        return withStatement(scope, a, 'write', (stmt, bound) => {
          const r = Array.isArray(bound) ? stmt.run(...bound) : stmt.run(bound);
          return { changes: r.changes, lastInsertRowid: Number(r.lastInsertRowid) };
        });
      },
    }),
  },
});

/**
 * Bind sql to an existing database file. Compiles the allowlist now: every listed name must be a
 * table or view of the file, so a typo fails at start-up, not mid-run. Opens read-only to check.
 */
export function createSql(scope: unknown, _deps: SqlDeps = {}, options: InstanceOptions = {}): CapabilityInstance<SqlScope, SqlDeps> {
  const instance = createInstance(sqlCapability, scope, {}, options);
  const { file, tables } = instance.scope;
  if (!existsSync(file)) throw new ContainedError('INVALID_SCOPE', 'sql: the database file does not exist');
  let names: Set<string>;
  try {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      const rows = db.prepare(`SELECT name FROM main.sqlite_schema WHERE type IN ('table', 'view')`).all() as { name: string }[];
      names = new Set(rows.map((r) => r.name.toLowerCase()));
    } finally {
      db.close();
    }
  } catch (e) {
    throw new ContainedError('INVALID_SCOPE', 'sql: the file is not a readable SQLite database', { cause: e });
  }
  const missing = tables.filter((t) => !names.has(t.toLowerCase()));
  if (missing.length > 0) throw new ContainedError('INVALID_SCOPE', `sql: no table or view named ${missing.join(', ')}`);
  return instance;
}
