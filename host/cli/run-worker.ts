/**
 * `contained run`'s usual case — no grants, no limits given (neither by flags nor by an image's
 * manifest), worker mode — without zod and without the runtime's entry module: the run spec is the
 * one `createSandbox({ workers: 1 }).run(...)` builds for such a run (runtime/sandbox.ts), handed
 * to a one-worker pool that adopts the worker started early (run-early.ts: a fork, or the connection
 * to the resident sandbox process). Any other run goes through `createSandbox`, which validates
 * the limits with their zod schema; here the limits are the defaults, written out below, so there
 * is nothing to validate. What the worker sends is checked by the pool as for any run
 * (worker-protocol.ts parseWorkerMessage), and a capability call it asks for meets the same
 * dispatcher, with no capability granted.
 *
 * The constants are not imported (limits.ts and sandbox-config.ts build zod schemas, which is what
 * this module exists to avoid); test/host/cli-run-worker.test.ts holds them to DEFAULT_LIMITS and
 * SANDBOX_DEFAULTS, and the run spec to the one createSandbox sends.
 */
import { randomUUID } from 'node:crypto';
import type { EngineRunSpec } from '../../runtime/engine.js';
import { Dispatcher, type DispatchRun } from '../../runtime/dispatcher.js';
import { ContainedError, type ErrorInfo } from '../../runtime/errors.js';
import { passThroughGate } from '../../runtime/gate.js';
import type { Limits } from '../../runtime/limits.js';
import type { RunOutcome } from '../../runtime/outcome.js';
import { type Program, validateProgram } from '../../runtime/program.js';
import { WorkerPool, type WorkerPoolOptions } from '../../runtime/worker-pool.js';
import { RUN_WORKER_SETTINGS } from './run-early.js';

/** DEFAULT_LIMITS (runtime/limits.ts), written out. */
export const RUN_DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  memoryMb: 64,
  cpuMs: 5_000,
  wallMs: 30_000,
  maxLogBytes: 1024 * 1024,
  maxOutputBytes: 4 * 1024 * 1024,
  maxCalls: 10_000,
  maxConcurrentCalls: 64,
  maxCallBytes: 8 * 1024 * 1024,
  allowWasm: false,
});

/** The pool `createSandbox({ isolation: 'worker', workers: 1 })` makes (SANDBOX_DEFAULTS, written out). */
export const RUN_POOL_OPTIONS: Readonly<WorkerPoolOptions> = Object.freeze({
  workers: 1,
  maxRunsPerWorker: 32,
  heartbeatTimeoutMs: 5_000,
  warmIsolates: RUN_WORKER_SETTINGS.warmIsolates,
  warmMemoryMb: RUN_WORKER_SETTINGS.warmMemoryMb,
});

/** The run spec of a run with no capabilities and the default limits (createSandbox's `prepare`). */
export function runSpec(runId: string, program: Program, input: unknown): EngineRunSpec {
  const checked = validateProgram(program);
  let copy: unknown;
  try {
    copy = JSON.parse(JSON.stringify(input ?? null)) as unknown;
  } catch {
    throw new ContainedError('INVALID_ARGUMENT', 'the input must be JSON-serialisable');
  }
  return { runId, program: checked, input: copy, limits: { ...RUN_DEFAULT_LIMITS }, capabilities: [] };
}

/**
 * One run, as `createSandbox({ workers: 1 }).run({ program, input, subject })` runs it. The outcome
 * is handed back as soon as it arrives; `closed` settles when the pool has closed (the worker
 * exited, or the resident's connection ended), so the caller can print first and wait after.
 */
export async function runInWorker(program: Program, input: unknown, subject: string | undefined): Promise<{ outcome: RunOutcome; closed: Promise<void> }> {
  const runId = randomUUID();
  let spec: EngineRunSpec;
  try {
    spec = runSpec(runId, program, input);
  } catch (error) {
    return { outcome: failed(error instanceof ContainedError ? error.toJSON() : { code: 'INTERNAL', message: 'cannot start the run' }), closed: Promise.resolve() };
  }
  const pool = new WorkerPool({ ...RUN_POOL_OPTIONS });
  const dispatcher = new Dispatcher(passThroughGate, undefined);
  const controller = new AbortController();
  const run: DispatchRun = { runId, subject, capabilities: new Map(), signal: controller.signal, pauseWallClock: () => pool.pause(runId) };
  let outcome: RunOutcome;
  try {
    outcome = await pool.run(spec, { call: (call) => dispatcher.dispatch(run, call) });
  } catch (error) {
    controller.abort();
    await pool.close();
    throw error;
  }
  controller.abort();
  return { outcome, closed: pool.close() };
}

function failed(error: ErrorInfo): RunOutcome {
  return { status: 'error', error: { code: error.code, message: error.message }, logs: [], usage: { cpuMs: 0, wallMs: 0, heapBytes: 0, calls: 0 } };
}
