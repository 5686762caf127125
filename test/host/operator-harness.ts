/**
 * Shared fixtures for the operator channel tests: a real http.Server on 127.0.0.1:0 with the
 * channel attached to an in-memory backend, fixed operator tokens, and a recording `ws` client
 * that validates every message it receives against the protocol's server schema.
 */
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import WebSocket, { type ClientOptions } from 'ws';
import { attachOperatorChannel, type OperatorChannel, type OperatorChannelOptions } from '../../host/operator/server.js';
import { PROTOCOL, type ServerMessage, serverMessageSchema } from '../../host/operator/protocol.js';
import { MemoryBackend, MemoryVerifier } from '../helpers/memory-backend.js';

export const TOKENS = {
  viewer: 'tok_viewer_0123456789abcdef',
  alice: 'tok_alice_0123456789abcdef',
  bob: 'tok_bob_0123456789abcdef',
  admin: 'tok_admin_0123456789abcdef',
  platform: 'tok_platform_0123456789abcdef',
} as const;

export const ALLOWED_ORIGIN = 'https://console.example';

export interface Harness {
  server: http.Server;
  backend: MemoryBackend;
  verifier: MemoryVerifier;
  channel: OperatorChannel;
  port: number;
  url: string;
  close(): Promise<void>;
}

export async function startHarness(options: Partial<OperatorChannelOptions> = {}): Promise<Harness> {
  const server = http.createServer((_req, res) => {
    res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const backend = new MemoryBackend();
  const verifier = new MemoryVerifier();
  verifier.add(TOKENS.viewer, 'vera', 'viewer');
  verifier.add(TOKENS.alice, 'alice', 'approver');
  verifier.add(TOKENS.bob, 'bob', 'approver');
  verifier.add(TOKENS.admin, 'ada', 'admin');
  verifier.add(TOKENS.platform, 'ci', 'platform');
  const channel = attachOperatorChannel(server, { backend, verifier, allowedOrigins: [ALLOWED_ORIGIN], ...options });
  return {
    server,
    backend,
    verifier,
    channel,
    port,
    url: `ws://127.0.0.1:${port}/v1/operator`,
    async close() {
      await channel.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A connected `ws` client that records (and schema-checks) everything the server sends. */
export class TestClient {
  readonly messages: ServerMessage[] = [];
  readonly invalid: unknown[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly watchers = new Set<() => void>();
  private nextId = 1;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      const raw: unknown = JSON.parse((data as Buffer).toString('utf8'));
      const parsed = serverMessageSchema.safeParse(raw);
      if (!isBinary && parsed.success) this.messages.push(parsed.data);
      else this.invalid.push(raw);
      for (const watch of this.watchers) watch();
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    ws.on('error', () => {});
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** The first message (already received or still to come) that matches. */
  waitFor<T extends ServerMessage>(match: (m: ServerMessage) => m is T, timeoutMs?: number): Promise<T>;
  waitFor(match: (m: ServerMessage) => boolean, timeoutMs?: number): Promise<ServerMessage>;
  waitFor(match: (m: ServerMessage) => boolean, timeoutMs = 5000): Promise<ServerMessage> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = this.messages.find(match);
        if (!found) return false;
        this.watchers.delete(watch);
        clearTimeout(timer);
        resolve(found);
        return true;
      };
      const watch = (): void => void check();
      const timer = setTimeout(() => {
        this.watchers.delete(watch);
        reject(new Error(`timed out waiting for a message; got ${JSON.stringify(this.messages.map((m) => m.type))}`));
      }, timeoutMs);
      if (!check()) this.watchers.add(watch);
    });
  }

  /** Resolves once the snapshot is complete. */
  ready(): Promise<ServerMessage> {
    return this.waitFor((m) => m.type === 'snapshot' && m.complete);
  }

  send(message: unknown): void {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  /** Send a client message with a fresh id and wait for its `result` or `error`. */
  async request(message: Record<string, unknown>): Promise<Extract<ServerMessage, { type: 'result' | 'error' }>> {
    const id = typeof message.id === 'string' ? message.id : `t${this.nextId++}`;
    this.send({ ...message, id });
    return (await this.waitFor((m) => (m.type === 'result' || m.type === 'error') && m.id === id)) as Extract<ServerMessage, { type: 'result' | 'error' }>;
  }

  close(): Promise<{ code: number; reason: string }> {
    this.ws.close();
    return this.closed;
  }
}

export interface ConnectOptions extends ClientOptions {
  token?: string;
  protocols?: string[];
  query?: string;
}

/** Open a client; resolves once the upgrade succeeded (not waiting for the snapshot). */
export function connect(url: string, options: ConnectOptions = {}): Promise<TestClient> {
  const { token, protocols, query, headers, ...rest } = options;
  const ws = new WebSocket(`${url}${query ?? ''}`, protocols ?? [], {
    ...rest,
    headers: { ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}), ...headers },
  });
  const client = new TestClient(ws);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(client));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

/** Connect with a bearer token and wait for the complete snapshot. */
export async function connectReady(url: string, token: string, options: ConnectOptions = {}): Promise<TestClient> {
  const client = await connect(url, { ...options, token });
  await client.ready();
  return client;
}

export interface Refusal {
  status: number | undefined;
  opened: boolean;
  messages: number;
}

/** Try a handshake expected to be refused: the HTTP status, and proof nothing else happened. */
export function attempt(url: string, options: ConnectOptions = {}): Promise<Refusal> {
  const { token, protocols, query, headers, ...rest } = options;
  const ws = new WebSocket(`${url}${query ?? ''}`, protocols ?? [], {
    ...rest,
    headers: { ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}), ...headers },
  });
  const result: Refusal = { status: undefined, opened: false, messages: 0 };
  ws.on('open', () => (result.opened = true));
  ws.on('message', () => result.messages++);
  return new Promise((resolve) => {
    ws.on('unexpected-response', (req, res) => {
      result.status = res.statusCode;
      res.resume();
      res.on('end', () => {
        req.destroy();
        setTimeout(() => resolve(result), 20);
      });
    });
    ws.on('error', () => setTimeout(() => resolve(result), 20));
  });
}

/** A hand-written upgrade request over a raw socket: every byte the server sends back. */
export function rawUpgrade(port: number, path: string, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      // An accepted upgrade stays open: stop once its headers are in.
      const text = Buffer.concat(chunks).toString('latin1');
      if (text.startsWith('HTTP/1.1 101') && text.includes('\r\n\r\n')) socket.destroy();
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    const lines = [
      `GET ${path} HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      'Sec-WebSocket-Version: 13',
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ];
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    setTimeout(() => socket.destroy(), 3000).unref();
  });
}

export { PROTOCOL };

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
