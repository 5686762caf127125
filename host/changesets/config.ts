/**
 * The `staging` section of the host config: how much one staged run may record, and how long a
 * committed changeset can be undone (docs/changesets.md, docs/configuration.md). Only the schema
 * lives here; the limits are enforced by `StagingSession` (capabilities/sdk/staging.ts) and the
 * window by `ChangesetService.undo`.
 */
import { z } from 'zod';
import { DEFAULT_MAX_STAGED_BYTES, DEFAULT_MAX_STAGED_EFFECTS } from '../../capabilities/sdk/staging.js';

/** Default time a committed changeset's local effects can be undone: 24 hours. */
export const DEFAULT_UNDO_WINDOW_MS = 24 * 60 * 60 * 1000;

export const stagingConfigSchema = z.strictObject({
  /** Effects one staged run may record; more fail the call `STAGING_LIMIT`. */
  maxEffects: z.number().int().min(1).max(100_000).default(DEFAULT_MAX_STAGED_EFFECTS),
  /** Bytes (JSON of each effect's arguments and details) one staged run's changeset may hold; more fail `STAGING_LIMIT`. */
  maxBytes: z
    .number()
    .int()
    .min(1024)
    .max(1024 * 1024 * 1024)
    .default(DEFAULT_MAX_STAGED_BYTES),
  /** How long after its commit a changeset's local effects can be undone (0: never; at most 30 days). */
  undoWindowMs: z
    .number()
    .int()
    .min(0)
    .max(30 * 24 * 60 * 60 * 1000)
    .default(DEFAULT_UNDO_WINDOW_MS),
});
export type StagingConfig = z.output<typeof stagingConfigSchema>;
