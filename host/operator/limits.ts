/**
 * The `operator` section of the host config: the operator channel's limits (host/operator/server.ts,
 * docs/protocol.md "Limits and close codes"), each with its default and its unit in its name. The
 * per-token connection cap is `http.maxOperatorConnectionsPerToken` (host/api/limits.ts).
 */
import { z } from 'zod';

export const operatorConfigSchema = z.strictObject({
  /** Largest client frame, bytes; a bigger one closes the connection 1009. */
  maxPayloadBytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(64 * 1024),
  /** Sustained client messages per second per connection (token bucket rate). */
  messagesPerSecond: z.number().positive().max(100_000).default(20),
  /** Client messages allowed in a burst (token bucket size). */
  messageBurst: z.number().int().min(1).max(100_000).default(40),
  /** Refused (rate-limited) messages tolerated: `messageBurst` per this many ms, then close 1008. */
  abuseWindowMs: z.number().int().min(100).max(3_600_000).default(10_000),
  /** Heartbeat interval, ms; a peer that has not answered the previous ping is terminated. */
  heartbeatMs: z.number().int().min(100).max(600_000).default(15_000),
  /** Most bytes queued for one client before it is closed 1013 (slow reader). */
  maxBufferedBytes: z.number().int().min(1024).max(1024 * 1024 * 1024).default(4 * 1024 * 1024),
  /** How long a closing handshake may take before the socket is destroyed, ms. */
  closeTimeoutMs: z.number().int().min(100).max(600_000).default(5_000),
  /** Pending requests per `snapshot` message. */
  snapshotChunkSize: z.number().int().min(1).max(100_000).default(500),
});
export type OperatorConfig = z.output<typeof operatorConfigSchema>;

/** Every default of the `operator` section. */
export const OPERATOR_CONFIG_DEFAULTS: Readonly<OperatorConfig> = Object.freeze(operatorConfigSchema.parse({}));
