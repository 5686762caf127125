/**
 * sql — queries against a SQLite database file the operator names, limited to a table allowlist,
 * optionally read-only, with row and byte caps on results and a deadline per statement. The seed
 * scenario is "an internal tool deleted the wrong records": here a DELETE through a read-only scope,
 * a table outside the allowlist, or an ATTACH/PRAGMA never runs.
 *
 * Defends (statement.ts runs a call, guard.ts holds the allowlist): statements that write through
 * `query`; writes through a read-only scope; several statements in one string; SQL injection
 * (parameters are bound, never spliced). Results stop at `maxRows` rows or `maxBytes` bytes of JSON
 * and say `truncated: true`.
 *
 * Every statement runs in a query process (engine.ts), never on the host's thread: a statement that
 * runs past the scope's `timeoutMs`, or whose run ends, is killed with its process (`SQL_LIMIT`,
 * `CANCELLED`), and one that grows past the process's memory limit dies alone (`SQL_LIMIT`).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import { defineCapability, IN_SCOPE, method, outOfScope } from '../sdk/define.js';
import { definePlugin, NO_HOST_OPTIONS, scopeWithDataDir } from '../plugin.js';
import { type CapabilityInstance, createInstance, type InstanceOptions } from '../sdk/instance.js';
import { formatBytes } from '../sdk/json.js';
import { narrowerLimit } from '../sdk/narrowing.js';
import { sameHostFile } from '../sdk/overlap.js';
import { createSqlEngine, type SqlEngine } from './engine.js';
import { statementKind } from './guard.js';
import { sqlMethodStaging, sqlResourceStaging } from './staging.js';
import type { ExecuteResult, QueryResult, SqlJob } from './statement.js';

export { SQL_LOCK_WAIT_MS } from './statement.js';
export { createSqlEngine, SQL_ENGINE_DEFAULTS, type SqlEngine, type SqlEngineOptions } from './engine.js';

/** Rows returned by one query when the scope sets no `maxRows`. */
export const DEFAULT_MAX_ROWS = 1000;
/** Bytes (JSON of the rows) returned by one query when the scope sets no `maxBytes`: 1 MiB. */
export const DEFAULT_MAX_BYTES = 1024 * 1024;
/** Milliseconds one statement may run when the scope sets no `timeoutMs`. */
export const DEFAULT_TIMEOUT_MS = 5000;
/** The largest `timeoutMs` a scope may set: 5 minutes. */
export const MAX_TIMEOUT_MS = 300_000;
/** Longest SQL text accepted, in characters. */
export const MAX_SQL_CHARS = 100_000;

const tableName = z.string().min(1).max(128);

export const sqlScopeSchema = z.strictObject({
  /** Absolute path of an existing SQLite database file. */
  file: z.string().min(1).refine((p) => path.isAbsolute(p), 'file must be an absolute host path').transform((p) => path.resolve(p)),
  /** Tables the agent may read (and write, unless readOnly). Views expand to the tables they read. */
  tables: z.array(tableName).max(256),
  readOnly: z.boolean().optional(),
  maxRows: z.number().int().positive().optional(),
  maxBytes: z.number().int().positive().optional(),
  /** Milliseconds one statement may run before it is stopped (`SQL_LIMIT`); default 5000. */
  timeoutMs: z.number().int().positive().max(MAX_TIMEOUT_MS).optional(),
});
export type SqlScope = z.output<typeof sqlScopeSchema>;
/** `engine`: the query processes that run statements; default, one pool shared by the process. */
export type SqlDeps = { engine?: SqlEngine };

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

/**
 * The engine of instances created without one: one pool of query processes per host process, the
 * way `http.globalAgent` is one connection pool. Its processes exit when idle and never keep the
 * host alive, so it needs no closing.
 */
let sharedEngine: SqlEngine | undefined;
function engineOf(deps: SqlDeps): SqlEngine {
  return deps.engine ?? (sharedEngine ??= createSqlEngine());
}

/** Hand one call to a query process, under the scope's deadline and the run's signal. */
async function runInEngine(method: SqlJob['method'], a: SqlArgs, ctx: { scope: SqlScope; deps: SqlDeps; runId: string; signal: AbortSignal }, capture = false): Promise<unknown> {
  const { scope } = ctx;
  statementKind(a.sql);
  if (method === 'execute' && scope.readOnly) throw new ContainedError('OUT_OF_SCOPE', 'sql: this database is read-only');
  const job: SqlJob = {
    method,
    file: scope.file,
    readOnly: scope.readOnly === true,
    tables: [...scope.tables],
    sql: a.sql,
    ...(a.params === undefined ? {} : { params: a.params }),
    maxRows: scope.maxRows ?? DEFAULT_MAX_ROWS,
    maxBytes: scope.maxBytes ?? DEFAULT_MAX_BYTES,
    ...(capture ? { capture: true } : {}),
  };
  return engineOf(ctx.deps).run(job, { runId: ctx.runId, signal: ctx.signal, timeoutMs: scope.timeoutMs ?? DEFAULT_TIMEOUT_MS });
}

const staged = sqlMethodStaging(runInEngine as Parameters<typeof sqlMethodStaging>[0]);

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
    const timeoutMs = narrowerLimit(parent.timeoutMs, narrower.timeoutMs, DEFAULT_TIMEOUT_MS);
    if (timeoutMs !== undefined) scope.timeoutMs = timeoutMs;
    return scope;
  },
  methodUsable: (s, m) => !s.readOnly || m.risk.readOnly,
  staging: sqlResourceStaging<SqlScope, SqlDeps>(),
  // The same database file and a table in common (views expand to the tables they read, and those must be listed: guard.ts).
  overlaps: (a, b) => a.tables.some((t) => b.tables.some((u) => t.toLowerCase() === u.toLowerCase())) && sameHostFile(a.file, b.file),
  describeScope(s) {
    const tables = s.tables.length ? `tables ${s.tables.join(', ')}` : 'no tables';
    return `${tables}; ${s.readOnly ? 'read-only' : 'read-write'}; at most ${s.maxRows ?? DEFAULT_MAX_ROWS} rows and ${formatBytes(s.maxBytes ?? DEFAULT_MAX_BYTES)} per query; ${s.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms per statement; one statement per call, no PRAGMA/ATTACH/DDL`;
  },
  methods: {
    query: sqlMethod({
      description: 'Run one read-only SQL statement (SELECT/WITH/VALUES) with bound params; rows are arrays in column order.',
      args: sqlArgs,
      result: queryResult,
      risk: { readOnly: true, openWorld: false },
      precheck: (a) => void statementKind(a.sql),
      inScope: (a) => (statementKind(a.sql) === 'read' ? IN_SCOPE : outOfScope('sql: query runs read-only statements; use execute')),
      run: (a, ctx) => runInEngine('query', a, ctx) as Promise<QueryResult>,
      staging: staged.query,
    }),
    execute: sqlMethod({
      description: 'Run one INSERT/UPDATE/DELETE/REPLACE statement with bound params; returns rows changed.',
      args: sqlArgs,
      result: executeResult,
      risk: { readOnly: false, destructive: true, reversible: false, openWorld: false },
      precheck: (a) => void statementKind(a.sql),
      inScope: (_a, s) => (s.readOnly ? outOfScope('sql: this database is read-only') : IN_SCOPE),
      run: (a, ctx) => runInEngine('execute', a, ctx) as Promise<ExecuteResult>,
      staging: staged.execute,
    }),
  },
});

/**
 * Bind sql to an existing database file. Compiles the allowlist now: every listed name must be a
 * table or view of the file, so a typo fails at start-up, not mid-run. Opens read-only to check.
 */
export function createSql(scope: unknown, deps: SqlDeps = {}, options: InstanceOptions = {}): CapabilityInstance<SqlScope, SqlDeps> {
  const instance = createInstance(sqlCapability, scope, deps.engine ? { engine: deps.engine } : {}, options);
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

/** The registry's entry: no host options; a relative `file` is relative to the host's data folder. */
export const sqlPlugin = definePlugin({
  definition: sqlCapability,
  hostOptions: NO_HOST_OPTIONS,
  create: (scope, context, options) => createSql(scopeWithDataDir(scope, 'file', context.dataDir), {}, options),
});
