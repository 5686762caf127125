/**
 * The http scope: which origins (scheme + host pattern + port), methods and path prefixes an
 * instance may reach, which non-public addresses it may connect to, which credentials the host
 * attaches, and its limits.
 *
 * Defends against mis-written rules: every origin, path prefix, CIDR and credential is compiled when
 * the scope is parsed, and anything odd (a wildcard on an IP, `*.com`, a host that changes under URL
 * normalisation, a prefix with `..` or encoded slashes, a credential for an origin not in the list)
 * fails the parse, so `createInstance`/`attenuate` refuse it with `INVALID_SCOPE` at creation, never
 * mid-run. `intersectHttpScopes` only ever narrows; it throws `INVALID_SCOPE` when nothing is left.
 */
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import { type AddressPolicy, type Cidr, cidrWithin, parseCidr, parseIpv4 } from './address.js';
import { FORBIDDEN_REQUEST_HEADERS, HEADER_NAME } from './headers.js';

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];
export const READ_METHODS: readonly HttpMethod[] = ['GET', 'HEAD'];

/** Defaults of every limit (units in the names). */
export const HTTP_DEFAULTS = Object.freeze({
  maxResponseBytes: 1024 * 1024,
  maxRequestBytes: 1024 * 1024,
  timeoutMs: 10_000,
  maxRedirects: 5,
});

const credentialSchema = z.strictObject({
  /** Exact origin the credential is sent to, e.g. `https://api.example.com` (no wildcard). */
  origin: z.string().min(1).max(300),
  /** Header the host sets, e.g. `authorization`. The agent cannot set or override it there. */
  header: z.string().min(1).max(64),
  /** Name of the secret in the host's secret store (never its value). */
  secret: z.string().min(1).max(200),
});

const scopeObject = z.strictObject({
  /** `scheme://host[:port]`; host is `api.example.com`, `*.example.com` (subdomains only), an IPv4 or `[IPv6]`. */
  origins: z.array(z.string().min(1).max(300)).min(1).max(100),
  /** Default `['GET', 'HEAD']`. */
  methods: z.array(z.enum(HTTP_METHODS)).min(1).optional(),
  /** Path prefixes on segment boundaries (`/v1` allows `/v1` and `/v1/x`, not `/v10`). Default `['/']`. */
  pathPrefixes: z.array(z.string().min(1).max(1000)).min(1).max(100).optional(),
  /** Allow every non-public address (loopback, private, link-local…). Default false. Prefer `allowedCidrs`. */
  allowPrivateNetwork: z.boolean().optional(),
  /** Non-public address blocks allowed in addition to the public internet, e.g. `127.0.0.1/32`. */
  allowedCidrs: z.array(z.string().min(1).max(64)).max(100).optional(),
  credentials: z.array(credentialSchema).max(20).optional(),
  /** Bytes of (decoded) response body kept; the rest is not read and `truncated` is set. Default 1 MiB. */
  maxResponseBytes: z.number().int().positive().max(64 * 1024 * 1024).optional(),
  /** Bytes of request body accepted. Default 1 MiB. */
  maxRequestBytes: z.number().int().nonnegative().max(64 * 1024 * 1024).optional(),
  /** Milliseconds for the whole exchange, redirects and body included. Default 10 000. */
  timeoutMs: z.number().int().positive().max(300_000).optional(),
  /** Redirect hops followed before failing. Default 5. */
  maxRedirects: z.number().int().nonnegative().max(20).optional(),
});

export type HttpScope = z.infer<typeof scopeObject>;

export const httpScopeSchema = scopeObject.superRefine((scope, ctx) => {
  try {
    compileScope(scope);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
  }
});

export interface OriginRule {
  scheme: 'http' | 'https';
  /** Lower-case host as `URL.hostname` spells it (IPv6 in brackets); for wildcards, the suffix. */
  host: string;
  wildcard: boolean;
  port: number;
}

export interface CredentialRule {
  /** `scheme://host:port` with the port always explicit. */
  originKey: string;
  header: string;
  secret: string;
}

export interface CompiledHttpScope {
  origins: readonly OriginRule[];
  methods: ReadonlySet<HttpMethod>;
  pathPrefixes: readonly string[];
  address: AddressPolicy;
  credentials: readonly CredentialRule[];
  maxResponseBytes: number;
  maxRequestBytes: number;
  timeoutMs: number;
  maxRedirects: number;
}

const LABEL = '[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?';
const HOSTNAME = new RegExp(`^${LABEL}(\\.${LABEL})*$`);
const ORIGIN = /^(https?):\/\/(\*\.)?(\[[0-9a-fA-F:.]+\]|[^/:?#@[\]\s\\]+)(?::(\d{1,5}))?$/;

export function defaultPort(scheme: string): number {
  return scheme === 'https' || scheme === 'https:' ? 443 : 80;
}

/** Canonical host as WHATWG URL would give it; throws when the text is not exactly that already. */
function canonicalHost(raw: string): string {
  const lower = raw.toLowerCase();
  let host: string;
  try {
    host = new URL(`http://${lower}/`).hostname;
  } catch {
    throw new Error(`"${raw}" is not a valid host`);
  }
  if (host.startsWith('[')) return host;
  if (host !== lower || (!HOSTNAME.test(host) && !parseIpv4(host))) {
    throw new Error(`host "${raw}" is not in canonical form (lower-case ASCII/punycode, no trailing dot, dotted-quad IPv4)`);
  }
  return host;
}

export function parseOrigin(text: string, allowWildcard = true): OriginRule {
  const m = ORIGIN.exec(text);
  if (!m) throw new Error(`origin "${text}" must look like https://api.example.com[:port]`);
  const scheme = m[1] as 'http' | 'https';
  const wildcard = m[2] !== undefined;
  const host = canonicalHost(m[3] ?? '');
  const port = m[4] === undefined ? defaultPort(scheme) : Number(m[4]);
  if (port < 1 || port > 65535) throw new Error(`origin "${text}" has an invalid port`);
  if (wildcard) {
    if (!allowWildcard) throw new Error(`origin "${text}" must be exact (no wildcard)`);
    if (host.startsWith('[') || parseIpv4(host)) throw new Error(`origin "${text}": a wildcard cannot apply to an IP address`);
    if (!host.includes('.')) throw new Error(`origin "${text}": a wildcard needs at least two labels after "*." (no "*.com")`);
  }
  return { scheme, host, wildcard, port };
}

export function formatOrigin(rule: OriginRule): string {
  const port = rule.port === defaultPort(rule.scheme) ? '' : `:${rule.port}`;
  return `${rule.scheme}://${rule.wildcard ? '*.' : ''}${rule.host}${port}`;
}

export function originKey(scheme: string, host: string, port: number): string {
  return `${scheme.replace(/:$/, '')}://${host}:${port}`;
}

function checkPrefix(prefix: string): string {
  let canonical: string;
  try {
    canonical = new URL(prefix, 'http://x').pathname;
  } catch {
    throw new Error(`path prefix "${prefix}" is not a valid path`);
  }
  if (!prefix.startsWith('/') || canonical !== prefix || /%2e|%2f|%5c/i.test(prefix) || prefix.includes('//')) {
    throw new Error(`path prefix "${prefix}" must be an absolute, normalised path without "..", "//" or encoded dots and slashes`);
  }
  return prefix;
}

/** Does `path` fall under `prefix` on a segment boundary? */
export function pathUnder(path: string, prefix: string): boolean {
  if (prefix === '/' || path === prefix) return true;
  return path.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`);
}

/** Compile a parsed scope; throws a plain Error naming the bad rule. */
export function compileScope(scope: HttpScope): CompiledHttpScope {
  const origins = scope.origins.map((o) => parseOrigin(o));
  const cidrs: Cidr[] = (scope.allowedCidrs ?? []).map(parseCidr);
  const credentials = (scope.credentials ?? []).map((cred) => {
    const o = parseOrigin(cred.origin, false);
    const header = cred.header.toLowerCase();
    if (!HEADER_NAME.test(header) || FORBIDDEN_REQUEST_HEADERS.has(header)) {
      throw new Error(`credential header "${cred.header}" is not a header the host may set`);
    }
    if (!origins.some((r) => hostMatches(r, o.host) && r.scheme === o.scheme && r.port === o.port)) {
      throw new Error(`credential origin "${cred.origin}" is not among the allowed origins`);
    }
    return { originKey: originKey(o.scheme, o.host, o.port), header, secret: cred.secret };
  });
  return {
    origins,
    methods: new Set(scope.methods ?? READ_METHODS),
    pathPrefixes: (scope.pathPrefixes ?? ['/']).map(checkPrefix),
    address: { allowPrivateNetwork: scope.allowPrivateNetwork ?? false, allowedCidrs: cidrs },
    credentials,
    maxResponseBytes: scope.maxResponseBytes ?? HTTP_DEFAULTS.maxResponseBytes,
    maxRequestBytes: scope.maxRequestBytes ?? HTTP_DEFAULTS.maxRequestBytes,
    timeoutMs: scope.timeoutMs ?? HTTP_DEFAULTS.timeoutMs,
    maxRedirects: scope.maxRedirects ?? HTTP_DEFAULTS.maxRedirects,
  };
}

export function hostMatches(rule: OriginRule, host: string): boolean {
  return rule.wildcard ? host.endsWith(`.${rule.host}`) : host === rule.host;
}

/**
 * Compiled form of a scope, computed once per scope object. Scopes are immutable after parsing
 * (the SDK never mutates them); the cache lives in the definition's closure, not in module state,
 * and holds nothing but a pure function's result.
 */
export function makeScopeCompiler(): (scope: HttpScope) => CompiledHttpScope {
  const cache = new WeakMap<HttpScope, CompiledHttpScope>();
  return (scope) => {
    let compiled = cache.get(scope);
    if (!compiled) {
      compiled = compileScope(scope);
      cache.set(scope, compiled);
    }
    return compiled;
  };
}

function intersectOrigins(a: OriginRule, b: OriginRule): OriginRule | undefined {
  if (a.scheme !== b.scheme || a.port !== b.port) return undefined;
  if (!a.wildcard && !b.wildcard) return a.host === b.host ? a : undefined;
  if (a.wildcard && b.wildcard) {
    if (a.host === b.host || a.host.endsWith(`.${b.host}`)) return a;
    return b.host.endsWith(`.${a.host}`) ? b : undefined;
  }
  const [exact, wild] = a.wildcard ? [b, a] : [a, b];
  return hostMatches(wild, exact.host) ? exact : undefined;
}

function uniq<T>(items: T[]): T[] {
  return [...new Set(items)];
}

function none(what: string): never {
  throw new ContainedError('INVALID_SCOPE', `http: the narrower scope shares no ${what} with its parent`);
}

/** Everything the result allows is allowed by both `parent` and `narrower`. Omitted fields inherit. */
export function intersectHttpScopes(parent: HttpScope, narrower: HttpScope): HttpScope {
  const p = compileScope(parent);
  const n = compileScope(narrower);
  const origins = uniq(p.origins.flatMap((a) => n.origins.map((b) => intersectOrigins(a, b))).filter((o) => o !== undefined).map(formatOrigin));
  if (origins.length === 0) none('origin');
  const methods = [...p.methods].filter((m) => n.methods.has(m) || narrower.methods === undefined);
  if (methods.length === 0) none('method');
  const prefixes = narrower.pathPrefixes === undefined ? [...p.pathPrefixes] : uniq(
    p.pathPrefixes.flatMap((a) => n.pathPrefixes.map((b) => (pathUnder(a, b) ? a : pathUnder(b, a) ? b : undefined))).filter((x) => x !== undefined),
  );
  if (prefixes.length === 0) none('path prefix');

  const result: HttpScope = { origins, methods, pathPrefixes: prefixes };
  // Non-public addresses: "all" (allowPrivateNetwork), a CIDR list, or inherit when the child says nothing.
  const childAll = narrower.allowPrivateNetwork === true || (narrower.allowPrivateNetwork === undefined && narrower.allowedCidrs === undefined);
  const childCidrs = narrower.allowPrivateNetwork === true ? [] : n.address.allowedCidrs;
  if (p.address.allowPrivateNetwork && childAll) result.allowPrivateNetwork = true;
  else if (p.address.allowPrivateNetwork) result.allowedCidrs = childCidrs.map((x) => x.text);
  else if (childAll) result.allowedCidrs = p.address.allowedCidrs.map((x) => x.text);
  else {
    result.allowedCidrs = uniq(
      p.address.allowedCidrs.flatMap((a) => childCidrs.map((b) => (cidrWithin(a, b) ? a.text : cidrWithin(b, a) ? b.text : undefined))).filter((x) => x !== undefined),
    );
  }
  const sameCred = (a: CredentialRule, b: CredentialRule): boolean => a.originKey === b.originKey && a.header === b.header && a.secret === b.secret;
  const creds = narrower.credentials === undefined ? (parent.credentials ?? []) : (narrower.credentials ?? []).filter((_, i) => p.credentials.some((c) => sameCred(c, n.credentials[i]!)));
  // Keep only credentials whose origin survived the origin intersection.
  const kept = creds.filter((c) => origins.some((o) => {
    const rule = parseOrigin(o);
    const co = parseOrigin(c.origin, false);
    return rule.scheme === co.scheme && rule.port === co.port && hostMatches(rule, co.host);
  }));
  if (kept.length > 0) result.credentials = kept;
  result.maxResponseBytes = Math.min(p.maxResponseBytes, narrower.maxResponseBytes ?? p.maxResponseBytes);
  result.maxRequestBytes = Math.min(p.maxRequestBytes, narrower.maxRequestBytes ?? p.maxRequestBytes);
  result.timeoutMs = Math.min(p.timeoutMs, narrower.timeoutMs ?? p.timeoutMs);
  result.maxRedirects = Math.min(p.maxRedirects, narrower.maxRedirects ?? p.maxRedirects);
  return result;
}

/** The scope in words, for operators and agent-facing docs (credential values never appear). */
export function describeHttpScope(scope: HttpScope): string {
  const s = compileScope(scope);
  const parts = [
    `${[...s.methods].join(', ')} to ${s.origins.map(formatOrigin).join(', ')}`,
    s.pathPrefixes.length === 1 && s.pathPrefixes[0] === '/' ? 'any path' : `paths under ${s.pathPrefixes.join(', ')}`,
  ];
  if (s.address.allowPrivateNetwork) parts.push('private and loopback addresses allowed');
  else if (s.address.allowedCidrs.length) parts.push(`non-public addresses allowed only in ${s.address.allowedCidrs.map((c) => c.text).join(', ')}`);
  for (const c of s.credentials) parts.push(`the host adds the "${c.header}" header for ${c.originKey} (value hidden)`);
  parts.push(`responses cut at ${s.maxResponseBytes} bytes, request bodies up to ${s.maxRequestBytes} bytes, ${s.timeoutMs} ms timeout, at most ${s.maxRedirects} redirects`);
  return parts.join('; ');
}
