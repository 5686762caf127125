/**
 * The `console` section of the host config: the web console's session limits
 * (host/console/sessions.ts) and its sweep, each with its default and its unit in its name.
 */
import { z } from 'zod';

export const consoleConfigSchema = z.strictObject({
  sessions: z
    .strictObject({
      /** A session unused this long ends, ms (idle expiry; default 30 min). */
      idleMs: z.number().int().min(1_000).max(30 * 86_400_000).default(30 * 60_000),
      /** A session ends this long after login whatever happens, ms (absolute expiry; default 8 h). */
      maxAgeMs: z.number().int().min(1_000).max(365 * 86_400_000).default(8 * 3_600_000),
      /** Lifetime of a one-time login code, ms (default 1 h). */
      codeTtlMs: z.number().int().min(1_000).max(30 * 86_400_000).default(3_600_000),
      /** Most live sessions; beyond it the oldest is dropped. */
      maxSessions: z.number().int().min(1).max(1_000_000).default(1000),
    })
    .prefault({}),
  /** How often expired sessions are swept and their sockets closed, ms. */
  sweepMs: z.number().int().min(100).max(3_600_000).default(30_000),
});
export type ConsoleConfig = z.output<typeof consoleConfigSchema>;

/** Every default of the `console` section. */
export const CONSOLE_CONFIG_DEFAULTS: Readonly<ConsoleConfig> = Object.freeze(consoleConfigSchema.parse({}));
