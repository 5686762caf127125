/**
 * The host's HTTP server: a minimal, authenticated run API (`POST /v1/runs`, `GET /v1/runs/:id`)
 * and the operator WebSocket channel on the same port. Loopback by default. Request bodies are
 * size-capped and validated; every error is JSON `{ error: { code, message } }` with a stable code.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { z } from 'zod';
import { ContainedError, type ErrorCode } from '../runtime/errors.js';
import type { HostConfig } from './config.js';
import type { Host } from './host.js';
import type { Operator } from './model.js';
import type { TokenVerifier } from './operator/backend.js';
import { attachOperatorChannel } from './operator/server.js';

/** Largest request body, bytes (a base64 image plus input). */
export const MAX_BODY_BYTES = 48 * 1024 * 1024;
/** Longest `?waitMs=` long-poll. */
export const MAX_WAIT_MS = 120_000;

const submitSchema = z.strictObject({
  /** The image archive, base64. */
  image: z.string().min(1),
  input: z.unknown().optional(),
});

export interface HttpServerOptions {
  host: Host;
  config: HostConfig;
  verifier: TokenVerifier;
  logger?: Logger;
}

export async function startHttpServer(options: HttpServerOptions): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const { host, config, verifier, logger } = options;
  const server = createServer((req, res) => {
    handle(req, res, host, verifier).catch((error: unknown) => {
      const info = error instanceof ContainedError ? error : new ContainedError('INTERNAL', 'internal error in the host');
      if (!(error instanceof ContainedError)) logger?.error({ err: error }, 'http handler failed');
      sendError(res, info.code, info.message);
    });
  });
  const channel = attachOperatorChannel(server, {
    backend: host.backend,
    verifier,
    allowedOrigins: config.allowedOrigins,
    logger,
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port, config.listen.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const hostname = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${hostname}:${address.port}`,
    server,
    async close() {
      await channel.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
    },
  };
}

async function authenticate(req: IncomingMessage, verifier: TokenVerifier): Promise<Operator> {
  const header = req.headers.authorization;
  const token = typeof header === 'string' && /^Bearer /i.test(header) ? header.slice(7).trim() : '';
  const operator = token ? await verifier.verify(token) : undefined;
  if (!operator) throw new ContainedError('CAPABILITY_DENIED', 'a valid bearer token is required', { data: { status: 401 } });
  return operator;
}

async function handle(req: IncomingMessage, res: ServerResponse, host: Host, verifier: TokenVerifier): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (req.method === 'GET' && url.pathname === '/healthz') return sendJson(res, 200, { ok: true });
  const operator = await authenticate(req, verifier);
  const platform = operator.role === 'platform' || operator.role === 'admin';
  if (req.method === 'POST' && url.pathname === '/v1/runs') {
    if (!platform) throw new ContainedError('CAPABILITY_DENIED', 'submitting runs needs the platform or admin role', { data: { status: 403 } });
    const body = submitSchema.safeParse(await readJson(req));
    if (!body.success) {
      const issue = body.error.issues[0];
      throw new ContainedError('INVALID_ARGUMENT', `invalid body${issue ? ` at ${issue.path.join('.') || '(root)'}: ${issue.message}` : ''}`);
    }
    const image = Buffer.from(body.data.image, 'base64');
    const { runId, digest } = await host.submit({ image, input: body.data.input ?? null, submittedBy: operator.name });
    return sendJson(res, 202, { runId, digest });
  }
  const match = /^\/v1\/runs\/([A-Za-z0-9-]{1,64})$/.exec(url.pathname);
  if (req.method === 'GET' && match) {
    const runId = match[1] as string;
    const waitMs = Math.min(MAX_WAIT_MS, Math.max(0, Number(url.searchParams.get('waitMs') ?? 0) || 0));
    let run = await host.store.getRun(runId);
    if (!run) throw new ContainedError('NOT_FOUND', `no run ${runId}`);
    if (waitMs > 0 && run.status === 'running') {
      await Promise.race([host.waitForRun(runId).catch(() => undefined), new Promise((r) => setTimeout(r, waitMs))]);
      run = (await host.store.getRun(runId)) ?? run;
    }
    return sendJson(res, 200, run);
  }
  throw new ContainedError('NOT_FOUND', `no route ${req.method ?? ''} ${url.pathname}`);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new ContainedError('INVALID_ARGUMENT', `the body is larger than ${MAX_BODY_BYTES} bytes`, { data: { status: 413 } });
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new ContainedError('INVALID_ARGUMENT', 'the body is not valid JSON');
  }
}

const STATUS: Partial<Record<ErrorCode, number>> = {
  NOT_FOUND: 404,
  INVALID_ARGUMENT: 400,
  USAGE: 400,
  CAPABILITY_DENIED: 403,
  ALREADY_RESOLVED: 409,
};

function sendError(res: ServerResponse, code: ErrorCode, message: string): void {
  const status = code.startsWith('IMAGE_') ? 422 : (STATUS[code] ?? 500);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, code === 'CAPABILITY_DENIED' && message.startsWith('a valid bearer') ? 401 : status, { error: { code, message } });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}
