/**
 * The `sandbox` section of the host config: the worker pool's limits (runtime/worker-pool.ts) and
 * the warm isolates, each with its default and its unit in its name. Only zod, so the host config
 * can compose it without loading the sandbox. `createSandbox` takes the same fields (SandboxOptions).
 */
import { z } from 'zod';

export const sandboxConfigSchema = z.strictObject({
  /** Worker processes in the pool. Default (absent): min(2, CPUs available). */
  workers: z.number().int().min(1).max(256).optional(),
  /** Runs one worker hosts at once; more wait in a queue. A crash ends all of a worker's runs. */
  maxRunsPerWorker: z.number().int().min(1).max(10_000).default(32),
  /** A worker that has not answered a heartbeat this long (ms of the host's awake time) is killed and replaced. */
  heartbeatTimeoutMs: z.number().int().min(100).max(600_000).default(5_000),
  /** A worker that has not said "ready" this long after it was spawned is killed, ms (never less than heartbeatTimeoutMs). */
  workerStartTimeoutMs: z.number().int().min(100).max(600_000).default(30_000),
  /** Bytes of a worker process's own stdout/stderr written to the host log, per worker process; the rest is dropped. */
  maxWorkerOutputBytes: z.number().int().min(0).max(64 * 1024 * 1024).default(64 * 1024),
  /** Isolates kept ready (context and bootstrap prepared) in each worker; 0 disables the warm pool. */
  warmIsolates: z.number().int().min(0).max(64).default(2),
});
export type SandboxConfig = z.output<typeof sandboxConfigSchema>;

/** Every default of the `sandbox` section (`workers` is absent: it depends on the machine). */
export const SANDBOX_DEFAULTS: Readonly<SandboxConfig> = Object.freeze(sandboxConfigSchema.parse({}));
