/**
 * The MCP server over Streamable HTTP at `/v1/mcp` on the host's port (host/http.ts mounts these
 * routes; docs/mcp.md). Stateful: `initialize` opens a session (the SDK's
 * StreamableHTTPServerTransport, `Mcp-Session-Id`), bound to the agent whose token opened it.
 *
 * Every request — initialize, tools/list, tools/call, the GET stream, DELETE — must carry the
 * agent's token (`Authorization: Bearer cta_…`); none, a wrong one or a revoked one is refused
 * `401 UNAUTHENTICATED` (with `WWW-Authenticate: Bearer`) before the request reaches the MCP server,
 * so nothing is listed or run. A session id presented with another agent's token is unknown (404).
 * DNS rebinding: a `Host` that is not this server (or an `allowedOrigins` host), or a browser
 * `Origin` that is neither, is refused 403 FORBIDDEN (the web console's origin guard).
 *
 * Bounded: at most `mcp.maxSessions` sessions (one more initialize is SERVER_BUSY); a session idle
 * for `mcp.sessionIdleMs` with no live run is closed; bodies up to `mcp.maxBodyBytes`.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { ContainedError } from '../../runtime/errors.js';
import type { AgentVerifier } from '../agents.js';
import { readBody } from '../api/body.js';
import type { HttpRoute } from '../api/http-route.js';
import { createOriginGuard } from '../console/http.js';
import { type AgentApiPorts, agentRoutes } from './agents-api.js';
import type { McpConfig } from './limits.js';
import { createMcpSession, type McpPorts, type McpSession } from './server.js';

export const MCP_PATH = '/v1/mcp';

/** What the HTTP transport needs: the MCP server's ports, the agent token verifier, and for `/v1/agents` the store's agents and the operator tokens. */
export interface McpHttpPorts extends McpPorts {
  agents: AgentVerifier;
  admin: AgentApiPorts;
}

export interface McpHttpOptions {
  limits: McpConfig;
  /** Browser origins allowed besides this server's own (the host's `allowedOrigins`); requests without `Origin` are not browsers. */
  allowedOrigins: readonly string[];
  /** This server's URL once listening (its own Host and Origin are always accepted). */
  url(): string | undefined;
}

export interface McpHttp {
  routes: HttpRoute[];
  /** Sessions open now. */
  readonly sessions: number;
  close(): Promise<void>;
}

interface OpenSession {
  agentId: string;
  transport: StreamableHTTPServerTransport;
  session: McpSession;
  lastSeen: number;
}

function jsonRpcError(res: ServerResponse, status: number, code: number, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

export function createMcpHttp(ports: McpHttpPorts, options: McpHttpOptions): McpHttp {
  const { limits } = options;
  const now = ports.now ?? Date.now;
  const sessions = new Map<string, OpenSession>();
  const guard = createOriginGuard(options.allowedOrigins, options.url);
  let closing = false;

  const sweep = setInterval(
    () => {
      const cutoff = now() - limits.sessionIdleMs;
      for (const open of sessions.values()) {
        if (open.lastSeen < cutoff && open.session.liveRuns === 0) void open.transport.close().catch(() => undefined);
      }
    },
    Math.max(250, Math.min(60_000, Math.floor(limits.sessionIdleMs / 2))),
  );
  sweep.unref();

  async function authenticate(req: IncomingMessage, res: ServerResponse): Promise<{ id: string; agent: Awaited<ReturnType<AgentVerifier['verify']>> & object }> {
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    const agent = match?.[1] ? await ports.agents.verify(match[1]) : undefined;
    if (!agent) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="contained-mcp"');
      throw new ContainedError('UNAUTHENTICATED', 'an active agent token is required: Authorization: Bearer cta_… (contained agent create)');
    }
    // DNS rebinding: the Host must be this server (or an allowed origin's host); a browser's Origin too.
    guard.checkHost(req);
    if (req.headers.origin !== undefined) guard.checkStateChange(req);
    return { id: agent.id, agent };
  }

  async function body(req: IncomingMessage): Promise<unknown> {
    const bytes = await readBody(req, limits.maxBodyBytes);
    try {
      return JSON.parse(bytes.toString('utf8')) as unknown;
    } catch {
      throw new ContainedError('INVALID_ARGUMENT', 'the body is not JSON');
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (closing) throw new ContainedError('SHUTTING_DOWN', 'the host is closing');
    const { id: agentId, agent } = await authenticate(req, res);
    const method = (req.method ?? 'GET').toUpperCase();
    const sid = req.headers['mcp-session-id'];
    if (typeof sid === 'string') {
      const open = sessions.get(sid);
      // Another agent's session is as unknown as a made-up id.
      if (!open || open.agentId !== agentId) return jsonRpcError(res, 404, -32001, 'Session not found');
      open.lastSeen = now();
      await open.transport.handleRequest(req, res, method === 'POST' ? await body(req) : undefined);
      return;
    }
    if (method !== 'POST') return jsonRpcError(res, 400, -32000, 'Bad Request: Mcp-Session-Id header is required');
    const message = await body(req);
    if (!isInitializeRequest(message)) return jsonRpcError(res, 400, -32000, 'Bad Request: no valid session; start with initialize');
    if (sessions.size >= limits.maxSessions) {
      throw new ContainedError('SERVER_BUSY', `the host holds ${sessions.size} MCP sessions (mcp.maxSessions); close one or retry later`);
    }
    const session = await createMcpSession(ports, agent, limits, 'http');
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        sessions.set(id, { agentId, transport, session, lastSeen: now() });
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
      void session.cancelAll('the MCP session closed');
    };
    await session.server.connect(transport);
    await transport.handleRequest(req, res, message);
  }

  const handler = ({ req, res }: { req: IncomingMessage; res: ServerResponse }): Promise<void> => handle(req, res);
  return {
    routes: [
      { method: 'POST', path: MCP_PATH, handler, name: MCP_PATH },
      { method: 'GET', path: MCP_PATH, handler, name: MCP_PATH },
      { method: 'DELETE', path: MCP_PATH, handler, name: MCP_PATH },
      ...agentRoutes(ports.admin),
    ],
    get sessions() {
      return sessions.size;
    },
    async close() {
      closing = true;
      clearInterval(sweep);
      await Promise.allSettled([...sessions.values()].map((open) => open.transport.close()));
      sessions.clear();
    },
  };
}
