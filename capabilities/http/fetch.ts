/**
 * The http request loop: resolve, check the address, attach credentials, exchange, follow redirects
 * by hand.
 *
 * Defends against SSRF and DNS rebinding: each hop's host name is resolved once, every answer that
 * is not allowed by the address policy is discarded (none left: `OUT_OF_SCOPE`), and the socket
 * connects to the address that was checked. Every redirect hop is re-checked against the scope
 * (scheme, origin, path, method) and the address policy, and the hop count is capped. Credentials
 * are attached per hop, only to their exact origin, and the agent's own `authorization`/`cookie` are
 * dropped when a redirect leaves the origin. Secret values never reach a result, a message or a
 * logged cause: they are redacted everywhere and causes are rebuilt from redacted text.
 *
 * Fails with `OUT_OF_SCOPE` (scope or address refusal), `CAPABILITY_FAILED` (DNS, connection, TLS,
 * timeout, too many redirects, missing credential; `data.reason` says which) or `CANCELLED` (the run
 * ended).
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { ContainedError } from '../../runtime/errors.js';
import { checkAddress } from './address.js';
import { CROSS_ORIGIN_DROPPED, filterResponseHeaders, redact, secretVariants } from './headers.js';
import { checkUrl, parseRequestUrl, showOrigin, urlOriginKey } from './policy.js';
import type { CompiledHttpScope, HttpMethod } from './scope.js';
import { UnsupportedEncodingError, discard, openExchange, readCapped } from './transport.js';

/** Host-side secret store: name → value. Values never leave the host side. */
export interface SecretStore {
  get(name: string): string | undefined;
}

/** Resolve a host name to all its addresses (default: the system resolver, `dns.lookup` with `all`). */
export type HostLookup = (hostname: string) => Promise<ReadonlyArray<{ address: string; family: number }>>;

export interface HttpDeps {
  secrets?: SecretStore;
  lookup?: HostLookup;
}

export interface HttpRequest {
  url: string;
  method: HttpMethod;
  /** Lower-case names, already validated by the argument schema. */
  headers: Record<string, string>;
  body: string | undefined;
}

export interface HttpResult {
  status: number;
  statusText: string;
  /** Final URL after redirects. */
  url: string;
  redirected: boolean;
  headers: Record<string, string>;
  body: string;
  truncated: boolean;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

const systemLookup: HostLookup = async (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

function failed(reason: string, message: string, secrets: readonly string[], cause?: unknown): ContainedError {
  // Rebuild the cause from redacted text so a host log never records a secret either.
  const c = cause as { message?: unknown; code?: unknown } | undefined;
  const safeCause = cause === undefined ? undefined : Object.assign(new Error(redact(String(c?.message ?? cause), secrets)), { code: c?.code });
  return new ContainedError('CAPABILITY_FAILED', redact(message, secrets), { data: { reason }, ...(safeCause ? { cause: safeCause } : {}) });
}

/** Resolve and keep the first allowed address; refuse when none is. */
async function pinAddress(url: URL, scope: CompiledHttpScope, deps: HttpDeps, secrets: readonly string[], signal: AbortSignal): Promise<{ address: string; family: 4 | 6 }> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const literal = checkAddress(host, scope.address);
  if (literal.ok) return literal;
  if (/^[0-9.]+$/.test(host) || host.includes(':')) {
    throw new ContainedError('OUT_OF_SCOPE', `${url.host}: ${literal.reason}`, { data: { reason: 'address' } });
  }
  let answers: ReadonlyArray<{ address: string; family: number }>;
  try {
    answers = await untilAborted((deps.lookup ?? systemLookup)(host), signal);
  } catch (error) {
    if (signal.aborted) throw error;
    throw failed('dns', `could not resolve ${host}`, secrets, error);
  }
  let lastReason = `${host} resolved to no address`;
  for (const answer of answers) {
    const verdict = checkAddress(answer.address, scope.address);
    if (verdict.ok) return verdict;
    lastReason = `${host} resolves to ${verdict.reason}`;
  }
  throw new ContainedError('OUT_OF_SCOPE', lastReason, { data: { reason: 'address' } });
}

/** The system resolver cannot be cancelled; stop waiting for it when the request is aborted. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new Error('aborted'));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function credentialHeaders(scope: CompiledHttpScope, url: URL, deps: HttpDeps): Record<string, string> {
  const key = urlOriginKey(url);
  const out: Record<string, string> = {};
  for (const cred of scope.credentials) {
    if (cred.originKey !== key) continue;
    const value = deps.secrets?.get(cred.secret);
    if (typeof value !== 'string' || value.length === 0 || /[\0\r\n]/.test(value)) {
      throw new ContainedError('CAPABILITY_FAILED', `the credential "${cred.secret}" for ${key} is not available on the host`, { data: { reason: 'credential' } });
    }
    out[cred.header] = value;
  }
  return out;
}

/** Every form of every secret value this scope could attach, for redaction. */
function secretValues(scope: CompiledHttpScope, deps: HttpDeps): string[] {
  const values: string[] = [];
  for (const cred of scope.credentials) {
    const v = deps.secrets?.get(cred.secret);
    if (typeof v === 'string' && v.length > 0) values.push(v);
  }
  return secretVariants(values);
}

export async function performRequest(req: HttpRequest, scope: CompiledHttpScope, deps: HttpDeps, runSignal: AbortSignal): Promise<HttpResult> {
  const secrets = secretValues(scope, deps);
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, scope.timeoutMs);
  const onRunAbort = (): void => controller.abort();
  runSignal.addEventListener('abort', onRunAbort, { once: true });
  if (runSignal.aborted) controller.abort();
  try {
    return await loop(req, scope, deps, secrets, controller.signal);
  } catch (error) {
    if (error instanceof ContainedError) throw error;
    if (timedOut) throw failed('timeout', `request timed out after ${scope.timeoutMs} ms`, secrets, error);
    if (runSignal.aborted) throw new ContainedError('CANCELLED', 'the run ended while the request was in flight');
    if (error instanceof UnsupportedEncodingError) throw failed('encoding', error.message, secrets);
    const code = (error as { code?: unknown }).code;
    throw failed('network', `request failed${typeof code === 'string' ? ` (${code})` : ''}`, secrets, error);
  } finally {
    clearTimeout(timer);
    runSignal.removeEventListener('abort', onRunAbort);
  }
}

async function loop(req: HttpRequest, scope: CompiledHttpScope, deps: HttpDeps, secrets: readonly string[], signal: AbortSignal): Promise<HttpResult> {
  let url = parseRequestUrl(req.url);
  if (!url) throw new ContainedError('OUT_OF_SCOPE', 'the URL does not parse');
  let method: HttpMethod = req.method;
  let body = req.body === undefined ? undefined : Buffer.from(req.body, 'utf8');
  let headers = { ...req.headers };
  if (body !== undefined && headers['content-type'] === undefined) headers['content-type'] = 'text/plain;charset=UTF-8';
  for (let hop = 0; ; hop++) {
    // The first hop was checked by inScope already; checking again costs nothing and keeps one path.
    const verdict = checkUrl(scope, url, method);
    if (!verdict.ok) {
      const message = hop === 0 ? verdict.message : `redirect to ${showOrigin(url)} refused: ${verdict.message}`;
      throw new ContainedError('OUT_OF_SCOPE', redact(message, secrets), hop === 0 ? {} : { data: { reason: 'redirect' } });
    }
    let pinned: { address: string; family: 4 | 6 };
    try {
      pinned = await pinAddress(url, scope, deps, secrets, signal);
    } catch (error) {
      if (hop > 0 && error instanceof ContainedError && error.code === 'OUT_OF_SCOPE') {
        throw new ContainedError('OUT_OF_SCOPE', redact(`redirect to ${showOrigin(url)} refused: ${error.message}`, secrets), { data: { reason: 'redirect-address' } });
      }
      throw error;
    }
    // Credentials last, so an agent header of the same name can never win.
    const sent = { ...headers, ...credentialHeaders(scope, url, deps) };
    const res = await openExchange({ url, method, headers: sent, body, address: pinned.address, family: pinned.family, signal });
    const location = res.headers.location;
    if (REDIRECTS.has(res.status) && typeof location === 'string') {
      discard(res);
      if (hop >= scope.maxRedirects) throw failed('redirects', `more than ${scope.maxRedirects} redirects`, secrets);
      let next: URL;
      try {
        next = new URL(location, url);
        next.hash = '';
      } catch {
        throw failed('redirect', 'the server sent a redirect that does not parse', secrets);
      }
      // Fetch semantics: 303 becomes GET (unless HEAD); 301/302 turn POST into GET.
      if ((res.status === 303 && method !== 'HEAD') || ((res.status === 301 || res.status === 302) && method === 'POST')) {
        method = 'GET';
        body = undefined;
        delete headers['content-type'];
      }
      if (urlOriginKey(next) !== urlOriginKey(url)) {
        headers = Object.fromEntries(Object.entries(headers).filter(([name]) => !CROSS_ORIGIN_DROPPED.has(name)));
      }
      url = next;
      continue;
    }
    let text = '';
    let truncated = false;
    if (method === 'HEAD') discard(res);
    else {
      const read = await readCapped(res, scope.maxResponseBytes);
      truncated = read.truncated;
      text = redact(new TextDecoder('utf-8').decode(read.body), secrets, truncated);
    }
    return {
      status: res.status,
      statusText: redact(res.statusText, secrets),
      url: redact(url.href, secrets),
      redirected: hop > 0,
      headers: filterResponseHeaders(res.headers, secrets),
      body: text,
      truncated,
    };
  }
}
