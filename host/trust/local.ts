/**
 * The trust service opened from a terminal on the host, without a running host: the store, an
 * audit writer (role `cli`, signing with the host key in the data folder) and the ledger over the
 * same file. What it writes reaches a running host at its next call (grants are read per call);
 * operators connected to that host are not notified — use the channel (--url/--token) for that.
 *
 * With a PostgreSQL store the records go to the fleet's chain and the grants to PostgreSQL, while
 * the ledger, reviews and promotions are this data folder's own SQLite file (the host's).
 */
import { existsSync } from 'node:fs';
import type { RiskAnnotations } from '../../capabilities/sdk/risk.js';
import { ContainedError } from '../../runtime/errors.js';
import { loadOrCreateAuditKey } from '../audit/keys.js';
import { AuditLog } from '../audit/log.js';
import { openCapabilities } from '../config.js';
import type { StateLocation } from '../store/location.js';
import { openForWrite } from '../store/location.js';
import type { Store } from '../store/store.js';
import { DEFAULT_TRUST_CONFIG } from './policy.js';
import { TrustService } from './service.js';

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
  if (!existsSync(location.storeFile)) throw new ContainedError('NOT_FOUND', `no host store at ${location.storeFile} (pass --data-dir or --config)`);
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
  const trust = new TrustService({ audit, store, config: location.config?.trust ?? DEFAULT_TRUST_CONFIG, ...(riskOf ? { riskOf } : {}), sharedStore: postgres !== undefined });
  await trust.refreshGrants();
  return {
    trust,
    async close() {
      trust.close();
      await audit.flush();
      await audit.close();
      await store.close();
    },
  };
}
