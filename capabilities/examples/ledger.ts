/**
 * A small, real refunds ledger on SQLite, backing the `payments` example capability. It works on
 * the shop's own `orders` table (`id`, `status`, `amount_cents`, `refunded_cents`, as in
 * sandbox-images/examples/refund-desk/data/seed.sql) and records each refund in a `refunds` table it
 * creates on first use, so a refund is visible to anyone reading the orders afterwards.
 *
 * Defends the money invariant: a refund never takes `refunded_cents` past `amount_cents`. The check
 * and the update are one conditional UPDATE inside an immediate transaction, so two concurrent
 * refunds cannot both pass it; amounts are bound parameters, never SQL text.
 *
 * Fails with `CAPABILITY_FAILED` and `data.reason`: `unknown-order`, `over-refund`, or `ledger`
 * (the database itself failed). The file is opened per call and closed after; nothing is held.
 * better-sqlite3 is loaded on the first call: the registry (and so the package entry) imports this
 * module, and most programs never touch the ledger.
 */
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import type Database from 'better-sqlite3';
import { ContainedError } from '../../runtime/errors.js';

export interface OrderView {
  orderId: string;
  status: string;
  currency: string;
  amountCents: number;
  refundedCents: number;
  refundableCents: number;
}

export interface RefundReceipt {
  refundId: string;
  orderId: string;
  amountCents: number;
  currency: string;
  /** Total refunded on the order after this refund. */
  refundedCents: number;
  refundableCents: number;
  createdAt: string;
}

/** What the payments capability needs from a ledger; a platform plugs its own in here. */
export interface PaymentsLedger {
  /** ISO 4217 code of every amount in this ledger. */
  readonly currency: string;
  lookup(orderId: string): OrderView | undefined | Promise<OrderView | undefined>;
  refund(request: { orderId: string; amountCents: number; reason: string }): RefundReceipt | Promise<RefundReceipt>;
}

export interface SqliteLedgerOptions {
  /** SQLite file holding the `orders` table; it must exist. */
  file: string;
  currency: string;
  /** Clock for `createdAt` (epoch ms). */
  now?: () => number;
  /** Milliseconds to wait for another writer's lock. Default 5000. */
  busyTimeoutMs?: number;
}

interface OrderRow {
  id: string;
  status: string;
  amount_cents: number;
  refunded_cents: number;
}

const requireCjs = createRequire(import.meta.url);

export function createSqliteLedger(options: SqliteLedgerOptions): PaymentsLedger {
  const now = options.now ?? Date.now;
  const withDb = <T>(f: (db: Database.Database) => T): T => {
    let db: Database.Database;
    try {
      const Sqlite = requireCjs('better-sqlite3') as typeof Database;
      db = new Sqlite(options.file, { fileMustExist: true, timeout: options.busyTimeoutMs ?? 5000 });
    } catch (error) {
      throw new ContainedError('CAPABILITY_FAILED', 'payments: the ledger is unavailable', { data: { reason: 'ledger' }, cause: error });
    }
    try {
      return f(db);
    } catch (error) {
      if (error instanceof ContainedError) throw error;
      throw new ContainedError('CAPABILITY_FAILED', 'payments: the ledger failed', { data: { reason: 'ledger' }, cause: error });
    } finally {
      db.close();
    }
  };
  const view = (row: OrderRow): OrderView => ({
    orderId: row.id,
    status: row.status,
    currency: options.currency,
    amountCents: row.amount_cents,
    refundedCents: row.refunded_cents,
    refundableCents: Math.max(0, row.amount_cents - row.refunded_cents),
  });
  const select = 'SELECT id, status, amount_cents, refunded_cents FROM orders WHERE id = ?';

  return {
    currency: options.currency,
    lookup: (orderId) =>
      withDb((db) => {
        const row = db.prepare<[string], OrderRow>(select).get(orderId);
        return row ? view(row) : undefined;
      }),
    refund: ({ orderId, amountCents, reason }) =>
      withDb((db) => {
        db.exec(`CREATE TABLE IF NOT EXISTS refunds (
          id TEXT PRIMARY KEY, order_id TEXT NOT NULL, amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
          currency TEXT NOT NULL, reason TEXT NOT NULL, created_at TEXT NOT NULL)`);
        const refund = db.transaction((): RefundReceipt => {
          const row = db.prepare<[string], OrderRow>(select).get(orderId);
          if (!row) throw new ContainedError('CAPABILITY_FAILED', `payments: no order ${orderId}`, { data: { reason: 'unknown-order' } });
          const changed = db
            .prepare('UPDATE orders SET refunded_cents = refunded_cents + ? WHERE id = ? AND refunded_cents + ? <= amount_cents')
            .run(amountCents, orderId, amountCents).changes;
          if (changed !== 1) {
            throw new ContainedError('CAPABILITY_FAILED', `payments: order ${orderId} has only ${view(row).refundableCents} cents left to refund`, {
              data: { reason: 'over-refund', refundableCents: view(row).refundableCents },
            });
          }
          const refundId = `rf_${randomUUID()}`;
          const createdAt = new Date(now()).toISOString();
          db.prepare('INSERT INTO refunds (id, order_id, amount_cents, currency, reason, created_at) VALUES (?, ?, ?, ?, ?, ?)').run(
            refundId, orderId, amountCents, options.currency, reason, createdAt,
          );
          const after = view(db.prepare<[string], OrderRow>(select).get(orderId)!);
          return { refundId, orderId, amountCents, currency: options.currency, refundedCents: after.refundedCents, refundableCents: after.refundableCents, createdAt };
        });
        return refund.immediate();
      }),
  };
}
