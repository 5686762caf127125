/**
 * Webhook signatures, as Stripe and GitHub sign theirs: HMAC-SHA256 with the endpoint's secret over
 * `<timestamp>.<body>` (the timestamp in Unix seconds, the body's exact bytes), sent as
 *
 *   Contained-Timestamp: 1733312345
 *   Contained-Signature: v1=<64 hex characters>
 *
 * A receiver recomputes the HMAC over the timestamp header, a dot and the raw body, compares in
 * constant time, and refuses a timestamp older than its tolerance (replays). `verifyWebhook` is that
 * check; docs/approvals.md has the same in a dozen lines of plain node:crypto.
 *
 * `verifyWebhook` is a security predicate: it fails closed, answering `{ ok: false, reason }` for a
 * missing, malformed, stale or wrong signature and never throwing on input it cannot parse.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'contained-signature';
export const TIMESTAMP_HEADER = 'contained-timestamp';
export const IDEMPOTENCY_HEADER = 'idempotency-key';
export const EVENT_HEADER = 'contained-event';
/** How old a timestamp `verifyWebhook` accepts by default, seconds. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

export function signatureOf(secret: string, timestamp: number, body: string): string {
  return createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex');
}

/** The two signature headers for `body`, sent at `nowMs`. */
export function signHeaders(secret: string, body: string, nowMs: number): Record<string, string> {
  const timestamp = Math.floor(nowMs / 1000);
  return { [TIMESTAMP_HEADER]: String(timestamp), [SIGNATURE_HEADER]: `v1=${signatureOf(secret, timestamp, body)}` };
}

export type VerifyResult = { ok: true; timestamp: number } | { ok: false; reason: 'missing' | 'malformed' | 'stale' | 'mismatch' };

/** Check a delivery's headers against the raw body (header names lower case, as node:http gives them). */
export function verifyWebhook(
  secret: string,
  body: string,
  headers: Readonly<Record<string, string | string[] | undefined>>,
  options: { nowMs?: number; toleranceSeconds?: number } = {},
): VerifyResult {
  const t = headers[TIMESTAMP_HEADER];
  const s = headers[SIGNATURE_HEADER];
  if (typeof t !== 'string' || typeof s !== 'string') return { ok: false, reason: 'missing' };
  if (!/^\d{1,12}$/.test(t)) return { ok: false, reason: 'malformed' };
  const timestamp = Number(t);
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (Math.abs(Math.floor((options.nowMs ?? Date.now()) / 1000) - timestamp) > tolerance) return { ok: false, reason: 'stale' };
  const expected = Buffer.from(signatureOf(secret, timestamp, body), 'hex');
  // Several `v1=` values may be sent while a secret is rotated; any one matching is enough.
  const given = s.split(',').map((part) => part.trim()).filter((part) => part.startsWith('v1='));
  if (given.length === 0) return { ok: false, reason: 'malformed' };
  for (const part of given) {
    const hex = part.slice(3);
    if (!/^[0-9a-f]{64}$/.test(hex)) continue;
    if (timingSafeEqual(Buffer.from(hex, 'hex'), expected)) return { ok: true, timestamp };
  }
  return { ok: false, reason: 'mismatch' };
}
