/**
 * The `http` section of the host config: every limit of the host's HTTP server (platform API,
 * event streams, operator WebSockets, the console's routes) and who may read other clients' runs.
 * Each limit has a safe default and its unit in its name; the host config composes this schema
 * (host/config.ts), so a typo is an error at start-up.
 *
 * What each limit defends against, and how a client is refused (docs/http-api.md):
 * - slowloris (headers or bodies sent a byte at a time): `headersTimeoutMs`, `requestTimeoutMs`
 *   — Node answers 408 and closes; idle keep-alive sockets go after `keepAliveTimeoutMs`;
 * - socket exhaustion: `maxConnections` counts every socket (requests, event streams, WebSockets);
 *   one more is answered `503 SERVER_BUSY` with `Retry-After` and closed at once;
 * - one client holding everything: `maxEventStreamsPerClient` (per platform client, i.e. token
 *   name) and `maxOperatorConnectionsPerToken` (per operator token) answer `429
 *   TOO_MANY_CONNECTIONS` with `Retry-After` (the WebSocket refusal happens at the upgrade).
 */
import { z } from 'zod';

const MiB = 1024 * 1024;

/** Seconds a refused connection is told to wait (`Retry-After`) before trying again. */
export const CONNECTION_RETRY_AFTER_SECONDS = 5;

export const httpConfigSchema = z.strictObject({
  /** Time a client has to send the request line and headers, ms; then 408 and close (slowloris). */
  headersTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
  /** Time a client has to send a whole request (headers and body), ms; then 408 and close. Event streams are not cut: it covers receiving the request only. */
  requestTimeoutMs: z.number().int().min(1_000).max(3_600_000).default(120_000),
  /** An idle keep-alive socket is closed after this many ms. */
  keepAliveTimeoutMs: z.number().int().min(100).max(600_000).default(5_000),
  /** Sockets open at once (requests, event streams, WebSockets); one more is answered 503 SERVER_BUSY and closed. */
  maxConnections: z.number().int().min(1).max(1_000_000).default(512),
  /** Event streams (`GET /v1/runs/:id/events`) one platform client (token name) holds at once; one more is 429 TOO_MANY_CONNECTIONS. */
  maxEventStreamsPerClient: z.number().int().min(1).max(100_000).default(64),
  /** Operator WebSockets (console tabs, `contained operator`) one operator token holds at once; one more is refused 429 at the upgrade. */
  maxOperatorConnectionsPerToken: z.number().int().min(1).max(100_000).default(16),
  /** Names of platform tokens that may read and follow every client's runs (not cancel them); admins always may. */
  crossClientReaders: z.array(z.string().min(1)).default([]),
  /** Largest image upload (`POST /v1/images`), bytes; beyond: 413 PAYLOAD_TOO_LARGE. */
  maxImageBytes: z.number().int().min(1024).max(1024 * MiB).default(32 * MiB),
  /** Largest `POST /v1/runs` body (an inline base64 image plus input), bytes. */
  maxRunBodyBytes: z.number().int().min(1024).max(1536 * MiB).default(48 * MiB),
  /** Longest `?waitMs=` long-poll on `GET /v1/runs/:id`, ms. */
  maxWaitMs: z.number().int().min(0).max(120_000).default(120_000),
  /** Keep-alive comment interval on event streams, ms. */
  sseHeartbeatMs: z.number().int().min(10).max(600_000).default(15_000),
  /** Unsent bytes an event stream may queue before it is cut (slow reader), bytes. */
  sseMaxBufferedBytes: z.number().int().min(1024).max(1024 * MiB).default(4 * MiB),
}).refine((c) => c.headersTimeoutMs <= c.requestTimeoutMs, { message: 'headersTimeoutMs must not exceed requestTimeoutMs', path: ['headersTimeoutMs'] });
export type HttpConfig = z.output<typeof httpConfigSchema>;

/** Every default of the `http` section. */
export const DEFAULT_HTTP_CONFIG: Readonly<HttpConfig> = Object.freeze(httpConfigSchema.parse({}));
