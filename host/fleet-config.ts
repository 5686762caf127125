/**
 * The `fleet` section of the host config: how hosts sharing a PostgreSQL store tell each other they
 * are alive (host/fleet.ts). A host beats its heart every `heartbeatMs`; one silent for
 * `deadAfterMs` is declared dead by the first live host that notices, which ends its runs. The
 * timeout must leave room for a few missed beats (a long garbage collection, a database failover),
 * or a slow host is reaped while alive; it then stops with HOST_REAPED rather than act on requests
 * it no longer owns.
 */
import { z } from 'zod';

export const fleetConfigSchema = z
  .strictObject({
    heartbeatMs: z.number().int().min(50).max(60_000).default(2_000),
    deadAfterMs: z.number().int().min(200).max(3_600_000).default(15_000),
  })
  .refine((f) => f.deadAfterMs >= 3 * f.heartbeatMs, { message: 'fleet.deadAfterMs must be at least three heartbeats (3 × fleet.heartbeatMs)' });
export type FleetConfig = z.output<typeof fleetConfigSchema>;
