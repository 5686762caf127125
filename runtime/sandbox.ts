/**
 * `createSandbox`: the library entry for running agent programs. One option picks the isolation:
 * `worker` (default; sandboxes live in a pool of worker processes so nothing an agent does can kill
 * the host) or `in-process` (for embedding and for measuring the bridge's own cost; a catastrophic
 * isolate OOM can then take the host down — see the README's security model).
 *
 * `run` never throws: every failure, including bad options, is a typed outcome.
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Logger } from 'pino';
import type { CapabilityInstance } from '../capabilities/sdk/index.js';
import { Dispatcher, type DispatchRun } from './dispatcher.js';
import type { EngineRunSpec, startRun } from './engine.js';
import { ContainedError, type ErrorInfo } from './errors.js';
import { type Gate, passThroughGate } from './gate.js';
import { DEFAULT_LIMITS, type Limits, type LimitsInput, limitsSchema } from './limits.js';
import type { IsolatePool } from './prepared-isolate.js';
import type { LogLine, RunOutcome } from './outcome.js';
import { type Program, programFromSource, validateProgram } from './program.js';
import { SANDBOX_DEFAULTS } from './sandbox-config.js';
import { WorkerPool } from './worker-pool.js';

/** The limits are those of the host config's `sandbox` section (runtime/sandbox-config.ts), with the same defaults. */
export interface SandboxOptions {
  /** `worker` (default): a pool of worker processes. `in-process`: isolates in this process. */
  isolation?: 'worker' | 'in-process';
  /** Worker processes in the pool. Default: min(2, CPUs). */
  workers?: number;
  /** Runs one worker hosts at once (more wait in a queue). Default 32. */
  maxRunsPerWorker?: number;
  /** A worker silent for this long is killed and replaced. Default 5000 ms. */
  heartbeatTimeoutMs?: number;
  /** A worker that has not finished starting this long after it was spawned is killed. Default 30 000 ms. */
  workerStartTimeoutMs?: number;
  /**
   * Bytes of a worker process's own stdout/stderr (V8's crash reports) written to `logger`, per
   * worker process; never to this process's terminal. Default 64 KiB.
   */
  maxWorkerOutputBytes?: number;
  /**
   * Isolates kept ready (context and bootstrap prepared) for runs with the default heap limit —
   * in this process, or in each worker. Default 2; 0 disables the warm pool.
   */
  warmIsolates?: number;
  /** The gate every capability call passes through. Default: pass-through (scope only). */
  gate?: Gate;
  /** Limits for runs that do not set their own. */
  defaultLimits?: LimitsInput;
  logger?: Logger;
}

export interface RunRequest {
  /** The program: several modules, or `source` for a single inline module. */
  program?: Program;
  source?: string;
  /** JSON input handed to `main(input, caps)`. */
  input?: unknown;
  /** Capability instances the agent holds, under their binding names. */
  capabilities?: readonly CapabilityInstance[];
  limits?: LimitsInput;
  runId?: string;
  /** Who is acting (an image digest). */
  subject?: string;
  signal?: AbortSignal;
  /** Live log lines (the outcome carries them too). */
  onLog?: (line: LogLine) => void;
}

export interface Sandbox {
  run(request: RunRequest): Promise<RunOutcome>;
  /** Stop the wall clock of a live run (e.g. while a human decides); returns the resume function. */
  pauseWallClock(runId: string): () => void;
  cancel(runId: string, message?: string): void;
  close(): Promise<void>;
}

interface LiveRun {
  pause(): () => void;
  cancel(message: string): void;
}

export function createSandbox(options: SandboxOptions = {}): Sandbox {
  return new SandboxImpl(options);
}

/**
 * What the in-process mode runs isolates with, imported when such a sandbox is created: a sandbox
 * of worker mode never loads isolated-vm in this process (the `contained run` CLI, which then needs
 * neither the native module nor `--no-node-snapshot`, since it creates no isolate).
 */
interface LocalEngine {
  startRun: typeof startRun;
  warm: IsolatePool | undefined;
}

async function loadLocalEngine(warmIsolates: number, memoryMb: number): Promise<LocalEngine> {
  const [{ startRun }, { IsolatePool }] = await Promise.all([import('./engine.js'), import('./prepared-isolate.js')]);
  return { startRun, warm: warmIsolates > 0 ? new IsolatePool({ size: warmIsolates, memoryMb }) : undefined };
}

class SandboxImpl implements Sandbox {
  private readonly dispatcher: Dispatcher;
  private readonly pool: WorkerPool | undefined;
  private readonly local: Promise<LocalEngine> | undefined;
  private readonly live = new Map<string, LiveRun>();
  private closed = false;

  private readonly options: SandboxOptions;

  constructor(options: SandboxOptions) {
    this.options = options;
    this.dispatcher = new Dispatcher(options.gate ?? passThroughGate, options.logger);
    const warmIsolates = options.warmIsolates ?? SANDBOX_DEFAULTS.warmIsolates;
    const warmMemoryMb = limitsSchema.safeParse(options.defaultLimits ?? {}).data?.memoryMb ?? DEFAULT_LIMITS.memoryMb;
    if ((options.isolation ?? 'worker') === 'worker') {
      this.pool = new WorkerPool({
        workers: options.workers ?? Math.max(1, Math.min(2, os.availableParallelism())),
        maxRunsPerWorker: options.maxRunsPerWorker ?? SANDBOX_DEFAULTS.maxRunsPerWorker,
        heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? SANDBOX_DEFAULTS.heartbeatTimeoutMs,
        maxWorkerOutputBytes: options.maxWorkerOutputBytes,
        workerStartTimeoutMs: options.workerStartTimeoutMs,
        warmIsolates,
        warmMemoryMb,
        logger: options.logger,
      });
    } else {
      this.local = loadLocalEngine(warmIsolates, warmMemoryMb);
      // A failure to load surfaces in run() (as an outcome) and close(); never unhandled.
      this.local.catch(() => undefined);
    }
  }

  async run(request: RunRequest): Promise<RunOutcome> {
    const runId = request.runId ?? randomUUID();
    let spec: EngineRunSpec;
    let capabilities: Map<string, CapabilityInstance>;
    try {
      if (this.closed) throw new ContainedError('CANCELLED', 'the sandbox is closed');
      ({ spec, capabilities } = this.prepare(runId, request));
    } catch (error) {
      return failed(error instanceof ContainedError ? error.toJSON() : { code: 'INTERNAL', message: 'cannot start the run' });
    }
    const controller = new AbortController();
    const onAbort = (): void => this.cancel(runId, 'the run was cancelled by its caller');
    request.signal?.addEventListener('abort', onAbort, { once: true });
    const dispatchRun: DispatchRun = {
      runId,
      subject: request.subject,
      capabilities,
      signal: controller.signal,
      pauseWallClock: () => this.pauseWallClock(runId),
    };
    try {
      if (this.pool) {
        const pool = this.pool;
        this.live.set(runId, { pause: () => pool.pause(runId), cancel: (m) => pool.cancel(runId, m) });
        return await pool.run(spec, { call: (call) => this.dispatcher.dispatch(dispatchRun, call), log: request.onLog });
      }
      let local: LocalEngine;
      try {
        local = await (this.local as Promise<LocalEngine>);
      } catch {
        return failed({ code: 'INTERNAL', message: 'cannot load the sandbox engine (isolated-vm)' });
      }
      const engineRun = local.startRun(spec, { call: (call) => this.dispatcher.dispatch(dispatchRun, call), log: request.onLog }, local.warm);
      this.live.set(runId, { pause: () => engineRun.pauseWallClock(), cancel: (m) => engineRun.cancel(m) });
      return await engineRun.outcome;
    } finally {
      this.live.delete(runId);
      controller.abort();
      request.signal?.removeEventListener('abort', onAbort);
    }
  }

  pauseWallClock(runId: string): () => void {
    return this.live.get(runId)?.pause() ?? (() => {});
  }

  cancel(runId: string, message = 'the run was cancelled'): void {
    this.live.get(runId)?.cancel(message);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const run of this.live.values()) run.cancel('the sandbox was closed');
    await this.pool?.close();
    await (await this.local?.catch(() => undefined))?.warm?.close();
  }

  private prepare(runId: string, request: RunRequest): { spec: EngineRunSpec; capabilities: Map<string, CapabilityInstance> } {
    const given = request.program ?? (typeof request.source === 'string' ? programFromSource(request.source) : undefined);
    if (!given) throw new ContainedError('INVALID_PROGRAM', 'a run needs `program` or `source`');
    const program = validateProgram(given);
    const parsedLimits = limitsSchema.safeParse({ ...(this.options.defaultLimits ?? {}), ...(request.limits ?? {}) });
    if (!parsedLimits.success) {
      const issue = parsedLimits.error.issues[0];
      throw new ContainedError('INVALID_ARGUMENT', `invalid limits${issue ? ` at ${issue.path.join('.')}: ${issue.message}` : ''}`);
    }
    const limits: Limits = parsedLimits.data;
    let input: unknown;
    try {
      const json = JSON.stringify(request.input ?? null);
      input = JSON.parse(json) as unknown;
    } catch {
      throw new ContainedError('INVALID_ARGUMENT', 'the input must be JSON-serialisable');
    }
    const capabilities = new Map<string, CapabilityInstance>();
    for (const instance of request.capabilities ?? []) {
      if (capabilities.has(instance.name)) throw new ContainedError('INVALID_ARGUMENT', `two capabilities are bound to the name "${instance.name}"`);
      capabilities.set(instance.name, instance);
    }
    const spec: EngineRunSpec = {
      runId,
      program,
      input,
      limits,
      capabilities: [...capabilities.values()].map((c) => ({ name: c.name, methods: c.methodNames() })),
    };
    return { spec, capabilities };
  }
}

function failed(error: ErrorInfo): RunOutcome {
  return { status: 'error', error: { code: error.code, message: error.message }, logs: [], usage: { cpuMs: 0, wallMs: 0, heapBytes: 0, calls: 0 } };
}
