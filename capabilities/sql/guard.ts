/**
 * What a SQL statement may do, decided from SQLite's own compiled program rather than from the
 * SQL text. Defends the table allowlist against every way SQL can reach a table: joins, subqueries,
 * CTEs, views (expanded in the bytecode), triggers and foreign-key actions (compiled as
 * sub-programs, which `EXPLAIN` lists), `DELETE` without `WHERE` (an `OP_Clear`, not an open).
 *
 * Two layers:
 * 1. `statementKind`: the first keyword, found by a tokenizer that skips whitespace and comments
 *    exactly as SQLite does. Only SELECT/WITH/VALUES and INSERT/UPDATE/DELETE/REPLACE pass. This
 *    must happen before `prepare`, because preparing a PRAGMA already changes the connection
 *    (`PRAGMA writable_schema=1` takes effect at compile time and reports itself read-only).
 * 2. `checkProgram`: every opcode of `EXPLAIN <sql>` that names a b-tree (OpenRead, OpenWrite,
 *    ReopenIdx, Clear, TableLock) must name the main database and a root page that belongs to an
 *    allowlisted table or one of its indexes; schema, attach, vacuum and virtual-table opcodes are
 *    refused outright. An unknown root page is refused (fail closed).
 *
 * Fails with `SQL_REFUSED` (never allowed) or `OUT_OF_SCOPE` (a table outside the allowlist).
 */
import type Database from 'better-sqlite3';
import { ContainedError } from '../../runtime/errors.js';

const READ_KEYWORDS = new Set(['SELECT', 'WITH', 'VALUES']);
const WRITE_KEYWORDS = new Set(['INSERT', 'UPDATE', 'DELETE', 'REPLACE']);

/** Opcodes that touch schema, other databases, the connection, or virtual tables: never allowed. */
const REFUSED_OPCODES = new Set([
  'Vacuum', 'IncrVacuum', 'ParseSchema', 'CreateBtree', 'Destroy', 'DropTable', 'DropIndex', 'DropTrigger',
  'SqlExec', 'JournalMode', 'LoadAnalysis', 'SetCookie', 'IntegrityCk', 'Checkpoint', 'Expire', 'Pagecount',
  'MaxPgcnt', 'VBegin', 'VCreate', 'VDestroy', 'VOpen', 'VCheck', 'VInitIn', 'VFilter', 'VColumn', 'VNext',
  'VRename', 'VUpdate',
]);
/** Functions that change the connection; ATTACH/DETACH compile to calls of these. */
const REFUSED_FUNCTIONS = ['sqlite_attach', 'sqlite_detach', 'load_extension'];

export function refused(message: string): ContainedError {
  return new ContainedError('SQL_REFUSED', `sql: ${message}`);
}

/**
 * The first keyword of a statement, upper-cased, after whitespace and `--`/`/* *\/` comments as
 * SQLite tokenizes them; `null` when the statement starts with anything else (`;`, a quote…).
 */
export function leadingKeyword(sql: string): string | null {
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === 0x20 || (c >= 0x09 && c <= 0x0d)) {
      i++;
    } else if (c === 0x2d && sql.charCodeAt(i + 1) === 0x2d) {
      while (i < n && sql.charCodeAt(i) !== 0x0a) i++;
    } else if (c === 0x2f && sql.charCodeAt(i + 1) === 0x2a) {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
    } else {
      break;
    }
  }
  let j = i;
  while (j < n && /[A-Za-z]/.test(sql[j] ?? '')) j++;
  if (j === i) return null;
  // The keyword must end here: `SELECTX` or `select_1` is an identifier, not a keyword.
  if (j < n && /[A-Za-z0-9_$\u0080-\uffff]/.test(sql[j] ?? '')) return null;
  return sql.slice(i, j).toUpperCase();
}

/** `read` or `write` for the statement kinds sql runs; throws SQL_REFUSED for every other kind. */
export function statementKind(sql: string): 'read' | 'write' {
  const kw = leadingKeyword(sql);
  if (kw !== null && READ_KEYWORDS.has(kw)) return 'read';
  if (kw !== null && WRITE_KEYWORDS.has(kw)) return 'write';
  throw refused(
    `only SELECT, WITH, VALUES, INSERT, UPDATE, DELETE and REPLACE statements run here${kw ? `, not ${kw}` : ''} (no PRAGMA, ATTACH, DDL or transactions)`,
  );
}

interface ExplainRow {
  opcode: string;
  p1: number;
  p2: number;
  p3: number;
  p4: string | null;
}

interface SchemaRow {
  type: string;
  name: string;
  tbl_name: string;
  rootpage: number;
}

/** Root page → owning table name (lower case), for tables and indexes of the main database. */
function rootPages(db: Database.Database): Map<number, string> {
  const map = new Map<number, string>([[1, 'sqlite_schema']]);
  const rows = db.prepare(`SELECT type, name, tbl_name, rootpage FROM main.sqlite_schema WHERE rootpage > 0`).all() as SchemaRow[];
  for (const r of rows) map.set(r.rootpage, r.tbl_name.toLowerCase());
  return map;
}

/**
 * Check the compiled program of `sql` (already prepared successfully with these parameters)
 * against the allowlist (lower-case table names). Throws on the first violation.
 */
export function checkProgram(db: Database.Database, sql: string, params: unknown[] | Record<string, unknown>, allow: ReadonlySet<string>): void {
  const explain = db.prepare(`EXPLAIN ${sql}`);
  const rows = (Array.isArray(params) ? explain.all(...params) : explain.all(params)) as ExplainRow[];
  const roots = rootPages(db);
  const touched = new Map<string, 'read' | 'write'>();
  const note = (root: number, db0: number, mode: 'read' | 'write'): void => {
    if (db0 !== 0) throw refused('statements may only use the main database (no temp or attached databases)');
    const table = roots.get(root);
    if (table === undefined) throw refused('the statement touches a b-tree that is not a known table');
    if (touched.get(table) !== 'write') touched.set(table, mode);
  };
  for (const r of rows) {
    if (REFUSED_OPCODES.has(r.opcode)) {
      throw refused(r.opcode.startsWith('V') ? 'virtual tables and table-valued functions are not available' : `the statement would run ${r.opcode}`);
    }
    switch (r.opcode) {
      case 'OpenRead':
      case 'ReopenIdx':
        note(r.p2, r.p3, 'read');
        break;
      case 'OpenWrite':
        note(r.p2, r.p3, 'write');
        break;
      case 'Clear':
        note(r.p1, r.p2, 'write');
        break;
      case 'TableLock':
        note(r.p2, r.p1, r.p3 ? 'write' : 'read');
        break;
      case 'Transaction':
        if (r.p1 !== 0) throw refused('statements may only use the main database (no temp or attached databases)');
        break;
      case 'Function':
      case 'PureFunc': {
        const fn = (r.p4 ?? '').toLowerCase();
        if (REFUSED_FUNCTIONS.some((f) => fn.startsWith(f))) throw refused('ATTACH, DETACH and extensions are not available');
        break;
      }
      default:
        break;
    }
  }
  // AUTOINCREMENT inserts update sqlite_sequence: allowed only alongside a write to an allowed table.
  const writesAllowed = [...touched].some(([t, m]) => m === 'write' && allow.has(t));
  const outside = [...touched.keys()].filter((t) => !allow.has(t) && !(t === 'sqlite_sequence' && writesAllowed));
  if (outside.length > 0) {
    throw new ContainedError('OUT_OF_SCOPE', `sql: table ${outside.map((t) => JSON.stringify(t)).join(', ')} is not in the allowlist`, {
      data: { tables: outside },
    });
  }
}
