/**
 * Shared schema pieces for capability definitions: any JSON value (printed as `JsonValue` in the
 * generated docs instead of its recursive expansion), and byte counts in words for scope texts.
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
