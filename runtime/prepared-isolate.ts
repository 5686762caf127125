/**
 * An isolate with a fresh context and the guest bootstrap already evaluated — everything a run
 * needs that does not depend on the run. `IsolatePool` keeps a few ready so a run can start
 * without paying for isolate creation (a warm start).
 *
 * Safety: a pooled isolate has only ever run our own bootstrap; every run still gets an isolate
 * no other run has touched, and it is disposed after that run. Nothing agent-controlled is used
 * to prepare it (no snapshots, no code caches: CVE-2022-39266).
 */
import ivm from 'isolated-vm';
import { BOOTSTRAP_FILENAME, BOOTSTRAP_SOURCE } from './guest/bootstrap.guest.js';

/** Where the isolate's callbacks go once a run owns it. */
export interface IsolateListener {
  onSubmit(seq: unknown, capability: unknown, method: unknown, argJson: unknown, reason: unknown): void;
  onLog(level: unknown, line: unknown): void;
  /** The run's outcome, as the fixed-shape JSON text the bootstrap builds; called once. */
  onReport(outcome: unknown): void;
  onCatastrophe(message: string): void;
}

export interface PreparedIsolate {
  isolate: ivm.Isolate;
  context: ivm.Context;
  memoryMb: number;
  configure: ivm.Reference;
  start: ivm.Reference;
  deliver: ivm.Reference;
  /** Route the isolate's callbacks to the run that took it. */
  attach(listener: IsolateListener): void;
}

/**
 * `onThisThread`: create the context and evaluate the bootstrap with isolated-vm's `*Sync` calls (no
 * thread hop each: a run that has no warm isolate waits for this). They run only our bootstrap, no
 * agent code. The warm pool prepares on the isolate's thread instead, so refilling it between runs
 * blocks this thread only for `new Isolate`.
 */
export async function prepareIsolate(memoryMb: number, onThisThread = false): Promise<PreparedIsolate> {
  let listener: IsolateListener | undefined;
  const isolate = new ivm.Isolate({
    memoryLimit: memoryMb,
    onCatastrophicError: (message) => listener?.onCatastrophe(String(message)),
  });
  try {
    const context = onThisThread ? isolate.createContextSync() : await isolate.createContext();
    const submit = new ivm.Callback(
      (seq: unknown, capability: unknown, method: unknown, argJson: unknown, reason: unknown) => listener?.onSubmit(seq, capability, method, argJson, reason),
      { ignored: true },
    );
    const log = new ivm.Callback((level: unknown, line: unknown) => listener?.onLog(level, line), { ignored: true });
    const report = new ivm.Callback((outcome: unknown) => listener?.onReport(outcome), { ignored: true });
    const options = { filename: BOOTSTRAP_FILENAME, result: { reference: true } } as const;
    const guest = (onThisThread
      ? context.evalClosureSync(BOOTSTRAP_SOURCE, [submit, log, report], options)
      : await context.evalClosure(BOOTSTRAP_SOURCE, [submit, log, report], options)) as ivm.Reference;
    // Reading our own frozen object's three functions runs nothing: on this thread, no hops.
    const configure = guest.getSync('configure', { reference: true }) as ivm.Reference;
    const start = guest.getSync('start', { reference: true }) as ivm.Reference;
    const deliver = guest.getSync('deliver', { reference: true }) as ivm.Reference;
    return { isolate, context, memoryMb, configure, start, deliver, attach: (l) => (listener = l) };
  } catch (error) {
    if (!isolate.isDisposed) isolate.dispose();
    throw error;
  }
}

/** Where a run takes its prepared isolate from (the warm pool; a test may supply its own). */
export interface IsolateSource {
  /** A ready isolate with this heap limit, or undefined (then the run prepares its own). */
  take(memoryMb: number): PreparedIsolate | undefined;
  /** Called when a run is over. */
  refill(): void;
}

export interface IsolatePoolOptions {
  /** Isolates kept ready. 0 disables the pool. */
  size: number;
  /** Heap limit of pooled isolates; runs asking for another limit get a fresh isolate. */
  memoryMb: number;
}

export class IsolatePool implements IsolateSource {
  private readonly ready: PreparedIsolate[] = [];
  private filling: Promise<void> | undefined;
  private closed = false;

  private readonly options: IsolatePoolOptions;

  constructor(options: IsolatePoolOptions) {
    this.options = options;
    void this.fill();
  }

  /** A ready isolate with this heap limit, or undefined (then the caller prepares its own). */
  take(memoryMb: number): PreparedIsolate | undefined {
    if (memoryMb !== this.options.memoryMb) return undefined;
    return this.ready.shift();
  }

  /**
   * Top the pool up. Called when a run has finished, not when it starts: creating an isolate
   * blocks this thread for about a millisecond, which would land in the middle of the run.
   */
  refill(): void {
    if (this.ready.length < this.options.size) setImmediate(() => void this.fill());
  }

  /**
   * Dispose the ready isolates. Resolves once no isolate is being prepared (preparing runs our
   * bootstrap on the isolate's thread; a process must not exit in the middle of it).
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.ready.splice(0)) if (!p.isolate.isDisposed) p.isolate.dispose();
    await this.filling;
  }

  private fill(): Promise<void> {
    this.filling ??= this.fillLoop().finally(() => (this.filling = undefined));
    return this.filling;
  }

  private async fillLoop(): Promise<void> {
    try {
      while (!this.closed && this.ready.length < this.options.size) {
        const prepared = await prepareIsolate(this.options.memoryMb);
        if (this.closed) prepared.isolate.dispose();
        else this.ready.push(prepared);
      }
    } catch {
      // Preparing failed (out of memory?): runs fall back to preparing their own.
    }
  }
}
