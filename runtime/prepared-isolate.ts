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
 * The context and the bootstrap are made on the isolate's thread, also for a run that has no warm
 * isolate: doing them on this thread (`createContextSync`, `evalClosureSync`) saves two hops of a
 * single cold start but halved the runs per second of a busy sandbox (measured: in-process 0.45×,
 * worker pool 0.31× of the async way), since this thread then waits for every isolate's set-up.
 */
export async function prepareIsolate(memoryMb: number): Promise<PreparedIsolate> {
  let listener: IsolateListener | undefined;
  const isolate = new ivm.Isolate({
    memoryLimit: memoryMb,
    onCatastrophicError: (message) => listener?.onCatastrophe(String(message)),
  });
  try {
    const context = await isolate.createContext();
    const submit = new ivm.Callback(
      (seq: unknown, capability: unknown, method: unknown, argJson: unknown, reason: unknown) => listener?.onSubmit(seq, capability, method, argJson, reason),
      { ignored: true },
    );
    const log = new ivm.Callback((level: unknown, line: unknown) => listener?.onLog(level, line), { ignored: true });
    const report = new ivm.Callback((outcome: unknown) => listener?.onReport(outcome), { ignored: true });
    const options = { filename: BOOTSTRAP_FILENAME, result: { reference: true } } as const;
    const guest = (await context.evalClosure(BOOTSTRAP_SOURCE, [submit, log, report], options)) as ivm.Reference;
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
  /**
   * When `take` had none: the isolate being prepared right now, once it is ready, for one waiting
   * run (a worker's first run usually arrives while its first warm isolate is being prepared);
   * undefined when there is none to wait for.
   */
  next?(memoryMb: number): Promise<PreparedIsolate | undefined> | undefined;
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
  /** The preparation in flight, and whether a run already waits for it. */
  private preparing: { done: Promise<unknown>; claimed: boolean } | undefined;
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

  next(memoryMb: number): Promise<PreparedIsolate | undefined> | undefined {
    const preparing = this.preparing;
    if (memoryMb !== this.options.memoryMb || !preparing || preparing.claimed) return undefined;
    preparing.claimed = true;
    // The fill loop's continuation (registered first) has put it in `ready` by then.
    return preparing.done.then(() => this.ready.shift());
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
        const preparation = prepareIsolate(this.options.memoryMb);
        this.preparing = { done: preparation.catch(() => undefined), claimed: false };
        const prepared = await preparation;
        this.preparing = undefined;
        if (this.closed) prepared.isolate.dispose();
        else this.ready.push(prepared);
      }
    } catch {
      // Preparing failed (out of memory?): runs fall back to preparing their own.
      this.preparing = undefined;
    }
  }
}
