/**
 * The `mcp` section of the host config: the MCP server's limits (host/mcp/, docs/mcp.md), each
 * with its default and its unit in its name. Limits are per MCP session (one stdio process, or one
 * Streamable HTTP session); each has its own typed error.
 */
import { z } from 'zod';

export const mcpConfigSchema = z.strictObject({
  /** Largest `code` a `run` call may carry, bytes (UTF-8); more is MCP_SOURCE_TOO_LARGE. */
  maxSourceBytes: z.number().int().min(1).max(16 * 1024 * 1024).default(256 * 1024),
  /** Runs one session may have live at once (running or waiting for an operator); more is MCP_TOO_MANY_RUNS. */
  maxConcurrentRuns: z.number().int().min(1).max(10_000).default(4),
  /** Runs one session may start per rolling minute; more is MCP_RATE_LIMITED. */
  runsPerMinute: z.number().int().min(1).max(1_000_000).default(60),
  /** While a call waits for an operator, a progress notification at least this often, ms (keeps client timeouts from firing). */
  progressIntervalMs: z.number().int().min(50).max(600_000).default(10_000),
  /** Streamable HTTP sessions open at once (all agents); one more initialize is SERVER_BUSY. */
  maxSessions: z.number().int().min(1).max(100_000).default(100),
  /** A Streamable HTTP session idle this long is closed (its live runs cancelled), ms. */
  sessionIdleMs: z.number().int().min(1000).max(7 * 86_400_000).default(30 * 60_000),
  /** Largest JSON-RPC body on `/v1/mcp`, bytes. */
  maxBodyBytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024),
});
export type McpConfig = z.output<typeof mcpConfigSchema>;

/** Every default of the `mcp` section. */
export const MCP_CONFIG_DEFAULTS: Readonly<McpConfig> = Object.freeze(mcpConfigSchema.parse({}));
