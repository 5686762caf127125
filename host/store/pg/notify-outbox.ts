/**
 * The notification outbox of a fleet, in its PostgreSQL database (table `notify_outbox`, schema v3):
 * the same interface and guarantees as the SQLite outbox (../notify-outbox.ts) — one row per
 * (target, event key), a fixed idempotency key per row, order per (target, order key) — for every
 * host at once. Any live host delivers a row; the rows a dead host left are sent by another.
 *
 * One host at a time per row: `due` claims the rows it returns (`claimed_by` = this outbox object,
 * `claimed_until` = now + the lease) in one statement that skips rows another host is claiming
 * (`FOR UPDATE SKIP LOCKED`) and rows whose claim is live. A claimed row is still pending, so it
 * holds back the later rows of its (target, order key) on every host: a `request.decided` queued by
 * host B is not sent before the `request.created` host A queued (order is by row id: the order the
 * rows were committed in). `delivered` and `failed` apply only while this object holds the claim;
 * a lease that ran out (its host died or stalled) makes the row due again for any host, which sends
 * it again with the same idempotency key (at least once, as on one host).
 *
 * A host claims only rows of targets it has configured, so hosts with different notify configs do
 * not take each other's rows; a fleet is expected to share one notify config. For the same reason
 * `dropOtherTargets` drops nothing here: a target this host does not know may be another host's.
 *
 * Fails with STORE_UNAVAILABLE when the server cannot be reached (the worker retries at its next
 * poll; an enqueue that fails is logged by the notifier), INTERNAL for anything else.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';
import { ContainedError } from '../../../runtime/errors.js';
import { type NotifyOutbox, newIdempotencyKey, type OutboxTargetSummary, rowToOutbox } from '../notify-outbox.js';
import { unavailableReason } from '../pg-store.js';

/** How long a claim holds a row (ms): longer than any delivery attempt (a target's timeout is at most 120 s). */
export const DEFAULT_LEASE_MS = 150_000;

const INT8_OID = 20;
const NUMERIC_OID = 1700;

export interface PgNotifyOutboxOptions {
  logger?: Logger | undefined;
  /** Default DEFAULT_LEASE_MS. */
  leaseMs?: number;
  connectTimeoutMs?: number;
}

export function openPgNotifyOutbox(url: string, options: PgNotifyOutboxOptions = {}): NotifyOutbox {
  const pool = new pg.Pool({
    connectionString: url,
    max: 3,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    query_timeout: 30_000,
    idleTimeoutMillis: 30_000,
    application_name: 'contained-notify',
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === INT8_OID || oid === NUMERIC_OID ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  });
  // An idle connection the server closes must not crash the host.
  pool.on('error', (error) => options.logger?.warn({ err: error.message }, 'notify: a PostgreSQL connection failed'));
  const me = `ntfo_${randomBytes(9).toString('hex')}`;
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  let closed = false;

  const typed = (op: string, error: unknown): ContainedError => {
    if (error instanceof ContainedError) return error;
    const reason = unavailableReason(error);
    const message = error instanceof Error ? error.message : String(error);
    if (reason !== undefined) return new ContainedError('STORE_UNAVAILABLE', `store: notify outbox ${op}: PostgreSQL unavailable: ${message}`, { cause: error, data: { reason } });
    return new ContainedError('INTERNAL', `store: notify outbox ${op} failed: ${message}`, { cause: error });
  };
  const query = async (op: string, sql: string, params: unknown[] = []): Promise<pg.QueryResult> => {
    if (closed) throw new ContainedError('INTERNAL', `store: notify outbox ${op} after close`);
    try {
      return await pool.query(sql, params);
    } catch (error) {
      throw typed(op, error);
    }
  };

  return {
    async enqueue(rows) {
      if (rows.length === 0) return 0;
      if (closed) throw new ContainedError('INTERNAL', 'store: notify outbox enqueue after close');
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (error) {
        throw typed('enqueue', error);
      }
      let broken = false;
      try {
        await client.query('BEGIN');
        let added = 0;
        for (const r of rows) {
          const result = await client.query(
            `INSERT INTO notify_outbox (target, event, event_key, order_key, payload, idempotency_key, status, attempts, next_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7) ON CONFLICT (target, event_key) DO NOTHING`,
            [r.target, r.event, r.eventKey, r.orderKey, JSON.stringify(r.payload), newIdempotencyKey(), r.at],
          );
          added += result.rowCount ?? 0;
        }
        await client.query('COMMIT');
        return added;
      } catch (error) {
        broken = unavailableReason(error) !== undefined;
        await client.query('ROLLBACK').catch(() => undefined);
        throw typed('enqueue', error);
      } finally {
        client.release(broken);
      }
    },

    async due(now, limit, busy, targets) {
      if (limit <= 0 || (targets !== undefined && targets.length === 0)) return [];
      // Claim in one statement: rows another host is claiming right now are skipped, not waited for.
      const result = await query(
        'due',
        `WITH candidates AS (
           SELECT o.id FROM notify_outbox o
            WHERE o.status = 'pending' AND o.next_at <= $1
              AND (o.claimed_until IS NULL OR o.claimed_until <= $1)
              AND NOT (o.id = ANY($4::bigint[]))
              AND ($6::text[] IS NULL OR o.target = ANY($6::text[]))
              AND NOT EXISTS (SELECT 1 FROM notify_outbox p WHERE p.target = o.target AND p.order_key = o.order_key AND p.status = 'pending' AND p.id < o.id)
            ORDER BY o.next_at, o.id
            LIMIT $2
            FOR UPDATE SKIP LOCKED
         )
         UPDATE notify_outbox SET claimed_by = $3, claimed_until = $1 + $5
           FROM candidates WHERE notify_outbox.id = candidates.id
         RETURNING notify_outbox.*`,
        [now, limit, me, [...(busy?.ids ?? [])], leaseMs, targets === undefined ? null : [...targets]],
      );
      return (result.rows as Array<Record<string, unknown>>)
        .map((row) => {
          const { claimed_by: _by, claimed_until: _until, ...rest } = row;
          return rowToOutbox(rest);
        })
        .sort((a, b) => a.nextAt - b.nextAt || a.id - b.id);
    },

    async delivered(id, at, status) {
      await query(
        'delivered',
        `UPDATE notify_outbox SET status = 'delivered', attempts = attempts + 1, delivered_at = $1, last_attempt_at = $1, last_status = $2, claimed_by = NULL, claimed_until = NULL
          WHERE id = $3 AND status = 'pending' AND claimed_by = $4`,
        [at, status ?? null, id, me],
      );
    },

    async failed(id, at, error, options) {
      await query(
        'failed',
        `UPDATE notify_outbox SET status = $1, attempts = attempts + 1, next_at = $2, last_attempt_at = $3, last_error = $4, last_status = $5, claimed_by = NULL, claimed_until = NULL
          WHERE id = $6 AND status = 'pending' AND claimed_by = $7`,
        [options.retryAt === undefined ? 'failed' : 'pending', options.retryAt ?? at, at, error.slice(0, 1000), options.status ?? null, id, me],
      );
    },

    // Shared by hosts that may know other targets: nothing is dropped (see the top comment).
    dropOtherTargets: async () => 0,

    async has(target, eventKey) {
      return ((await query('has', 'SELECT 1 FROM notify_outbox WHERE target = $1 AND event_key = $2', [target, eventKey])).rowCount ?? 0) > 0;
    },

    async openRequests(targets) {
      if (targets.length === 0) return [];
      const result = await query(
        'openRequests',
        `SELECT o.target AS target, o.order_key AS "orderKey" FROM notify_outbox o WHERE o.event = 'request.created' AND o.target = ANY($1::text[])
           AND NOT EXISTS (SELECT 1 FROM notify_outbox p WHERE p.target = o.target AND p.order_key = o.order_key AND p.event IN ('request.decided', 'request.expired'))`,
        [[...targets]],
      );
      return result.rows as Array<{ target: string; orderKey: string }>;
    },

    async list(filter = {}) {
      const where: string[] = [];
      const params: unknown[] = [];
      if (filter.target !== undefined) {
        params.push(filter.target);
        where.push(`target = $${params.length}`);
      }
      if (filter.status !== undefined) {
        params.push(filter.status);
        where.push(`status = $${params.length}`);
      }
      const limit = Math.max(0, Math.min(10_000, Math.floor(filter.limit ?? 100)));
      const sql = `SELECT id, target, event, event_key, order_key, payload, idempotency_key, status, attempts, next_at, created_at, delivered_at, last_attempt_at, last_error, last_status
                     FROM notify_outbox${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ${limit}`;
      return ((await query('list', sql, params)).rows as Array<Record<string, unknown>>).map(rowToOutbox);
    },

    async summary() {
      const rows = (
        await query(
          'summary',
          `SELECT target,
             COUNT(*) FILTER (WHERE status = 'pending') AS pending, COUNT(*) FILTER (WHERE status = 'delivered') AS delivered,
             COUNT(*) FILTER (WHERE status = 'failed') AS failed, COUNT(*) FILTER (WHERE status = 'dropped') AS dropped,
             COUNT(*) FILTER (WHERE status = 'pending' AND attempts > 0) AS failing, MAX(delivered_at) AS last_delivered_at,
             (SELECT l.last_error FROM notify_outbox l WHERE l.target = o.target AND l.last_error IS NOT NULL AND l.status != 'dropped' ORDER BY l.last_attempt_at DESC, l.id DESC LIMIT 1) AS last_error,
             (SELECT l.last_attempt_at FROM notify_outbox l WHERE l.target = o.target AND l.last_error IS NOT NULL AND l.status != 'dropped' ORDER BY l.last_attempt_at DESC, l.id DESC LIMIT 1) AS last_error_at
           FROM notify_outbox o GROUP BY target ORDER BY target`,
        )
      ).rows as Array<Record<string, number | string | null>>;
      return rows.map((r) => {
        const out: OutboxTargetSummary = {
          target: String(r.target),
          pending: Number(r.pending ?? 0),
          delivered: Number(r.delivered ?? 0),
          failed: Number(r.failed ?? 0),
          dropped: Number(r.dropped ?? 0),
          failing: Number(r.failing ?? 0),
        };
        if (r.last_delivered_at !== null) out.lastDeliveredAt = Number(r.last_delivered_at);
        if (r.last_error !== null && r.last_error !== undefined) {
          out.lastError = String(r.last_error);
          out.lastErrorAt = Number(r.last_error_at);
        }
        return out;
      });
    },

    async prune(before) {
      return (await query('prune', "DELETE FROM notify_outbox WHERE status != 'pending' AND COALESCE(delivered_at, last_attempt_at, created_at) < $1", [before])).rowCount ?? 0;
    },

    async close() {
      if (closed) return;
      closed = true;
      await pool.end().catch(() => undefined);
    },
  };
}
