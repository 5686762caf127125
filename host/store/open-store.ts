/**
 * Open the store a location names: the embedded SQLite file, or PostgreSQL. The PostgreSQL driver
 * is loaded only when used, so a SQLite host or CLI never pays for it.
 */
import type { Logger } from 'pino';
import { openSqliteStore } from './sqlite-store.js';
import type { Store } from './store.js';
import type { StoreLocation } from './store-location.js';

export interface OpenStoreOptions {
  now?: () => number;
  logger?: Logger;
}

export async function openStore(location: StoreLocation, options: OpenStoreOptions = {}): Promise<Store> {
  if (location.kind === 'sqlite') return openSqliteStore(location.file, options.now ? { now: options.now } : {});
  const { openPgStore } = await import('./pg-store.js');
  return openPgStore(location.url, { ...(options.now ? { now: options.now } : {}), ...(options.logger ? { logger: options.logger } : {}) });
}
