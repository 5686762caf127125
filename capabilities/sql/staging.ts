/**
 * sql in a staged run. The run's first `execute` takes a scratch copy of the database (SQLite's
 * online backup: same pages, same rowids) and from then on the run's statements — `execute` and
 * `query` alike — run against the copy, in the same query processes and under the same guard as
 * ever; the copy is removed when the run ends, so nothing the run wrote survives it unless the
 * changeset is approved (a transaction rolled back at the end of the run, in effect). Each
 * `execute` records its statement, its parameters and every row it changed, before and after
 * (captured by temporary triggers on the copy, statement.ts).
 *
 * Resources are rows, `<table>#<rowid>`; a row's fingerprint is `absent` or the sha256 of its JSON.
 * The commit writes exactly the recorded after-images (never re-runs the statement, which could
 * match other rows by then), after checking that every row is still as it was when staged.
 */
import { randomBytes } from 'node:crypto';
import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { ContainedError } from '../../runtime/errors.js';
import type { CapabilityStaging, MethodStaging, StageContext } from '../sdk/staging.js';
import type { RowChange } from './statement.js';
import { SQL_LOCK_WAIT_MS } from './statement.js';

type Scope = { file: string; tables: string[] };
type Args = { sql: string; params?: unknown };
type Runner = (method: 'query' | 'execute', a: Args, ctx: { scope: Scope; deps: unknown; runId: string; signal: AbortSignal }, capture?: boolean) => Promise<unknown>;
/** A row's state: its cells (BLOBs as `{ hex }`), or null when it does not exist. */
type RowImage = { values: Record<string, unknown> } | null;

function fingerprint(values: Record<string, unknown> | null): string {
  return values === null ? 'absent' : `sha256:${createHash('sha256').update(JSON.stringify(values), 'utf8').digest('hex')}`;
}

/** The run's scratch copy of the database, made on first use. */
function scratch(ctx: StageContext<Scope>): Promise<string> {
  const view = ctx.view<{ copy?: Promise<string> }>(() => ({}));
  view.copy ??= (async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'contained-staged-sql-'));
    ctx.defer(() => fsp.rm(dir, { recursive: true, force: true }));
    const copy = path.join(dir, `${randomBytes(6).toString('hex')}.db`);
    const db = new Database(ctx.scope.file, { readonly: true, fileMustExist: true, timeout: SQL_LOCK_WAIT_MS });
    try {
      await db.backup(copy);
    } catch (e) {
      throw new ContainedError('CAPABILITY_FAILED', 'sql: the database could not be copied for the staged run', { cause: e });
    } finally {
      db.close();
    }
    return copy;
  })();
  return view.copy;
}

function clip(sql: string): string {
  const one = sql.replace(/\s+/g, ' ').trim();
  return one.length > 80 ? `${one.slice(0, 77)}...` : one;
}

/** The stage hooks of `query` and `execute`, given the definition's way of running a call in a query process. */
export function sqlMethodStaging(run: Runner): { query: MethodStaging<Scope>; execute: MethodStaging<Scope> } {
  return {
    query: {
      async stage(a: Args, ctx) {
        // Before the run's first write, the real database; after it, the copy that holds the run's writes.
        const view = ctx.view<{ copy?: Promise<string> }>(() => ({}));
        if (view.copy === undefined) return ctx.real('query', a);
        return run('query', a, { ...ctx, scope: { ...ctx.scope, file: await view.copy } });
      },
    },
    execute: {
      async stage(a: Args, ctx) {
        const file = await scratch(ctx);
        const r = (await run('execute', a, { ...ctx, scope: { ...ctx.scope, file } }, true)) as { changes: number; lastInsertRowid: number; rows?: RowChange[] };
        const rows = r.rows ?? [];
        const resources = rows.map((row) => `${row.table}#${row.rowid}`);
        await ctx.record({
          summary: `${clip(a.sql)} → ${rows.length} row${rows.length === 1 ? '' : 's'} changed`,
          detail: { sql: a.sql, params: a.params ?? null, changes: r.changes, rows },
          resources,
          preconditions: Object.fromEntries(rows.map((row, i) => [resources[i], fingerprint(row.before)])),
          after: Object.fromEntries(rows.map((row, i) => [resources[i], row.after === null ? null : { values: row.after }])),
        });
        return { changes: r.changes, lastInsertRowid: r.lastInsertRowid };
      },
    },
  };
}

/** `<table>#<rowid>` → its parts, the table checked against the scope (OUT_OF_SCOPE otherwise). */
function rowOf(resource: string, scope: Scope): { table: string; rowid: number } {
  const at = resource.lastIndexOf('#');
  const table = resource.slice(0, at);
  const rowid = Number(resource.slice(at + 1));
  if (at < 1 || !Number.isSafeInteger(rowid) || !scope.tables.some((t) => t.toLowerCase() === table.toLowerCase())) {
    throw new ContainedError('OUT_OF_SCOPE', `sql: ${JSON.stringify(resource)} is not a row of an allowed table`);
  }
  return { table, rowid };
}

const quoteId = (name: string): string => `"${name.replaceAll('"', '""')}"`;

function columnsOf(db: Database.Database, table: string): string[] {
  return (db.prepare(`SELECT name FROM pragma_table_info(?)`).all(table) as { name: string }[]).map((c) => c.name);
}

/** A real row, as the capture triggers write it (same cells, same order). */
function readRow(scope: Scope, resource: string): Record<string, unknown> | null {
  const { table, rowid } = rowOf(resource, scope);
  const db = new Database(scope.file, { readonly: true, fileMustExist: true, timeout: SQL_LOCK_WAIT_MS });
  try {
    const cells = columnsOf(db, table).map((c) => `'${c.replaceAll("'", "''")}', CASE typeof(${quoteId(c)}) WHEN 'blob' THEN json_object('hex', hex(${quoteId(c)})) ELSE ${quoteId(c)} END`);
    const row = db.prepare(`SELECT json_object(${cells.join(', ')}) AS j FROM main.${quoteId(table)} WHERE rowid = ?`).get(rowid) as { j: string } | undefined;
    return row === undefined ? null : (JSON.parse(row.j) as Record<string, unknown>);
  } finally {
    db.close();
  }
}

/** sql's resource hooks: rows of the scope's tables in the real database file. */
export function sqlResourceStaging<S extends Scope, D>(): CapabilityStaging<S, D> {
  return {
    observe: async (resource, { scope }) => fingerprint(readRow(scope, resource)),
    snapshot: async (resource, { scope }): Promise<RowImage> => {
      const values = readRow(scope, resource);
      return values === null ? null : { values };
    },
    restore: (resource, image, { scope }) => writeRows(scope, [[resource, image]]),
    // Every row of a commit, a rollback or an undo in one transaction: all of them or none.
    restoreAll: (entries, { scope }) => writeRows(scope, entries),
  };
}

/** Put rows to the given images (null: absent) in one immediate transaction. */
async function writeRows(scope: Scope, entries: ReadonlyArray<readonly [string, unknown]>): Promise<void> {
  const rows = entries.map(([resource, image]) => ({ ...rowOf(resource, scope), want: image as RowImage }));
  const db = new Database(scope.file, { fileMustExist: true, timeout: SQL_LOCK_WAIT_MS });
  try {
    const cell = (v: unknown): unknown => (typeof v === 'object' && v !== null && typeof (v as { hex?: unknown }).hex === 'string' ? Buffer.from((v as { hex: string }).hex, 'hex') : v);
    const write = db.transaction(() => {
      for (const { table, rowid, want } of rows) {
        const t = `main.${quoteId(table)}`;
        if (want === null) {
          db.prepare(`DELETE FROM ${t} WHERE rowid = ?`).run(rowid);
          continue;
        }
        const names = Object.keys(want.values);
        db.prepare(`INSERT OR REPLACE INTO ${t} (rowid, ${names.map(quoteId).join(', ')}) VALUES (?, ${names.map(() => '?').join(', ')})`).run(rowid, ...names.map((n) => cell(want.values[n])));
      }
    });
    write.immediate();
  } finally {
    db.close();
  }
}
