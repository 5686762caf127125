/**
 * A pool of worker processes that host sandboxes. isolated-vm's memory limit is a guideline and
 * some out-of-memory cases abort the whole process, so untrusted code never runs in the host
 * process in this mode: a worker that dies (or stops answering heartbeats) takes down only the
 * runs it was hosting — they end with SANDBOX_CRASHED — and is replaced.
 *
 * Heartbeats judge the workers, never the host: time the host's own event loop was blocked (a long
 * synchronous task, a GC pause) is not counted against a worker, and the judgement runs after the
 * poll phase has read what the workers sent meanwhile. A stalled host once declared every worker
 * dead and killed them all, with every run in flight. A worker still starting (loading its modules,
 * which takes seconds on a loaded machine) is judged by a start deadline instead, until it says
 * "ready".
 *
 * A worker's stdout and stderr are piped, never inherited: what V8 prints when it dies (a fatal
 * error's native stack trace, "Last few GCs") goes to the pool's logger, tagged with the runs the
 * worker was hosting, capped per process, and never reaches the terminal of whoever started the
 * host. Without a logger it is read and dropped (a full pipe would block the worker).
 *
 * A worker gets no copy of the host's environment (operator tokens, SMTP passwords, database URLs
 * live there), only the few variables a Node process needs to start: were an isolate ever escaped
 * (GHSA-864f-rcv7-6rh4 was such a bug), the worker holds nothing worth taking.
 */
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { BridgeResult, EngineCall, EngineRunSpec } from './engine.js';
import type { LogLine, RunOutcome } from './outcome.js';
import { type HostToWorker, parseWorkerMessage, type WorkerToHost } from './worker-protocol.js';
import { adoptEarlyWorker, spawnWorkerProcess, type WorkerChild, type WorkerModule } from './worker-spawn.js';

export interface WorkerPoolOptions {
  /** Worker processes. Default 2. */
  workers: number;
  /** Runs one worker hosts at once; more wait in a queue. A crash ends all of a worker's runs. */
  maxRunsPerWorker: number;
  /**
   * A worker that has not answered a heartbeat for this long (ms of the host's own awake time) is
   * killed.
   */
  heartbeatTimeoutMs: number;
  /** Isolates each worker keeps ready, and their heap limit. */
  warmIsolates: number;
  warmMemoryMb: number;
  /** Bytes of stdout + stderr logged per worker process; the rest is dropped. Default 64 KiB. */
  maxWorkerOutputBytes?: number;
  /**
   * A worker that has not said "ready" this long (ms) after it was started is killed; until then
   * the heartbeat does not judge it (a worker still loading its modules cannot answer). Default
   * 30 000, and never less than heartbeatTimeoutMs.
   */
  workerStartTimeoutMs?: number;
  /** The module worker processes run, and its Node flags. Default: worker-main next to this file. */
  workerModule?: WorkerModule;
  logger?: Logger;
}

export interface PoolRunHooks {
  call(call: EngineCall): Promise<BridgeResult>;
  log?(line: LogLine): void;
}

interface PoolRun {
  spec: EngineRunSpec;
  hooks: PoolRunHooks;
  resolve(outcome: RunOutcome): void;
  worker?: Worker;
  logs: LogLine[];
}

interface Worker {
  /** A forked process, or a connection to the resident sandbox process (resident-client.ts). */
  child: WorkerChild;
  runs: Map<string, PoolRun>;
  /** performance.now() when the worker last said anything (monotonic: wall-clock jumps do not count). */
  lastSeen: number;
  alive: boolean;
  /** It has said "ready": from then on the heartbeat judges it. */
  ready: boolean;
  /** Runs that ended lately, with when: output that arrives just after its run ended is theirs too. */
  recent: Array<{ runId: string; at: number }>;
  output: { bytes: number; text: string; streams: Set<string>; runIds: Set<string>; timer: NodeJS.Timeout | undefined };
}

const HEARTBEAT_INTERVAL_MS = 500;
/**
 * SANDBOX_DEFAULTS.maxWorkerOutputBytes and .workerStartTimeoutMs, written out: sandbox-config.ts
 * builds a zod schema, which `contained run` does not load (test/runtime/worker-protocol.test.ts
 * holds these to it).
 */
export const POOL_DEFAULTS = Object.freeze({ maxWorkerOutputBytes: 64 * 1024, workerStartTimeoutMs: 30_000 });
const DEFAULT_MAX_WORKER_OUTPUT_BYTES = POOL_DEFAULTS.maxWorkerOutputBytes;
const DEFAULT_WORKER_START_TIMEOUT_MS = POOL_DEFAULTS.workerStartTimeoutMs;
/** Output pieces arriving this close together are logged as one record. */
const OUTPUT_COALESCE_MS = 25;
/** How long after a run ended the worker's output is still tagged with it. */
const RECENT_RUN_MS = 2000;

export class WorkerPool {
  private readonly workers: Worker[] = [];
  private readonly queue: PoolRun[] = [];
  private readonly heartbeat: NodeJS.Timeout;
  private lastTick = performance.now();
  private pingId = 0;
  private closed = false;
  private pauseToken = 0;

  private readonly options: WorkerPoolOptions;

  constructor(options: WorkerPoolOptions) {
    this.options = options;
    for (let i = 0; i < options.workers; i++) this.workers.push(this.spawn());
    this.heartbeat = setInterval(() => this.heartbeatTick(), HEARTBEAT_INTERVAL_MS);
    this.heartbeat.unref();
  }

  run(spec: EngineRunSpec, hooks: PoolRunHooks): Promise<RunOutcome> {
    return new Promise<RunOutcome>((resolve) => {
      const run: PoolRun = { spec, hooks, resolve, logs: [] };
      if (this.closed) {
        resolve(crashed(run, 'the sandbox pool is closed'));
        return;
      }
      this.queue.push(run);
      this.pump();
    });
  }

  pause(runId: string): () => void {
    const run = this.find(runId);
    if (!run?.worker) return () => {};
    const token = ++this.pauseToken;
    const worker = run.worker;
    this.send(worker, { t: 'pause', runId, token });
    return () => this.send(worker, { t: 'resume', runId, token });
  }

  cancel(runId: string, message: string): void {
    const queued = this.queue.findIndex((r) => r.spec.runId === runId);
    if (queued >= 0) {
      const [run] = this.queue.splice(queued, 1);
      run?.resolve({ status: 'error', error: { code: 'CANCELLED', message }, logs: [], usage: zeroUsage() });
      return;
    }
    const run = this.find(runId);
    if (run?.worker) this.send(run.worker, { t: 'cancel', runId, message });
  }

  stats(): { workers: number; running: number; queued: number; pids: number[] } {
    return {
      workers: this.workers.length,
      running: this.workers.reduce((n, w) => n + w.runs.size, 0),
      queued: this.queue.length,
      pids: this.workers.map((w) => w.child.pid ?? -1),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.heartbeat);
    for (const run of this.queue.splice(0)) run.resolve(crashed(run, 'the sandbox pool was closed'));
    await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.child.exitCode !== null || w.child.signalCode !== null) return resolve();
            const timer = setTimeout(() => w.child.kill('SIGKILL'), 1000);
            w.child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            this.send(w, { t: 'exit' });
          }),
      ),
    );
  }

  private find(runId: string): PoolRun | undefined {
    for (const w of this.workers) {
      const run = w.runs.get(runId);
      if (run) return run;
    }
    return undefined;
  }

  private pump(): void {
    while (this.queue.length > 0) {
      const worker = this.workers
        .filter((w) => w.alive && w.runs.size < this.options.maxRunsPerWorker)
        .sort((a, b) => a.runs.size - b.runs.size)[0];
      if (!worker) return;
      const run = this.queue.shift() as PoolRun;
      run.worker = worker;
      worker.runs.set(run.spec.runId, run);
      this.send(worker, { t: 'run', spec: run.spec, streamLogs: run.hooks.log !== undefined });
    }
  }

  private spawn(): Worker {
    const settings = { warmIsolates: this.options.warmIsolates, warmMemoryMb: this.options.warmMemoryMb };
    // A worker `contained run` started before it loaded the pool (worker-spawn.ts), if it is ours.
    const early = adoptEarlyWorker(settings, this.options.workerModule);
    const child: WorkerChild = early?.child ?? spawnWorkerProcess(settings, this.options.workerModule);
    const worker: Worker = {
      child,
      runs: new Map(),
      lastSeen: performance.now(),
      alive: true,
      ready: false,
      recent: [],
      output: { bytes: 0, text: '', streams: new Set(), runIds: new Set(), timer: undefined },
    };
    this.captureOutput(worker, child.stdout, 'stdout');
    this.captureOutput(worker, child.stderr, 'stderr');
    child.on('message', (raw: unknown) => {
      const message = parseWorkerMessage(raw);
      if (message) {
        this.onMessage(worker, message);
        return;
      }
      // A worker of ours never sends this: it is broken or taken over. Its runs end SANDBOX_CRASHED.
      this.options.logger?.error({ pid: child.pid, runIds: [...worker.runs.keys()] }, 'malformed message from a sandbox worker; killing it');
      worker.alive = false;
      child.kill('SIGKILL');
    });
    child.on('error', (error) => this.options.logger?.error({ err: error }, 'sandbox worker error'));
    child.on('exit', (code: number | null, signal: NodeJS.Signals | null) => this.onExit(worker, code, signal));
    for (const message of early?.messages ?? []) child.emit('message', message);
    return worker;
  }

  private onMessage(worker: Worker, message: WorkerToHost): void {
    worker.lastSeen = performance.now();
    switch (message.t) {
      case 'call': {
        const run = worker.runs.get(message.runId);
        if (!run) return;
        const seq = message.call.seq;
        run.hooks.call(message.call).then(
          (result) => this.send(worker, { t: 'result', runId: message.runId, seq, result }),
          () => this.send(worker, { t: 'result', runId: message.runId, seq, result: { ok: false, error: { code: 'INTERNAL', message: 'internal error in the host (see the host log)' } } }),
        );
        break;
      }
      case 'log': {
        const run = worker.runs.get(message.runId);
        if (run) {
          run.logs.push(message.line);
          run.hooks.log?.(message.line);
        }
        break;
      }
      case 'done': {
        const run = worker.runs.get(message.runId);
        if (!run) return;
        worker.runs.delete(message.runId);
        this.remember(worker, message.runId);
        run.resolve(message.outcome);
        this.pump();
        break;
      }
      case 'catastrophe':
        this.options.logger?.error({ runId: message.runId, detail: message.message }, 'catastrophic isolate error; replacing the worker');
        worker.alive = false;
        break;
      case 'ready':
        worker.ready = true;
        break;
      case 'pong':
        break;
    }
  }

  private onExit(worker: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    worker.alive = false;
    const index = this.workers.indexOf(worker);
    if (index >= 0) this.workers.splice(index, 1);
    if (worker.runs.size > 0) {
      this.options.logger?.warn({ pid: worker.child.pid, code, signal, runs: [...worker.runs.keys()] }, 'sandbox worker died');
    } else if (this.closed && (signal !== null || code !== 0)) {
      // Told to exit, it crashed instead (isolated-vm has segfaulted at exit: see worker-main.ts).
      this.options.logger?.warn({ pid: worker.child.pid, code, signal }, 'sandbox worker did not exit cleanly');
    }
    for (const run of worker.runs.values()) run.resolve(crashed(run, `the worker process hosting this run died (${signal ?? `exit ${code}`})`));
    for (const runId of worker.runs.keys()) this.remember(worker, runId);
    worker.runs.clear();
    if (!this.closed) {
      this.workers.push(this.spawn());
      this.pump();
    }
  }

  /**
   * Every HEARTBEAT_INTERVAL_MS. A tick that comes late means the host's event loop was blocked: the
   * delay is credited to every worker (nothing they did could reach us meanwhile). The judgement is
   * then deferred to the check phase, after the poll phase has read the workers' queued messages, and
   * is made as of this tick, so a stall between the tick and the judgement is not counted either.
   */
  private heartbeatTick(): void {
    const now = performance.now();
    const hostLagMs = Math.max(0, now - this.lastTick - HEARTBEAT_INTERVAL_MS);
    this.lastTick = now;
    if (hostLagMs > 0) {
      for (const worker of this.workers) worker.lastSeen = Math.min(now, worker.lastSeen + hostLagMs);
      if (hostLagMs > this.options.heartbeatTimeoutMs / 2) {
        this.options.logger?.warn({ hostLagMs: Math.round(hostLagMs) }, 'the host event loop was blocked; not counted against sandbox workers');
      }
    }
    setImmediate(() => this.checkHeartbeats(now));
  }

  private checkHeartbeats(asOf: number): void {
    if (this.closed) return;
    for (const worker of this.workers) {
      if (!worker.alive && worker.runs.size === 0) worker.child.kill('SIGKILL');
      const deadline = worker.ready ? this.options.heartbeatTimeoutMs : Math.max(this.options.heartbeatTimeoutMs, this.options.workerStartTimeoutMs ?? DEFAULT_WORKER_START_TIMEOUT_MS);
      if (asOf - worker.lastSeen > deadline) {
        const msg = worker.ready ? 'sandbox worker stopped answering; killing it' : 'sandbox worker did not start in time; killing it';
        this.options.logger?.error({ pid: worker.child.pid, runIds: [...worker.runs.keys()] }, msg);
        worker.child.kill('SIGKILL');
        continue;
      }
      this.send(worker, { t: 'ping', id: ++this.pingId });
    }
  }

  private remember(worker: Worker, runId: string): void {
    const now = performance.now();
    worker.recent = worker.recent.filter((r) => now - r.at < RECENT_RUN_MS);
    worker.recent.push({ runId, at: now });
  }

  /** Read a worker's stdout/stderr into the log (see the module comment); always keep it flowing. */
  private captureOutput(worker: Worker, stream: Readable | null, name: 'stdout' | 'stderr'): void {
    if (!stream) return;
    const max = this.options.maxWorkerOutputBytes ?? DEFAULT_MAX_WORKER_OUTPUT_BYTES;
    const out = worker.output;
    stream.on('data', (chunk: Buffer) => {
      if (out.bytes >= max) return;
      const kept = chunk.subarray(0, max - out.bytes);
      out.bytes += kept.length;
      out.text += kept.toString('utf8');
      out.streams.add(name);
      const now = performance.now();
      for (const runId of worker.runs.keys()) out.runIds.add(runId);
      for (const r of worker.recent) if (now - r.at < RECENT_RUN_MS) out.runIds.add(r.runId);
      if (out.bytes >= max) out.text += `\n[further output of this worker dropped: more than ${max} bytes]`;
      out.timer ??= setTimeout(() => this.flushOutput(worker), OUTPUT_COALESCE_MS);
    });
    stream.on('end', () => this.flushOutput(worker));
    stream.on('error', () => undefined);
  }

  private flushOutput(worker: Worker): void {
    const out = worker.output;
    if (out.timer) clearTimeout(out.timer);
    out.timer = undefined;
    if (out.text === '') return;
    this.options.logger?.warn(
      { pid: worker.child.pid, stream: [...out.streams].join('+'), runIds: [...out.runIds], output: out.text },
      'sandbox worker output',
    );
    out.text = '';
    out.streams.clear();
    out.runIds.clear();
  }

  private send(worker: Worker, message: HostToWorker): void {
    if (worker.child.connected) {
      try {
        worker.child.send(message);
      } catch (error) {
        this.options.logger?.error({ err: error }, 'cannot reach sandbox worker');
      }
    }
  }
}

function zeroUsage(): RunOutcome['usage'] {
  return { cpuMs: 0, wallMs: 0, heapBytes: 0, calls: 0 };
}

function crashed(run: PoolRun, message: string): RunOutcome {
  return { status: 'error', error: { code: 'SANDBOX_CRASHED', message }, logs: run.logs, usage: zeroUsage() };
}
