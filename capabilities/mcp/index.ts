/**
 * The `mcp` capability kind: an existing MCP server behind the gate. `startMcp` connects (stdio
 * command or Streamable HTTP URL, host-side secrets), lists the tools, applies the operator's
 * allowlist, risk overrides and accepted tool versions, and returns the capability definition plus
 * a factory for instances, the operator-facing tool table, and `close`.
 *
 * What each part defends: connection.ts (hangs, crashes, garbage, oversized messages; restarts with
 * backoff), schema.ts (ajv validation on a copy; fingerprints), risk.ts (untrusted hints → worst
 * case; lowering needs a reason), scope.ts (tool allowlist, argument constraints), tools.ts (rug
 * pulls: changed tools withdrawn, new ones held, until an operator accepts them).
 *
 * Fails at start with `MCP_SERVER_FAILED` (server cannot be started, reached or listed, or offers
 * no usable tool) or `INVALID_ARGUMENT` (bad options, unexplained risk lowering, missing secret).
 */
import type { Logger } from 'pino';
import { ContainedError } from '../../runtime/errors.js';
import type { CapabilityDefinition } from '../sdk/define.js';
import { type CapabilityInstance, createInstance, type InstanceOptions } from '../sdk/instance.js';
import { McpConnection, type SecretLookup } from './connection.js';
import { buildMcpDefinition, type McpDeps } from './definition.js';
import { isStdio, type McpOptions, mcpOptionsSchema } from './options.js';
import { toolRisk } from './risk.js';
import type { McpScope } from './scope.js';
import type { McpToolSnapshot } from './schema.js';
import { McpToolbox, memoryApprovals, type ToolApprovals, type ToolEvent } from './tools.js';

export { MCP_LIMIT_DEFAULTS, mcpOptionsSchema, mcpLimitsSchema } from './options.js';
export type { McpLimits, McpOptions, McpOptionsInput } from './options.js';
export { mcpScopeSchema } from './scope.js';
export type { Constraint, McpScope } from './scope.js';
export { methodNameFor, memoryApprovals, McpToolbox } from './tools.js';
export type { AcceptedTool, PendingTool, StoredApprovals, ToolApprovals, ToolEvent } from './tools.js';
export { riskFromHints, toolRisk } from './risk.js';
export { compileArgs, fingerprint } from './schema.js';
export type { McpDeps } from './definition.js';

export interface StartMcpDeps {
  secrets?: SecretLookup | undefined;
  logger?: Logger | undefined;
  /** Where accepted tool versions are kept (default: in memory, so every start is a first start). */
  approvals?: ToolApprovals | undefined;
  now?: () => number;
  /** Tool changes, acceptances and first starts, for the audit log and operators. */
  onToolEvent?: (event: ToolEvent) => void;
}

export interface McpCapability {
  /** The binding name. */
  readonly name: string;
  readonly definition: CapabilityDefinition<McpScope, McpDeps>;
  readonly toolbox: McpToolbox;
  readonly connection: McpConnection;
  create(scope: unknown, options?: InstanceOptions): CapabilityInstance<McpScope, McpDeps>;
  close(): Promise<void>;
}

/** What the server is, for approvals: a different command or URL is a different server. */
export function serverIdentity(options: McpOptions): string {
  return isStdio(options.server) ? `stdio:${JSON.stringify([options.server.command, ...options.server.args])}` : `http:${options.server.url}`;
}

/** Connect to the server and define the capability from its tools. */
export async function startMcp(name: string, rawOptions: unknown, deps: StartMcpDeps = {}): Promise<McpCapability> {
  const parsed = mcpOptionsSchema.safeParse(rawOptions);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const at = issue?.path.map(String) ?? [];
    throw new ContainedError('INVALID_ARGUMENT', `mcp: ${at.length ? `${at.join('.')}: ` : ''}${issue?.message ?? 'invalid options'}`, { data: { path: at } });
  }
  const options = parsed.data;
  const riskOf = (tool: McpToolSnapshot) => toolRisk(tool.name, tool.annotations, options.risk[tool.name]).risk;
  // Lowering is judged against the worst case, not against today's hints (which the server may
  // change): an override that makes a tool look less risky than worst case needs its reason.
  // Unexplained lowering fails here, before anything starts.
  const loweredReasons: Record<string, string> = {};
  for (const [tool, override] of Object.entries(options.risk)) {
    const r = toolRisk(tool, undefined, override);
    if (r.loweredReason) loweredReasons[tool] = r.loweredReason;
  }
  let toolbox: McpToolbox | undefined;
  const connection = new McpConnection({
    name,
    server: options.server,
    limits: options.limits,
    secrets: deps.secrets,
    logger: deps.logger,
    onTools: (tools) => toolbox?.update(tools),
  });
  const hello = await connection.start();
  try {
    toolbox = new McpToolbox({
      capability: name,
      server: serverIdentity(options),
      approvals: deps.approvals ?? memoryApprovals(),
      allow: options.tools,
      riskOf,
      ...(deps.now ? { now: deps.now } : {}),
      ...(deps.onToolEvent ? { onEvent: deps.onToolEvent } : {}),
    });
    const entries = await toolbox.init(hello.tools);
    const definition = buildMcpDefinition({
      name,
      description: options.description ?? `The tools of the MCP server ${JSON.stringify(hello.serverName)}.`,
      toolbox,
      entries,
      loweredReasons,
    });
    const box = toolbox;
    const mcpDeps: McpDeps = { connection, toolbox: box, maxResultBytes: options.limits.maxResultBytes };
    // Acceptances made outside this process (the CLI writes the approvals store) come back here.
    const poll = setInterval(() => {
      box.reload().then(
        (back) => {
          if (back.length > 0) deps.logger?.info({ capability: name, tools: back }, 'mcp: accepted tool changes are offered again');
        },
        (error: unknown) => deps.logger?.warn({ capability: name, err: (error as Error)?.message }, 'mcp: cannot re-read the accepted tools'),
      );
    }, options.limits.approvalsPollMs);
    poll.unref();
    return {
      name,
      definition,
      toolbox: box,
      connection,
      create: (scope, instanceOptions = {}) => createInstance(definition, scope, mcpDeps, { name, ...instanceOptions }),
      close: async () => {
        clearInterval(poll);
        await connection.close();
      },
    };
  } catch (error) {
    await connection.close();
    throw error;
  }
}
