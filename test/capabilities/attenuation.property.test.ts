/**
 * Property tests: attenuation never widens. For random scopes and random narrowings of fs, kv,
 * sql, log and random:
 * - every call the child allows, the parent allows (`child.checkScope ok ⇒ parent.checkScope ok`);
 * - the same holds for the intersected scope *on its own* (a fresh instance without the parent
 *   chain), so `intersect` itself is sound and the chain walk is a second line, not the only one;
 * - the intersected scope's fields are each at least as strict as the parent's.
 * For sql, whose allowlist is enforced when the statement is compiled, the property is checked by
 * running statements against a real database file.
 *
 * `restrict` (grants): whatever it accepts allows no more than the parent, taken alone too; it never
 * refuses a scope that lies within the parent (every intersection does); and it refuses exactly
 * the scopes whose intersection with the parent differs from what was asked.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFs, fsCapability, type FsScope } from '../../capabilities/fs/index.js';
import { normalizeExtension } from '../../capabilities/fs/paths.js';
import { createKv, kvCapability, type KvScope } from '../../capabilities/kv/index.js';
import { createLog, logCapability } from '../../capabilities/log/index.js';
import { createRandom } from '../../capabilities/random/index.js';
import { createInstance, type CapabilityInstance } from '../../capabilities/sdk/index.js';
import { createSql } from '../../capabilities/sql/index.js';
import { ContainedError } from '../../runtime/errors.js';
import { tempDir } from './helpers.js';

const RUNS = { numRuns: 300 };

let base: string;
let cleanup: () => void;
beforeAll(() => {
  ({ dir: base, cleanup } = tempDir('prop-'));
  for (const d of ['a/b', 'c']) mkdirSync(path.join(base, d), { recursive: true });
});
afterAll(() => cleanup());

/** Attenuate, or `null` when the narrowing does not intersect (INVALID_SCOPE is a valid answer). */
function tryAttenuate<S>(parent: CapabilityInstance<S>, narrower: unknown): CapabilityInstance<S> | null {
  try {
    return parent.attenuate(narrower);
  } catch (e) {
    if (e instanceof ContainedError && e.code === 'INVALID_SCOPE') return null;
    throw e;
  }
}

/** Parsed argument, or `null` when the raw argument does not even parse. */
function tryParse(inst: CapabilityInstance, m: string, raw: unknown): unknown {
  try {
    return { value: inst.parseArgs(m, raw) };
  } catch {
    return null;
  }
}

/**
 * The core property, for the chain and for the intersected scope standing alone. `toParent` puts
 * the child's argument in the parent's frame (fs: a child rooted in a subfolder names paths from
 * there); default: the same argument.
 */
function neverWider(parent: CapabilityInstance, child: CapabilityInstance, alone: CapabilityInstance, m: string, raw: unknown, toParent: (m: string, a: unknown) => unknown = (_m, a) => a): void {
  const parsed = tryParse(parent, m, raw) as { value: unknown } | null;
  if (parsed === null) return;
  const inParent = (): boolean => {
    const mapped = tryParse(parent, m, toParent(m, parsed.value)) as { value: unknown } | null;
    return mapped !== null && parent.checkScope(m, mapped.value).ok;
  };
  if (child.checkScope(m, parsed.value).ok) expect(inParent()).toBe(true);
  if (alone.checkScope(m, parsed.value).ok) expect(inParent()).toBe(true);
}

// ── fs ──────────────────────────────────────────────────────────────────────────────────────────
const EXT = ['md', 'txt', 'json', 'MD'];
const fsScopeArb = fc.record(
  {
    root: fc.constantFrom('', 'a', 'a/b', 'c'),
    readOnly: fc.boolean(),
    maxFileBytes: fc.integer({ min: 1, max: 64 }),
    extensions: fc.uniqueArray(fc.constantFrom(...EXT), { maxLength: 3 }),
    paths: fc.uniqueArray(fc.constantFrom('a', 'a/b', 'b', 'c', 'x.md', 'a/x.md'), { minLength: 1, maxLength: 3 }),
  },
  { requiredKeys: ['root'] },
);
const segment = fc.constantFrom('a', 'b', 'c', 'x.md', 'y.txt', 'z.json', 'Q.MD', 'noext', '..', '.', '', '.hidden', 'a\\b', 'n\0ul');
const fsPath = fc.oneof(fc.array(segment, { maxLength: 4 }).map((s) => s.join('/')), fc.constantFrom('/abs/x.md', '/'));
const fsCall = fc.oneof(
  fc.tuple(fc.constantFrom('read', 'list', 'stat', 'remove', 'mkdir'), fsPath),
  fc.tuple(fc.constantFrom('write', 'append'), fc.record({ path: fsPath, content: fc.string({ maxLength: 80 }) })),
  fc.tuple(fc.constant('move'), fc.record({ from: fsPath, to: fsPath })),
);
const abs = (s: { root: string }) => ({ ...s, root: path.join(base, s.root) });

describe('fs attenuation never widens', () => {
  it('holds for random scopes, narrowings and calls', () => {
    fc.assert(
      fc.property(fsScopeArb, fsScopeArb, fc.array(fsCall, { minLength: 1, maxLength: 8 }), (p, n, calls) => {
        const parent = createFs(abs(p));
        const child = tryAttenuate(parent, abs(n));
        if (!child) return;
        const cs = child.scope as FsScope;
        const ps = parent.scope as FsScope;
        // field by field, at least as strict
        expect(path.relative(ps.root, cs.root).startsWith('..')).toBe(false);
        if (ps.readOnly) expect(cs.readOnly).toBe(true);
        if (ps.maxFileBytes !== undefined) expect(cs.maxFileBytes ?? Infinity).toBeLessThanOrEqual(ps.maxFileBytes);
        if (ps.extensions !== undefined) {
          expect(cs.extensions).toBeDefined();
          const allowed = new Set(ps.extensions.map(normalizeExtension));
          for (const e of cs.extensions ?? []) expect(allowed.has(normalizeExtension(e))).toBe(true);
        }
        const alone = createFs(cs);
        const prefix = path.relative(ps.root, cs.root).split(path.sep).join('/');
        const under = (p: unknown): unknown => (typeof p === 'string' && prefix !== '' && !p.startsWith('/') ? `${prefix}/${p}` : p);
        const toParent = (m: string, a: unknown): unknown => {
          if (m === 'move') return { ...(a as object), from: under((a as { from: unknown }).from), to: under((a as { to: unknown }).to) };
          if (m === 'write' || m === 'append') return { ...(a as object), path: under((a as { path: unknown }).path) };
          return under(a ?? '');
        };
        for (const [m, a] of calls) neverWider(parent, child, alone, m, a, toParent);
      }),
      RUNS,
    );
  });

  it('restrict: accepts every scope within the parent, refuses every wider one, and what it accepts never widens', () => {
    fc.assert(
      fc.property(fsScopeArb, fsScopeArb, fc.array(fsCall, { minLength: 1, maxLength: 8 }), (p, n, calls) => {
        const parent = createFs(abs(p));
        restrictProperty(parent, abs(n), (scope) => createFs(scope), calls);
      }),
      RUNS,
    );
  });
});

/**
 * For a requested scope `asked`: `restrict` succeeds exactly when `attenuate`'s intersection (in the
 * parent's frame) is what was asked; an intersection, asked again, is always accepted; and what
 * `restrict` accepts allows no call the parent refuses, through the chain or alone.
 */
function restrictProperty<S>(parent: CapabilityInstance<S>, asked: unknown, alone: (scope: S) => CapabilityInstance<S>, calls: [string, unknown][]): void {
  let restricted: CapabilityInstance<S> | null = null;
  try {
    restricted = parent.restrict(asked);
  } catch (e) {
    if (!(e instanceof ContainedError && e.code === 'INVALID_SCOPE')) throw e;
  }
  const intersected = (() => {
    try {
      return parent.restrict(asked, {}, { exact: false });
    } catch (e) {
      if (e instanceof ContainedError && e.code === 'INVALID_SCOPE') return null;
      throw e;
    }
  })();
  if (intersected === null) {
    expect(restricted).toBeNull();
    return;
  }
  // the intersection lies within the parent: asked for as such, it is accepted unchanged
  expect(parent.restrict(intersected.scope).scope).toEqual(intersected.scope);
  if (restricted === null) {
    expect(parent.checkRestriction(asked)).toMatchObject({ ok: false, code: 'INVALID_SCOPE' });
    return;
  }
  expect(restricted.scope).toEqual(intersected.scope);
  const standalone = alone(restricted.scope);
  for (const [m, a] of calls) neverWider(parent, restricted, standalone, m, a);
}

// ── kv ──────────────────────────────────────────────────────────────────────────────────────────
const PREFIXES = ['', 'a', 'a/', 'a/b/', 'b/', 'ab'];
const kvScopeArb = fc.record(
  {
    prefix: fc.constantFrom(...PREFIXES),
    readOnly: fc.boolean(),
    maxValueBytes: fc.integer({ min: 1, max: 40 }),
    maxTotalBytes: fc.integer({ min: 1, max: 1000 }),
  },
  { requiredKeys: [] },
);
const key = fc.oneof(fc.constantFrom('a', 'a/', 'a/b/c', 'a/c', 'ab', 'b/1', 'zz'), fc.string({ minLength: 1, maxLength: 6 }));
const json = fc.jsonValue({ maxDepth: 2 });
const kvCall = fc.oneof(
  fc.tuple(fc.constantFrom('get', 'delete'), key),
  fc.tuple(fc.constant('set'), fc.record({ key, value: json })),
  fc.tuple(fc.constant('list'), fc.option(fc.record({ prefix: fc.constantFrom(...PREFIXES, 'a/b/c', 'x') }, { requiredKeys: [] }), { nil: undefined })),
);

describe('kv attenuation never widens', () => {
  it('holds for random scopes, narrowings and calls', () => {
    const file = path.join(base, 'kv.db');
    fc.assert(
      fc.property(kvScopeArb, kvScopeArb, fc.array(kvCall, { minLength: 1, maxLength: 8 }), (p, n, calls) => {
        const parent = createKv({ file, namespace: 'ns', ...p });
        const child = tryAttenuate(parent, { file, namespace: 'ns', ...n });
        if (!child) return;
        const cs = child.scope as KvScope;
        const ps = parent.scope as KvScope;
        expect((cs.prefix ?? '').startsWith(ps.prefix ?? '')).toBe(true);
        if (ps.readOnly) expect(cs.readOnly).toBe(true);
        expect(cs.maxValueBytes ?? Infinity).toBeLessThanOrEqual(ps.maxValueBytes ?? Infinity);
        expect(cs.maxTotalBytes ?? Infinity).toBeLessThanOrEqual(ps.maxTotalBytes ?? Infinity);
        const alone = createInstance(kvCapability, cs, {});
        for (const [m, a] of calls) neverWider(parent, child, alone, m, a);
      }),
      RUNS,
    );
  });

  it('restrict: accepts every scope within the parent, refuses every wider one, and what it accepts never widens', () => {
    const file = path.join(base, 'kv.db');
    fc.assert(
      fc.property(kvScopeArb, kvScopeArb, fc.array(kvCall, { minLength: 1, maxLength: 8 }), (p, n, calls) => {
        restrictProperty(createKv({ file, namespace: 'ns', ...p }), n, (scope) => createInstance(kvCapability, scope, {}), calls);
      }),
      RUNS,
    );
  });
});

// ── log and random (small scopes, same property) ────────────────────────────────────────────────
describe('log and random attenuation never widen', () => {
  it('log: minLevel only rises', () => {
    const level = fc.option(fc.constantFrom('debug', 'info', 'warn', 'error'), { nil: undefined });
    const logger = { child: () => logger } as never;
    fc.assert(
      fc.property(level, level, (p, n) => {
        const parent = createLog(p === undefined ? {} : { minLevel: p }, { logger });
        const child = parent.attenuate(n === undefined ? {} : { minLevel: n });
        const order = ['debug', 'info', 'warn', 'error'];
        expect(order.indexOf(child.scope.minLevel ?? 'debug')).toBeGreaterThanOrEqual(order.indexOf(parent.scope.minLevel ?? 'debug'));
        expect(createInstance(logCapability, child.scope, { logger }).scope).toEqual(child.scope);
      }),
      RUNS,
    );
  });

  it('random: a seeded parent keeps its seed', () => {
    const seed = fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined });
    fc.assert(
      fc.property(seed, seed, (p, n) => {
        const parent = createRandom(p === undefined ? {} : { seed: p });
        const child = tryAttenuate(parent, n === undefined ? {} : { seed: n });
        if (p !== undefined && child) expect(child.scope.seed).toBe(p);
        if (p !== undefined && n !== undefined && n !== p) expect(child).toBeNull();
      }),
      RUNS,
    );
  });
});

// ── sql (enforced at compile time: checked by running statements) ───────────────────────────────
const TABLES = ['t1', 't2', 't3', 't4'];
const STATEMENTS: [method: 'query' | 'execute', sql: string][] = [
  ['query', 'SELECT * FROM t1'],
  ['query', 'SELECT * FROM t2 JOIN t3 ON t2.x = t3.x'],
  ['query', 'SELECT * FROM v14'],
  ['query', 'WITH c AS (SELECT x FROM t4) SELECT * FROM c'],
  ['query', 'SELECT (SELECT count(*) FROM t2) FROM t1'],
  ['query', 'SELECT 1'],
  ['query', 'DELETE FROM t1 WHERE 0'],
  ['execute', 'DELETE FROM t1 WHERE 0'],
  ['execute', 'DELETE FROM t3'], // OP_Clear (t3 is empty: nothing changes)
  ['execute', 'UPDATE t2 SET x = x WHERE 0'],
  ['execute', 'INSERT INTO t3 SELECT * FROM t4 WHERE 0'],
  ['execute', 'DELETE FROM t4 WHERE 0'], // its trigger writes t2
  ['execute', 'PRAGMA user_version = 1'],
];

describe('sql attenuation never widens (run against a real database)', () => {
  it('whatever the child (or its intersected scope alone) runs, the parent runs', async () => {
    const file = path.join(base, 'prop.db');
    const db = new Database(file);
    db.exec(`CREATE TABLE t1 (x); CREATE TABLE t2 (x); CREATE TABLE t3 (x); CREATE TABLE t4 (x);
      CREATE VIEW v14 AS SELECT t1.x FROM t1 JOIN t4 ON t1.x = t4.x;
      CREATE TRIGGER t4d AFTER DELETE ON t4 BEGIN DELETE FROM t2 WHERE x = old.x; END;
      INSERT INTO t1 VALUES (1); INSERT INTO t4 VALUES (1);`);
    db.close();
    const scopeArb = fc.record(
      { tables: fc.subarray(TABLES), readOnly: fc.boolean(), maxRows: fc.integer({ min: 1, max: 5 }) },
      { requiredKeys: ['tables'] },
    );
    const outcome = async (inst: CapabilityInstance, m: string, sql: string): Promise<'ok' | 'refused'> => {
      try {
        const args = inst.parseArgs(m, { sql });
        if (!inst.checkScope(m, args).ok) return 'refused';
        await inst.invoke(m, args, { runId: 'p', signal: new AbortController().signal });
        return 'ok';
      } catch (e) {
        if (e instanceof ContainedError && ['OUT_OF_SCOPE', 'SQL_REFUSED'].includes(e.code)) return 'refused';
        throw e;
      }
    };
    await fc.assert(
      fc.asyncProperty(scopeArb, scopeArb, fc.subarray(STATEMENTS, { minLength: 1, maxLength: 4 }), async (p, n, stmts) => {
        const parent = createSql({ file, ...p });
        const child = parent.attenuate({ file, ...n });
        for (const t of child.scope.tables) expect(parent.scope.tables).toContain(t);
        const alone = createSql(child.scope);
        for (const [m, sql] of stmts) {
          if ((await outcome(child, m, sql)) === 'ok' || (await outcome(alone, m, sql)) === 'ok') {
            expect(await outcome(parent, m, sql), `${m} ${sql}`).toBe('ok');
          }
        }
      }),
      { numRuns: 60 },
    );
  });
});
