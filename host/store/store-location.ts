/**
 * Which store a host (or a CLI command) uses: the config's `store`, overridden by the
 * `CONTAINED_STORE` environment variable. A `postgres://` (or `postgresql://`) URL is a PostgreSQL
 * database several hosts share (pg-store.ts); anything else is the path of an embedded SQLite file
 * (relative to the data folder); nothing is `<dataDir>/contained.db`, as before.
 *
 * With PostgreSQL each host still keeps `<dataDir>/contained.db` for what stays its own: the trust
 * ledger and review queue, passkeys and the notification outbox (docs/host-state.md says why).
 */
import path from 'node:path';
import { checkStoreValue, isPostgresUrl } from '../fleet-config.js';
import { defaultStorePath } from './sqlite-store.js';

export type StoreLocation = { kind: 'sqlite'; file: string } | { kind: 'postgres'; url: string };

/** The environment variable that overrides the config's `store`. */
export const STORE_ENV = 'CONTAINED_STORE';

export function storeLocation(config: { dataDir: string; store?: string | undefined }, env: NodeJS.ProcessEnv = process.env): StoreLocation {
  const fromEnv = env[STORE_ENV];
  const value = fromEnv !== undefined && fromEnv.trim() !== '' ? fromEnv.trim() : config.store;
  if (value === undefined) return { kind: 'sqlite', file: defaultStorePath(config.dataDir) };
  if (fromEnv !== undefined && fromEnv.trim() !== '') checkStoreValue(value, STORE_ENV);
  if (isPostgresUrl(value)) return { kind: 'postgres', url: value };
  return { kind: 'sqlite', file: path.resolve(config.dataDir, value) };
}

/**
 * The host's own SQLite file: the store itself for SQLite; for PostgreSQL, the per-host file that
 * keeps the trust ledger, passkeys and the notification outbox.
 */
export function localStateFile(config: { dataDir: string; store?: string | undefined }, env: NodeJS.ProcessEnv = process.env): string {
  const location = storeLocation(config, env);
  return location.kind === 'sqlite' ? location.file : defaultStorePath(config.dataDir);
}

/** A URL with its password replaced, for logs and messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://…';
  }
}
