/**
 * The operator channel: a WebSocket endpoint on the host's HTTP server (docs/protocol.md).
 *
 * What it defends, in order, before any WebSocket exists (the `upgrade` handler, `noServer` ws):
 * the path; the `Origin` (403 unless allowed or same-host); exactly one credential — bearer header,
 * `bearer.<token>` subprotocol, or single-use ticket — checked by the injected `TokenVerifier`
 * (401 otherwise; `platform` tokens 403); at most `maxConnectionsPerToken` connections per token
 * (tickets count for the token they were issued for): one more is refused `429` with `Retry-After`
 * and a JSON body `{ error: { code: "TOO_MANY_CONNECTIONS", … } }`. A refused handshake gets one
 * HTTP answer and the socket is destroyed: no WebSocket frame ever flows to a refused peer.
 *
 * After the upgrade: `maxPayload` (ws closes 1009 on a bigger frame), the per-connection rate
 * limit and backpressure (connection.ts), a ping/pong heartbeat that terminates peers silent for
 * a whole `heartbeatMs`, and fan-out of backend events, each encoded once for all connections.
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import pino, { type Logger } from 'pino';
import { WebSocketServer, type ServerOptions } from 'ws';
import type { ErrorCode } from '../../runtime/errors.js';
import { DEFAULT_HTTP_CONFIG } from '../api/limits.js';
import { type Operator, roleAtLeast } from '../model.js';
import { checkOrigin, compileOrigins, readCredential, sameHostOrigins } from './auth.js';
import type { OperatorBackend, RequestEvent, TokenVerifier } from './backend.js';
import { CLOSE, encode, OperatorConnection } from './connection.js';
import { type HelloMessage, PROTOCOL, type ServerMessage } from './protocol.js';
import { OPERATOR_CONFIG_DEFAULTS } from './limits.js';
import { createTicketStore, type Ticket, type TicketStore } from './tickets.js';

export interface OperatorChannelOptions {
  backend: OperatorBackend;
  verifier: TokenVerifier;
  /** Browser origins allowed besides same-host ones, e.g. `https://console.example` (checked at start-up). */
  allowedOrigins?: readonly string[];
  /** URL path of the endpoint (default `/v1/operator`). */
  path?: string;
  /** Largest client frame in bytes; bigger ones close the connection 1009 (default 64 KiB). */
  maxPayloadBytes?: number;
  /** Sustained client messages per second per connection (default 20). */
  messagesPerSecond?: number;
  /** Client messages allowed in a burst (default 40). */
  messageBurst?: number;
  /** Refused (rate-limited) messages tolerated: `messageBurst` per this many ms, then close 1008 (default 10 000). */
  abuseWindowMs?: number;
  /** Heartbeat interval in ms; a peer that has not answered the previous ping is terminated (default 15 000). */
  heartbeatMs?: number;
  /** Most bytes queued for one client before it is closed 1013 (default 4 MiB). */
  maxBufferedBytes?: number;
  /** How long a closing handshake may take before the socket is destroyed, in ms (default 5 000). */
  closeTimeoutMs?: number;
  /** Pending requests per `snapshot` message (default 500). */
  snapshotChunkSize?: number;
  /** WebSockets one operator token may hold at once; one more is refused 429 at the upgrade (default 16). */
  maxConnectionsPerToken?: number;
  /** Where tickets are issued and redeemed (default: a private store with a 30 s TTL). */
  tickets?: TicketStore;
  logger?: Logger;
  now?: () => number;
}

export interface ConnectedOperator {
  operator: Operator;
  remoteAddress: string | undefined;
  connectedAt: number;
  bufferedAmount: number;
}

export interface OperatorChannel {
  /** Stop accepting, close every connection 1001, unsubscribe from the backend. */
  close(): Promise<void>;
  clients(): ConnectedOperator[];
  /** A single-use ticket for `?ticket=` (for an operator the host already authenticated). */
  issueTicket(operator: Operator): Promise<Ticket>;
  /** Close the connections of matching operators (e.g. a revoked token) with 1008; returns how many. */
  disconnect(match: (operator: Operator) => boolean, reason?: string): number;
}

/**
 * The channel's defaults: the host config's `operator` section (limits.ts, the one source of these
 * numbers) plus the endpoint path and the per-token cap, which the config keeps under
 * `http.maxOperatorConnectionsPerToken`.
 */
export const OPERATOR_DEFAULTS = Object.freeze({
  path: '/v1/operator',
  ...OPERATOR_CONFIG_DEFAULTS,
  maxConnectionsPerToken: DEFAULT_HTTP_CONFIG.maxOperatorConnectionsPerToken,
});

/** Seconds a client refused for holding too many connections is told to wait (`Retry-After`). */
const RETRY_AFTER_SECONDS = 5;

export function attachOperatorChannel(httpServer: Server, options: OperatorChannelOptions): OperatorChannel {
  const o = { ...OPERATOR_DEFAULTS, ...definedOnly(options) };
  // The config's schema bounds what a deployer may set; a library caller (or a test) may go lower,
  // but never to a value that would switch a limit off.
  for (const key of ['maxPayloadBytes', 'messagesPerSecond', 'messageBurst', 'abuseWindowMs', 'heartbeatMs', 'maxBufferedBytes', 'closeTimeoutMs', 'snapshotChunkSize', 'maxConnectionsPerToken'] as const) {
    if (!(typeof o[key] === 'number' && o[key] > 0 && Number.isFinite(o[key]))) throw new RangeError(`operator channel: ${key} must be a positive number`);
  }
  const allowed = compileOrigins(options.allowedOrigins ?? []);
  const { backend, verifier } = options;
  const logger = (options.logger ?? pino({ level: 'silent' })).child({ component: 'operator-channel' });
  const now = options.now ?? Date.now;
  const tickets = options.tickets ?? createTicketStore({ now });
  const connections = new Set<OperatorConnection>();
  /** Sockets per token id, counted from the moment the upgrade is accepted until the socket closes. */
  const perToken = new Map<string, number>();
  let closed = false;

  const wssOptions: ServerOptions & { closeTimeout: number } = {
    noServer: true,
    maxPayload: o.maxPayloadBytes,
    perMessageDeflate: false,
    clientTracking: false,
    closeTimeout: o.closeTimeoutMs,
    // Only our subprotocol is ever echoed (never the `bearer.<token>` entry next to it).
    handleProtocols: (protocols) => (protocols.has(PROTOCOL) ? PROTOCOL : false),
  };
  const wss = new WebSocketServer(wssOptions);

  const limits = {
    maxBufferedBytes: o.maxBufferedBytes,
    messagesPerSecond: o.messagesPerSecond,
    messageBurst: o.messageBurst,
    abuseWindowMs: o.abuseWindowMs,
    snapshotChunkSize: o.snapshotChunkSize,
  };
  const helloLimits: HelloMessage['limits'] = {
    maxPayloadBytes: o.maxPayloadBytes,
    messagesPerSecond: o.messagesPerSecond,
    messageBurst: o.messageBurst,
    heartbeatMs: o.heartbeatMs,
  };

  /** `error` makes the answer a JSON error body (with `Retry-After` when it says so) instead of a text line. */
  function refuse(socket: Duplex, status: 400 | 401 | 403 | 404 | 429 | 500 | 503, message: string, req: IncomingMessage, error?: { code: ErrorCode; data: Record<string, unknown> & { retryAfterSeconds?: number } }): void {
    logger.info({ status, reason: message, remoteAddress: req.socket.remoteAddress }, 'operator connection refused');
    const body = error ? JSON.stringify({ error: { code: error.code, message, data: error.data } }) : `${message}\n`;
    const retryAfter = error?.data.retryAfterSeconds;
    const headers = [
      `HTTP/1.1 ${status} ${STATUS_TEXT[status]}`,
      'Connection: close',
      `Content-Type: ${error ? 'application/json' : 'text/plain'}; charset=utf-8`,
      `Content-Length: ${Buffer.byteLength(body)}`,
      ...(status === 401 ? ['WWW-Authenticate: Bearer realm="contained-operator"'] : []),
      ...(retryAfter === undefined ? [] : [`Retry-After: ${retryAfter}`]),
    ];
    if (socket.destroyed || !socket.writable) return void socket.destroy();
    socket.once('finish', () => socket.destroy());
    socket.end(`${headers.join('\r\n')}\r\n\r\n${body}`);
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  async function authenticate(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const origin = checkOrigin(req.headers.origin, allowed, sameHostOrigins(httpServer.address()));
    if (!origin.ok) return refuse(socket, origin.status, origin.message, req);
    const cred = readCredential({ authorization: req.headers.authorization, protocol: header(req, 'sec-websocket-protocol'), url: req.url ?? '/' });
    if (!cred.ok) return refuse(socket, cred.status, cred.message, req);

    let operator: Operator | undefined;
    const credential = cred.credential;
    if (credential.kind === 'ticket') {
      try {
        operator = await tickets.redeem(credential.ticket);
      } catch (error) {
        logger.error({ err: error }, 'ticket store failed');
        return refuse(socket, 503, 'cannot verify credentials now', req);
      }
    } else {
      try {
        operator = await verifier.verify(credential.token);
      } catch (error) {
        logger.error({ err: error }, 'token verifier failed');
        return refuse(socket, 503, 'cannot verify credentials now', req);
      }
    }
    if (operator === undefined) return refuse(socket, 401, 'invalid, expired or revoked credential', req);
    if (!roleAtLeast(operator.role, 'viewer')) return refuse(socket, 403, `role ${operator.role} may not use the operator channel`, req);
    if (closed) return refuse(socket, 503, 'operator channel is closing', req);
    if (socket.destroyed || !socket.writable) return;

    const who: Operator = operator;
    const held = perToken.get(who.tokenId) ?? 0;
    if (held >= o.maxConnectionsPerToken) {
      return refuse(socket, 429, `${who.name} already holds ${held} operator connections with this token, the most allowed; close one first`, req, {
        code: 'TOO_MANY_CONNECTIONS',
        data: { limit: o.maxConnectionsPerToken, retryAfterSeconds: RETRY_AFTER_SECONDS },
      });
    }
    perToken.set(who.tokenId, held + 1);
    socket.once('close', () => {
      const n = (perToken.get(who.tokenId) ?? 1) - 1;
      if (n > 0) perToken.set(who.tokenId, n);
      else perToken.delete(who.tokenId);
    });
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (closed) return void ws.close(CLOSE.GOING_AWAY, 'server shutting down');
      const hello: HelloMessage = { type: 'hello', protocol: PROTOCOL, operator: { name: who.name, role: who.role }, limits: helloLimits };
      const conn = new OperatorConnection(ws, who, req.socket.remoteAddress, { backend, logger, limits, hello, now });
      connections.add(conn);
      ws.on('error', (error) => logger.debug({ err: error, operator: who.name }, 'operator socket error'));
      ws.on('close', (code) => {
        connections.delete(conn);
        logger.info({ operator: who.name, code }, 'operator disconnected');
      });
      logger.info({ operator: who.name, role: who.role, via: credential.kind, remoteAddress: req.socket.remoteAddress }, 'operator connected');
      void conn.start();
    });
  }

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    // Already answered (the server's connection cap refused it): nothing to add.
    if (!socket.writable) return;
    if (pathOf(req.url) !== o.path) {
      // Another handler may own this path; if none does, answer rather than leave the socket hanging.
      if (httpServer.listenerCount('upgrade') === 1) refuse(socket, 404, 'no such endpoint', req);
      return;
    }
    // The socket is ours now: never let a reset during the async checks crash the host.
    socket.on('error', (error) => logger.debug({ err: error }, 'upgrade socket error'));
    if (closed) return refuse(socket, 503, 'operator channel is closing', req);
    authenticate(req, socket, head).catch((error: unknown) => {
      logger.error({ err: error }, 'operator upgrade failed');
      refuse(socket, 500, 'internal error', req);
    });
  };
  httpServer.on('upgrade', onUpgrade);

  const unsubscribe = backend.subscribe((event) => {
    if (connections.size === 0) return;
    const frame = encode(toMessage(event));
    for (const conn of connections) conn.deliver(frame);
  });

  const heartbeat = setInterval(() => {
    for (const conn of connections) {
      if (!conn.alive) {
        logger.info({ operator: conn.operator.name }, 'operator missed a heartbeat; terminating');
        conn.ws.terminate();
        continue;
      }
      conn.alive = false;
      conn.ws.ping();
    }
  }, o.heartbeatMs);
  heartbeat.unref();

  return {
    async close() {
      if (closed) return;
      closed = true;
      httpServer.off('upgrade', onUpgrade);
      clearInterval(heartbeat);
      unsubscribe();
      const done = [...connections].map(
        (conn) =>
          new Promise<void>((resolve) => {
            if (conn.ws.readyState === conn.ws.CLOSED) return resolve();
            conn.ws.once('close', () => resolve());
            conn.close(CLOSE.GOING_AWAY, 'server shutting down');
          }),
      );
      await Promise.all(done);
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
    clients() {
      return [...connections].map((c) => ({ operator: { ...c.operator }, remoteAddress: c.remoteAddress, connectedAt: c.connectedAt, bufferedAmount: c.ws.bufferedAmount }));
    },
    issueTicket(operator) {
      return tickets.issue(operator);
    },
    disconnect(match, reason = 'credential revoked') {
      let count = 0;
      for (const conn of connections) {
        if (match(conn.operator)) {
          conn.close(CLOSE.POLICY, reason.slice(0, 100));
          count++;
        }
      }
      return count;
    },
  };
}

const STATUS_TEXT = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable' } as const;

function pathOf(url: string | undefined): string | undefined {
  try {
    return new URL(url ?? '/', 'http://operator.invalid').pathname;
  } catch {
    return undefined;
  }
}

/** A header that must appear at most once; repeated, it is joined so the strict parser refuses it. */
function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

function toMessage(event: RequestEvent): ServerMessage {
  switch (event.type) {
    case 'created':
    case 'updated':
    case 'resolved':
      return { type: event.type, request: event.request };
    case 'grant':
      return { type: 'grant', change: event.change, grant: event.grant };
    case 'run':
      return { type: 'run', run: event.run };
    case 'review':
    case 'promotion':
    case 'demotion':
      return event;
  }
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
