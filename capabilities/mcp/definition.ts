/**
 * An MCP server's tools as a capability definition: one method per offered tool (`get-sum` →
 * `getSum`), its argument a zod wrapper around the tool's own JSON Schema (validated by ajv on a
 * copy, see schema.ts; the schema rides along as metadata so `contained caps docs` prints its
 * TypeScript type), its result the tool's `structuredContent` when it declares an output schema,
 * else its text.
 *
 * A tool error (`isError`) rejects with `MCP_TOOL_ERROR` carrying the tool's text (a tool's error
 * is written for the model that called it); a result larger than `maxResultBytes` fails
 * `MCP_SERVER_FAILED` (`too-large`). Calls to a withdrawn tool fail `MCP_TOOL_WITHDRAWN` before
 * the gate (no operator is asked about a call that cannot run) and again right before the call.
 */
import { z } from 'zod';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { ContainedError } from '../../runtime/errors.js';
import { defineCapability, type CapabilityDefinition, type MethodDefinition } from '../sdk/define.js';
import { jsonLength } from '../sdk/json.js';
import type { RiskAnnotations } from '../sdk/risk.js';
import { clip, type McpConnection } from './connection.js';
import { schemaForDocs } from './schema.js';
import { checkMcpCall, describeMcpScope, intersectMcpScopes, type McpScope, mcpScopeSchema, narrowestMcpScope, toolAllowed } from './scope.js';
import type { McpToolbox, ToolEntry } from './tools.js';

/** What an mcp instance's methods reach on the host side. */
export interface McpDeps {
  connection: Pick<McpConnection, 'callTool'>;
  toolbox: McpToolbox;
  maxResultBytes: number;
}

/** Text of a tool result's content blocks; blocks that are not text are named, not inlined. */
export function resultText(result: CallToolResult): string {
  const parts: string[] = [];
  for (const block of result.content ?? []) {
    if (block.type === 'text') parts.push(block.text);
    else if (block.type === 'resource' && 'text' in block.resource && typeof block.resource.text === 'string') parts.push(block.resource.text);
    else if (block.type === 'resource_link') parts.push(`[resource ${block.uri}]`);
    else if (block.type === 'image' || block.type === 'audio') parts.push(`[${block.type} ${block.mimeType}, ${block.data.length} base64 characters]`);
    else if (block.type === 'resource') parts.push(`[resource ${block.resource.uri}]`);
  }
  return parts.join('\n');
}

export interface BuildDefinitionInput {
  /** Definition name (lower camel case): the binding name. */
  name: string;
  description: string;
  toolbox: McpToolbox;
  entries: readonly ToolEntry[];
  /** Operator reasons for lowered risk, by MCP tool name (shown in the docs). */
  loweredReasons?: Readonly<Record<string, string>>;
}

function methodFor(toolbox: McpToolbox, entry: ToolEntry, loweredReason: string | undefined): MethodDefinition<McpScope, McpDeps> {
  const { method, toolName, defined } = entry;
  const hasOutput = defined.outputSchema !== undefined;
  const head = defined.title && defined.title !== defined.description ? `${defined.title}: ` : '';
  const note = loweredReason ? ` (Operator-set risk: ${loweredReason}.)` : '';
  const description = clip(`${head}${defined.description || toolName}`.replace(/\s+/g, ' ').trim(), 1000) + ` [MCP tool ${JSON.stringify(toolName)}]${note}`;
  const args = z
    .unknown()
    .transform((raw, ctx) => {
      const check = entry.validator(raw);
      if (check.ok) return check.value;
      ctx.addIssue({ code: 'custom', message: check.message, path: check.path });
      return z.NEVER;
    })
    .meta(schemaForDocs(defined.inputSchema) as Record<string, unknown>);
  const result = z.unknown().meta(hasOutput ? (schemaForDocs(defined.outputSchema) as Record<string, unknown>) : { tsType: 'string' });
  return {
    description,
    args,
    result,
    risk: entry.definedRisk as RiskAnnotations,
    // Before the gate: no operator is asked about a call to a withdrawn tool.
    precheck: () => void toolbox.assertActive(method),
    // In a staged run a tool that is not read-only is queued in the changeset like http.send: the
    // server is called with exactly these arguments after the changeset is approved, never before.
    // The program gets a placeholder (`{ staged: true, tool }`), whatever the tool would answer.
    ...(entry.definedRisk.readOnly === true
      ? {}
      : {
          staging: {
            async stage(a: unknown, ctx: { record(effect: { summary: string; detail?: unknown }): Promise<void> }) {
              toolbox.assertActive(method);
              const text = JSON.stringify(a) ?? 'null';
              await ctx.record({ summary: `${toolName} ${text.length > 200 ? `${text.slice(0, 197)}...` : text}`, detail: { tool: toolName, arguments: a } });
              return { staged: true, tool: toolName };
            },
          },
        }),
    inScope: (a: unknown, scope: McpScope) => checkMcpCall(scope, method, a),
    run: async (a: unknown, ctx) => {
      const deps = ctx.deps;
      deps.toolbox.assertActive(method);
      const res = await deps.connection.callTool(toolName, a as Record<string, unknown>, ctx.signal);
      if (res.isError === true) {
        throw new ContainedError('MCP_TOOL_ERROR', `${ctx.capability}.${method}: ${clip(resultText(res)) || 'the tool failed'}`);
      }
      const value: unknown = hasOutput && res.structuredContent !== undefined ? res.structuredContent : resultText(res);
      const bytes = jsonLength(value);
      if (bytes > deps.maxResultBytes) {
        throw new ContainedError('MCP_SERVER_FAILED', `${ctx.capability}.${method}: the result is ${bytes} bytes, more than ${deps.maxResultBytes}`, { data: { reason: 'too-large', limitBytes: deps.maxResultBytes } });
      }
      return value;
    },
  };
}

/** The definition for the tools offered at start. MCP_SERVER_FAILED when none is. */
export function buildMcpDefinition(input: BuildDefinitionInput): CapabilityDefinition<McpScope, McpDeps> {
  const methods: Record<string, MethodDefinition<McpScope, McpDeps>> = {};
  for (const entry of input.entries) methods[entry.method] = methodFor(input.toolbox, entry, input.loweredReasons?.[entry.toolName]);
  if (Object.keys(methods).length === 0) {
    throw new ContainedError('MCP_SERVER_FAILED', `${input.name}: the MCP server offers no tool that can be used`, { data: { reason: 'invalid-response' } });
  }
  return defineCapability<McpScope, McpDeps>({
    name: input.name,
    description: input.description,
    scope: mcpScopeSchema,
    intersect: intersectMcpScopes,
    describeScope: describeMcpScope,
    methodUsable: (scope, m) => toolAllowed(scope, m.name),
    narrowestScope: (scope, method) => narrowestMcpScope(scope, method),
    methods,
  });
}
