/**
 * The `store` and `fleet` settings of the host config. `store` names a PostgreSQL database with a
 * `postgres://` URL (checked here, so a malformed one fails at start-up with its path); `fleet` is
 * the section how hosts sharing a PostgreSQL store tell each other they
 * are alive (host/fleet.ts). A host beats its heart every `heartbeatMs`; one silent for
 * `deadAfterMs` is declared dead by the first live host that notices, which ends its runs. The
 * timeout must leave room for a few missed beats (a long garbage collection, a database failover),
 * or a slow host is reaped while alive; it then stops with HOST_REAPED rather than act on requests
 * it no longer owns.
 */
import { z } from 'zod';
import { ContainedError } from '../runtime/errors.js';

export function isPostgresUrl(value: string): boolean {
  return /^postgres(ql)?:\/\//i.test(value);
}

/** Check a configured store value; INVALID_ARGUMENT for a PostgreSQL URL that does not parse. */
export function checkStoreValue(value: string, source: string): void {
  if (!isPostgresUrl(value)) return;
  try {
    new URL(value);
  } catch (cause) {
    throw new ContainedError('INVALID_ARGUMENT', `${source}: store: not a valid postgres:// URL`, { cause, data: { path: ['store'] } });
  }
}

export const fleetConfigSchema = z
  .strictObject({
    heartbeatMs: z.number().int().min(50).max(60_000).default(2_000),
    deadAfterMs: z.number().int().min(200).max(3_600_000).default(15_000),
  })
  .refine((f) => f.deadAfterMs >= 3 * f.heartbeatMs, { message: 'fleet.deadAfterMs must be at least three heartbeats (3 × fleet.heartbeatMs)' });
export type FleetConfig = z.output<typeof fleetConfigSchema>;
