/**
 * Where a CLI command finds the host. One URL serves every command — from `--url`, else
 * CONTAINED_URL, else the default listening address — in either form: the host's HTTP address
 * (`http(s)://HOST:PORT[/prefix]`, what `contained host` prints) or its operator channel
 * (`ws(s)://HOST:PORT[/prefix]/v1/operator`). Each command derives the form it needs: `submit`
 * the HTTP base, `approve`/`deny`/`operator`/`review`/`trust` the WebSocket URL.
 *
 * Fails closed with USAGE naming where the URL came from (the flag or the variable): any other
 * scheme, credentials in the URL (the token has its own flag and variable), a query or fragment.
 * An unreachable host is HOST_UNREACHABLE in every command (the operator client's and `hostFetch`).
 */
import { ContainedError, isErrorCode } from '../../runtime/errors.js';

export const DEFAULT_HOST_URL = 'http://127.0.0.1:7420';
const OPERATOR_PATH = '/v1/operator';

type Env = Record<string, string | undefined>;

export interface HostEndpoint {
  /** `http(s)://host:port[/prefix]`, no trailing slash: the run API lives under it. */
  http: string;
  /** `ws(s)://host:port[/prefix]/v1/operator`: the operator channel. */
  operator: string;
}

/** The URL given by `--url`, else CONTAINED_URL, else the default; undefined only when `fallback` is false and neither is set. */
export function endpointFrom(values: Record<string, unknown>, env: Env): HostEndpoint;
export function endpointFrom(values: Record<string, unknown>, env: Env, fallback: false): HostEndpoint | undefined;
export function endpointFrom(values: Record<string, unknown>, env: Env, fallback = true): HostEndpoint | undefined {
  if (typeof values.url === 'string') return hostEndpoint(values.url, '--url');
  if (env.CONTAINED_URL !== undefined && env.CONTAINED_URL !== '') return hostEndpoint(env.CONTAINED_URL, 'CONTAINED_URL');
  return fallback ? hostEndpoint(DEFAULT_HOST_URL, 'the default URL') : undefined;
}

/** Both forms of the host's address from either one; `source` names the flag or variable in errors. */
export function hostEndpoint(raw: string, source: string): HostEndpoint {
  const bad = (why: string): ContainedError =>
    new ContainedError('USAGE', `${source} ${why} (got ${JSON.stringify(raw)}); give the host's address, e.g. ${DEFAULT_HOST_URL} or ws://127.0.0.1:7420${OPERATOR_PATH}`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw bad('is not a URL');
  }
  const scheme = url.protocol.slice(0, -1).toLowerCase();
  if (!['http', 'https', 'ws', 'wss'].includes(scheme)) throw bad('must be an http(s):// or ws(s):// URL');
  if (url.username !== '' || url.password !== '') throw bad('must not carry credentials (the token goes in --token or CONTAINED_TOKEN)');
  if (url.search !== '' || url.hash !== '') throw bad('must not have a query or fragment');
  let prefix = url.pathname.replace(/\/+$/, '');
  if (prefix.endsWith(OPERATOR_PATH)) prefix = prefix.slice(0, -OPERATOR_PATH.length);
  const secure = scheme === 'https' || scheme === 'wss';
  return { http: `${secure ? 'https' : 'http'}://${url.host}${prefix}`, operator: `${secure ? 'wss' : 'ws'}://${url.host}${prefix}${OPERATOR_PATH}` };
}

/** Default milliseconds a single HTTP exchange with the host may take before HOST_UNREACHABLE. */
export const HOST_FETCH_TIMEOUT_MS = 90_000;

/**
 * One HTTP exchange with the host's API, bearer-authenticated. Not reaching it (refused, reset,
 * DNS, TLS, no answer within `timeoutMs`) is HOST_UNREACHABLE; a typed error answer keeps its code.
 */
export async function hostFetch(url: string, token: string, init: { method: string; body?: string; timeoutMs?: number }): Promise<unknown> {
  const timeoutMs = init.timeoutMs ?? HOST_FETCH_TIMEOUT_MS;
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, {
      method: init.method,
      ...(init.body !== undefined ? { body: init.body } : {}),
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      signal: AbortSignal.timeout(timeoutMs),
    });
    text = await res.text();
  } catch (error) {
    const cause = (error as { cause?: { code?: unknown } }).cause;
    const why = (error as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : typeof cause?.code === 'string' ? cause.code : (error as Error).message;
    throw new ContainedError('HOST_UNREACHABLE', `cannot reach the host at ${new URL(url).origin}: ${why}`, { cause: error });
  }
  let body: { error?: { code?: unknown; message?: unknown } } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    // Not JSON: not our host (or a proxy's error page); said below with the status.
  }
  if (!res.ok) {
    const code = body.error?.code;
    const message = typeof body.error?.message === 'string' ? body.error.message : `HTTP ${res.status} from ${new URL(url).origin} (is this a contained host?)`;
    throw new ContainedError(isErrorCode(code) ? code : 'INTERNAL', message);
  }
  return body;
}
