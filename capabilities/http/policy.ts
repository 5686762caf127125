/**
 * The pure scope predicate of the http capability: may this method go to this URL with these
 * headers and this body? Used for the agent's request and again for every redirect hop.
 *
 * Defends against: other schemes (`file:`, `ftp:`, `data:`…), credentials in the URL and
 * `user@host` lookalikes, hosts and ports outside the allowlist (exact or `*.suffix` match on the
 * host as WHATWG URL normalises it, so `0x7f.1` is judged as `127.0.0.1`), paths outside the
 * prefixes including encoded dots and slashes a server might decode (`%2e%2e`, `%2f`, `%5c`),
 * overriding a header the host attaches as a credential, oversized bodies.
 *
 * Fails closed: a URL that does not parse, or anything not positively matched, is `OUT_OF_SCOPE`.
 * Address (DNS) checks are not pure and live in fetch.ts.
 */
import { IN_SCOPE, outOfScope, type ScopeCheck } from '../sdk/index.js';
import { type CompiledHttpScope, type HttpMethod, type OriginRule, defaultPort, hostMatches, originKey, pathUnder } from './scope.js';

export interface RequestShape {
  url: string;
  method: HttpMethod;
  /** Lower-case names. */
  headers: Readonly<Record<string, string>>;
  bodyBytes: number;
}

/** Parse a URL the way every later step will see it, or `undefined`. */
export function parseRequestUrl(text: string): URL | undefined {
  try {
    const url = new URL(text);
    url.hash = '';
    return url;
  } catch {
    return undefined;
  }
}

export function effectivePort(url: URL): number {
  return url.port === '' ? defaultPort(url.protocol) : Number(url.port);
}

export function urlOriginKey(url: URL): string {
  return originKey(url.protocol, url.hostname, effectivePort(url));
}

/** The origin rule a URL falls under, if any (scheme, host pattern and port). */
export function matchOrigin(scope: CompiledHttpScope, url: URL): OriginRule | undefined {
  const scheme = url.protocol.slice(0, -1);
  const port = effectivePort(url);
  return scope.origins.find((r) => r.scheme === scheme && r.port === port && hostMatches(r, url.hostname));
}

/** A short rendering of a URL for messages about redirects: the origin only (paths may carry echoes). */
export function showOrigin(url: URL): string {
  return `${url.protocol}//${url.host}`;
}

export function checkUrl(scope: CompiledHttpScope, url: URL, method: HttpMethod): ScopeCheck {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return outOfScope(`scheme "${url.protocol}" is not allowed (only http and https)`);
  if (url.username !== '' || url.password !== '') return outOfScope('URLs with user information (user:pass@) are not allowed');
  if (!matchOrigin(scope, url)) return outOfScope(`origin ${url.protocol}//${url.host} is not in the allowed origins`);
  const path = url.pathname;
  if (/%2e|%2f|%5c/i.test(path)) return outOfScope(`path "${path}" contains an encoded dot, slash or backslash`);
  if (!scope.pathPrefixes.some((p) => pathUnder(path, p))) return outOfScope(`path "${path}" is not under the allowed path prefixes`);
  if (!scope.methods.has(method)) return outOfScope(`method ${method} is not allowed`);
  return IN_SCOPE;
}

export function checkRequest(scope: CompiledHttpScope, req: RequestShape): ScopeCheck {
  const url = parseRequestUrl(req.url);
  if (!url) return outOfScope('the URL does not parse');
  const verdict = checkUrl(scope, url, req.method);
  if (!verdict.ok) return verdict;
  const key = urlOriginKey(url);
  for (const cred of scope.credentials) {
    if (cred.originKey === key && Object.prototype.hasOwnProperty.call(req.headers, cred.header)) {
      return outOfScope(`header "${cred.header}" is set by the host for ${key} and cannot be given`);
    }
  }
  if (req.bodyBytes > scope.maxRequestBytes) return outOfScope(`request body of ${req.bodyBytes} bytes exceeds maxRequestBytes (${scope.maxRequestBytes})`);
  return IN_SCOPE;
}
