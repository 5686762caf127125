/**
 * kv — a durable key-value store on embedded SQLite (WAL), one namespace per agent, scoped by key
 * prefix, with per-value size limits and a per-namespace storage quota.
 *
 * Defends: keys outside the scope prefix and values over `maxValueBytes` (pure check,
 * `OUT_OF_SCOPE`); growth past `maxTotalBytes` (`QUOTA_EXCEEDED`, checked inside an immediate
 * transaction so concurrent writers cannot both squeeze under the limit); another namespace's
 * data (every statement binds the namespace; keys and values are bound parameters, never SQL text).
 * Keys are full keys: the scope prefix is part of every key the agent names and sees.
 *
 * The database is opened per call and closed after, so an instance holds no handle to leak.
 * better-sqlite3 is loaded on the first call, not at import, so a program that never creates a kv
 * store (e.g. one that imports the package entry only to run sandboxes) never loads it.
 */
import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type Database from 'better-sqlite3';
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import { type CapabilityDefinition, defineCapability, IN_SCOPE, method, outOfScope, type ScopeCheck } from '../sdk/define.js';
import { definePlugin, NO_HOST_OPTIONS, scopeWithDataDir } from '../plugin.js';
import { type CapabilityInstance, createInstance, type InstanceOptions } from '../sdk/instance.js';
import { formatBytes, jsonValueSchema } from '../sdk/json.js';
import { narrowerLimit } from '../sdk/narrowing.js';
import { sameHostFile } from '../sdk/overlap.js';
import { kvMethodStaging, kvResourceStaging } from './staging.js';

/** Largest value (its JSON text, in UTF-8 bytes) when the scope sets no `maxValueBytes`: 256 KiB. */
export const DEFAULT_MAX_VALUE_BYTES = 256 * 1024;
/** Largest namespace (keys + values, in bytes) when the scope sets no `maxTotalBytes`: 16 MiB. */
export const DEFAULT_MAX_TOTAL_BYTES = 16 * 1024 * 1024;
/** Longest key, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 512;
/** Most keys one `list` call returns. */
export const MAX_LIST_LIMIT = 1000;
/** Milliseconds a kv call waits for another writer's lock on the store file before failing. */
export const KV_LOCK_WAIT_MS = 5000;

export const kvScopeSchema = z.strictObject({
  /** Absolute path of the SQLite file (created on first write). */
  file: z.string().min(1).refine((p) => path.isAbsolute(p), 'file must be an absolute host path').transform((p) => path.resolve(p)),
  /** The agent's namespace; instances with different namespaces never see each other's keys. */
  namespace: z.string().min(1).max(128),
  /** Only keys starting with this prefix. */
  prefix: z.string().max(256).optional(),
  readOnly: z.boolean().optional(),
  maxValueBytes: z.number().int().positive().optional(),
  maxTotalBytes: z.number().int().positive().optional(),
});
export type KvScope = z.output<typeof kvScopeSchema>;

/** kv needs nothing from the host beyond its scope; the type is here for symmetry and growth. */
export type KvDeps = Record<string, never>;

const jsonValue = jsonValueSchema;
const keyArg = z
  .string()
  .min(1)
  .refine((k) => Buffer.byteLength(k, 'utf8') <= MAX_KEY_BYTES, `key longer than ${MAX_KEY_BYTES} bytes`);
const setArgs = z.strictObject({ key: keyArg, value: jsonValue });
const listArgs = z
  .strictObject({
    prefix: z.string().max(MAX_KEY_BYTES).optional(),
    /** Return keys strictly after this one (the last key of the previous page). */
    after: z.string().max(MAX_KEY_BYTES).optional(),
    limit: z.number().int().min(1).max(MAX_LIST_LIMIT).optional(),
  })
  .optional();
const listResult = z.strictObject({ keys: z.array(z.string()), more: z.boolean() });

const valueLimit = (s: KvScope): number => s.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES;
const totalLimit = (s: KvScope): number => s.maxTotalBytes ?? DEFAULT_MAX_TOTAL_BYTES;

function kvMethod<AS extends z.ZodType, RS extends z.ZodType>(m: Parameters<typeof method<AS, RS, KvScope, KvDeps>>[0]) {
  return method<AS, RS, KvScope, KvDeps>(m);
}

function checkKey(key: string, scope: KvScope): ScopeCheck {
  const prefix = scope.prefix ?? '';
  return key.startsWith(prefix) ? IN_SCOPE : outOfScope(`kv: key "${clip(key)}" does not start with "${prefix}"`);
}

/** Stored size of an entry: key plus JSON text, in UTF-8 bytes. */
function entryBytes(key: string, json: string): number {
  return Buffer.byteLength(key, 'utf8') + Buffer.byteLength(json, 'utf8');
}

function clip(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** better-sqlite3's constructor, loaded on first use (Node's require cache keeps the one copy). */
const requireCjs = createRequire(import.meta.url);
function openDatabase(file: string, options: Database.Options): Database.Database {
  const Sqlite = requireCjs('better-sqlite3') as typeof Database;
  return new Sqlite(file, options);
}

const SCHEMA = `CREATE TABLE IF NOT EXISTS kv (
  ns TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, bytes INTEGER NOT NULL, updated INTEGER NOT NULL,
  PRIMARY KEY (ns, key)) WITHOUT ROWID`;

/** Run `f` with a connection; `null` when read-only and the file does not exist yet (empty store). */
function withDb<T>(scope: KvScope, write: boolean, f: (db: Database.Database) => T, empty: T): T {
  if (!write && !existsSync(scope.file)) return empty;
  let db: Database.Database;
  try {
    db = openDatabase(scope.file, { readonly: !write, fileMustExist: !write, timeout: KV_LOCK_WAIT_MS });
  } catch (e) {
    throw new ContainedError('CAPABILITY_FAILED', 'kv: the store cannot be opened', { cause: e, data: { reason: 'OPEN' } });
  }
  try {
    if (write) {
      db.pragma('journal_mode = WAL');
      db.exec(SCHEMA);
    } else if (db.prepare(`SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'kv'`).get() === undefined) {
      return empty;
    }
    return f(db);
  } catch (e) {
    if (e instanceof ContainedError) throw e;
    throw new ContainedError('CAPABILITY_FAILED', 'kv: the store failed', { cause: e, data: { reason: 'SQLITE' } });
  } finally {
    db.close();
  }
}

export const kvCapability: CapabilityDefinition<KvScope, KvDeps> = defineCapability<KvScope, KvDeps>({
  name: 'kv',
  description: 'A durable key-value store: JSON values under string keys.',
  scope: kvScopeSchema as unknown as z.ZodType<KvScope>,
  intersect(parent, narrower) {
    if (parent.file !== narrower.file || parent.namespace !== narrower.namespace) {
      throw new ContainedError('INVALID_SCOPE', 'kv: a narrower scope must keep the same file and namespace');
    }
    const p = parent.prefix ?? '';
    const n = narrower.prefix ?? '';
    if (!n.startsWith(p) && !p.startsWith(n)) throw new ContainedError('INVALID_SCOPE', `kv: prefixes "${p}" and "${n}" do not overlap`);
    const scope: KvScope = { file: parent.file, namespace: parent.namespace };
    const prefix = n.length > p.length ? n : p;
    if (prefix !== '') scope.prefix = prefix;
    if (parent.readOnly || narrower.readOnly) scope.readOnly = true;
    // An unset parent limit is its default, not "unlimited": a child cannot raise it.
    const mv = narrowerLimit(parent.maxValueBytes, narrower.maxValueBytes, DEFAULT_MAX_VALUE_BYTES);
    if (mv !== undefined) scope.maxValueBytes = mv;
    const mt = narrowerLimit(parent.maxTotalBytes, narrower.maxTotalBytes, DEFAULT_MAX_TOTAL_BYTES);
    if (mt !== undefined) scope.maxTotalBytes = mt;
    return scope;
  },
  methodUsable: (s, m) => !s.readOnly || m.risk.readOnly,
  // The same namespace of the same file, and one prefix extends the other.
  overlaps: (a, b) => a.namespace === b.namespace && ((a.prefix ?? '').startsWith(b.prefix ?? '') || (b.prefix ?? '').startsWith(a.prefix ?? '')) && sameHostFile(a.file, b.file),
  staging: kvResourceStaging(() => kvCapability),
  describeScope(s) {
    const parts = [s.prefix ? `keys starting with ${JSON.stringify(s.prefix)}` : 'any key', s.readOnly ? 'read-only' : 'read-write'];
    parts.push(`values up to ${formatBytes(valueLimit(s))} of JSON`, `${formatBytes(totalLimit(s))} in total`);
    return parts.join('; ');
  },
  methods: {
    get: kvMethod({
      staging: kvMethodStaging.get,
      description: 'Get the JSON value stored under a key, or null when there is none.',
      argName: 'key',
      args: keyArg,
      result: jsonValue.nullable(),
      risk: { readOnly: true, openWorld: false },
      inScope: (key, s) => checkKey(key, s),
      run(key, { scope }) {
        return withDb(
          scope,
          false,
          (db) => {
            const row = db.prepare('SELECT value FROM kv WHERE ns = ? AND key = ?').get(scope.namespace, key) as { value: string } | undefined;
            return row === undefined ? null : (JSON.parse(row.value) as z.infer<typeof jsonValue>);
          },
          null,
        );
      },
    }),
    set: kvMethod({
      staging: kvMethodStaging.set,
      description: 'Store a JSON value under a key, replacing any previous value.',
      args: setArgs,
      result: z.null(),
      risk: { readOnly: false, destructive: true, reversible: false, openWorld: false },
      inScope(a, s) {
        if (s.readOnly) return outOfScope('kv: this store is read-only');
        const bytes = Buffer.byteLength(JSON.stringify(a.value), 'utf8');
        if (bytes > valueLimit(s)) return outOfScope(`kv: value is ${bytes} bytes, more than ${valueLimit(s)}`);
        return checkKey(a.key, s);
      },
      run(a, { scope }) {
        if (scope.readOnly) throw new ContainedError('OUT_OF_SCOPE', 'kv: this store is read-only');
        const json = JSON.stringify(a.value);
        const bytes = entryBytes(a.key, json);
        return withDb(
          scope,
          true,
          (db) => {
            const put = db.transaction(() => {
              const total = (db.prepare('SELECT COALESCE(SUM(bytes), 0) AS t FROM kv WHERE ns = ?').get(scope.namespace) as { t: number }).t;
              const old = db.prepare('SELECT bytes FROM kv WHERE ns = ? AND key = ?').get(scope.namespace, a.key) as { bytes: number } | undefined;
              const after = total - (old?.bytes ?? 0) + bytes;
              if (after > totalLimit(scope)) {
                throw new ContainedError('QUOTA_EXCEEDED', `kv: storing this would use ${after} bytes, over the ${totalLimit(scope)} byte quota`, {
                  data: { quota: 'maxTotalBytes', limit: totalLimit(scope), used: total },
                });
              }
              db.prepare('INSERT OR REPLACE INTO kv (ns, key, value, bytes, updated) VALUES (?, ?, ?, ?, ?)').run(
                scope.namespace,
                a.key,
                json,
                bytes,
                Date.now(),
              );
            });
            put.immediate();
            return null;
          },
          null,
        );
      },
    }),
    delete: kvMethod({
      staging: kvMethodStaging.delete,
      description: 'Delete a key and its value; returns whether it existed.',
      argName: 'key',
      args: keyArg,
      result: z.strictObject({ deleted: z.boolean() }),
      risk: { readOnly: false, destructive: true, reversible: false, openWorld: false },
      inScope: (key, s) => (s.readOnly ? outOfScope('kv: this store is read-only') : checkKey(key, s)),
      run(key, { scope }) {
        if (scope.readOnly) throw new ContainedError('OUT_OF_SCOPE', 'kv: this store is read-only');
        return withDb(
          scope,
          true,
          (db) => ({ deleted: db.prepare('DELETE FROM kv WHERE ns = ? AND key = ?').run(scope.namespace, key).changes > 0 }),
          { deleted: false },
        );
      },
    }),
    list: kvMethod({
      staging: kvMethodStaging.list,
      description: 'List keys in order, optionally under a prefix and after a key (for paging).',
      args: listArgs,
      result: listResult,
      risk: { readOnly: true, openWorld: false },
      inScope(a, s) {
        const p = s.prefix ?? '';
        const want = a?.prefix ?? '';
        return want.startsWith(p) || p.startsWith(want) ? IN_SCOPE : outOfScope(`kv: prefix "${clip(want)}" is outside "${p}"`);
      },
      run(a, { scope }) {
        const p = scope.prefix ?? '';
        const want = a?.prefix ?? '';
        // The narrower of the two prefixes (inScope guaranteed one extends the other).
        const prefix = want.length > p.length ? want : p;
        const limit = a?.limit ?? 100;
        return withDb(
          scope,
          false,
          (db) => {
            const rows = db
              .prepare(
                `SELECT key FROM kv WHERE ns = ? AND key >= ? AND substr(key, 1, length(?)) = ? AND key > ? ORDER BY key LIMIT ?`,
              )
              .all(scope.namespace, prefix, prefix, prefix, a?.after ?? '', limit + 1) as { key: string }[];
            return { keys: rows.slice(0, limit).map((r) => r.key), more: rows.length > limit };
          },
          { keys: [], more: false },
        );
      },
    }),
  },
});

/** Bind kv to a SQLite file. The file's folder must exist; the file is created on first write. */
export function createKv(scope: unknown, _deps: KvDeps = {}, options: InstanceOptions = {}): CapabilityInstance<KvScope, KvDeps> {
  const instance = createInstance(kvCapability, scope, {}, options);
  const dir = path.dirname(instance.scope.file);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ContainedError('INVALID_SCOPE', 'kv: the folder of the store file does not exist');
  }
  return instance;
}

/** The registry's entry: no host options; a relative `file` is relative to the host's data folder. */
export const kvPlugin = definePlugin({
  definition: kvCapability,
  hostOptions: NO_HOST_OPTIONS,
  create: (scope, context, options) => createKv(scopeWithDataDir(scope, 'file', context.dataDir), {}, options),
});
