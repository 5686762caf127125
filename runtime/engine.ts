/**
 * The engine runs one agent program in one fresh isolate in the current process, and turns
 * whatever happens into a typed outcome. It is used directly by the in-process mode and inside
 * each worker process by the worker mode.
 *
 * What it defends against, and how:
 * - Runaway CPU, also after an `await`, in microtasks, in getters run while results are copied:
 *   a watchdog polls `isolate.cpuTime` and disposes the isolate past `cpuMs` (isolated-vm's own
 *   `timeout` does not cover async continuations). Wall-clock deadline likewise, minus paused
 *   time (a human deciding).
 * - Memory: isolated-vm's `memoryLimit` plus a heap check in the watchdog; what still escapes
 *   (WebAssembly is removed; catastrophic OOM) is contained by the worker-process boundary.
 * - Host memory: every string the guest sends is bounded (logs, call arguments, the result) and
 *   counted here as well as in the guest.
 * - Nothing but strings crosses: the guest reports its outcome as a JSON string built inside the
 *   isolate (through a callback, never as a promise result, which isolated-vm would `then` with the
 *   agent's Promise machinery), and call results go in as JSON strings. No `Reference` is handed
 *   to agent code. The outcome text must have the bootstrap's fixed shape, or the run is INTERNAL.
 * - Never uses a `*Sync` API to run untrusted code on this thread. `configure` (our bootstrap, before
 *   any agent module is evaluated) and a small program's compile and link (link.ts) run no agent
 *   code, so they use `applySync`/`*Sync` and cost no thread hop.
 */
import type ivm from 'isolated-vm';
import { ContainedError, type ErrorCode, type ErrorInfo, isErrorCode, messageOf } from './errors.js';
import type { Limits } from './limits.js';
import { linkProgram } from './link.js';
import { type Program, validateProgram } from './program.js';
import { type IsolateSource, type PreparedIsolate, prepareIsolate } from './prepared-isolate.js';
import type { LogLine, RunOutcome, RunUsage } from './outcome.js';

/** What the guest knows about a capability: its binding name and method names. Nothing else. */
export interface CapabilityShape {
  name: string;
  methods: readonly string[];
}

export interface EngineRunSpec {
  runId: string;
  program: Program;
  /** JSON-compatible input (already validated as such by the caller). */
  input: unknown;
  limits: Limits;
  capabilities: readonly CapabilityShape[];
}

export interface EngineCall {
  /** Per-run call sequence number, assigned by the guest. */
  seq: number;
  capability: string;
  method: string;
  /** JSON text of the argument, '' when the agent passed none. */
  argJson: string;
  reason: string | undefined;
}

export type BridgeResult = { ok: true; value: unknown } | { ok: false; error: ErrorInfo };

/** How the engine reaches the host's dispatcher (directly, or over IPC from a worker). */
export interface EngineBridge {
  call(call: EngineCall): Promise<BridgeResult>;
  /** Optional live log stream (the outcome carries the logs too). */
  log?(line: LogLine): void;
  /** isolated-vm lost control of an isolate: the process should be replaced soon. */
  catastrophe?(message: string): void;
}

/** Codes an uncaught capability error may carry into the outcome; anything else is AGENT_ERROR. */
const PASS_THROUGH_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'INVALID_ARGUMENT', 'UNKNOWN_CAPABILITY', 'OUT_OF_SCOPE', 'CAPABILITY_DENIED', 'CAPABILITY_REVOKED',
  'CAPABILITY_EXPIRED', 'BUDGET_EXCEEDED', 'CAPABILITY_FAILED', 'ESCALATION_DENIED', 'ESCALATION_TIMEOUT', 'RUN_GONE',
]);

/**
 * Bytes a single log line is charged at least, so a flood of empty lines still hits the limit.
 * Here, not in limits.ts: a worker process imports the engine, and limits.ts builds a zod schema
 * (zod is ~60 ms of a worker's start; nothing in a worker validates limits, the host did).
 */
export const MIN_LOG_LINE_BYTES = 16;

const WATCHDOG_INTERVAL_MS = 5;
const MAX_MESSAGE_CHARS = 4096;

/** A running sandbox; `outcome` always resolves (never rejects). */
export interface EngineRun {
  outcome: Promise<RunOutcome>;
  /** Stop the wall clock (a human is deciding); call the result to restart it. */
  pauseWallClock(): () => void;
  cancel(message?: string): void;
  /**
   * After the outcome: true when it came from the guest's own report, so the isolate was idle when
   * it was disposed. False when the run was killed or failed (the isolate may have been disposed
   * while it ran code). A process may exit at once after quiet runs; after any other, isolated-vm
   * needs a moment (exiting within ~20 ms of disposing a running isolate has segfaulted).
   */
  endedQuietly(): boolean;
}

export function startRun(spec: EngineRunSpec, bridge: EngineBridge, pool?: IsolateSource): EngineRun {
  const run = new Run(spec, bridge, pool);
  return {
    outcome: run.execute(),
    pauseWallClock: () => run.pause(),
    cancel: (m) => run.kill('CANCELLED', m ?? 'the run was cancelled'),
    endedQuietly: () => run.quiet,
  };
}

class Run {
  private isolate: ivm.Isolate | undefined;
  private deliverRef: ivm.Reference | undefined;
  private killed: ErrorInfo | undefined;
  private killSignal!: () => void;
  private readonly killedPromise = new Promise<void>((resolve) => (this.killSignal = resolve));
  private readonly logs: LogLine[] = [];
  private logBytes = 0;
  private calls = 0;
  private lastSeq = 0;
  private inFlight = 0;
  private readonly startedAt = performance.now();
  private pausedTotal = 0;
  private pauseDepth = 0;
  private pausedAt = 0;
  private peakHeap = 0;
  private cpuNs = 0n;
  private ticks = 0;
  /** CPU the isolate used before this run owned it (our bootstrap, in a pooled isolate). */
  private cpuBaselineNs = 0n;
  private heapProbe: Promise<void> | undefined;
  private reportOutcome: ((text: string) => void) | undefined;
  /** The outcome came from the guest's report, with no kill, and the isolate was idle after it (see EngineRun.endedQuietly). */
  quiet = false;
  /** The outcome is decided: nothing from or to the isolate counts any more. */
  private ended = false;

  private readonly spec: EngineRunSpec;
  private readonly bridge: EngineBridge;
  private readonly pool: IsolateSource | undefined;

  constructor(spec: EngineRunSpec, bridge: EngineBridge, pool: IsolateSource | undefined) {
    this.spec = spec;
    this.bridge = bridge;
    this.pool = pool;
  }

  async execute(): Promise<RunOutcome> {
    let watchdog: NodeJS.Timeout | undefined;
    try {
      validateProgram(this.spec.program);
      const inputJson = JSON.stringify(this.spec.input ?? null);
      const { limits } = this.spec;
      const prepared = this.pool?.take(limits.memoryMb) ?? (await this.pool?.next?.(limits.memoryMb)) ?? (await prepareIsolate(limits.memoryMb));
      const isolate = prepared.isolate;
      prepared.attach({
        onSubmit: (seq, capability, method, argJson, reason) => this.onSubmit(seq, capability, method, argJson, reason),
        onLog: (level, line) => this.onLog(level, line),
        onReport: (outcome) => this.onReport(outcome),
        onCatastrophe: (message) => {
          // isolated-vm has lost control of this isolate; the worker process will be replaced.
          this.kill('MEMORY_LIMIT', `the sandbox failed catastrophically: ${message.slice(0, 200)}`);
          this.bridge.catastrophe?.(message);
        },
      });
      this.cpuBaselineNs = isolate.cpuTime;
      this.isolate = isolate;
      // Deliberately not unref'd: a pending run is work in progress. An agent awaiting a promise
      // that never settles holds nothing else on the event loop, so with an unref'd watchdog an
      // in-process host that only awaits `run()` exited (code 13 / 0) instead of getting WALL_LIMIT.
      // The interval is cleared in `finally` below.
      watchdog = setInterval(() => this.checkLimits(), WATCHDOG_INTERVAL_MS);
      const result = await Promise.race([this.runInIsolate(prepared, inputJson), this.killedPromise.then(() => undefined)]);
      let idle = false;
      if (!this.killed && !isolate.isDisposed) {
        // Answered only when the isolate's thread is free: agent code still running after its
        // outcome (a microtask loop) makes this time out.
        const heap = await Promise.race([isolate.getHeapStatistics().catch(() => undefined), delay(20)]);
        if (heap) this.recordHeap(heap.used_heap_size + heap.externally_allocated_size);
        idle = heap !== undefined;
      }
      const outcome = this.finish(result);
      this.quiet = typeof result === 'string' && !this.killed && idle;
      this.ended = true;
      return outcome;
    } catch (error) {
      return this.finish(undefined, error);
    } finally {
      this.ended = true;
      if (watchdog) clearInterval(watchdog);
      if (this.quiet) {
        // An idle isolate that nothing will post work to again (deliver and the callbacks ignore an
        // ended run): disposed just after the outcome is handed over, not in its way.
        setImmediate(() => {
          this.dispose();
          this.pool?.refill();
        });
      } else {
        this.dispose();
        this.pool?.refill();
      }
    }
  }

  private async runInIsolate(prepared: PreparedIsolate, inputJson: string): Promise<string> {
    const { program, limits } = this.spec;
    const { isolate, context, start } = prepared;
    this.deliverRef = prepared.deliver;
    const config = JSON.stringify({
      allowWasm: limits.allowWasm,
      maxLogBytes: limits.maxLogBytes,
      minLogLineBytes: MIN_LOG_LINE_BYTES,
      maxCalls: limits.maxCalls,
      maxConcurrentCalls: limits.maxConcurrentCalls,
      maxCallBytes: limits.maxCallBytes,
      maxOutputBytes: limits.maxOutputBytes,
      capabilities: this.spec.capabilities.map((c) => ({ name: c.name, methods: [...c.methods] })),
    });
    // No agent code has run in this isolate yet: configure runs only the bootstrap's own code.
    prepared.configure.applySync(undefined, [config]);

    const entry = await linkProgram(isolate, context, program);
    // Module top-level code runs under the watchdog like everything else.
    try {
      await entry.evaluate();
    } catch (error) {
      throw new ContainedError('AGENT_ERROR', messageOf(error));
    }
    const reported = new Promise<string>((resolve) => (this.reportOutcome = resolve));
    await start.apply(undefined, [entry.namespace.derefInto(), inputJson]);
    return reported;
  }

  private onReport(outcome: unknown): void {
    if (this.killed || this.ended) return;
    const resolve = this.reportOutcome;
    this.reportOutcome = undefined;
    if (!resolve) {
      this.kill('INTERNAL', 'the sandbox reported an outcome twice');
      return;
    }
    if (typeof outcome !== 'string') {
      this.kill('INTERNAL', 'malformed outcome from the sandbox');
      return;
    }
    resolve(outcome);
  }

  private onSubmit(seq: unknown, capability: unknown, method: unknown, argJson: unknown, reason: unknown): void {
    if (this.killed || this.ended) return;
    const { limits } = this.spec;
    // The bootstrap numbers its calls 1, 2, 3…, names a capability and method it was configured
    // with, and sends the argument as JSON text and the reason as a string. Anything else did not
    // come from it: the run ends, and nothing is dispatched.
    const wellFormed =
      typeof seq === 'number' && Number.isSafeInteger(seq) && seq > this.lastSeq &&
      typeof capability === 'string' && capability !== '' && typeof method === 'string' && method !== '' &&
      typeof argJson === 'string' && (reason === undefined || typeof reason === 'string');
    if (!wellFormed) {
      this.kill('INTERNAL', 'malformed call from the sandbox');
      return;
    }
    this.lastSeq = seq;
    this.calls += 1;
    this.inFlight += 1;
    if (this.calls > limits.maxCalls) {
      this.kill('CALL_LIMIT', `more than ${limits.maxCalls} capability calls`);
      return;
    }
    if (this.inFlight > limits.maxConcurrentCalls) {
      this.kill('CALL_LIMIT', `more than ${limits.maxConcurrentCalls} capability calls at once`);
      return;
    }
    if (argJson.length > limits.maxCallBytes) {
      this.deliver(seq, { ok: false, error: { code: 'CALL_LIMIT', message: `argument larger than ${limits.maxCallBytes} bytes` } });
      return;
    }
    const call: EngineCall = { seq, capability, method, argJson, reason: typeof reason === 'string' && reason !== '' ? reason : undefined };
    this.bridge.call(call).then(
      (result) => this.deliver(seq, result),
      (error: unknown) => this.deliver(seq, { ok: false, error: toErrorInfo(error) }),
    );
  }

  private deliver(seq: number, result: BridgeResult): void {
    this.inFlight -= 1;
    if (this.killed || this.ended || !this.deliverRef) return;
    let json: string;
    let ok = result.ok;
    if (result.ok) {
      json = result.value === undefined ? '' : (JSON.stringify(result.value) ?? '');
      if (json.length > this.spec.limits.maxCallBytes) {
        ok = false;
        json = JSON.stringify({ code: 'CALL_LIMIT', message: `result larger than ${this.spec.limits.maxCallBytes} bytes` });
      }
    } else {
      json = JSON.stringify({ code: result.error.code, message: result.error.message, data: result.error.data });
    }
    try {
      this.deliverRef.applyIgnored(undefined, [seq, ok, json]);
    } catch {
      // The isolate was disposed meanwhile; the outcome is already decided.
    }
  }

  private onLog(level: unknown, line: unknown): void {
    if (this.killed || this.ended) return;
    const { maxLogBytes } = this.spec.limits;
    if (typeof line !== 'string' || typeof level !== 'string') {
      this.kill('INTERNAL', 'malformed log line from the sandbox');
      return;
    }
    if (level === 'overflow') {
      this.kill('OUTPUT_LIMIT', `logs exceeded ${maxLogBytes} bytes`);
      return;
    }
    this.logBytes += Math.max(MIN_LOG_LINE_BYTES, Buffer.byteLength(line));
    if (this.logBytes > maxLogBytes) {
      this.kill('OUTPUT_LIMIT', `logs exceeded ${maxLogBytes} bytes`);
      return;
    }
    const entry: LogLine = { level: normaliseLevel(level), message: line, atMs: Math.round(this.wallMs()) };
    this.logs.push(entry);
    this.bridge.log?.(entry);
  }

  private checkLimits(): void {
    const isolate = this.isolate;
    if (!isolate || this.killed) return;
    const { limits } = this.spec;
    if (isolate.isDisposed) {
      // Nothing here disposes an isolate before the run is killed or finished: isolated-vm did, and it
      // does so by itself only past the memory limit. The outcome report will never come.
      this.kill('MEMORY_LIMIT', `the sandbox heap grew past ${limits.memoryMb} MiB`);
      return;
    }
    try {
      this.cpuNs = isolate.cpuTime - this.cpuBaselineNs;
    } catch {
      return;
    }
    if (this.cpuNs > BigInt(limits.cpuMs) * 1_000_000n) {
      this.kill('CPU_LIMIT', `the run used more than ${limits.cpuMs} ms of CPU`);
      return;
    }
    if (this.wallMs() > limits.wallMs) {
      this.kill('WALL_LIMIT', `the run took longer than ${limits.wallMs} ms`);
      return;
    }
    // Heap statistics need the isolate's lock, so they are asked for asynchronously (a sync call
    // would block this thread for as long as the agent runs). isolated-vm's memoryLimit is the
    // primary wall; this catches slow growth of external (ArrayBuffer) memory.
    if (!this.heapProbe && ++this.ticks % 10 === 0) {
      this.heapProbe = isolate
        .getHeapStatistics()
        .then((heap) => this.recordHeap(heap.used_heap_size + heap.externally_allocated_size))
        .catch(() => undefined)
        .finally(() => (this.heapProbe = undefined));
    }
  }

  private recordHeap(used: number): void {
    if (used > this.peakHeap) this.peakHeap = used;
    if (used > this.spec.limits.memoryMb * 1024 * 1024) this.kill('MEMORY_LIMIT', `the sandbox heap grew past ${this.spec.limits.memoryMb} MiB`);
  }

  pause(): () => void {
    if (this.pauseDepth++ === 0) this.pausedAt = performance.now();
    let resumed = false;
    return () => {
      if (resumed) return;
      resumed = true;
      if (--this.pauseDepth === 0) this.pausedTotal += performance.now() - this.pausedAt;
    };
  }

  private wallMs(): number {
    const now = performance.now();
    const paused = this.pausedTotal + (this.pauseDepth > 0 ? now - this.pausedAt : 0);
    return now - this.startedAt - paused;
  }

  kill(code: ErrorCode, message: string): void {
    if (this.killed) return;
    this.killed = { code, message };
    this.captureUsage();
    this.dispose();
    this.killSignal();
  }

  private captureUsage(): void {
    const isolate = this.isolate;
    if (!isolate || isolate.isDisposed) return;
    try {
      this.cpuNs = isolate.cpuTime - this.cpuBaselineNs;
    } catch {
      // Already gone.
    }
  }

  private dispose(): void {
    const isolate = this.isolate;
    if (!isolate || isolate.isDisposed) return;
    try {
      isolate.dispose();
    } catch {
      // Disposing twice, or isolated-vm already tore it down.
    }
  }

  private usage(): RunUsage {
    return {
      cpuMs: Number(this.cpuNs / 1000n) / 1000,
      wallMs: Math.round(this.wallMs() * 1000) / 1000,
      heapBytes: this.peakHeap,
      calls: this.calls,
    };
  }

  private finish(resultJson: string | undefined, error?: unknown): RunOutcome {
    if (!this.killed) this.captureUsage();
    const logs = this.logs;
    const usage = this.usage();
    if (this.killed) return { status: 'error', error: this.killed, logs, usage };
    if (error !== undefined) {
      // isolated-vm disposes an isolate that exceeds memoryLimit by itself.
      const info = this.isolate?.isDisposed && /memory limit/i.test(messageOf(error))
        ? { code: 'MEMORY_LIMIT' as const, message: `the sandbox heap grew past ${this.spec.limits.memoryMb} MiB` }
        : toErrorInfo(error);
      return { status: 'error', error: info, logs, usage };
    }
    if (typeof resultJson !== 'string') {
      return { status: 'error', error: { code: 'INTERNAL', message: 'the sandbox ended without an outcome' }, logs, usage };
    }
    if (Buffer.byteLength(resultJson) > this.spec.limits.maxOutputBytes + 64) {
      return { status: 'error', error: { code: 'OUTPUT_LIMIT', message: `the return value is larger than ${this.spec.limits.maxOutputBytes} bytes` }, logs, usage };
    }
    const report = readReport(resultJson);
    if (!report) return { status: 'error', error: { code: 'INTERNAL', message: 'the sandbox reported an unreadable outcome' }, logs, usage };
    if (report.ok) return { status: 'ok', value: report.value, logs, usage };
    const e = report.error;
    const reported = isErrorCode(e.code) ? e.code : 'AGENT_ERROR';
    // The bootstrap reports a code only for errors it made itself (a real refusal, a real limit) or
    // decided itself; codes outside these sets are not the guest's to report, whatever it says.
    // CALL_LIMIT passes through like OUTPUT_LIMIT: a per-call size refusal (argument or result over
    // maxCallBytes) reaches the agent as a catchable CapabilityError; left uncaught it is the run's
    // outcome.
    const code: ErrorCode =
      reported === 'INVALID_PROGRAM' || reported === 'INVALID_OUTPUT' || reported === 'OUTPUT_LIMIT' || reported === 'CALL_LIMIT' ||
      PASS_THROUGH_CODES.has(reported)
        ? reported
        : 'AGENT_ERROR';
    const message = e.message.slice(0, MAX_MESSAGE_CHARS);
    const stack = e.stack === undefined ? undefined : sandboxStack(e.stack, this.spec.program);
    return { status: 'error', error: stack ? { code, message, stack } : { code, message }, logs, usage };
  }
}

type Report = { ok: true; value: unknown } | { ok: false; error: { code: string; message: string; stack?: string } };

/**
 * The bootstrap's outcome text, if it has exactly the fixed shape the bootstrap builds:
 * `{"ok":true,"value":…}` or `{"ok":false,"error":{"code":…,"message":…[,"stack":…]}}` with string
 * code, message and stack. Anything else (other keys, other types) is not believed.
 */
function readReport(text: string): Report | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(parsed)) return undefined;
  const keys = Object.keys(parsed);
  if (parsed.ok === true && keys.length === 2 && Object.hasOwn(parsed, 'value')) return { ok: true, value: parsed.value ?? null };
  if (parsed.ok !== false || keys.length !== 2 || !isRecord(parsed.error)) return undefined;
  const { code, message, stack } = parsed.error;
  const errorKeys = Object.keys(parsed.error);
  if (typeof code !== 'string' || typeof message !== 'string' || (stack !== undefined && typeof stack !== 'string')) return undefined;
  if (errorKeys.length !== (stack === undefined ? 2 : 3)) return undefined;
  return { ok: false, error: stack === undefined ? { code, message } : { code, message, stack } };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Keep only stack frames that point into the agent's own modules; drop anything host-side. */
export function sandboxStack(stack: string, program: Program): string | undefined {
  const files = Object.keys(program.files);
  const lines = stack.split('\n');
  const head = lines[0] ?? '';
  const frames = lines.slice(1).filter((l) => /^\s+at /.test(l) && files.some((f) => l.includes(`(${f}:`) || l.includes(` ${f}:`)));
  if (frames.length === 0) return undefined;
  return [head, ...frames].join('\n');
}

function delay(ms: number): Promise<undefined> {
  return new Promise((resolve) => setTimeout(() => resolve(undefined), ms));
}

function normaliseLevel(level: string): LogLine['level'] {
  return level === 'info' || level === 'warn' || level === 'error' || level === 'debug' ? level : 'log';
}


export function toErrorInfo(error: unknown): ErrorInfo {
  if (error instanceof ContainedError) return { code: error.code, message: error.message };
  return { code: 'INTERNAL', message: 'internal error in the host (see the host log)' };
}
