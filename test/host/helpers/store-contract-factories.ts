/**
 * The two stores the contract suite (store-contract.test.ts) runs against: the embedded SQLite
 * store on a temp file, and PostgreSQL on a fresh database of a throwaway cluster
 * (test/helpers/postgres.ts) per test. `open()` gives another store object on the *same* store —
 * a second SQLite connection to the file, a second PostgreSQL pool — which is what the
 * concurrency and watch tests race and listen across.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { defaultStorePath, openSqliteStore } from '../../../host/store/sqlite-store.js';
import type { Store } from '../../../host/store/store.js';
import { pgAvailable, type PgServer, startPostgres } from '../../helpers/postgres.js';

export interface StoreFactory {
  readonly name: 'sqlite' | 'postgres';
  /** False when this store cannot run here (no PostgreSQL): its tests skip. */
  readonly available: boolean;
  /** Whether a change committed through one store object reaches another's `watch` listener. */
  readonly watches: boolean;
  /** beforeAll / afterAll. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** beforeEach: a new empty store. */
  fresh(): Promise<void>;
  /** Another store object on the current store; closed by `cleanup`. */
  open(): Promise<Store>;
  /** afterEach: close every store object opened, remove the store. */
  cleanup(): Promise<void>;
}

function tracker(): { track(s: Store): Store; closeAll(): Promise<void> } {
  const open: Store[] = [];
  return {
    track(s) {
      open.push(s);
      return s;
    },
    async closeAll() {
      for (const s of open.splice(0)) await s.close().catch(() => undefined);
    },
  };
}

export function sqliteFactory(): StoreFactory {
  let dir: string | undefined;
  let file = '';
  const stores = tracker();
  return {
    name: 'sqlite',
    available: true,
    watches: false,
    async start() {},
    async stop() {},
    async fresh() {
      dir = await mkdtemp(path.join(os.tmpdir(), 'contained-contract-'));
      file = defaultStorePath(path.join(dir, 'data'));
    },
    async open() {
      return stores.track(await openSqliteStore(file));
    },
    async cleanup() {
      await stores.closeAll();
      if (dir) await rm(dir, { recursive: true, force: true });
      dir = undefined;
    },
  };
}

export function postgresFactory(): StoreFactory {
  let server: PgServer | undefined;
  let url = '';
  const stores = tracker();
  return {
    name: 'postgres',
    available: pgAvailable,
    watches: true,
    async start() {
      server = await startPostgres();
    },
    async stop() {
      await server?.stop();
    },
    async fresh() {
      if (!server) throw new Error('postgres factory: start() first');
      url = await server.createDatabase();
    },
    async open() {
      // Imported when used, as open-store.ts does: the SQLite half of the suite never loads the driver.
      const { openPgStore } = await import('../../../host/store/pg-store.js');
      return stores.track(await openPgStore(url));
    },
    async cleanup() {
      await stores.closeAll();
    },
  };
}
