/**
 * The trust service opened from a terminal on the host, without a running host: the store, an
 * audit writer (role `cli`, signing with the host key in the data folder) and the ledger over the
 * same file. What it writes reaches a running host at its next call (grants are read per call);
 * operators connected to that host are not notified — use the channel (--url/--token) for that.
 *
 * With a PostgreSQL store everything — records, grants, ledger, reviews, promotions — is the
 * fleet's, in PostgreSQL (the trust tables follow the audit chain, tables-for.ts).
 */
import { existsSync } from 'node:fs';
import type Database from 'better-sqlite3';
import type { RiskAnnotations } from '../../capabilities/sdk/risk.js';
import { ContainedError } from '../../runtime/errors.js';
import { loadOrCreateAuditKey } from '../audit/keys.js';
import { AuditLog } from '../audit/log.js';
import { openAuditPool } from '../audit/pg.js';
import { openAuditReader } from '../audit/query.js';
import { openCapabilities } from '../config.js';
import type { StateLocation } from '../store/location.js';
import { openForRead, openForWrite } from '../store/location.js';
import type { Store } from '../store/store.js';
import { DEFAULT_TRUST_CONFIG } from './policy.js';
import { TrustService } from './service.js';
import { pgTrustTables } from './pg-tables.js';
import { sqliteTrustTables } from './sqlite-tables.js';
import type { TrustTables } from './tables.js';

export interface LocalTrust {
  trust: TrustService;
  close(): Promise<void>;
}

/**
 * Risk lookup from the host config's capability instances, when a config is there and they open.
 * Risk is read from the instances' definitions, so what their kinds started is closed at once.
 */
export async function riskFromConfig(location: StateLocation): Promise<((capability: string, method: string) => RiskAnnotations | undefined) | undefined> {
  if (!location.config) return undefined;
  try {
    const { instances, close } = await openCapabilities(location.config);
    await close();
    return (capability, method) => {
      const i = instances.get(capability);
      return i?.hasMethod(method) ? i.risk(method) : undefined;
    };
  } catch {
    return undefined;
  }
}

export async function openLocalTrust(location: StateLocation): Promise<LocalTrust> {
  // A fleet's state is all in PostgreSQL: only a SQLite store has to exist already.
  if (location.store.kind !== 'postgres' && !existsSync(location.storeFile)) throw new ContainedError('NOT_FOUND', `no host store at ${location.storeFile} (pass --data-dir or --config)`);
  const store: Store = await openForWrite(location);
  const postgres = location.store.kind === 'postgres' ? location.store.url : undefined;
  let audit: AuditLog;
  try {
    audit = new AuditLog({
      file: location.storeFile,
      ...(postgres === undefined ? {} : { postgres }),
      key: loadOrCreateAuditKey(location.dataDir, location.config?.audit.keyFile),
      role: 'cli',
      checkpointIntervalMs: 0,
      inboxPollMs: 0,
    });
  } catch (error) {
    await store.close();
    throw error;
  }
  const riskOf = await riskFromConfig(location);
  const trust = new TrustService({ audit, store, config: location.config?.trust ?? DEFAULT_TRUST_CONFIG, ...(riskOf ? { riskOf } : {}) });
  return {
    trust,
    async close() {
      await audit.flush();
      await audit.close();
      await store.close();
    },
  };
}

export interface TrustReader {
  tables: TrustTables;
  /** The SQLite store file (its grants are read from it); undefined with PostgreSQL. */
  db: Database.Database | undefined;
  close(): Promise<void>;
}

/**
 * The trust tables for reading from a terminal, while a host may run: the store file read-only, or
 * the fleet's PostgreSQL database (opened through the store first, so its schema is current).
 */
export async function openTrustReader(location: StateLocation): Promise<TrustReader> {
  if (location.store.kind === 'postgres') {
    const store = await openForRead(location);
    await store?.close();
    const pool = openAuditPool(location.store.url);
    return { tables: pgTrustTables(pool), db: undefined, close: () => pool.end() };
  }
  const db = openAuditReader(location.storeFile);
  return {
    tables: sqliteTrustTables(db),
    db,
    close: async () => {
      db.close();
    },
  };
}

