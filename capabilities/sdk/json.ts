/**
 * Shared schema pieces for capability definitions: any JSON value (printed as `JsonValue` in the
 * generated docs instead of its recursive expansion), and byte counts in words for scope texts;
 * the SDK's own small JSON helpers (byte length, deep freeze).
 */
import { z } from 'zod';

/** Any JSON value. The `tsType` meta tells the docs printer to name it instead of expanding it. */
export const jsonValueSchema = z.json().meta({ tsType: 'JsonValue' });

/** `8388608` → `8 MiB`; exact binary units when they divide, bytes otherwise. */
export function formatBytes(n: number): string {
  for (const [unit, size] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (n >= size && n % size === 0) return `${n / size} ${unit}`;
  }
  return `${n} bytes`;
}

/** Freeze a value and everything it holds, so nothing holding it can change it later. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** UTF-8 bytes of a value's JSON (0 for `undefined` or anything JSON cannot print). */
export function jsonLength(value: unknown): number {
  try {
    return value === undefined ? 0 : Buffer.byteLength(JSON.stringify(value) ?? '', 'utf8');
  } catch {
    return 0;
  }
}
