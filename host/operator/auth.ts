/**
 * Who may open the operator channel: pure predicates over the HTTP upgrade request, run before any
 * WebSocket exists. Both fail closed: a header they cannot parse is a refusal, never a pass.
 *
 * - `checkOrigin`: browsers send `Origin`; it must be one of the configured origins or a same-host
 *   origin of the listening address. Non-browser clients send none and are judged by their token.
 * - `readCredential`: exactly one of `Authorization: Bearer <token>`, a `bearer.<token>` entry in
 *   `Sec-WebSocket-Protocol` (next to `contained.operator.v1`), or `?ticket=` (see tickets.ts).
 */
import type { AddressInfo } from 'node:net';
import { PROTOCOL } from './protocol.js';

export type Check<T> = ({ ok: true } & T) | { ok: false; status: 400 | 401 | 403; message: string };

/** Normalise a configured origin once, at start-up; a bad entry throws here, not per request. */
export function compileOrigins(origins: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const origin of origins) {
    const normal = normaliseOrigin(origin);
    if (normal === undefined) throw new TypeError(`allowedOrigins: ${JSON.stringify(origin)} is not an http(s) origin (scheme://host[:port])`);
    out.add(normal);
  }
  return out;
}

/** `scheme://host[:port]` with default ports dropped and the host lower-cased; anything else is undefined. */
export function normaliseOrigin(value: string): string | undefined {
  if (!/^https?:\/\/[^/?#@\s]+$/i.test(value)) return undefined;
  try {
    const url = new URL(value);
    return url.origin === 'null' ? undefined : url.origin;
  } catch {
    return undefined;
  }
}

const LOOPBACK_OR_ANY = new Set(['127.0.0.1', '::1', '0.0.0.0', '::', '::ffff:127.0.0.1']);

/** The origins a page served by this very server would send. */
export function sameHostOrigins(address: AddressInfo | string | null): Set<string> {
  const out = new Set<string>();
  if (address === null || typeof address === 'string') return out;
  const hosts = LOOPBACK_OR_ANY.has(address.address)
    ? ['127.0.0.1', 'localhost', '[::1]']
    : [address.family === 'IPv6' ? `[${address.address}]` : address.address];
  for (const host of hosts) {
    for (const scheme of ['http', 'https']) {
      const origin = normaliseOrigin(`${scheme}://${host}:${address.port}`);
      if (origin !== undefined) out.add(origin);
    }
  }
  return out;
}

export function checkOrigin(header: string | string[] | undefined, allowed: ReadonlySet<string>, sameHost: ReadonlySet<string>): Check<object> {
  if (header === undefined) return { ok: true };
  if (typeof header !== 'string') return { ok: false, status: 403, message: 'several Origin headers' };
  const origin = normaliseOrigin(header);
  if (origin === undefined) return { ok: false, status: 403, message: 'Origin header is not an http(s) origin' };
  if (allowed.has(origin) || sameHost.has(origin)) return { ok: true };
  return { ok: false, status: 403, message: `origin ${origin} is not allowed` };
}

export type Credential = { kind: 'bearer' | 'subprotocol'; token: string } | { kind: 'ticket'; ticket: string };

/** RFC 7230 token characters: what a subprotocol entry (and so a token carried in one) may contain. */
const TCHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const MAX_CREDENTIAL_LENGTH = 512;

/**
 * Read the single credential of an upgrade request. `offersProtocol` tells the caller whether the
 * client asked for `contained.operator.v1` (then it must be echoed back).
 */
export function readCredential(headers: {
  authorization?: string | undefined;
  protocol?: string | undefined;
  url: string;
}): Check<{ credential: Credential; offersProtocol: boolean }> {
  const found: Credential[] = [];
  let offersProtocol = false;

  if (headers.authorization !== undefined) {
    const match = /^Bearer +(\S+) *$/i.exec(headers.authorization);
    if (!match?.[1]) return { ok: false, status: 401, message: 'Authorization header is not "Bearer <token>"' };
    found.push({ kind: 'bearer', token: match[1] });
  }

  if (headers.protocol !== undefined) {
    const entries = headers.protocol.split(',').map((s) => s.trim());
    if (entries.some((e) => !TCHARS.test(e))) return { ok: false, status: 400, message: 'Sec-WebSocket-Protocol is malformed' };
    offersProtocol = entries.includes(PROTOCOL);
    if (!offersProtocol) return { ok: false, status: 400, message: `Sec-WebSocket-Protocol must offer ${PROTOCOL}` };
    const bearers = entries.filter((e) => e.startsWith('bearer.'));
    if (bearers.length > 1) return { ok: false, status: 401, message: 'several bearer subprotocol entries' };
    const token = bearers[0]?.slice('bearer.'.length);
    if (token !== undefined) {
      if (token.length === 0) return { ok: false, status: 401, message: 'empty bearer subprotocol entry' };
      found.push({ kind: 'subprotocol', token });
    }
  }

  let url: URL;
  try {
    url = new URL(headers.url, 'http://operator.invalid');
  } catch {
    return { ok: false, status: 400, message: 'request URL is malformed' };
  }
  const tickets = url.searchParams.getAll('ticket');
  if (tickets.length > 1) return { ok: false, status: 401, message: 'several tickets' };
  if (tickets[0] !== undefined) found.push({ kind: 'ticket', ticket: tickets[0] });

  if (found.length === 0) return { ok: false, status: 401, message: 'no credential (bearer token, subprotocol token or ticket)' };
  // One credential per connection: two that disagree would leave "who is this?" ambiguous.
  if (found.length > 1) return { ok: false, status: 401, message: 'more than one credential' };
  const credential = found[0] as Credential;
  const secret = credential.kind === 'ticket' ? credential.ticket : credential.token;
  if (secret.length > MAX_CREDENTIAL_LENGTH) return { ok: false, status: 401, message: 'credential too long' };
  return { ok: true, credential, offersProtocol };
}
