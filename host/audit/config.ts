/**
 * The `audit` section of the host config: how the host's audit log (host/audit/log.ts) batches,
 * commits and checkpoints, each with its default and its unit in its name; and, for a fleet on
 * PostgreSQL, which key signs and which public keys verify (docs/audit-and-trust.md "Several hosts").
 */
import { z } from 'zod';

export const auditConfigSchema = z.strictObject({
  /** Longest wait of a non-urgent record (run starts, ledger rows) for an urgent one to share its commit, ms; 0: commit at once. */
  lazyFlushMs: z.number().int().min(0).max(10_000).default(10),
  /** Sign a checkpoint every this many records. */
  checkpointEvery: z.number().int().min(1).max(10_000_000).default(1000),
  /** …and at least this often while records arrive, ms; 0 disables the timer. */
  checkpointIntervalMs: z.number().int().min(0).max(86_400_000).default(60_000),
  /** Most records per transaction; the rest go in the next one. */
  maxBatch: z.number().int().min(1).max(1_000_000).default(10_000),
  /** `full` fsyncs every commit; `normal` survives process death but not power loss. */
  synchronous: z.enum(['full', 'normal']).default('full'),
  /** How long to wait for another process's write lock, ms. */
  busyTimeoutMs: z.number().int().min(0).max(600_000).default(5_000),
  /** Poll the grant/token inbox this often, ms; 0: only when appending. */
  inboxPollMs: z.number().int().min(0).max(3_600_000).default(1_000),
  /**
   * The signing key (ed25519 PKCS#8 PEM, mode 0600), relative to the data folder. Default: the host's
   * own `audit-key.pem`. A fleet may point every host at one shared key file, so one public key
   * verifies every checkpoint.
   */
  keyFile: z.string().min(1).max(4096).optional(),
  /**
   * Public keys (PEM files, relative to the data folder) that verify checkpoints besides this host's
   * own: the other hosts of the fleet. Used by `contained audit verify` (with no --public-key) and the
   * console's Audit page.
   */
  publicKeyFiles: z.array(z.string().min(1).max(4096)).max(1000).default([]),
});
export type AuditConfig = z.output<typeof auditConfigSchema>;

/** Every default of the `audit` section. */
export const AUDIT_CONFIG_DEFAULTS: Readonly<AuditConfig> = Object.freeze(auditConfigSchema.parse({}));
