/**
 * sql under hostile statements (hardening finding 2, High): one agent with a read-only grant froze
 * the host with a recursive CTE (better-sqlite3 is synchronous, so the query ran on the host's own
 * thread and nothing else moved — not HTTP, not the operator channel, not the worker heartbeats),
 * and `SELECT zeroblob(…)` under `maxBytes: 1000` built the whole value in the host first (2 GB RSS).
 *
 * Each statement here runs against a real SQLite file; the assertions are on what the host process
 * itself sees: its event loop keeps turning, its memory stays flat, and the call ends with a typed
 * code within its deadline — the scope's `timeoutMs`, or the run ending (the call's signal).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSql, createSqlEngine, DEFAULT_TIMEOUT_MS } from '../../capabilities/sql/index.js';
import type { CapabilityInstance } from '../../capabilities/sdk/index.js';
import { call, errorOf, tempDir } from './helpers.js';

let dir: string;
let cleanup: () => void;
let file: string;
const instances: CapabilityInstance[] = [];

/** A statement that never ends on its own (counts an unbounded recursive CTE). */
const FOREVER = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c';
/** The attacker's statement from the finding: about 3 s of SQLite work on this machine. */
const SLOW = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2e7) SELECT count(*) FROM c';

beforeEach(() => {
  ({ dir, cleanup } = tempDir('sql-limits-'));
  file = path.join(dir, 'app.db');
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(`
    CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT);
    CREATE TABLE audit (msg TEXT);
    INSERT INTO customers VALUES (1, 'Ada'), (2, 'Bob'), (3, 'Cy');
    INSERT INTO docs VALUES (1, 'short'), (2, printf('%.*c', 2000000, 'x'));
  `);
  db.close();
});
afterEach(() => {
  for (const i of instances.splice(0)) i.revoke('test over');
  cleanup();
});

function sql(scope: Record<string, unknown>): CapabilityInstance {
  const instance = createSql({ file, ...scope });
  instances.push(instance);
  return instance;
}

function invoke(instance: CapabilityInstance, raw: unknown, runId: string, signal = new AbortController().signal): Promise<unknown> {
  const args = instance.parseArgs('query', raw);
  return instance.invoke('query', args, { runId, signal });
}

/** Longest gap between ticks of a 5 ms interval while `p` runs: how long the event loop was blocked. */
async function longestStall<T>(p: () => Promise<T>): Promise<{ stallMs: number; settled: PromiseSettledResult<T> }> {
  let last = performance.now();
  let stallMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    last = now;
  }, 5);
  try {
    const [settled] = await Promise.allSettled([p()]);
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    return { stallMs, settled: settled as PromiseSettledResult<T> };
  } finally {
    clearInterval(timer);
  }
}

/** Peak growth of this process's RSS (bytes) over its RSS before `p`, sampled every 5 ms. */
async function peakRssGrowth(p: () => Promise<unknown>): Promise<number> {
  const before = process.memoryUsage.rss();
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 5);
  try {
    await p();
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, process.memoryUsage.rss()) - before;
}

describe('sql: a statement never blocks the host', () => {
  it("the finding's recursive CTE leaves the event loop turning (it runs off the host's thread)", async () => {
    const db = sql({ tables: ['customers'], readOnly: true });
    const { stallMs, settled } = await longestStall(() => call(db, 'query', { sql: SLOW }));
    // Finished or stopped at its deadline: either way, the host was free the whole time.
    if (settled.status === 'fulfilled') expect(settled.value).toEqual({ columns: ['count(*)'], rows: [[2e7]], truncated: false });
    else expect(settled.reason).toMatchObject({ code: 'SQL_LIMIT', data: { limit: 'timeoutMs' } });
    // Before: 3.3 s. The bound leaves room for a shared, loaded machine, not for a blocked loop.
    expect(stallMs, `settled ${settled.status}`).toBeLessThan(250);
  }, 30_000);

  it('stops at the scope timeoutMs with SQL_LIMIT, never later', async () => {
    const db = sql({ tables: ['customers'], readOnly: true, timeoutMs: 300 });
    const t0 = performance.now();
    const e = await errorOf(call(db, 'query', { sql: FOREVER }));
    const elapsed = performance.now() - t0;
    expect(e).toMatchObject({ code: 'SQL_LIMIT', data: { limit: 'timeoutMs', timeoutMs: 300 } });
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(1300);
    // The instance still answers afterwards: the stuck process was replaced.
    expect(await call(db, 'query', { sql: 'SELECT count(*) FROM customers' })).toMatchObject({ rows: [[3]] });
  }, 30_000);

  it('the default deadline is DEFAULT_TIMEOUT_MS, and a narrower scope can only lower it', async () => {
    expect(DEFAULT_TIMEOUT_MS).toBe(5000);
    const db = sql({ tables: ['customers'] });
    expect(db.describe().scope).toContain(`${DEFAULT_TIMEOUT_MS} ms per statement`);
    expect(db.attenuate({ file, tables: ['customers'], timeoutMs: 200 }).scope.timeoutMs).toBe(200);
    // asking for more gets the parent's (its default), never more
    expect(db.attenuate({ file, tables: ['customers'], timeoutMs: 60_000 }).scope.timeoutMs).toBe(DEFAULT_TIMEOUT_MS);
    expect(db.checkRestriction({ timeoutMs: 60_000 })).toMatchObject({ ok: false, code: 'INVALID_SCOPE' });
    expect(db.checkRestriction({ timeoutMs: 100 })).toMatchObject({ ok: true });
    expect((await errorOf(() => createSql({ file, tables: [], timeoutMs: 0 }))).code).toBe('INVALID_SCOPE');
    expect((await errorOf(() => createSql({ file, tables: [], timeoutMs: 300_001 }))).code).toBe('INVALID_SCOPE');
  });

  it('the run ending (the call signal) stops its statement at once: CANCELLED', async () => {
    const db = sql({ tables: ['customers'], readOnly: true, timeoutMs: 60_000 });
    const run = new AbortController();
    setTimeout(() => run.abort(), 200);
    const t0 = performance.now();
    const e = await errorOf(invoke(db, { sql: FOREVER }, 'ending-run', run.signal));
    expect(e.code).toBe('CANCELLED');
    expect(performance.now() - t0).toBeLessThan(1200);
    // a call made after its run ended does not start at all
    expect((await errorOf(invoke(db, { sql: 'SELECT 1' }, 'ending-run', run.signal))).code).toBe('CANCELLED');
  }, 30_000);

  it("one run's stuck statement does not hold up another run's calls on the same database", async () => {
    const db = sql({ tables: ['customers'], readOnly: true, timeoutMs: 1500 });
    const hostile = errorOf(invoke(db, { sql: FOREVER }, 'hostile'));
    const hostile2 = errorOf(invoke(db, { sql: FOREVER }, 'hostile')); // waits behind its own run's first call
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) {
      expect(await invoke(db, { sql: 'SELECT name FROM customers WHERE id = ?', params: [1] }, 'innocent')).toMatchObject({ rows: [['Ada']] });
    }
    expect(performance.now() - t0).toBeLessThan(2000);
    expect((await hostile).code).toBe('SQL_LIMIT');
    expect((await hostile2).code).toBe('SQL_LIMIT');
  }, 30_000);

  it('an idle query process never keeps its host alive (a process exits as soon as its own work is done)', async () => {
    // A host with a 60 s idle period: it must still exit right after its last call, not 60 s later.
    const script = `
      import { createSql, createSqlEngine } from ${JSON.stringify(path.resolve('capabilities/sql/index.ts'))};
      const db = createSql({ file: ${JSON.stringify(file)}, tables: ['customers'] }, { engine: createSqlEngine({ idleMs: 60_000 }) });
      const r = await db.invoke('query', db.parseArgs('query', { sql: 'SELECT count(*) FROM customers' }), { runId: 'r', signal: new AbortController().signal });
      process.stdout.write(JSON.stringify(r.rows) + '\\n');
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    let answeredAt = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      answeredAt ||= performance.now();
    });
    await new Promise((resolve) => child.once('exit', resolve));
    expect(out.trim()).toBe('[[3]]');
    expect(performance.now() - answeredAt).toBeLessThan(3000);
  }, 60_000);

  it('a write stopped at its deadline is rolled back and leaves no lock behind', async () => {
    const db = sql({ tables: ['audit'], timeoutMs: 300 });
    const e = await errorOf(
      call(db, 'execute', { sql: "INSERT INTO audit SELECT 'x' FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c)" }),
    );
    expect(e).toMatchObject({ code: 'SQL_LIMIT', data: { limit: 'timeoutMs' } });
    expect(await call(db, 'execute', { sql: "INSERT INTO audit VALUES ('after')" })).toEqual({ changes: 1, lastInsertRowid: 1 });
    expect(await call(db, 'query', { sql: 'SELECT msg FROM audit' })).toEqual({ columns: ['msg'], rows: [['after']], truncated: false });
  }, 30_000);
});

describe('sql: sizes are capped before the host holds them', () => {
  it('a huge value under a small maxBytes is refused with SQL_LIMIT, and the host RSS stays flat', async () => {
    const db = sql({ tables: ['customers'], readOnly: true, maxBytes: 1000, timeoutMs: 20_000 });
    await call(db, 'query', { sql: 'SELECT 1' }); // warm: the query process exists
    const huge = [
      'SELECT zeroblob(900000000)', // the finding's statement
      'SELECT zeroblob(500000000)',
      'SELECT zeroblob(200000000), zeroblob(200000000), zeroblob(200000000)',
      "SELECT printf('%.*c', 400000000, 'x')",
      'SELECT length(zeroblob(300000000) || zeroblob(300000000))', // an intermediate value, never returned
    ];
    for (const q of huge) {
      let e: unknown;
      const growth = await peakRssGrowth(async () => (e = await errorOf(call(db, 'query', { sql: q }))));
      expect(e, q).toMatchObject({ code: 'SQL_LIMIT' });
      expect(['memory', 'length'], q).toContain((e as { data: { limit: string } }).data.limit);
      expect(growth, q).toBeLessThan(150 * 1024 * 1024);
    }
  }, 60_000);

  it('results under the caps are what they were: big stored values are measured, truncated, never refused', async () => {
    const db = sql({ tables: ['docs'], readOnly: true, maxBytes: 1000 });
    expect(await call(db, 'query', { sql: 'SELECT id, length(body) FROM docs ORDER BY id' })).toEqual({
      columns: ['id', 'length(body)'],
      rows: [[1, 5], [2, 2_000_000]],
      truncated: false,
    });
    expect(await call(db, 'query', { sql: 'SELECT body FROM docs ORDER BY id' })).toEqual({ columns: ['body'], rows: [['short']], truncated: true });
    expect(await call(db, 'query', { sql: 'SELECT x FROM (SELECT 1 AS x UNION ALL SELECT 2) LIMIT 1' })).toEqual({ columns: ['x'], rows: [[1]], truncated: false });
  }, 30_000);
});

describe('sql engine: processes die with their statement, their host, or its closing', () => {
  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  it('the process of a statement stopped at its deadline is gone; close() cancels running and waiting calls', async () => {
    const engine = createSqlEngine({ processes: 1 });
    const db = createSql({ file, tables: ['customers'], readOnly: true, timeoutMs: 300 }, { engine });
    const stuck = errorOf(invoke(db, { sql: FOREVER }, 'a'));
    await waitUntil(() => engine.stats().busy === 1);
    const [pid] = engine.stats().pids;
    expect((await stuck).code).toBe('SQL_LIMIT');
    await waitUntil(() => !alive(pid as number));

    const long = createSql({ file, tables: ['customers'], readOnly: true, timeoutMs: 60_000 }, { engine });
    const running = errorOf(invoke(long, { sql: FOREVER }, 'b'));
    const waiting = errorOf(invoke(long, { sql: 'SELECT 1' }, 'c')); // one process: this one waits
    await waitUntil(() => engine.stats().busy === 1 && engine.stats().queued === 1);
    const [busyPid] = engine.stats().pids;
    await engine.close();
    expect((await running).code).toBe('CANCELLED');
    expect((await waiting).code).toBe('CANCELLED');
    expect(alive(busyPid as number)).toBe(false);
    expect(engine.stats()).toMatchObject({ processes: 0, busy: 0, queued: 0 });
    expect((await errorOf(invoke(long, { sql: 'SELECT 1' }, 'd'))).code).toBe('CANCELLED');
  }, 30_000);

  it('a query process that cannot start fails the waiting calls at once (CAPABILITY_FAILED), it does not leave them hanging', async () => {
    const engine = createSqlEngine({ entry: { file: path.join(dir, 'no-such-module.js'), execArgv: [] } });
    const db = createSql({ file, tables: ['customers'], timeoutMs: 60_000 }, { engine });
    const e = await errorOf(invoke(db, { sql: 'SELECT 1' }, 'r'));
    expect(e).toMatchObject({ code: 'CAPABILITY_FAILED', data: { reason: 'QUERY_PROCESS' } });
    await engine.close();
  }, 30_000);
});

async function waitUntil(f: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!f()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}
