/**
 * HTTP helpers of the web console: the security headers every console answer carries, cookies,
 * and the same-host checks that stand in front of every route.
 *
 * Defends against: script injection (a strict CSP — `default-src 'self'`, no inline script or
 * style — on every answer), framing (`frame-ancestors 'none'`), MIME sniffing, referrer leaks,
 * DNS rebinding (the `Host` header must name this server, as the operator channel's origin rule
 * does), and other origins (state changes need an `Origin` of this server; the JSON API refuses any
 * `Sec-Fetch-Site` but `same-origin` and `none`, while the page itself may be opened from a link). Each check fails closed: a header it cannot parse is a refusal.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ContainedError } from '../../runtime/errors.js';
import { compileOrigins, normaliseOrigin, sameHostOrigins } from '../operator/auth.js';

export const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export function securityHeaders(extra: Record<string, string> = {}): Record<string, string> {
  return {
    'content-security-policy': CSP,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-resource-policy': 'same-origin',
    'permissions-policy': 'camera=(), microphone=(), geolocation=()',
    ...extra,
  };
}

export function sendConsoleJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, securityHeaders({ 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), 'cache-control': 'no-store', ...headers }));
  res.end(text);
}

/** Cookie header → name/value pairs (first occurrence wins; malformed pairs are skipped). */
export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (typeof header !== 'string') return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (!out.has(name)) out.set(name, value);
  }
  return out;
}

export interface CookieOptions {
  maxAgeSeconds: number;
  /** Add `Secure` (when the console is served over HTTPS, directly or behind a proxy). */
  secure: boolean;
}

export function sessionCookie(name: string, value: string, options: CookieOptions): string {
  return `${name}=${value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${Math.max(0, Math.floor(options.maxAgeSeconds))}${options.secure ? '; Secure' : ''}`;
}

/** Same-host checks, compiled once from the configured `allowedOrigins`. */
export interface OriginGuard {
  /** Throws FORBIDDEN unless the `Host` header names this server (or a configured origin). */
  checkHost(req: IncomingMessage): void;
  /** Throws FORBIDDEN when a browser says the request comes from another origin (the API is for the console's own page). */
  checkFetchSite(req: IncomingMessage): void;
  /** Throws FORBIDDEN unless `Origin` is present and is this server (or a configured origin). */
  checkStateChange(req: IncomingMessage): void;
}

/**
 * `listening` is the server's own URL (`http://127.0.0.1:7420`): its same-host origins are exactly
 * those the operator channel accepts, so a page the console serves can always open the channel.
 */
export function createOriginGuard(allowedOrigins: readonly string[], listening: () => string | undefined): OriginGuard {
  const allowed = compileOrigins(allowedOrigins);
  const allowedHosts = new Set([...allowed].map((o) => new URL(o).host));

  function sameHost(): Set<string> {
    const url = listening();
    if (url === undefined) return new Set();
    const { hostname, port } = new URL(url);
    const address = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
    return sameHostOrigins({ address, port: Number(port), family: address.includes(':') ? 'IPv6' : 'IPv4' });
  }

  return {
    checkHost(req) {
      const host = req.headers.host;
      const origin = typeof host === 'string' ? normaliseOrigin(`http://${host}`) : undefined;
      if (origin === undefined) throw new ContainedError('FORBIDDEN', 'the Host header is missing or malformed');
      const name = new URL(origin).host;
      const ours = [...sameHost()].some((o) => new URL(o).host === name);
      if (!ours && !allowedHosts.has(name)) throw new ContainedError('FORBIDDEN', `host ${name} is not this console`);
    },
    checkFetchSite(req) {
      const site = req.headers['sec-fetch-site'];
      if (site !== undefined && site !== 'same-origin' && site !== 'none') throw new ContainedError('FORBIDDEN', `the console API answers its own page only (Sec-Fetch-Site: ${String(site).slice(0, 20)})`);
    },
    checkStateChange(req) {
      const header = req.headers.origin;
      if (typeof header !== 'string') throw new ContainedError('FORBIDDEN', 'a state change needs an Origin header');
      const origin = normaliseOrigin(header);
      if (origin === undefined || !(allowed.has(origin) || sameHost().has(origin))) throw new ContainedError('FORBIDDEN', 'origin not allowed');
    },
  };
}
