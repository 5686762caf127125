/**
 * Canonical JSON and digests for the audit log: one byte-exact text per value (object keys sorted
 * by UTF-16 code unit, no whitespace, `undefined` members dropped), so a record hashes the same
 * when it is written, when it is read back from SQLite and when `contained audit verify` runs on
 * another machine.
 *
 * Defends the log against two leaks: arguments larger than `MAX_INLINE_BYTES` are recorded as
 * their sha256 and size only, and results are never recorded — only their sha256 and a structural
 * summary (type, size, top-level keys), so file contents or mail bodies do not end up in the log.
 *
 * Fails closed: a value JSON cannot express (BigInt, a cycle, a function) throws `AUDIT_FAILED`
 * rather than being recorded as something else.
 */
import { hash } from 'node:crypto';
import { ContainedError } from '../../runtime/errors.js';

/** Arguments whose canonical JSON is larger than this (bytes) are recorded as a digest. */
export const MAX_INLINE_BYTES = 4096;

/** Hex sha256 of a string (UTF-8) or bytes. */
export function sha256Hex(text: string | Uint8Array): string {
  // One-shot crypto.hash: about twice as fast as createHash for record-sized inputs (verify speed).
  return hash('sha256', text, 'hex');
}

/** The canonical JSON text of a JSON-compatible value. */
export function canonicalJson(value: unknown): string {
  const seen = new Set<object>();
  const out = write(value, seen);
  if (out === undefined) throw new ContainedError('AUDIT_FAILED', 'audit: the top-level value is not JSON (undefined or a function)');
  return out;
}

function write(value: unknown, seen: Set<object>): string | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      // JSON has no NaN/Infinity: JSON.stringify writes null, and so do we (then it round-trips).
      return JSON.stringify(value);
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    case 'bigint':
      throw new ContainedError('AUDIT_FAILED', 'audit: a BigInt cannot be recorded as JSON');
    case 'object':
      break;
  }
  if (value === null) return 'null';
  const object = value as object;
  if (seen.has(object)) throw new ContainedError('AUDIT_FAILED', 'audit: a cyclic value cannot be recorded');
  seen.add(object);
  try {
    const json = (object as { toJSON?: () => unknown }).toJSON;
    if (typeof json === 'function') return write(json.call(object), seen);
    if (Array.isArray(object)) return `[${object.map((v) => write(v, seen) ?? 'null').join(',')}]`;
    const keys = Object.keys(object).sort();
    const parts: string[] = [];
    for (const key of keys) {
      const text = write((object as Record<string, unknown>)[key], seen);
      if (text !== undefined) parts.push(`${JSON.stringify(key)}:${text}`);
    }
    return `{${parts.join(',')}}`;
  } finally {
    seen.delete(object);
  }
}

/** Arguments as recorded: inline when small, else `{ sha256, bytes }`. */
export function argsForAudit(args: unknown): { args: unknown } | { argsSha256: string; argsBytes: number } {
  if (args === undefined) return { args: null };
  const text = canonicalJson(args);
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_INLINE_BYTES) return { argsSha256: sha256Hex(text), argsBytes: bytes };
  return { args: JSON.parse(text) as unknown };
}

/** What an outcome record says about a result: its digest and shape, never its content. */
export function resultSummary(value: unknown): { resultSha256: string; summary: string } {
  const text = value === undefined ? 'null' : canonicalJson(value);
  return { resultSha256: sha256Hex(text), summary: shape(value, Buffer.byteLength(text, 'utf8')) };
}

function shape(value: unknown, bytes: number): string {
  if (value === null || value === undefined) return 'null';
  if (Array.isArray(value)) return `array(${value.length}), ${bytes} bytes`;
  if (typeof value === 'object') {
    const keys = Object.keys(value as object);
    const shown = keys.slice(0, 8).join(',');
    return `object{${shown}${keys.length > 8 ? `,…+${keys.length - 8}` : ''}}, ${bytes} bytes`;
  }
  if (typeof value === 'string') return `string, ${Buffer.byteLength(value, 'utf8')} bytes`;
  return typeof value;
}
