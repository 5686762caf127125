/** The typed outcome of a run: never a thrown host exception. */
import type { ErrorCode } from './errors.js';

export interface LogLine {
  level: 'log' | 'info' | 'warn' | 'error' | 'debug';
  message: string;
  /** Milliseconds since the run started (wall clock, pauses excluded). */
  atMs: number;
}

export interface RunUsage {
  /** CPU time the isolate used, ms. */
  cpuMs: number;
  /** Wall time of the run, ms, not counting time paused for a human decision. */
  wallMs: number;
  /** Peak isolate heap seen (used + external), bytes. */
  heapBytes: number;
  /** Capability calls made. */
  calls: number;
}

export interface RunError {
  code: ErrorCode;
  message: string;
  /** Only frames from the agent's own modules. */
  stack?: string;
}

export type RunOutcome =
  | { status: 'ok'; value: unknown; logs: LogLine[]; usage: RunUsage }
  | { status: 'error'; error: RunError; logs: LogLine[]; usage: RunUsage };

/** Codes that mean a limit was exceeded (the CLI exits 3 for these). */
export const LIMIT_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'CPU_LIMIT', 'MEMORY_LIMIT', 'WALL_LIMIT', 'OUTPUT_LIMIT', 'CALL_LIMIT',
]);
