/**
 * Header policy of the http capability, both directions, and secret redaction.
 *
 * Defends against: header injection (CR/LF/NUL in names or values), request smuggling and routing
 * tricks (agent-set `host`, `content-length`, `transfer-encoding`, `connection`, `upgrade`…),
 * proxy credentials, case-duplicate names, and cookies or secrets flowing back to the agent
 * (`set-cookie` is dropped, hop-by-hop headers are dropped, secret values are replaced by
 * `[REDACTED]` wherever they are echoed verbatim).
 *
 * Request headers that break these rules fail the argument schema (`INVALID_ARGUMENT`); the agent
 * may still send its own `authorization` or `cookie`, except where the host attaches a credential
 * under that name for that origin (then `OUT_OF_SCOPE`, see policy.ts). They are dropped on a
 * cross-origin redirect, as browsers do.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { z } from 'zod';

/** RFC 9110 token. */
export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Headers the agent may never set: computed by the capability, hop-by-hop, or proxy-level. */
export const FORBIDDEN_REQUEST_HEADERS: ReadonlySet<string> = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'content-length',
  'expect',
  'accept-encoding',
  'http2-settings',
]);

/** Headers an agent may set that carry its own credentials; dropped when a redirect leaves the origin. */
export const CROSS_ORIGIN_DROPPED: ReadonlySet<string> = new Set(['authorization', 'cookie', 'cookie2']);

/** Response headers the agent never sees. */
const DROPPED_RESPONSE_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'set-cookie',
  'set-cookie2',
]);

export const MAX_HEADERS = 64;
export const MAX_HEADER_VALUE_BYTES = 8192;

/** Argument schema for request headers: names are tokens, values have no control characters. */
export const requestHeadersSchema = z
  .record(z.string().regex(HEADER_NAME, 'header names must be RFC 9110 tokens').max(64), z.string().max(MAX_HEADER_VALUE_BYTES).regex(/^[^\0\r\n]*$/, 'header values must not contain CR, LF or NUL'))
  .superRefine((headers, ctx) => {
    const seen = new Set<string>();
    const names = Object.keys(headers);
    if (names.length > MAX_HEADERS) ctx.addIssue({ code: 'custom', message: `at most ${MAX_HEADERS} headers` });
    for (const name of names) {
      const lower = name.toLowerCase();
      if (FORBIDDEN_REQUEST_HEADERS.has(lower)) {
        ctx.addIssue({ code: 'custom', path: [name], message: `header "${name}" is set by the capability and cannot be given` });
      }
      if (seen.has(lower)) ctx.addIssue({ code: 'custom', path: [name], message: `header "${name}" is given twice (names are case-insensitive)` });
      seen.add(lower);
    }
  });

/** Lower-case the names of already-validated request headers. */
export function normaliseRequestHeaders(headers: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) out[name.toLowerCase()] = value;
  return out;
}

/**
 * The forms in which a secret value may be echoed: verbatim, each whitespace-separated token of 8+
 * characters (the token of `Bearer <token>`), and their URL-encoded and JSON-escaped forms. Longest
 * first, so a longer form is replaced before its parts.
 */
export function secretVariants(values: readonly string[]): string[] {
  const out = new Set<string>();
  for (const v of values) {
    for (const base of [v, ...v.split(/\s+/).filter((t) => t.length >= 8)]) {
      out.add(base);
      out.add(encodeURIComponent(base));
      out.add(JSON.stringify(base).slice(1, -1));
    }
  }
  return [...out].filter((x) => x.length > 0).sort((a, b) => b.length - a.length);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Replace every occurrence of a secret variant (case-insensitively: URL hosts are lower-cased).
 * `cutTail`: the text was truncated, so a variant's prefix at the very end is removed too.
 * Best effort against echoes; other encodings (base64, hashes) are not recognised.
 */
export function redact(text: string, variants: readonly string[], cutTail = false): string {
  let out = text;
  for (const s of variants) out = out.replace(new RegExp(escapeRegExp(s), 'gi'), '[REDACTED]');
  if (cutTail) {
    const lower = out.toLowerCase();
    let cut = 0;
    for (const s of variants) {
      for (let k = Math.min(s.length - 1, out.length); k > cut; k--) {
        if (lower.endsWith(s.slice(0, k).toLowerCase())) {
          cut = k;
          break;
        }
      }
    }
    out = out.slice(0, out.length - cut);
  }
  return out;
}

/** The response headers the agent sees: hop-by-hop and cookies dropped, duplicates joined, secrets redacted. */
export function filterResponseHeaders(headers: IncomingHttpHeaders, secrets: readonly string[]): Record<string, string> {
  const hopByHop = new Set(DROPPED_RESPONSE_HEADERS);
  const connection = headers.connection;
  for (const token of (Array.isArray(connection) ? connection.join(',') : (connection ?? '')).split(',')) {
    if (token.trim()) hopByHop.add(token.trim().toLowerCase());
  }
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || hopByHop.has(name)) continue;
    out[name] = redact(Array.isArray(value) ? value.join(', ') : value, secrets);
  }
  return out;
}
