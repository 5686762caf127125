/**
 * sql capability on a real SQLite file. Seed scenario: "an internal tool deleted the wrong
 * records" — a DELETE through a read-only scope, tables outside the allowlist (reached directly,
 * through joins, CTEs, views, triggers and cascades), ATTACH and PRAGMA all fail with exact codes,
 * and the data is intact afterwards.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSql } from '../../capabilities/sql/index.js';
import { leadingKeyword } from '../../capabilities/sql/guard.js';
import { call, errorOf, tempDir } from './helpers.js';

let dir: string;
let cleanup: () => void;
let file: string;

function seed(): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(`
    CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, vip INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id) ON DELETE CASCADE, amount REAL, note BLOB);
    CREATE INDEX orders_customer ON orders(customer_id);
    CREATE TABLE secrets (k TEXT, v TEXT);
    CREATE TABLE audit (msg TEXT);
    CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT);
    CREATE TRIGGER orders_audit AFTER DELETE ON orders BEGIN INSERT INTO audit VALUES ('deleted ' || old.id); END;
    CREATE VIEW v_secrets AS SELECT * FROM secrets;
    INSERT INTO customers (id, name, vip) VALUES (1, 'Ada', 1), (2, 'Bob', 0), (3, 'Cy', 0);
    INSERT INTO orders (id, customer_id, amount, note) VALUES (10, 1, 9.5, x'00ff'), (11, 2, 20, NULL), (12, 2, 1, NULL);
    INSERT INTO secrets VALUES ('api', 'hunter2');
  `);
  db.close();
}

function count(table: string): number {
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
  } finally {
    db.close();
  }
}

beforeEach(() => {
  ({ dir, cleanup } = tempDir('sql-'));
  file = path.join(dir, 'app.db');
  seed();
});
afterEach(() => cleanup());

async function code(p: Promise<unknown>): Promise<string> {
  return (await errorOf(p)).code;
}

describe('sql: queries', () => {
  it('returns columns, rows as arrays, blobs as base64, with bound parameters', async () => {
    const sql = createSql({ file, tables: ['customers', 'orders'], readOnly: true });
    expect(await call(sql, 'query', { sql: 'SELECT id, name FROM customers WHERE vip = ? ORDER BY id', params: [true] })).toEqual({
      columns: ['id', 'name'],
      rows: [[1, 'Ada']],
      truncated: false,
    });
    expect(await call(sql, 'query', { sql: 'SELECT note FROM orders WHERE id = :id', params: { id: 10 } })).toMatchObject({
      rows: [[{ base64: 'AP8=' }]],
    });
    // an injection attempt is just a string value
    expect(await call(sql, 'query', { sql: 'SELECT * FROM customers WHERE name = ?', params: ["x' OR 1=1 --"] })).toMatchObject({ rows: [] });
    expect(
      await call(sql, 'query', {
        sql: 'WITH big AS (SELECT customer_id, sum(amount) s FROM orders GROUP BY 1) SELECT c.name, big.s FROM customers c JOIN big ON big.customer_id = c.id ORDER BY 2',
      }),
    ).toMatchObject({ rows: [['Ada', 9.5], ['Bob', 21]] });
  });

  it('caps rows and bytes at their boundaries and says truncated', async () => {
    const three = createSql({ file, tables: ['customers'], maxRows: 3 });
    expect(await call(three, 'query', { sql: 'SELECT id FROM customers' })).toMatchObject({ rows: [[1], [2], [3]], truncated: false });
    const two = createSql({ file, tables: ['customers'], maxRows: 2 });
    expect(await call(two, 'query', { sql: 'SELECT id FROM customers' })).toMatchObject({ rows: [[1], [2]], truncated: true });
    // "[1]" + newline = 4 bytes per row, plus 2 for the brackets: 10 bytes hold exactly two rows
    const bytes = createSql({ file, tables: ['customers'], maxBytes: 10 });
    expect(await call(bytes, 'query', { sql: 'SELECT id FROM customers' })).toMatchObject({ rows: [[1], [2]], truncated: true });
    // an unbounded recursive CTE stops at the row cap
    expect(await call(two, 'query', { sql: 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c' })).toMatchObject({
      truncated: true,
    });
  });
});

describe('sql: the seed scenario, "an internal tool deleted the wrong records"', () => {
  it('a DELETE through a read-only scope is refused, by both methods', async () => {
    const sql = createSql({ file, tables: ['customers', 'orders'], readOnly: true });
    expect(await code(call(sql, 'query', { sql: 'DELETE FROM orders WHERE customer_id = 2' }))).toBe('OUT_OF_SCOPE');
    expect(await code(call(sql, 'query', { sql: 'WITH x AS (SELECT 2) DELETE FROM orders WHERE customer_id IN x' }))).toBe('OUT_OF_SCOPE');
    expect(await code(call(sql, 'execute', { sql: 'DELETE FROM orders WHERE customer_id = 2' }))).toBe('OUT_OF_SCOPE');
    expect(sql.checkScope('execute', { sql: 'DELETE FROM orders' })).toMatchObject({ ok: false, code: 'OUT_OF_SCOPE' });
    // the write check is the driver's Statement.readonly, not the first keyword: a read-write
    // scope's query refuses a write hidden behind WITH as well
    const rw = createSql({ file, tables: ['customers', 'orders', 'audit'] });
    expect(await code(call(rw, 'query', { sql: 'WITH x AS (SELECT 2) DELETE FROM orders WHERE customer_id IN x' }))).toBe('OUT_OF_SCOPE');
    expect(count('orders')).toBe(3);
  });

  it('a table outside the allowlist is refused for reads and writes, however it is reached', async () => {
    const sql = createSql({ file, tables: ['customers', 'orders'] });
    const reads = [
      'SELECT * FROM secrets',
      'select * from "SECRETS"',
      'SELECT c.name FROM customers c JOIN secrets s ON 1',
      'SELECT * FROM customers WHERE name IN (SELECT v FROM secrets)',
      'WITH s AS (SELECT * FROM secrets) SELECT * FROM s',
      'SELECT * FROM v_secrets', // a view expands to the table it reads
      'SELECT * FROM main.secrets',
      'SELECT name FROM sqlite_master',
      'SELECT * FROM no_such_table', // reads the same as an existing one: existence does not leak
    ];
    for (const q of reads) expect(await code(call(sql, 'query', { sql: q })), q).toBe('OUT_OF_SCOPE');
    const writes = [
      "INSERT INTO secrets VALUES ('x', 'y')",
      "UPDATE secrets SET v = 'pwned'",
      'DELETE FROM secrets', // compiles to OP_Clear, not an open
      'DELETE FROM secrets WHERE k = 1',
      'INSERT INTO customers (name) SELECT v FROM secrets',
      'DELETE FROM orders WHERE id = 10', // its trigger writes audit
      'DELETE FROM customers WHERE id = 1', // cascades to orders, whose trigger writes audit
    ];
    for (const q of writes) expect(await code(call(sql, 'execute', { sql: q })), q).toBe('OUT_OF_SCOPE');
    expect(count('secrets')).toBe(1);
    expect(count('orders')).toBe(3);
    expect(count('customers')).toBe(3);
    const e = await errorOf(call(sql, 'query', { sql: 'SELECT * FROM secrets' }));
    expect(e).toMatchObject({ data: { tables: ['secrets'] } });
  });

  it('with the trigger and cascade targets allowed, the same writes run', async () => {
    const sql = createSql({ file, tables: ['customers', 'orders', 'audit'] });
    expect(await call(sql, 'execute', { sql: 'DELETE FROM customers WHERE id = ?', params: [2] })).toEqual({ changes: 1, lastInsertRowid: 0 });
    expect(count('orders')).toBe(1);
    expect(count('audit')).toBe(2);
  });

  it('ATTACH, PRAGMA, DDL, transactions, virtual tables and several statements are refused', async () => {
    const sql = createSql({ file, tables: ['customers', 'orders'] });
    const other = path.join(dir, 'other.db');
    const never = [
      `ATTACH DATABASE '${other}' AS x`,
      `  -- comment\n /* another */ attach '${other}' as x`,
      'DETACH DATABASE main',
      'PRAGMA writable_schema = 1', // takes effect at prepare time, and reports itself read-only
      'PRAGMA user_version = 5',
      'PRAGMA table_info(secrets)',
      '; PRAGMA user_version = 5',
      'DROP TABLE customers',
      'CREATE TABLE t (x)',
      'ALTER TABLE customers ADD COLUMN y',
      'BEGIN',
      'VACUUM',
      'EXPLAIN SELECT 1',
      'SELECT * FROM customers; DELETE FROM customers',
      "SELECT * FROM pragma_table_info('secrets')",
      "SELECT * FROM json_each('[1,2]')",
    ];
    for (const q of never) {
      expect(await code(call(sql, 'execute', { sql: q })), q).toBe('SQL_REFUSED');
      expect(await code(call(sql, 'query', { sql: q })), q).toBe('SQL_REFUSED');
    }
    // refused before the gate: parseArgs throws for statement kinds no scope allows
    expect(await errorOf(() => sql.parseArgs('query', { sql: 'PRAGMA user_version = 5' }))).toMatchObject({ code: 'SQL_REFUSED' });
    expect(existsSync(other)).toBe(false);
    const db = new Database(file, { readonly: true });
    expect(db.pragma('user_version', { simple: true })).toBe(0);
    db.close();
    expect(count('customers')).toBe(3);
  });

  it('AUTOINCREMENT bookkeeping is allowed only as a side effect of an allowed write', async () => {
    const sql = createSql({ file, tables: ['events'] });
    expect(await call(sql, 'execute', { sql: 'INSERT INTO events (what) VALUES (?)', params: ['x'] })).toEqual({ changes: 1, lastInsertRowid: 1 });
    expect(await code(call(sql, 'query', { sql: 'SELECT * FROM sqlite_sequence' }))).toBe('OUT_OF_SCOPE');
    expect(await code(call(sql, 'execute', { sql: 'UPDATE sqlite_sequence SET seq = 100' }))).toBe('OUT_OF_SCOPE');
  });
});

describe('sql: scope, attenuation, revocation, budgets', () => {
  it('validates the scope at creation', async () => {
    expect((await errorOf(() => createSql({ file, tables: ['nope'] }))).code).toBe('INVALID_SCOPE');
    expect((await errorOf(() => createSql({ file: path.join(dir, 'missing.db'), tables: [] }))).code).toBe('INVALID_SCOPE');
    expect((await errorOf(() => createSql({ file: 'app.db', tables: [] }))).code).toBe('INVALID_SCOPE');
    expect((await errorOf(() => createSql({ file, tables: [], extra: true }))).code).toBe('INVALID_SCOPE');
  });

  it('attenuation intersects tables and keeps read-only; revocation reaches children', async () => {
    const sql = createSql({ file, tables: ['customers', 'orders', 'audit'] });
    const child = sql.attenuate({ file, tables: ['customers', 'secrets'], readOnly: true });
    expect(child.scope.tables).toEqual(['customers']);
    expect(await call(child, 'query', { sql: 'SELECT count(*) FROM customers' })).toMatchObject({ rows: [[3]] });
    expect(await code(call(child, 'query', { sql: 'SELECT * FROM orders' }))).toBe('OUT_OF_SCOPE');
    expect(await code(call(child, 'query', { sql: 'SELECT * FROM secrets' }))).toBe('OUT_OF_SCOPE');
    expect(await code(call(child, 'execute', { sql: 'DELETE FROM customers' }))).toBe('OUT_OF_SCOPE');
    expect(child.attenuate({ file, tables: ['customers'], readOnly: false }).scope.readOnly).toBe(true);
    expect((await errorOf(() => sql.attenuate({ file: `${file}x`, tables: [] }))).code).toBe('INVALID_SCOPE');
    sql.revoke('incident');
    expect(await code(call(child, 'query', { sql: 'SELECT 1' }))).toBe('CAPABILITY_REVOKED');
  });

  it('charges call budgets; strict arguments', async () => {
    const sql = createSql({ file, tables: ['customers'] }, {}, { budgets: { execute: { maxCalls: 1 } } });
    await call(sql, 'execute', { sql: "UPDATE customers SET name = 'A' WHERE id = 1" });
    expect(await code(call(sql, 'execute', { sql: "UPDATE customers SET name = 'B' WHERE id = 1" }))).toBe('BUDGET_EXCEEDED');
    expect(await errorOf(() => sql.parseArgs('query', { sql: 'SELECT 1', timeout: 5 }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await code(call(sql, 'query', { sql: 'SELECT ?' }))).toBe('INVALID_ARGUMENT'); // missing parameter
    expect(await code(call(sql, 'query', { sql: 'SELEKT 1' }))).toBe('SQL_REFUSED');
    expect(await code(call(sql, 'query', { sql: 'SELECT FROM WHERE' }))).toBe('INVALID_ARGUMENT');
  });
});

describe('leadingKeyword', () => {
  it('skips whitespace and comments the way SQLite does, and fails closed', () => {
    expect(leadingKeyword('  \n\t select 1')).toBe('SELECT');
    expect(leadingKeyword('/* x */-- y\nWITH a AS (SELECT 1) SELECT 1')).toBe('WITH');
    expect(leadingKeyword(';select 1')).toBeNull();
    expect(leadingKeyword('"select" 1')).toBeNull();
    expect(leadingKeyword('select_1')).toBeNull();
    expect(leadingKeyword('\u00a0select 1')).toBeNull();
    expect(leadingKeyword('/* unterminated select 1')).toBeNull();
  });
});
