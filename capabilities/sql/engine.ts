/**
 * The sql engine: a small pool of query processes (query-process.ts) that run sql calls off the
 * host's thread, each under a deadline the host enforces by killing the process.
 *
 * Defends the host against a statement that runs for ever or grows without end (hardening finding
 * 2): better-sqlite3 is synchronous and offers no interrupt or progress handler, and a worker
 * thread stuck in native SQLite ignores `terminate()`, so on the host's thread — or any thread of
 * the host process — one recursive CTE froze HTTP, the operator channel and the sandbox heartbeats.
 * Here the host only waits for a message; at the call's deadline (`timeoutMs`) or when its run ends
 * (the call's signal) the process gets SIGKILL and the call fails at once (`SQL_LIMIT`,
 * `CANCELLED`); a process whose memory passes `memoryMb` kills itself (`SQL_LIMIT`, `memory`).
 * A replacement starts on the next call. The processes run at a lower CPU priority than the host.
 *
 * Fairness: one run holds at most `perRun` processes at once (its other calls wait their turn, oldest
 * first), so a run stuck in a statement delays only itself; when every process is busy a call waits
 * for the first to finish, which is at most a `timeoutMs` away. Waiting counts against the run's own
 * wall clock, never against `timeoutMs`, which bounds the statement itself.
 *
 * Fails closed: a process that dies mid-call fails that call (`SQL_LIMIT` when it was killed for
 * memory, `CAPABILITY_FAILED` otherwise), never the host; an answer that does not match the call in
 * flight is dropped and the process replaced.
 */
import { type ChildProcess, fork } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { ContainedError, isErrorCode } from '../../runtime/errors.js';
import type { HostToQuery, QueryToHost } from './query-process.js';
import type { SqlJob } from './statement.js';

export interface SqlEngineOptions {
  /** Query processes at most (each runs one statement at a time). Default 4. */
  processes?: number;
  /** Statements one run may have running at once; its other calls wait. Default 1. */
  perRun?: number;
  /** Resident memory (MiB) a query process may reach before it is killed. Default 256. */
  memoryMb?: number;
  /** A query process idle this long (ms) exits; the next call starts one. Default 10 000. */
  idleMs?: number;
  /** Where a query process's crash output and unexpected deaths are logged. */
  logger?: Logger;
  /** The module query processes run, and its Node flags. Default: query-process next to this file. */
  entry?: { file: string; execArgv: string[] };
}

export interface SqlCallOptions {
  runId: string;
  signal: AbortSignal;
  /** Longest the statement may run in its process (ms). */
  timeoutMs: number;
}

export interface SqlEngine {
  /** Run one call in a query process; resolves with its result or rejects with a ContainedError. */
  run(job: SqlJob, options: SqlCallOptions): Promise<unknown>;
  stats(): { processes: number; busy: number; queued: number; pids: number[] };
  /** Kill every query process and fail the calls still waiting (`CANCELLED`). */
  close(): Promise<void>;
}

export const SQL_ENGINE_DEFAULTS = { processes: 4, perRun: 1, memoryMb: 256, idleMs: 10_000 } as const;

/** A call that could run but has waited this long (ms) for a busy pool starts another process. */
const SPAWN_AFTER_MS = 20;
/** A query process that has not said `ready` after this long (ms) is killed. */
const STARTUP_TIMEOUT_MS = 15_000;
/** Bytes of a query process's stderr kept for the log when it dies. */
const MAX_STDERR_BYTES = 8 * 1024;
/** Niceness of query processes: the host and the sandboxes come first on a busy machine. */
const QUERY_NICENESS = 10;
/** The only variables of the host's environment a query process inherits (none holds a secret). */
const ENV_ALLOWLIST = ['PATH', 'TMPDIR', 'TMP', 'TEMP', 'TZ', 'LANG', 'LC_ALL', 'NODE_ENV', 'NODE_V8_COVERAGE', 'SYSTEMROOT', 'SystemRoot', 'WINDIR'];

interface Call {
  id: number;
  job: SqlJob;
  options: SqlCallOptions;
  resolve(value: unknown): void;
  reject(error: ContainedError): void;
  /** The deadline, once the statement runs. */
  timer: NodeJS.Timeout | undefined;
  onAbort(): void;
  proc?: Proc;
  settled: boolean;
  /** performance.now() when the call was queued. */
  queuedAt: number;
}

interface Proc {
  child: ChildProcess;
  ready: boolean;
  call: Call | undefined;
  /** Why the host killed it, if it did: the call was already answered. */
  killed: boolean;
  /** Exit when idle too long; before `ready`, give up on a process that does not start. */
  idleTimer: NodeJS.Timeout | undefined;
  stderr: string;
}

/** Query-process entry next to this module; under vitest/tsx the sources are .ts and need the tsx loader. */
function defaultEntry(): { file: string; execArgv: string[] } {
  const here = fileURLToPath(import.meta.url);
  const ts = here.endsWith('.ts');
  const file = here.replace(/engine\.(ts|js)$/, `query-process.${ts ? 'ts' : 'js'}`);
  return { file, execArgv: ts ? ['--import', import.meta.resolve('tsx')] : [] };
}

export function createSqlEngine(options: SqlEngineOptions = {}): SqlEngine {
  return new Engine({ ...SQL_ENGINE_DEFAULTS, ...options });
}

class Engine implements SqlEngine {
  private readonly procs = new Set<Proc>();
  private readonly queue: Call[] = [];
  private readonly active = new Map<string, number>();
  private nextId = 0;
  private closed = false;
  private spawnTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: Required<Omit<SqlEngineOptions, 'logger' | 'entry'>> & Pick<SqlEngineOptions, 'logger' | 'entry'>) {}

  run(job: SqlJob, options: SqlCallOptions): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      if (this.closed) return reject(new ContainedError('CANCELLED', 'sql: the host is closing'));
      if (options.signal.aborted) return reject(cancelled());
      const call: Call = {
        id: ++this.nextId,
        job,
        options,
        resolve,
        reject,
        timer: undefined,
        onAbort: () => this.fail(call, cancelled()),
        settled: false,
        queuedAt: performance.now(),
      };
      options.signal.addEventListener('abort', call.onAbort, { once: true });
      this.queue.push(call);
      this.pump();
    });
  }

  stats(): { processes: number; busy: number; queued: number; pids: number[] } {
    const procs = [...this.procs];
    return { processes: procs.length, busy: procs.filter((p) => p.call).length, queued: this.queue.length, pids: procs.map((p) => p.child.pid ?? -1) };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.spawnTimer);
    const closing = (): ContainedError => new ContainedError('CANCELLED', 'sql: the host is closing');
    for (const call of [...this.queue]) this.settle(call, undefined, closing());
    for (const proc of this.procs) if (proc.call) this.settle(proc.call, undefined, closing());
    await Promise.all([...this.procs].map((p) => this.kill(p)));
  }

  /** Hand waiting calls to ready idle processes, oldest first, at most `perRun` per run; start processes as needed. */
  private pump(): void {
    if (this.closed) return;
    for (let i = 0; i < this.queue.length; ) {
      const call = this.queue[i] as Call;
      if ((this.active.get(call.options.runId) ?? 0) >= this.options.perRun) {
        i++;
        continue;
      }
      const proc = [...this.procs].find((p) => p.ready && !p.call && !p.killed);
      if (!proc) break;
      this.queue.splice(i, 1);
      this.start(proc, call);
    }
    // Another process starts only when a call could run but has waited SPAWN_AFTER_MS (every
    // process is busy, maybe stuck) or none is ready, and only one starts at a time: a burst of
    // short calls (~0.2 ms each) is served by the processes already there, and a start (~0.1 s of
    // CPU) never competes with the host for nothing.
    const waiting = this.queue.find((c) => (this.active.get(c.options.runId) ?? 0) < this.options.perRun);
    clearTimeout(this.spawnTimer);
    if (!waiting || this.procs.size >= this.options.processes || [...this.procs].some((p) => !p.ready && !p.killed)) return;
    const anyReady = [...this.procs].some((p) => p.ready && !p.killed);
    const waitedMs = performance.now() - waiting.queuedAt;
    if (!anyReady || waitedMs >= SPAWN_AFTER_MS) this.spawn();
    else this.spawnTimer = setTimeout(() => this.pump(), SPAWN_AFTER_MS - waitedMs);
  }

  private start(proc: Proc, call: Call): void {
    clearTimeout(proc.idleTimer);
    proc.call = call;
    call.proc = proc;
    this.active.set(call.options.runId, (this.active.get(call.options.runId) ?? 0) + 1);
    hold(proc.child, true);
    call.timer = setTimeout(() => this.fail(call, timedOut(call.options.timeoutMs)), call.options.timeoutMs);
    const message: HostToQuery = { t: 'job', id: call.id, job: call.job };
    proc.child.send(message, (error) => {
      if (error) this.fail(call, new ContainedError('CAPABILITY_FAILED', 'sql: the query process cannot be reached', { cause: error, data: { reason: 'QUERY_PROCESS' } }));
    });
  }

  /** The call ends with `error` now: stop its statement by killing its process (if it has one). */
  private fail(call: Call, error: ContainedError): void {
    const proc = call.proc;
    this.settle(call, undefined, error);
    if (proc) void this.kill(proc);
  }

  /** Resolve or reject once; free the run's slot; take the call out of the queue. */
  private settle(call: Call, value: unknown, error: ContainedError | undefined): void {
    if (call.settled) return;
    call.settled = true;
    clearTimeout(call.timer);
    call.options.signal.removeEventListener('abort', call.onAbort);
    const queued = this.queue.indexOf(call);
    if (queued >= 0) this.queue.splice(queued, 1);
    if (call.proc) {
      const n = (this.active.get(call.options.runId) ?? 1) - 1;
      if (n > 0) this.active.set(call.options.runId, n);
      else this.active.delete(call.options.runId);
      if (call.proc.call === call) call.proc.call = undefined;
    }
    if (error) call.reject(error);
    else call.resolve(value);
    queueMicrotask(() => this.pump());
  }

  private spawn(): void {
    const { file, execArgv } = this.options.entry ?? defaultEntry();
    const env: NodeJS.ProcessEnv = {};
    for (const name of ENV_ALLOWLIST) if (process.env[name] !== undefined) env[name] = process.env[name];
    env['CONTAINED_SQL_MAX_RSS_BYTES'] = String(this.options.memoryMb * 1024 * 1024);
    env['CONTAINED_SQL_HOST_PID'] = String(process.pid);
    const child = fork(file, [], { execArgv, env, serialization: 'json', stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    const proc: Proc = { child, ready: false, call: undefined, killed: false, idleTimer: undefined, stderr: '' };
    this.procs.add(proc);
    proc.idleTimer = setTimeout(() => {
      this.options.logger?.error({ pid: child.pid, stderr: proc.stderr || undefined }, 'sql query process did not start in time; killing it');
      void this.kill(proc).then(() => this.failWaiting());
    }, STARTUP_TIMEOUT_MS);
    try {
      if (child.pid !== undefined) os.setPriority(child.pid, QUERY_NICENESS);
    } catch {
      // Best effort: some systems refuse; the deadline still holds.
    }
    child.stderr?.on('data', (chunk: Buffer) => {
      if (proc.stderr.length < MAX_STDERR_BYTES) proc.stderr += chunk.toString('utf8').slice(0, MAX_STDERR_BYTES - proc.stderr.length);
    });
    child.on('message', (message: QueryToHost) => this.onMessage(proc, message));
    child.on('error', (error) => {
      this.options.logger?.error({ err: error }, 'sql query process error');
      // A process that could not be spawned emits no 'exit'.
      if (child.pid === undefined && this.procs.has(proc)) this.onExit(proc, null, null);
    });
    child.on('exit', (code, signal) => this.onExit(proc, code, signal));
  }

  private onMessage(proc: Proc, message: QueryToHost): void {
    if (message?.t === 'ready') {
      clearTimeout(proc.idleTimer);
      proc.ready = true;
      this.idle(proc);
      this.pump();
      return;
    }
    const call = proc.call;
    if (message?.t !== 'done' || !call || message.id !== call.id) {
      this.options.logger?.error({ pid: proc.child.pid }, 'sql query process answered a call it was not given; replacing it');
      void this.kill(proc);
      return;
    }
    if (message.ok) {
      this.settle(call, message.value, undefined);
    } else {
      const { code, message: text, data, detail } = message.error;
      const error = isErrorCode(code)
        ? new ContainedError(code, text, { ...(data === undefined ? {} : { data }), ...(detail === undefined ? {} : { cause: new Error(detail) }) })
        : new ContainedError('INTERNAL', 'internal error in the sql query process', { cause: new Error(detail ?? text) });
      this.settle(call, undefined, error);
    }
    this.idle(proc);
  }

  /** No call: let the process not hold the host open, and exit after `idleMs`. */
  private idle(proc: Proc): void {
    if (proc.call || proc.killed) return;
    hold(proc.child, false);
    clearTimeout(proc.idleTimer);
    proc.idleTimer = setTimeout(() => {
      if (!proc.call && !proc.killed) void this.kill(proc);
    }, this.options.idleMs);
    proc.idleTimer.unref();
  }

  private kill(proc: Proc): Promise<void> {
    proc.killed = true;
    clearTimeout(proc.idleTimer);
    this.procs.delete(proc);
    return new Promise((resolve) => {
      if (proc.child.pid === undefined || proc.child.exitCode !== null || proc.child.signalCode !== null) return resolve();
      proc.child.once('exit', () => resolve());
      proc.child.kill('SIGKILL');
    });
  }

  private onExit(proc: Proc, code: number | null, signal: NodeJS.Signals | null): void {
    this.procs.delete(proc);
    clearTimeout(proc.idleTimer);
    const call = proc.call;
    if (call && !proc.killed) {
      // Not killed by us: its watchdog (memory) or the kernel sends SIGKILL; anything else is a crash.
      const memory = signal === 'SIGKILL';
      this.options.logger?.warn({ pid: proc.child.pid, code, signal, runId: call.options.runId, stderr: proc.stderr || undefined }, 'sql query process died during a call');
      this.settle(
        call,
        undefined,
        memory
          ? new ContainedError('SQL_LIMIT', 'sql: the statement needed more memory than a query process may use, and was stopped', { data: { limit: 'memory' } })
          : new ContainedError('CAPABILITY_FAILED', 'sql: the query process died during the statement', { cause: new Error(`exit ${code ?? signal}`), data: { reason: 'QUERY_PROCESS' } }),
      );
    } else if (!proc.killed && !proc.ready) {
      this.options.logger?.error({ code, signal, stderr: proc.stderr || undefined }, 'sql query process could not start');
      this.failWaiting();
      return;
    }
    this.pump();
  }

  /** No process could start: fail the waiting calls rather than let them wait for their run to end. */
  private failWaiting(): void {
    if ([...this.procs].some((p) => p.ready)) return;
    for (const waiting of [...this.queue]) {
      this.settle(waiting, undefined, new ContainedError('CAPABILITY_FAILED', 'sql: no query process could be started', { data: { reason: 'QUERY_PROCESS' } }));
    }
  }
}

/** A busy process keeps the host alive until it answers; an idle one never does (nor its stderr pipe). */
function hold(child: ChildProcess, busy: boolean): void {
  const handles = [child.channel, child.stderr] as Array<{ ref?: () => void; unref?: () => void } | null | undefined>;
  if (busy) {
    child.ref();
    for (const h of handles) h?.ref?.();
  } else {
    child.unref();
    for (const h of handles) h?.unref?.();
  }
}

function cancelled(): ContainedError {
  return new ContainedError('CANCELLED', 'sql: the run ended; its statement was stopped');
}

function timedOut(timeoutMs: number): ContainedError {
  return new ContainedError('SQL_LIMIT', `sql: the statement ran past its ${timeoutMs} ms deadline (timeoutMs) and was stopped`, {
    data: { limit: 'timeoutMs', timeoutMs },
  });
}
