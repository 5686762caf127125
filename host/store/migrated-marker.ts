/**
 * After `contained store migrate` copied a data folder's SQLite store into PostgreSQL, the folder
 * keeps a marker (`<dataDir>/store-migrated.json`: where to, when). A host, or a CLI write, that
 * would still use that SQLite file is refused STORE_MOVED: it would decide on a copy the fleet no
 * longer reads (two truths), e.g. a host restarted with its old config. Hosts of the fleet, whose
 * config names the PostgreSQL store, use the same folder for their own state and are not affected.
 * Deleting the marker goes back to SQLite on purpose.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ContainedError } from '../../runtime/errors.js';
import type { StoreLocation } from './store-location.js';

export const MIGRATED_MARKER = 'store-migrated.json';

export function writeMigratedMarker(dataDir: string, to: string, at: number): void {
  writeFileSync(path.join(dataDir, MIGRATED_MARKER), `${JSON.stringify({ to, at: new Date(at).toISOString() }, null, 2)}\n`, { mode: 0o600 });
}

/** STORE_MOVED when `location` is the SQLite store of a folder that was migrated to PostgreSQL. */
export function refuseMigratedStore(dataDir: string, location: StoreLocation): void {
  if (location.kind !== 'sqlite') return;
  const marker = path.join(dataDir, MIGRATED_MARKER);
  if (!existsSync(marker)) return;
  let to = 'PostgreSQL';
  try {
    const parsed = JSON.parse(readFileSync(marker, 'utf8')) as { to?: unknown };
    if (typeof parsed.to === 'string') to = parsed.to;
  } catch {
    // An unreadable marker still marks the folder as moved.
  }
  throw new ContainedError('STORE_MOVED', `this data folder's SQLite store was copied to ${to} by contained store migrate; set "store" in the host config (or CONTAINED_STORE) to that database, or delete ${marker} to go back to SQLite`, {
    data: { to, marker },
  });
}
