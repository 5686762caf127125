/**
 * The console's MCP tools routes (the MCP tools page, docs/mcp-capability.md "Rug pulls"): per mcp
 * capability, the tool changes waiting for an operator — new tools held, changed tools withdrawn,
 * with the accepted and the current version — and the accepted versions; an admin accepts one
 * change, naming the fingerprint the page showed, with a reason. The acceptance is the host's
 * (host/audit/mcp-tools.ts): the same checks and the same `mcp.tool.accepted` audit record as
 * `contained mcp-tools accept`, appended before it takes effect.
 *
 * Every route needs a session; accepting needs the CSRF token and the admin role. Refusals:
 * FORBIDDEN (role), NOT_FOUND (no such mcp capability, nothing pending for that tool, or a host
 * without mcp capabilities), ALREADY_RESOLVED (the tool changed again since it was shown, or is
 * accepted already), INVALID_ARGUMENT (a body that does not match its schema).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import type { McpToolChanges } from '../audit/mcp-tools.js';
import { readJson } from '../api/body.js';
import type { HttpRoute, RouteContext } from '../http.js';
import { roleAtLeast, roleWithArticle } from '../model.js';
import { sendConsoleJson } from './http.js';
import type { Session } from './sessions.js';

/** What the console uses of the host's mcp tool changes. */
export type McpToolsPort = Pick<McpToolChanges, 'list' | 'accept'>;

/** Largest accept body, bytes. */
const MAX_MCP_TOOLS_BODY_BYTES = 16 * 1024;

const acceptSchema = z.strictObject({
  capability: z.string().regex(/^[a-z][a-zA-Z0-9]{0,63}$/),
  tool: z.string().min(1).max(200),
  fingerprint: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  reason: z.string().trim().min(1).max(2000),
});

export interface McpToolRouteDeps {
  mcpTools: McpToolsPort | undefined;
  route(method: HttpRoute['method'], path: string, handler: (ctx: RouteContext) => Promise<void> | void): HttpRoute;
  session(req: IncomingMessage, res: ServerResponse, options: { csrf: boolean }): Promise<Session>;
}

export function mcpToolRoutes(deps: McpToolRouteDeps): HttpRoute[] {
  const { route, session } = deps;
  const port = (): McpToolsPort => {
    if (!deps.mcpTools) throw new ContainedError('NOT_FOUND', 'this host runs no mcp capability');
    return deps.mcpTools;
  };
  return [
    route('GET', '/console/api/mcp-tools', async ({ req, res }) => {
      await session(req, res, { csrf: false });
      sendConsoleJson(res, 200, { capabilities: await port().list() });
    }),
    route('POST', '/console/api/mcp-tools/accept', async ({ req, res }) => {
      const s = await session(req, res, { csrf: true });
      if (!roleAtLeast(s.operator.role, 'admin')) throw new ContainedError('FORBIDDEN', `accepting a tool change needs the admin role; ${s.operator.name} is ${roleWithArticle(s.operator.role)}`);
      const body = await readJson(req, acceptSchema, MAX_MCP_TOOLS_BODY_BYTES);
      sendConsoleJson(res, 200, await port().accept(body, s.operator.name));
    }),
  ];
}
