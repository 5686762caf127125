/**
 * Where the host's state lives for a command: the data folder and store file, from `--data-dir`,
 * else the host config's `dataDir` (`--config` or ./contained.config.json), else ./.contained.
 *
 * Read-only callers use `openForRead`, which never creates a data folder: a missing store file is
 * an empty store. Fails like loadHostConfig (USAGE, INVALID_ARGUMENT) and the store (INTERNAL).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ContainedError } from '../../runtime/errors.js';
import { type HostConfig, loadHostConfig, resolveConfigPath } from '../config.js';
import { DEFAULT_DATA_DIR, defaultStorePath } from './sqlite-store.js';
import type { Store } from './store.js';
import { refuseMigratedStore } from './migrated-marker.js';
import { openStore } from './open-store.js';
import { localStateFile, type StoreLocation, storeLocation } from './store-location.js';

export interface StateLocation {
  /** The config that was read, when one was found. */
  config: HostConfig | undefined;
  configPath: string | undefined;
  dataDir: string;
  /** The host's own SQLite file (the store itself, or with PostgreSQL the per-host trust ledger, passkeys, outbox). */
  storeFile: string;
  /** The store: that SQLite file, or a PostgreSQL database (the config's `store`, `CONTAINED_STORE`). */
  store: StoreLocation;
}

export interface LocateOptions {
  /** `--config` as given. */
  configFlag?: string | undefined;
  /** `--data-dir` as given. */
  dataDirFlag?: string | undefined;
  /** When set, a missing config is a USAGE error naming this command. */
  requireConfigFor?: string;
  cwd?: string;
}

export async function locateState(options: LocateOptions = {}): Promise<StateLocation> {
  const cwd = options.cwd ?? process.cwd();
  const configPath = resolveConfigPath(options.configFlag, cwd);
  if (configPath === undefined && options.requireConfigFor !== undefined) {
    throw new ContainedError(
      'USAGE',
      `${options.requireConfigFor} needs the host config (its capabilities, their methods and risk): there is no ${path.join(cwd, 'contained.config.json')}; pass --config FILE`,
    );
  }
  const config = configPath === undefined ? undefined : await loadHostConfig(configPath);
  const dataDir = options.dataDirFlag !== undefined ? path.resolve(cwd, options.dataDirFlag) : (config?.dataDir ?? path.resolve(cwd, DEFAULT_DATA_DIR));
  const selected = { dataDir, store: config?.store };
  return { config, configPath, dataDir, storeFile: localStateFile(selected), store: storeLocation(selected) };
}

/** Open the store for writing (creates the data folder and file when missing). */
export async function openForWrite(location: StateLocation): Promise<Store> {
  refuseMigratedStore(location.dataDir, location.store);
  return openStore(location.store);
}

/**
 * The store, opened for writing at its first use, and closed by `close` only if it was opened: a
 * command whose checks refuse before it writes (a grant the rules refuse) leaves no data folder
 * behind, as when it checked first and opened after.
 */
export function openOnFirstUse(location: StateLocation): Store {
  let opened: Promise<Store> | undefined;
  return new Proxy({} as Store, {
    get(_, name) {
      if (name === 'close') return async () => (opened ? (await opened).close() : undefined);
      // Not a thenable: `await` on this store must not open it.
      if (typeof name !== 'string' || name === 'then') return undefined;
      return async (...args: unknown[]) => {
        opened ??= openForWrite(location);
        const store = await opened;
        return (store[name as keyof Store] as (...a: unknown[]) => Promise<unknown>).apply(store, args);
      };
    },
  });
}

/** Open the store for reading; undefined when there is no store yet. */
export async function openForRead(location: StateLocation): Promise<Store | undefined> {
  if (location.store.kind === 'postgres') return openStore(location.store);
  return existsSync(location.store.file) ? openStore(location.store) : undefined;
}

/** Run `f` and close the store whatever happens. */
export async function withStore<T>(store: Store, f: (store: Store) => Promise<T>): Promise<T> {
  try {
    return await f(store);
  } finally {
    await store.close();
  }
}
