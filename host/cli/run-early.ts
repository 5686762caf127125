/**
 * `contained run` starts its sandbox worker before it loads the rest of the CLI (the runtime, the
 * program loader, zod): the worker's start-up then overlaps the CLI's instead of following it
 * (runtime/worker-spawn.ts). The worker is the one `run`'s sandbox would start — one worker with
 * the sandbox's default warm isolates at the default heap limit — so the pool adopts it; a test
 * holds these numbers to SANDBOX_DEFAULTS and DEFAULT_LIMITS (they are not imported: both modules
 * build zod schemas, which is what this module exists to avoid).
 */
import { startWorkerEarly, type WorkerSettings } from '../../runtime/worker-spawn.js';

/** The settings of `contained run`'s worker: SANDBOX_DEFAULTS.warmIsolates, DEFAULT_LIMITS.memoryMb. */
export const RUN_WORKER_SETTINGS: Readonly<WorkerSettings> = Object.freeze({ warmIsolates: 2, warmMemoryMb: 64 });

/** Start `run`'s worker now, unless these arguments will not use one (in-process mode, help). */
export function startRunWorkerEarly(argv: readonly string[]): void {
  if (argv.includes('--in-process') || argv.includes('--help') || argv.includes('-h')) return;
  startWorkerEarly(RUN_WORKER_SETTINGS);
}
