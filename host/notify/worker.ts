/**
 * The delivery worker: takes due rows from the outbox, sends each (send.ts), and records the result
 * — delivered, or failed and retried later with exponential backoff (doubling from
 * `initialDelayMs`, capped at `maxDelayMs`, with jitter), or given up after `maxAttempts` (the row
 * stays, `failed`, visible in the console with its last error).
 *
 * Never in anyone's way: the host's event listeners only write rows (notifier.ts); the worker runs
 * on timers, each attempt is async and bounded by its target's timeout, and at most `maxConcurrent`
 * are in flight. A row and its (target, order key) are held while in flight, so a request's later
 * row waits for its earlier one. `close()` aborts the webhook attempts in flight and waits for them
 * (an email in flight cannot be aborted: it is waited for up to `CLOSE_WAIT_MS`); their rows stay
 * pending, and the next start sends them again with the same idempotency key.
 */
import type { Logger } from 'pino';
import { type NotifyOutbox, orderSlot, type OutboxRow } from '../store/notify-outbox.js';
import { send, type SendResult } from './send.js';
import type { NotifyTarget } from './targets.js';

/** Longest `close()` waits for deliveries in flight, ms (an SMTP exchange cannot be aborted). */
export const CLOSE_WAIT_MS = 5_000;

export interface RetryPolicy {
  maxAttempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
}

/**
 * The delay after the `attempts`-th failed attempt (1 = the first): `initialDelayMs · 2^(attempts-1)`
 * capped at `maxDelayMs`, then a random point in its upper half ("equal jitter"), so endpoints that
 * failed together do not all retry at the same instant.
 */
export function backoffMs(attempts: number, policy: Pick<RetryPolicy, 'initialDelayMs' | 'maxDelayMs'>, random: () => number = Math.random): number {
  const exp = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.min(30, Math.max(0, attempts - 1)));
  return Math.round(exp / 2 + (random() * exp) / 2);
}

export interface WorkerOptions extends RetryPolicy {
  outbox: NotifyOutbox;
  targets: readonly NotifyTarget[];
  maxConcurrent: number;
  pollMs: number;
  consoleUrl: () => string | undefined;
  logger?: Logger | undefined;
  now?: () => number;
  random?: () => number;
  /** Test seam: replaces `send`. */
  send?: typeof send;
}

export interface Worker {
  /** Look for due rows now (after an enqueue). */
  kick(): void;
  /** Deliveries in flight. */
  inFlight(): number;
  close(): Promise<void>;
}

export function startWorker(options: WorkerOptions): Worker {
  const { outbox, logger } = options;
  const now = options.now ?? Date.now;
  const doSend = options.send ?? send;
  const targets = new Map(options.targets.map((t) => [t.target, t]));
  const busyIds = new Set<number>();
  const busyOrders = new Set<string>();
  const running = new Set<Promise<void>>();
  const abort = new AbortController();
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let scheduled = false;

  async function attempt(row: OutboxRow, target: NotifyTarget): Promise<void> {
    const at = now();
    let result: SendResult;
    try {
      result = await doSend(target, row, { consoleUrl: options.consoleUrl(), now, signal: abort.signal });
    } catch (error) {
      if (closed) return; // closing: the row stays pending, sent again after the restart
      const message = error instanceof Error ? error.message : String(error);
      const status = (error as { data?: { status?: unknown } }).data?.status;
      const attempts = row.attempts + 1;
      const giveUp = attempts >= options.maxAttempts;
      const retryAt = giveUp ? undefined : now() + backoffMs(attempts, options, options.random);
      await outbox.failed(row.id, now(), message, { ...(retryAt !== undefined ? { retryAt } : {}), ...(typeof status === 'number' ? { status } : {}) });
      const log = { target: row.target, event: row.event, idempotencyKey: row.idempotencyKey, attempts, error: message };
      if (giveUp) logger?.error(log, 'notification given up');
      else logger?.warn({ ...log, retryInMs: (retryAt as number) - now() }, 'notification delivery failed; will retry');
      return;
    }
    // Closed meanwhile (an email waited past CLOSE_WAIT_MS): the row stays pending and goes again, same key.
    if (closed) return;
    await outbox.delivered(row.id, now(), result.status);
    logger?.debug({ target: row.target, event: row.event, idempotencyKey: row.idempotencyKey, ms: now() - at }, 'notification delivered');
  }

  /** One look at the outbox at a time (a shared one claims what it hands out). */
  let pumping = false;
  /** Asked for again while a look was under way: look again right after it. */
  let again = false;
  async function pump(): Promise<void> {
    scheduled = false;
    if (closed) return;
    if (pumping) {
      again = true;
      return;
    }
    pumping = true;
    try {
      await pumpOnce();
    } finally {
      pumping = false;
    }
    if (again) {
      again = false;
      schedule(0);
    } else schedule(options.pollMs);
  }

  async function pumpOnce(): Promise<void> {
    const free = options.maxConcurrent - running.size;
    if (free > 0) {
      let rows: OutboxRow[] = [];
      try {
        rows = await outbox.due(now(), free, { ids: busyIds, orders: busyOrders }, [...targets.keys()]);
      } catch (error) {
        logger?.error({ err: error }, 'notification outbox unreadable');
      }
      if (closed) return;
      for (const row of rows) {
        const target = targets.get(row.target);
        if (!target) continue; // dropped at start; a row written by an older config
        const slot = orderSlot(row.target, row.orderKey);
        busyIds.add(row.id);
        busyOrders.add(slot);
        const task = attempt(row, target)
          .catch((error: unknown) => logger?.error({ err: error, target: row.target }, 'notification bookkeeping failed'))
          .finally(() => {
            busyIds.delete(row.id);
            busyOrders.delete(slot);
            running.delete(task);
            // The next row of the same request may be due now.
            schedule(0);
          });
        running.add(task);
      }
    }
  }

  /** Run `pump` after `ms` (sooner wins over later). */
  function schedule(ms: number): void {
    if (closed) return;
    if (ms === 0) {
      if (scheduled) return;
      scheduled = true;
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => void pump(), 0);
    } else if (!scheduled) {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => void pump(), ms);
    }
    timer?.unref();
  }

  schedule(0);
  return {
    kick: () => schedule(0),
    inFlight: () => running.size,
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      abort.abort();
      let wait: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...running]), new Promise<void>((resolve) => (wait = setTimeout(resolve, CLOSE_WAIT_MS)))]);
      clearTimeout(wait);
    },
  };
}
