/**
 * The host's run queue: at most `maxConcurrentRuns` runs hold an isolate at once (a run waiting
 * for a human still holds its isolate, so it counts as running); up to `maxQueuedRuns` more wait
 * in order of arrival. Beyond that `reserve` throws `QUEUE_FULL` with `data.retryAfterSeconds` —
 * before the host stores anything — so the API can answer 429 with `Retry-After` instead of
 * piling up work until it falls over.
 *
 * `Retry-After` is an estimate: the average duration of recent runs (an exponentially weighted
 * mean) times the number of queue "rounds" ahead, clamped to 1–60 s.
 */
import { ContainedError } from '../../runtime/errors.js';

export interface RunQueueOptions {
  /** Runs holding an isolate at once (running or waiting for a human). */
  maxConcurrentRuns: number;
  /** Runs waiting for a free slot; more are refused with QUEUE_FULL. */
  maxQueuedRuns: number;
}

export interface RunSlot {
  /** True when the run had to wait (it starts when `started` resolves). */
  readonly queued: boolean;
  /** Resolves true when the run may start, false when it was cancelled while queued. */
  readonly started: Promise<boolean>;
  /** Give the slot back (idempotent); the next queued run starts. */
  release(): void;
  /** Withdraw a queued run (true), or do nothing if it already started (false). */
  cancel(): boolean;
}

interface Waiter {
  start: (ok: boolean) => void;
  state: 'waiting' | 'granted' | 'withdrawn';
}

export class RunQueue {
  private active = 0;
  private readonly waiting: Waiter[] = [];
  private averageRunMs = 1000;

  constructor(readonly options: RunQueueOptions) {
    for (const key of ['maxConcurrentRuns', 'maxQueuedRuns'] as const) {
      if (!Number.isInteger(options[key]) || options[key] < (key === 'maxConcurrentRuns' ? 1 : 0)) throw new RangeError(`run queue: ${key} must be a whole number`);
    }
  }

  get running(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Take a slot now, or a place in the queue; QUEUE_FULL when neither is free. */
  reserve(): RunSlot {
    if (this.active < this.options.maxConcurrentRuns && this.waiting.length === 0) {
      this.active += 1;
      return this.slot(false, Promise.resolve(true), undefined);
    }
    if (this.waiting.length >= this.options.maxQueuedRuns) {
      const retryAfterSeconds = this.retryAfterSeconds();
      throw new ContainedError('QUEUE_FULL', `the run queue is full (${this.active} running, ${this.waiting.length} queued); retry in ${retryAfterSeconds} s`, {
        data: { retryAfterSeconds, running: this.active, queued: this.waiting.length },
      });
    }
    let start!: (ok: boolean) => void;
    const started = new Promise<boolean>((resolve) => {
      start = resolve;
    });
    const waiter: Waiter = { start, state: 'waiting' };
    this.waiting.push(waiter);
    return this.slot(true, started, waiter);
  }

  /** Feed a finished run's duration into the Retry-After estimate. */
  observe(durationMs: number): void {
    if (Number.isFinite(durationMs) && durationMs >= 0) this.averageRunMs = 0.9 * this.averageRunMs + 0.1 * durationMs;
  }

  retryAfterSeconds(): number {
    const rounds = Math.ceil((this.waiting.length + 1) / this.options.maxConcurrentRuns);
    return Math.min(60, Math.max(1, Math.ceil((rounds * this.averageRunMs) / 1000)));
  }

  private slot(queued: boolean, started: Promise<boolean>, waiter: Waiter | undefined): RunSlot {
    let released = false;
    return {
      queued,
      started,
      release: () => {
        if (released) return;
        released = true;
        if (waiter === undefined || waiter.state === 'granted') this.next();
        else if (waiter.state === 'waiting') this.withdraw(waiter);
      },
      cancel: () => (waiter?.state === 'waiting' ? this.withdraw(waiter) : false),
    };
  }

  private withdraw(waiter: Waiter): boolean {
    const i = this.waiting.indexOf(waiter);
    if (i >= 0) this.waiting.splice(i, 1);
    waiter.state = 'withdrawn';
    waiter.start(false);
    return true;
  }

  /** A slot came free: hand it to the oldest waiter, or return it. */
  private next(): void {
    const waiter = this.waiting.shift();
    if (waiter) {
      waiter.state = 'granted';
      waiter.start(true);
    } else {
      this.active -= 1;
    }
  }
}
