/**
 * Run limits: every one is a named option with a safe default and its unit in its name.
 * Each has its own error code when exceeded (see errors.ts).
 */
import { z } from 'zod';

export const limitsSchema = z.strictObject({
  /** Isolate heap, MiB (isolated-vm's minimum is 8). Exceeding: MEMORY_LIMIT. */
  memoryMb: z.number().int().min(8).max(4096).default(64),
  /** CPU time of the whole run, including code resumed after an await. Exceeding: CPU_LIMIT. */
  cpuMs: z.number().int().positive().max(3_600_000).default(5_000),
  /** Wall-clock deadline, not counting time waiting for a human. Exceeding: WALL_LIMIT. */
  wallMs: z.number().int().positive().max(86_400_000).default(30_000),
  /** Bytes of console output (each line counts at least 16). Exceeding: OUTPUT_LIMIT. */
  maxLogBytes: z.number().int().nonnegative().max(64 * 1024 * 1024).default(1024 * 1024),
  /** Bytes of the JSON return value. Exceeding: OUTPUT_LIMIT. */
  maxOutputBytes: z.number().int().positive().max(256 * 1024 * 1024).default(4 * 1024 * 1024),
  /** Capability calls over the whole run. Exceeding: CALL_LIMIT. */
  maxCalls: z.number().int().nonnegative().max(10_000_000).default(10_000),
  /** Capability calls in flight at once. Exceeding: CALL_LIMIT. */
  maxConcurrentCalls: z.number().int().positive().max(100_000).default(64),
  /** JSON bytes of one call's argument, and of one call's result. Exceeding: CALL_LIMIT. */
  maxCallBytes: z.number().int().positive().max(256 * 1024 * 1024).default(8 * 1024 * 1024),
  /** Expose WebAssembly (its memory is not counted by memoryMb: rely on the worker boundary). */
  allowWasm: z.boolean().default(false),
});

export type Limits = z.output<typeof limitsSchema>;
export type LimitsInput = z.input<typeof limitsSchema>;

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze(limitsSchema.parse({}));
