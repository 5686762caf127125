/**
 * The host's HTTP server: the platform API (`/v1/images`, `/v1/runs…`, host/api/), `/metrics`,
 * `/healthz`, the MCP server (`/v1/mcp`, Streamable HTTP, host/mcp/), the operator WebSocket
 * channel (`/v1/operator`, upgrade only) and whatever other
 * routes are mounted — all on one port, loopback by default.
 *
 * ## Mounting routes (the web console and anything else served by the host)
 *
 * A route is `{ method, path, handler }`. `path` is exact (`/console`), has `:name` parameters
 * (`/console/runs/:id`, a parameter matches one non-empty segment), or ends in `/*` for a prefix
 * (`/console/*` matches `/console` and everything below it). Pass routes (or a function of the
 * server's services that returns them — use it to reach `channel.issueTicket`, `verifier`, `url()`)
 * as `routes` to `startHttpServer`, or as `HostOptions.httpRoutes` to `startHost` (which adds
 * `host` to the services for an embedder's routes; the built-in adapters get ports instead):
 *
 * ```ts
 * startHost({ config, httpRoutes: (s) => myRoutes(s) });
 * function myRoutes({ host, channel, verifier }: HostHttpServices): HttpRoute[] {
 *   return [{ method: 'GET', path: '/mine/*', handler: async ({ req, res, url }) => { ... } }];
 * }
 * ```
 *
 * Built-in routes are matched first, then mounted routes in order. A handler answers with `res`
 * itself (`sendJson`/`sendError` from host/api/respond.ts are there to reuse); a ContainedError it
 * throws becomes the JSON error answer (status from the code). Mounted routes do their own
 * authentication (cookies, CSRF…) — `authenticate` in host/api/auth.ts does bearer tokens.
 * A path no route knows is `NOT_FOUND` (404); a known path with another method is
 * `METHOD_NOT_ALLOWED` (405, with `Allow`).
 *
 * ## Limits (the `http` config section, host/api/limits.ts)
 *
 * Node's `headersTimeout`/`requestTimeout` (408 and close; checked every
 * `connectionsCheckingInterval`, derived from them) and `keepAliveTimeout` cut slow and idle
 * clients. `maxConnections` counts every socket, WebSockets and event streams included; one more
 * is answered `503 SERVER_BUSY` with `Retry-After` on the spot — before a byte of its request is
 * read — and closed after a short lingering read, so a flood of half-open connections costs at
 * most `maxConnections` sockets plus one second of each refused one.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from 'pino';
import { ContainedError } from '../runtime/errors.js';
import type { HttpRoute } from './api/http-route.js';
import { CONNECTION_RETRY_AFTER_SECONDS, type HttpConfig } from './api/limits.js';
import { type ApiPorts, createApi } from './api/routes.js';
import { LINGER_MS, sendError, sendJson } from './api/respond.js';
import type { HostConfig } from './config.js';
import { createMcpHttp, type McpHttpPorts } from './mcp/http.js';
import type { HostMetrics } from './metrics.js';
import type { OperatorBackend } from './operator/backend.js';
import { attachOperatorChannel, type OperatorChannel } from './operator/server.js';
import type { TicketStore } from './operator/tickets.js';
import type { TokenVerifier } from './tokens.js';

export type { HttpRoute, RouteContext, RouteMethod } from './api/http-route.js';

/** What mounted routes may use: the server's own services (domain services come as ports, see host.ts). */
export interface HttpServices {
  config: HostConfig;
  verifier: TokenVerifier;
  channel: OperatorChannel;
  metrics: HostMetrics | undefined;
  logger: Logger | undefined;
  /** `http://host:port` once listening (undefined while the routes are being built). */
  url(): string | undefined;
}

export type RoutesOption = readonly HttpRoute[] | ((services: HttpServices) => readonly HttpRoute[]);

export interface HttpServerOptions {
  /** What the operator channel (`/v1/operator`) asks of the host. */
  backend: OperatorBackend;
  /** What the platform API (`/v1/…`) uses: runs, and the requests of a run. */
  api: ApiPorts;
  config: HostConfig;
  verifier: TokenVerifier;
  logger?: Logger;
  metrics?: HostMetrics;
  /** Extra routes (the web console…), matched after the built-in ones. */
  routes?: RoutesOption;
  /** Limits over those of `config.http` (timeouts, connection caps, body and stream limits). */
  limits?: Partial<HttpConfig>;
  /** What the MCP server (`/v1/mcp`, host/mcp/http.ts) uses; absent, the route is not served. */
  mcp?: McpHttpPorts;
  /** Where the operator channel's connection tickets are kept (the host's store; default: this process's memory). */
  tickets?: TicketStore;
}

export interface HttpServer {
  url: string;
  server: Server;
  channel: OperatorChannel;
  close(): Promise<void>;
}

interface CompiledRoute extends HttpRoute {
  pattern: RegExp;
  keys: string[];
}

export function compileRoute(route: HttpRoute): CompiledRoute {
  const keys: string[] = [];
  let path = route.path;
  let prefix = false;
  if (path.endsWith('/*')) {
    prefix = true;
    path = path.slice(0, -2);
  }
  const source = path
    .split('/')
    .map((segment) => {
      if (segment.startsWith(':')) {
        keys.push(segment.slice(1));
        return '([^/]+)';
      }
      return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('/');
  return { ...route, keys, pattern: new RegExp(`^${source}${prefix ? '(?:/.*)?' : ''}$`) };
}

export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const { backend, config, verifier, logger, metrics } = options;
  const limits: HttpConfig = { ...config.http, ...options.limits };
  const routes: CompiledRoute[] = [];
  /** Sockets answered SERVER_BUSY: whatever they send is read and dropped, never dispatched. */
  const refused = new WeakSet<Socket>();
  const server = createServer(
    {
      // Slow or stalled clients must not hold sockets: 408 and close (covers receiving the request only,
      // so event streams are not cut). Node checks the deadlines every connectionsCheckingInterval ms.
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
    },
    (req, res) => {
      if (refused.has(req.socket)) return;
      dispatch(req, res).catch((error: unknown) => {
        if (!(error instanceof ContainedError)) logger?.error({ err: error, url: req.url }, 'http handler failed');
        sendError(res, error);
      });
    },
  );
  let sockets = 0;
  // First listener: the refusal is decided before Node's HTTP parser reads anything.
  server.prependListener('connection', (socket: Socket) => {
    if (sockets >= limits.maxConnections) {
      refused.add(socket);
      refuseBusy(socket, limits.maxConnections);
      return;
    }
    sockets += 1;
    socket.once('close', () => (sockets -= 1));
  });
  const channel = attachOperatorChannel(server, {
    backend,
    verifier,
    allowedOrigins: config.allowedOrigins,
    ...config.operator,
    maxConnectionsPerToken: limits.maxOperatorConnectionsPerToken,
    logger,
    ...(options.tickets ? { tickets: options.tickets } : {}),
  });
  let listening: string | undefined;
  const services: HttpServices = { config, verifier, channel, metrics, logger, url: () => listening };

  async function dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://host.invalid');
    } catch {
      throw new ContainedError('INVALID_ARGUMENT', 'malformed request URL');
    }
    const method = (req.method ?? 'GET').toUpperCase();
    const allowed: string[] = [];
    for (const route of routes) {
      const match = route.pattern.exec(url.pathname);
      if (!match) continue;
      if (route.method !== method) {
        allowed.push(route.method);
        continue;
      }
      const params: Record<string, string> = {};
      route.keys.forEach((key, i) => {
        params[key] = decodeURIComponent(match[i + 1] ?? '');
      });
      const stop = metrics?.httpTimer(method, route.name ?? route.path);
      res.once('close', () => stop?.(res.statusCode));
      await route.handler({ req, res, url, params });
      return;
    }
    if (allowed.length > 0) throw new ContainedError('METHOD_NOT_ALLOWED', `${method} is not allowed on ${url.pathname}`, { data: { allow: [...new Set(allowed)] } });
    throw new ContainedError('NOT_FOUND', `no route ${method} ${url.pathname}`);
  }

  const api = createApi({ ...options.api, verifier, config, limits, metrics, logger });
  const mcp = options.mcp ? createMcpHttp({ ...options.mcp, metrics, logger }, { limits: config.mcp, allowedOrigins: config.allowedOrigins, url: () => listening }) : undefined;
  const builtIn: HttpRoute[] = [{ method: 'GET', path: '/healthz', handler: ({ res }) => sendJson(res, 200, { ok: true }) }, ...api.routes, ...(mcp?.routes ?? [])];
  const extra = typeof options.routes === 'function' ? options.routes(services) : (options.routes ?? []);
  for (const route of [...builtIn, ...extra]) routes.push(compileRoute(route));

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.listen.port, config.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    // Nothing may outlive a failed start: the channel's heartbeat, the API's streams.
    await channel.close();
    api.close();
    await mcp?.close();
    throw listenError(error, config.listen);
  }
  const address = server.address() as AddressInfo;
  const hostname = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  listening = `http://${hostname}:${address.port}`;
  return {
    url: listening,
    server,
    channel,
    async close() {
      await channel.close();
      api.close();
      await mcp?.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // Event streams never go idle on their own.
      setTimeout(() => server.closeAllConnections(), 1000).unref();
      await closed;
    },
  };
}

/**
 * Answer a socket over `maxConnections` with `503 SERVER_BUSY` (JSON, `Retry-After`) without
 * waiting for its request, then close it: half-close at once, keep reading (and dropping) for at
 * most LINGER_MS so the client reads the answer rather than a reset, then destroy.
 */
function refuseBusy(socket: Socket, limit: number): void {
  socket.on('error', () => undefined);
  const body = JSON.stringify({
    error: {
      code: 'SERVER_BUSY',
      message: `the host holds its maximum of ${limit} connections (http.maxConnections); retry later`,
      data: { limit, retryAfterSeconds: CONNECTION_RETRY_AFTER_SECONDS },
    },
  });
  const head = [
    'HTTP/1.1 503 Service Unavailable',
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    `Retry-After: ${CONNECTION_RETRY_AFTER_SECONDS}`,
    'Cache-Control: no-store',
    'Connection: close',
  ];
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

/** A listen failure as a typed error that names the address (ADDRESS_IN_USE, LISTEN_FAILED). */
export function listenError(error: unknown, listen: { host: string; port: number }): ContainedError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EADDRINUSE') {
    return new ContainedError('ADDRESS_IN_USE', `port ${listen.port} is in use on ${listen.host} (another contained host or another program listens there); choose another port with --port or "listen" in the host config`, {
      cause: error,
      data: { host: listen.host, port: listen.port },
    });
  }
  const reason = code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)' : code === 'EADDRNOTAVAIL' ? 'the address is not on this machine' : (code ?? 'unknown error');
  return new ContainedError('LISTEN_FAILED', `cannot listen on ${listen.host}:${listen.port}: ${reason}`, { cause: error, data: { host: listen.host, port: listen.port, reason: code ?? 'unknown' } });
}
