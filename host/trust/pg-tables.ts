/**
 * The trust tables in the fleet's PostgreSQL database (tables.ts; schema v3 in
 * host/store/pg/schema.ts): every host's ledger events, reviews and proposals in one place, so
 * promotion evidence is what the whole fleet saw and a review queued by one host is marked
 * through any. Reads go through the audit log's pool; writes run on the audit batch's connection,
 * inside its transaction (each step in a savepoint, host/audit/log.ts), so they commit with their
 * records on the one chain.
 *
 * The SQL is SQLite's (ledger.ts, reviews.ts, proposals.ts) in PostgreSQL's dialect, and rows are
 * validated by the same mappers. A figure read costs one round trip (the grouped counts in one
 * UNION ALL). Races between hosts are settled by the database: unique refs (ON CONFLICT), the
 * partial unique index on open proposals, and `WHERE status = …` compare-and-set updates.
 *
 * Fails: STORE_UNAVAILABLE when the server cannot be reached, INTERNAL for any other driver error
 * or a row that does not match its schema; NOT_FOUND / ALREADY_RESOLVED as tables.ts says.
 */
import type pg from 'pg';
import { ContainedError } from '../../runtime/errors.js';
import { unavailableReason } from '../store/pg-store.js';
import { type ActionKey, fill, statsFrom } from './ledger.js';
import type { Proposal } from './model.js';
import { proposalFromRow, type ProposalRow } from './proposals.js';
import { reviewFromRow, type ReviewRow } from './reviews.js';
import type { TrustTables } from './tables.js';

const KEY = 'subject = $1 AND capability = $2 AND method = $3';
const keyParams = (key: ActionKey): string[] => [key.subject, key.capability, key.method];

function typed(error: unknown, what: string): ContainedError {
  if (error instanceof ContainedError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const reason = unavailableReason(error);
  if (reason !== undefined) return new ContainedError('STORE_UNAVAILABLE', `trust: cannot ${what}: the PostgreSQL store cannot be reached (${message})`, { cause: error, data: { reason } });
  return new ContainedError('INTERNAL', `trust: cannot ${what}: ${message}`, { cause: error });
}

const STATS_SQL = `
SELECT 'lifetime' AS part, kind AS v, COUNT(*) AS n FROM trust_events WHERE ${KEY} GROUP BY kind
UNION ALL SELECT 'lastDays', kind, COUNT(*) FROM trust_events WHERE ${KEY} AND at >= $4 GROUP BY kind
UNION ALL SELECT 'lastEvents', kind, COUNT(*) FROM (SELECT kind FROM trust_events WHERE ${KEY} ORDER BY id DESC LIMIT $5) t GROUP BY kind
UNION ALL SELECT 'recent', kind, COUNT(*) FROM (SELECT kind FROM trust_events WHERE ${KEY} AND kind IN ('approved', 'edited', 'denied') ORDER BY id DESC LIMIT $6) t GROUP BY kind
UNION ALL SELECT 'window', kind, COUNT(*) FROM (SELECT kind FROM trust_events WHERE ${KEY} AND kind IN ('ok', 'error', 'critical') ORDER BY id DESC LIMIT $7) t GROUP BY kind
UNION ALL SELECT 'shadow', kind, COUNT(*) FROM trust_events WHERE ${KEY} AND shadow = 1 GROUP BY kind
UNION ALL (SELECT 'risk', risk, 0 FROM trust_events WHERE ${KEY} AND risk IS NOT NULL ORDER BY id DESC LIMIT 1)
UNION ALL (SELECT 'grant', grant_id, MAX(id) FROM trust_events WHERE ${KEY} AND grant_id IS NOT NULL GROUP BY grant_id ORDER BY MAX(id) DESC LIMIT 20)`;

export function pgTrustTables(pool: pg.Pool): TrustTables {
  const query = async <R extends pg.QueryResultRow>(what: string, sql: string, params: unknown[] = []): Promise<R[]> => {
    try {
      return (await pool.query<R>(sql, params)).rows;
    } catch (error) {
      throw typed(error, what);
    }
  };
  /** A write step: run on the batch's connection; driver errors typed, ours passed on. */
  const step = <T>(what: string, f: (client: pg.PoolClient) => Promise<T>) => ({
    pg: async (client: pg.PoolClient): Promise<T> => {
      try {
        return await f(client);
      } catch (error) {
        throw typed(error, what);
      }
    },
  });
  const review = async (id: string, client?: pg.PoolClient) => {
    const rows = client ? (await client.query<ReviewRow>('SELECT * FROM reviews WHERE id = $1', [id])).rows : await query<ReviewRow>('read a review', 'SELECT * FROM reviews WHERE id = $1', [id]);
    return rows[0] ? reviewFromRow(rows[0]) : undefined;
  };
  const proposal = async (id: string, client?: pg.PoolClient): Promise<Proposal | undefined> => {
    const rows = client ? (await client.query<ProposalRow>('SELECT * FROM promotions WHERE id = $1', [id])).rows : await query<ProposalRow>('read a proposal', 'SELECT * FROM promotions WHERE id = $1', [id]);
    return rows[0] ? proposalFromRow(rows[0]) : undefined;
  };
  const insertEvent = 'INSERT INTO trust_events (ref, subject, capability, method, kind, at, grant_id, shadow, risk) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)';

  return {
    kind: 'pg',
    async has(ref) {
      return (await query('read the ledger', 'SELECT 1 FROM trust_events WHERE ref = $1', [ref])).length > 0;
    },
    async stats(key, now, config) {
      const rows = await query<{ part: string; v: string | null; n: number }>('read the ledger', STATS_SQL, [
        ...keyParams(key),
        now - config.windowDays * 86_400_000,
        config.windowCount,
        config.minAssistedReviews,
        config.demoteWindow,
      ]);
      const part = (name: string) => fill(rows.filter((r) => r.part === name).map((r) => [r.v ?? '', r.n]));
      const grants = rows.filter((r) => r.part === 'grant' && r.v !== null).sort((a, b) => b.n - a.n);
      return statsFrom(key, {
        lifetime: part('lifetime'),
        lastDays: part('lastDays'),
        lastEvents: part('lastEvents'),
        recent: part('recent'),
        window: part('window'),
        shadow: part('shadow'),
        riskText: rows.find((r) => r.part === 'risk')?.v,
        grantIds: grants.map((r) => r.v as string),
      });
    },
    async assistedCount(key) {
      const rows = await query<{ n: number }>('read the ledger', `SELECT COUNT(*) AS n FROM trust_events WHERE ${KEY} AND kind IN ('approved', 'edited', 'denied')`, keyParams(key));
      return rows[0]?.n ?? 0;
    },
    async actions(subject) {
      return subject === undefined
        ? query<ActionKey>('read the ledger', 'SELECT DISTINCT subject, capability, method FROM trust_events ORDER BY subject, capability, method')
        : query<ActionKey>('read the ledger', 'SELECT DISTINCT subject, capability, method FROM trust_events WHERE subject = $1 ORDER BY capability, method', [subject]);
    },
    recommended: (ref, key, at, grantId, risk, shadow) =>
      step('record a recommendation', async (c) => {
        await c.query(`${insertEvent} ON CONFLICT (ref) DO NOTHING`, [ref, ...keyParams(key), 'recommended', at, grantId ?? null, shadow ? 1 : 0, risk ? JSON.stringify(risk) : null]);
      }),
    verdict: (ref, key, kind, at, grantId, risk) =>
      step('record a verdict', async (c) => {
        const r = await c.query(`${insertEvent} ON CONFLICT (ref) DO UPDATE SET kind = EXCLUDED.kind, at = EXCLUDED.at WHERE trust_events.kind = 'recommended'`, [
          ref, ...keyParams(key), kind, at, grantId ?? null, null, risk ? JSON.stringify(risk) : null,
        ]);
        return r.rowCount === 1;
      }),
    executed: (ref, key, at, grantId, risk) =>
      step('record an executed action', async (c) => {
        await c.query(`${insertEvent} ON CONFLICT (ref) DO NOTHING`, [ref, ...keyParams(key), 'executed', at, grantId, null, risk ? JSON.stringify(risk) : null]);
      }),
    reviewed: (ref, verdict, at) =>
      step('record a review verdict', async (c) => {
        await c.query("UPDATE trust_events SET kind = $1, at = $2 WHERE ref = $3 AND kind = 'executed'", [verdict, at, ref]);
      }),

    review: (id) => review(id),
    async reviews(filter = {}) {
      const where: string[] = [];
      const params: unknown[] = [];
      const status = filter.status ?? 'pending';
      if (status !== 'all') {
        params.push(status);
        where.push(`status = $${params.length}`);
      }
      if (filter.subject !== undefined) {
        params.push(filter.subject);
        where.push(`subject = $${params.length}`);
      }
      const limit = filter.limit ?? 100;
      if (!Number.isSafeInteger(limit) || limit < 1) throw new ContainedError('INVALID_ARGUMENT', `limit must be a whole number >= 1 (got ${String(limit)})`);
      params.push(limit);
      const rows = await query<ReviewRow>('list reviews', `SELECT * FROM reviews${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id LIMIT $${params.length}`, params);
      return rows.map(reviewFromRow);
    },
    async criticalReviews() {
      return (await query<ReviewRow>('list reviews', "SELECT * FROM reviews WHERE status = 'critical' ORDER BY marked_at DESC")).map(reviewFromRow);
    },
    queueReview: (r) =>
      step('queue a review', async (c) => {
        await c.query('INSERT INTO reviews (id, call_id, run_id, subject, capability, method, grant_id, action, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)', [
          r.id, r.callId, r.runId, r.subject, r.capability, r.method, r.grantId, JSON.stringify(r.action), r.status, r.createdAt,
        ]);
      }),
    markReview: (id, verdict, by, note, at) =>
      step('mark a review', async (c) => {
        const changed = (await c.query("UPDATE reviews SET status = $1, marked_at = $2, marked_by = $3, note = $4 WHERE id = $5 AND status = 'pending'", [verdict, at, by, note ?? null, id])).rowCount;
        const found = await review(id, c);
        if (!found) throw new ContainedError('NOT_FOUND', `no review ${id}`);
        if (changed !== 1) throw new ContainedError('ALREADY_RESOLVED', `review ${id} is already marked ${found.status}${found.markedBy ? ` by ${found.markedBy}` : ''}`);
        return found;
      }),

    proposal: (id) => proposal(id),
    async openProposal(key) {
      const rows = await query<ProposalRow>('read proposals', `SELECT * FROM promotions WHERE ${KEY} AND status = 'proposed'`, keyParams(key));
      return rows[0] ? proposalFromRow(rows[0]) : undefined;
    },
    async lastProposalAt(key, excludeId) {
      const rows = await query<{ m: number | null }>('read proposals', `SELECT MAX(events_at_proposal) AS m FROM promotions WHERE ${KEY} AND id IS DISTINCT FROM $4::text`, [...keyParams(key), excludeId ?? null]);
      return rows[0]?.m ?? undefined;
    },
    async proposals(status) {
      const rows = status === undefined
        ? await query<ProposalRow>('list proposals', 'SELECT * FROM promotions ORDER BY created_at, id')
        : await query<ProposalRow>('list proposals', 'SELECT * FROM promotions WHERE status = $1 ORDER BY created_at, id', [status]);
      return rows.map(proposalFromRow);
    },
    insertProposal: (p, assistedCount) =>
      step('store a proposal', async (c) => {
        const r = await c.query(
          `INSERT INTO promotions (id, subject, capability, method, grant_id, status, evidence, created_at, events_at_proposal)
           VALUES ($1, $2, $3, $4, $5, 'proposed', $6, $7, $8) ON CONFLICT DO NOTHING`,
          [p.id, p.subject, p.capability, p.method, p.grantId, JSON.stringify(p.evidence), p.createdAt, assistedCount],
        );
        return r.rowCount === 1;
      }),
    decideProposal: (id, status, by, reason, at, newGrantId) =>
      step('decide a proposal', async (c) => {
        const changed = (await c.query("UPDATE promotions SET status = $1, decided_at = $2, decided_by = $3, decide_reason = $4, new_grant_id = $5 WHERE id = $6 AND status = 'proposed'", [
          status, at, by, reason, newGrantId ?? null, id,
        ])).rowCount;
        const found = await proposal(id, c);
        if (!found) throw new ContainedError('NOT_FOUND', `no promotion proposal ${id}`);
        if (changed !== 1) throw new ContainedError('ALREADY_RESOLVED', `promotion proposal ${id} is already ${found.status}`);
        return found;
      }),
    close: () => Promise.resolve(),
  };
}
