/**
 * Host-side options of an `mcp` capability: which server (a stdio command, or a Streamable HTTP
 * URL), the secrets the host attaches (env values, HTTP headers — the agent never sees them),
 * which tools are offered at all, the operator's risk overrides, and the limits that keep a
 * misbehaving server from hurting the host. Strict zod schemas: a typo fails at start-up.
 *
 * Risk may be raised per tool freely; lowering it below what the server's annotations (or the
 * worst case) say needs `reason`, which is recorded with the capability and shown in its docs.
 */
import { z } from 'zod';

/** A literal value, or the name of a host secret whose value the host fills in. */
export const secretOrValueSchema = z.union([z.string(), z.strictObject({ secret: z.string().min(1) })]);
export type SecretOrValue = z.output<typeof secretOrValueSchema>;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export const stdioServerSchema = z.strictObject({
  /** The program to start (no shell): an absolute path or a name looked up in PATH. */
  command: z.string().min(1),
  args: z.array(z.string()).max(256).default([]),
  /** Extra environment of the server process (on top of HOME, PATH, USER, SHELL, TERM, LOGNAME only). */
  env: z.record(z.string().regex(ENV_NAME, 'an environment variable name'), secretOrValueSchema).default({}),
  /** Working folder of the server process (default: the host's). */
  cwd: z.string().min(1).optional(),
});

export const httpServerSchema = z.strictObject({
  /** The server's Streamable HTTP endpoint. */
  url: z.url({ protocol: /^https?$/ }),
  /** Headers on every request (e.g. `Authorization`), values literal or from host secrets. */
  headers: z.record(z.string().regex(HEADER_NAME, 'an HTTP header name'), secretOrValueSchema).default({}),
});

export const riskOverrideSchema = z
  .strictObject({
    readOnly: z.boolean().optional(),
    destructive: z.boolean().optional(),
    reversible: z.boolean().optional(),
    openWorld: z.boolean().optional(),
    financial: z.boolean().optional(),
    /** Required when the override lowers any risk; recorded and shown in the docs. */
    reason: z.string().trim().min(1).max(500).optional(),
  })
  .refine((o) => Object.keys(o).some((k) => k !== 'reason'), 'a risk override must set at least one annotation');
export type RiskOverride = z.output<typeof riskOverrideSchema>;

export const MCP_LIMIT_DEFAULTS = {
  connectTimeoutMs: 15_000,
  callTimeoutMs: 30_000,
  pingTimeoutMs: 2_000,
  maxMessageBytes: 8 * 1024 * 1024,
  maxResultBytes: 1024 * 1024,
  maxTools: 500,
  restartMinMs: 250,
  restartMaxMs: 30_000,
  stderrTailBytes: 8 * 1024,
  approvalsPollMs: 2_000,
} as const;

export const mcpLimitsSchema = z.strictObject({
  /** ms to start (or reach) the server, initialize and list its tools. */
  connectTimeoutMs: z.number().int().min(100).max(600_000).default(MCP_LIMIT_DEFAULTS.connectTimeoutMs),
  /** ms one tool call may take before it fails `MCP_TIMEOUT` (the request is cancelled). */
  callTimeoutMs: z.number().int().min(50).max(3_600_000).default(MCP_LIMIT_DEFAULTS.callTimeoutMs),
  /** ms a liveness ping may take after a timeout; no answer: the server is restarted. */
  pingTimeoutMs: z.number().int().min(50).max(60_000).default(MCP_LIMIT_DEFAULTS.pingTimeoutMs),
  /** Largest single message read from the server, in bytes; a larger one restarts it. */
  maxMessageBytes: z.number().int().min(1024).max(256 * 1024 * 1024).default(MCP_LIMIT_DEFAULTS.maxMessageBytes),
  /** Largest result handed to the agent (JSON bytes of the text or structured content). */
  maxResultBytes: z.number().int().min(16).max(64 * 1024 * 1024).default(MCP_LIMIT_DEFAULTS.maxResultBytes),
  /** Most tools read from the server's list (pages followed up to this many). */
  maxTools: z.number().int().min(1).max(10_000).default(MCP_LIMIT_DEFAULTS.maxTools),
  /** First restart delay after a crash, in ms; doubles per failed attempt… */
  restartMinMs: z.number().int().min(0).max(600_000).default(MCP_LIMIT_DEFAULTS.restartMinMs),
  /** …up to this, in ms. Reset once a connection answers a call. */
  restartMaxMs: z.number().int().min(0).max(3_600_000).default(MCP_LIMIT_DEFAULTS.restartMaxMs),
  /** Bytes of the server's stderr kept for the host log. */
  stderrTailBytes: z.number().int().min(0).max(1024 * 1024).default(MCP_LIMIT_DEFAULTS.stderrTailBytes),
  /** ms between re-reads of the accepted tool versions (an operator accepting a change from the CLI). */
  approvalsPollMs: z.number().int().min(50).max(3_600_000).default(MCP_LIMIT_DEFAULTS.approvalsPollMs),
});
export type McpLimits = z.output<typeof mcpLimitsSchema>;

export const mcpOptionsSchema = z.strictObject({
  server: z.union([stdioServerSchema, httpServerSchema]),
  /** MCP tool names offered at all (default: every tool the server lists). */
  tools: z.array(z.string().min(1).max(128)).min(1).max(10_000).optional(),
  /** Per MCP tool name: risk the operator sets over the server's annotations. */
  risk: z.record(z.string().min(1).max(128), riskOverrideSchema).default({}),
  /** One line for the agent-facing docs (default: the server's name and instructions' first line). */
  description: z.string().trim().min(1).max(500).optional(),
  limits: mcpLimitsSchema.prefault({}),
});
export type McpOptions = z.output<typeof mcpOptionsSchema>;
export type McpOptionsInput = z.input<typeof mcpOptionsSchema>;
export type McpStdioServer = z.output<typeof stdioServerSchema>;
export type McpHttpServer = z.output<typeof httpServerSchema>;

export function isStdio(server: McpOptions['server']): server is McpStdioServer {
  return 'command' in server;
}
