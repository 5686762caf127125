/**
 * How the HTTP API answers: JSON bodies, and every error as `{ error: { code, message, data? } }`
 * with a stable code and the HTTP status the error registry (runtime/errors.ts) gives that code:
 * there is no status map here, so a code always means the same status. Anything that is not a
 * ContainedError becomes `INTERNAL` with a generic message; the detail goes to the log, never to
 * the caller.
 */
import type { ServerResponse } from 'node:http';
import { ContainedError, type ErrorCode, httpStatus } from '../../runtime/errors.js';

/** Structured detail safe for the caller (paths of invalid fields, limits, image details). */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; data?: Record<string, unknown> };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(text);
}

/** Answer with an error; a response already under way (e.g. an SSE stream) is cut instead. */
export function sendError(res: ServerResponse, error: unknown): void {
  const info = error instanceof ContainedError ? error : new ContainedError('INTERNAL', 'internal error in the host');
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = {};
  const retryAfter = info.data?.['retryAfterSeconds'];
  if (typeof retryAfter === 'number') headers['retry-after'] = String(Math.max(1, Math.ceil(retryAfter)));
  if (info.code === 'UNAUTHENTICATED') headers['www-authenticate'] = 'Bearer realm="contained"';
  const allow = info.data?.['allow'];
  if (info.code === 'METHOD_NOT_ALLOWED' && Array.isArray(allow)) headers['allow'] = allow.join(', ');
  const body: ErrorBody = { error: { code: info.code, message: info.message } };
  if (info.data !== undefined) body.error.data = info.data;
  // A body we did not read to the end would otherwise be parsed as the next request.
  if (!res.req.complete) {
    headers['connection'] = 'close';
    lingerOnClose(res);
  }
  sendJson(res, httpStatus(info.code), body, headers);
}

/** How long a connection refused mid-body keeps reading (and discarding) before it is closed, ms. */
export const LINGER_MS = 1000;

/**
 * Closing a socket while the client is still sending makes the kernel answer with a reset, which
 * can destroy our error response before the client reads it (and the client sees EPIPE instead
 * of 413). So, like a web server's "lingering close": send the response, half-close, discard
 * whatever still arrives for at most LINGER_MS, then close.
 */
function lingerOnClose(res: ServerResponse): void {
  const socket = res.socket as (NonNullable<ServerResponse['socket']> & { destroySoon?: () => void }) | null;
  if (!socket) return;
  socket.destroySoon = function lingeringClose(): void {
    this.end();
    this.resume();
    const timer = setTimeout(() => this.destroy(), LINGER_MS);
    timer.unref();
    this.once('end', () => this.destroy());
    this.once('close', () => clearTimeout(timer));
  };
}
