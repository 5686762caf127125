/**
 * The notification outbox (table `notify_outbox`, host/store/schema.ts): one row per delivery — an
 * event for one target (a webhook by name, or email) — written when the event happens and kept until
 * it is delivered or given up, so a restart loses no delivery. The delivery worker (host/notify/)
 * reads due rows and records each attempt here; nothing else runs SQL against this table.
 *
 * Kept on its own connection to the store file, as the audit log is. A fleet on PostgreSQL shares
 * one outbox in its database instead (pg/notify-outbox.ts, the same interface): any live host
 * delivers a row, one host at a time.
 *
 * Guarantees:
 * - At most one row per (target, event key): enqueueing the same event twice (a restart that
 *   re-enqueues the pending requests' `request.created`) adds nothing.
 * - Each row carries an idempotency key, fixed when it is written and sent with every attempt, so a
 *   receiver can drop the copy a host killed mid-delivery sends again after its restart.
 * - Order per `order_key` (a request id): `due` offers only the oldest undelivered row of each
 *   (target, order key), so a `request.decided` is never sent before its `request.created`; a row
 *   given up no longer holds the next one back.
 *
 * Fails with INTERNAL (the SQLite error as cause) when the file cannot be written or a row is corrupt.
 */
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import { migrate } from './schema.js';

export const OUTBOX_STATUSES = ['pending', 'delivered', 'failed', 'dropped'] as const;
export type OutboxStatus = (typeof OUTBOX_STATUSES)[number];

/** One event to deliver to one target. */
export interface OutboxInput {
  /** `webhook:<name>` or `email`. */
  target: string;
  /** `request.created`, `request.decided`… */
  event: string;
  /** Unique per target: the same event enqueued twice is one row (e.g. `request.created:req_1`). */
  eventKey: string;
  /** Deliveries with the same order key go out in the order they were enqueued (a request id). */
  orderKey: string;
  /** The event as JSON-serialisable data; the body is made from it at delivery. */
  payload: Record<string, unknown>;
  at: number;
}

export const outboxRowSchema = z.strictObject({
  id: z.number().int(),
  target: z.string(),
  event: z.string(),
  eventKey: z.string(),
  orderKey: z.string(),
  payload: z.record(z.string(), z.unknown()),
  idempotencyKey: z.string(),
  status: z.enum(OUTBOX_STATUSES),
  attempts: z.number().int().min(0),
  nextAt: z.number().int(),
  createdAt: z.number().int(),
  deliveredAt: z.number().int().optional(),
  lastAttemptAt: z.number().int().optional(),
  /** The last failure, in words (`NOTIFY_DELIVERY_FAILED`'s message). */
  lastError: z.string().optional(),
  /** The receiver's last HTTP status (webhooks). */
  lastStatus: z.number().int().optional(),
});
export type OutboxRow = z.infer<typeof outboxRowSchema>;

/** Per target: how many rows in each status, and the latest failure. */
export interface OutboxTargetSummary {
  target: string;
  pending: number;
  delivered: number;
  failed: number;
  dropped: number;
  /** Pending rows that have failed at least once. */
  failing: number;
  lastDeliveredAt?: number;
  lastError?: string;
  lastErrorAt?: number;
}

export interface NotifyOutbox {
  /** Rows written, in order, in one transaction; returns how many were new. */
  enqueue(rows: readonly OutboxInput[]): Promise<number>;
  /**
   * Pending rows due at `now`, oldest first, at most `limit`: only the head of each (target, order
   * key), none whose id or (target, order key) is in `busy` (in flight), and — given `targets` —
   * only rows of those targets. A shared outbox claims what it returns for a while, so no other
   * host sends the same row meanwhile.
   */
  due(now: number, limit: number, busy?: { ids: ReadonlySet<number>; orders: ReadonlySet<string> }, targets?: readonly string[]): Promise<OutboxRow[]>;
  delivered(id: number, at: number, status?: number): Promise<void>;
  /** A failed attempt: retried at `retryAt`, or given up (`failed`) when it is undefined. */
  failed(id: number, at: number, error: string, options: { retryAt?: number; status?: number }): Promise<void>;
  /** Pending rows of targets no longer configured become `dropped` (they would wait forever). */
  dropOtherTargets(targets: readonly string[], at: number): Promise<number>;
  /** Whether the target already has a row for this event key (any status). */
  has(target: string, eventKey: string): Promise<boolean>;
  /** (target, order key) pairs with a `request.created` row and no `request.decided` / `request.expired` row: requests notified as open. */
  openRequests(targets: readonly string[]): Promise<Array<{ target: string; orderKey: string }>>;
  /** Newest first. */
  list(filter?: { target?: string; status?: OutboxStatus; limit?: number }): Promise<OutboxRow[]>;
  summary(): Promise<OutboxTargetSummary[]>;
  /** Remove delivered, failed and dropped rows last touched before `before`; returns how many. */
  prune(before: number): Promise<number>;
  close(): Promise<void>;
}

/** `ntf_` and 24 hex characters of randomness. */
export function newIdempotencyKey(): string {
  return `ntf_${randomBytes(12).toString('hex')}`;
}

/** The key-order string `due` uses for "this target's this order key". */
export function orderSlot(target: string, orderKey: string): string {
  return `${target}\u0000${orderKey}`;
}

export function rowToOutbox(row: Record<string, unknown>): OutboxRow {
  const value: Record<string, unknown> = {
    id: row.id,
    target: row.target,
    event: row.event,
    eventKey: row.event_key,
    orderKey: row.order_key,
    idempotencyKey: row.idempotency_key,
    status: row.status,
    attempts: row.attempts,
    nextAt: row.next_at,
    createdAt: row.created_at,
  };
  try {
    value.payload = JSON.parse(String(row.payload)) as unknown;
  } catch {
    value.payload = undefined;
  }
  if (row.delivered_at !== null && row.delivered_at !== undefined) value.deliveredAt = row.delivered_at;
  if (row.last_attempt_at !== null && row.last_attempt_at !== undefined) value.lastAttemptAt = row.last_attempt_at;
  if (row.last_error !== null && row.last_error !== undefined) value.lastError = row.last_error;
  if (row.last_status !== null && row.last_status !== undefined) value.lastStatus = row.last_status;
  const parsed = outboxRowSchema.safeParse(value);
  if (!parsed.success) throw new ContainedError('INTERNAL', `store: corrupt row in notify_outbox (${String(row.id)}): ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return parsed.data;
}

export interface NotifyOutboxOptions {
  /** ms to wait for another connection's write lock (default 5000). */
  busyTimeoutMs?: number;
  /** `full` (default): fsync every commit. */
  synchronous?: 'full' | 'normal';
  now?: () => number;
}

/** Open the outbox on the host store file (`<dataDir>/contained.db`), migrating it if needed. */
export function openNotifyOutbox(file: string, options: NotifyOutboxOptions = {}): NotifyOutbox {
  let db: Database.Database;
  try {
    db = new Database(file, { timeout: options.busyTimeoutMs ?? 5000 });
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${options.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`);
    db.pragma('trusted_schema = OFF');
    migrate(db, (options.now ?? Date.now)());
  } catch (error) {
    if (error instanceof ContainedError) throw error;
    throw new ContainedError('INTERNAL', `store: cannot open the notification outbox in ${file}: ${(error as Error).message}`, { cause: error });
  }
  const conn = db;
  let closed = false;
  // Synchronous underneath; a throw becomes the promise's rejection.
  const guard = <T>(op: string, f: () => T): Promise<T> => {
    if (closed) return Promise.reject(new ContainedError('INTERNAL', `store: notify outbox ${op} after close`));
    try {
      return Promise.resolve(f());
    } catch (error) {
      if (error instanceof ContainedError) return Promise.reject(error);
      const code = (error as { code?: unknown }).code;
      return Promise.reject(new ContainedError('INTERNAL', `store: notify outbox ${op} failed${typeof code === 'string' ? ` (${code})` : ''}`, { cause: error }));
    }
  };

  const insert = conn.prepare(
    `INSERT OR IGNORE INTO notify_outbox (target, event, event_key, order_key, payload, idempotency_key, status, attempts, next_at, created_at)
     VALUES (@target, @event, @event_key, @order_key, @payload, @idempotency_key, 'pending', 0, @at, @at)`,
  );
  const enqueueAll = conn.transaction((rows: readonly OutboxInput[]) => {
    let added = 0;
    for (const r of rows) {
      added += insert.run({ target: r.target, event: r.event, event_key: r.eventKey, order_key: r.orderKey, payload: JSON.stringify(r.payload), idempotency_key: newIdempotencyKey(), at: r.at }).changes;
    }
    return added;
  });
  // The head of each (target, order key): no older pending row of the same slot.
  const dueSql = conn.prepare(
    `SELECT * FROM notify_outbox o WHERE o.status = 'pending' AND o.next_at <= ?
       AND NOT EXISTS (SELECT 1 FROM notify_outbox p WHERE p.target = o.target AND p.order_key = o.order_key AND p.status = 'pending' AND p.id < o.id)
     ORDER BY o.next_at, o.id LIMIT ?`,
  );

  return {
    enqueue: (rows) => guard('enqueue', () => enqueueAll.immediate(rows)),
    due: (now, limit, busy, targets) =>
      guard('due', () => {
        // Ask for a few more than wanted: some may be in flight.
        const extra = (busy?.ids.size ?? 0) + (busy?.orders.size ?? 0);
        const rows = (dueSql.all(now, limit + extra) as Record<string, unknown>[]).map(rowToOutbox);
        return rows.filter((r) => !busy?.ids.has(r.id) && !busy?.orders.has(orderSlot(r.target, r.orderKey)) && (targets === undefined || targets.includes(r.target))).slice(0, limit);
      }),
    delivered: (id, at, status) =>
      guard('delivered', () => {
        conn
          .prepare("UPDATE notify_outbox SET status = 'delivered', attempts = attempts + 1, delivered_at = ?, last_attempt_at = ?, last_status = ? WHERE id = ? AND status = 'pending'")
          .run(at, at, status ?? null, id);
      }),
    failed: (id, at, error, options) =>
      guard('failed', () => {
        conn
          .prepare(`UPDATE notify_outbox SET status = ?, attempts = attempts + 1, next_at = ?, last_attempt_at = ?, last_error = ?, last_status = ? WHERE id = ? AND status = 'pending'`)
          .run(options.retryAt === undefined ? 'failed' : 'pending', options.retryAt ?? at, at, error.slice(0, 1000), options.status ?? null, id);
      }),
    dropOtherTargets: (targets, at) =>
      guard('dropOtherTargets', () => {
        const marks = targets.map(() => '?').join(', ');
        const sql = `UPDATE notify_outbox SET status = 'dropped', last_attempt_at = ?, last_error = 'the target is no longer in the host config' WHERE status = 'pending'${targets.length > 0 ? ` AND target NOT IN (${marks})` : ''}`;
        return conn.prepare(sql).run(at, ...targets).changes;
      }),
    has: (target, eventKey) => guard('has', () => conn.prepare('SELECT 1 FROM notify_outbox WHERE target = ? AND event_key = ?').get(target, eventKey) !== undefined),
    openRequests: (targets) =>
      guard('openRequests', () => {
        if (targets.length === 0) return [];
        const marks = targets.map(() => '?').join(', ');
        const rows = conn
          .prepare(
            `SELECT o.target AS target, o.order_key AS orderKey FROM notify_outbox o WHERE o.event = 'request.created' AND o.target IN (${marks})
               AND NOT EXISTS (SELECT 1 FROM notify_outbox p WHERE p.target = o.target AND p.order_key = o.order_key AND p.event IN ('request.decided', 'request.expired'))`,
          )
          .all(...targets) as Array<{ target: string; orderKey: string }>;
        return rows;
      }),
    list: (filter = {}) =>
      guard('list', () => {
        const where: string[] = [];
        const params: unknown[] = [];
        if (filter.target !== undefined) {
          where.push('target = ?');
          params.push(filter.target);
        }
        if (filter.status !== undefined) {
          where.push('status = ?');
          params.push(filter.status);
        }
        const limit = Math.max(0, Math.min(10_000, Math.floor(filter.limit ?? 100)));
        const sql = `SELECT * FROM notify_outbox${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ${limit}`;
        return (conn.prepare(sql).all(...params) as Record<string, unknown>[]).map(rowToOutbox);
      }),
    summary: () =>
      guard('summary', () => {
        const rows = conn
          .prepare(
            `SELECT target,
               SUM(status = 'pending') AS pending, SUM(status = 'delivered') AS delivered, SUM(status = 'failed') AS failed, SUM(status = 'dropped') AS dropped,
               SUM(status = 'pending' AND attempts > 0) AS failing, MAX(delivered_at) AS last_delivered_at
             FROM notify_outbox GROUP BY target ORDER BY target`,
          )
          .all() as Array<Record<string, number | string | null>>;
        const lastError = conn.prepare("SELECT last_error, last_attempt_at FROM notify_outbox WHERE target = ? AND last_error IS NOT NULL AND status != 'dropped' ORDER BY last_attempt_at DESC, id DESC LIMIT 1");
        return rows.map((r) => {
          const err = lastError.get(r.target) as { last_error: string; last_attempt_at: number } | undefined;
          const out: OutboxTargetSummary = {
            target: String(r.target),
            pending: Number(r.pending ?? 0),
            delivered: Number(r.delivered ?? 0),
            failed: Number(r.failed ?? 0),
            dropped: Number(r.dropped ?? 0),
            failing: Number(r.failing ?? 0),
          };
          if (r.last_delivered_at !== null) out.lastDeliveredAt = Number(r.last_delivered_at);
          if (err) {
            out.lastError = err.last_error;
            out.lastErrorAt = err.last_attempt_at;
          }
          return out;
        });
      }),
    prune: (before) =>
      guard('prune', () => conn.prepare("DELETE FROM notify_outbox WHERE status != 'pending' AND COALESCE(delivered_at, last_attempt_at, created_at) < ?").run(before).changes),
    close: async () => {
      if (closed) return;
      closed = true;
      conn.close();
    },
  };
}
