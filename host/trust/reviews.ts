/**
 * The review queue: executed actions waiting for an operator's after-the-fact verdict (`ok`,
 * `error`, `critical`), in the `reviews` table. Synchronous, on the audit connection, so each
 * change runs inside its audit append (`within`) and the two commit together.
 *
 * Sampling is deterministic: an executed action under a grant with `reviewSample` f is queued when
 * the first 48 bits of sha256(callId), read as a fraction of 2^48, are below f — about f of all
 * actions, the same answer for the same call every time (so a replay after a crash agrees).
 *
 * Marking is compare-and-set: the first verdict wins; a second one fails ALREADY_RESOLVED, an
 * unknown id NOT_FOUND. Rows are validated with the zod schema when read (a hand-edited row fails
 * INTERNAL, never reaches an operator half-typed).
 */
import type Database from 'better-sqlite3';
import { ContainedError } from '../../runtime/errors.js';
import { sha256Hex } from '../audit/canonical.js';
import { type Review, type ReviewStatus, reviewSchema, type ReviewVerdict } from './model.js';

/** Whether this call is in the sample of a grant reviewing `fraction` of its actions. */
export function sampled(callId: string, fraction: number | undefined): boolean {
  const f = fraction ?? 1;
  if (f >= 1) return true;
  if (f <= 0) return false;
  return Number.parseInt(sha256Hex(callId).slice(0, 12), 16) / 2 ** 48 < f;
}

export interface ReviewRow {
  id: string;
  call_id: string;
  run_id: string;
  subject: string;
  capability: string;
  method: string;
  grant_id: string;
  action: string;
  status: string;
  created_at: number;
  marked_at: number | null;
  marked_by: string | null;
  note: string | null;
}

export function reviewFromRow(row: ReviewRow): Review {
  let action: unknown;
  try {
    action = JSON.parse(row.action) as unknown;
  } catch {
    action = undefined;
  }
  const parsed = reviewSchema.safeParse({
    id: row.id,
    callId: row.call_id,
    runId: row.run_id,
    subject: row.subject,
    capability: row.capability,
    method: row.method,
    grantId: row.grant_id,
    action,
    status: row.status,
    createdAt: row.created_at,
    ...(row.marked_at === null ? {} : { markedAt: row.marked_at }),
    ...(row.marked_by === null ? {} : { markedBy: row.marked_by }),
    ...(row.note === null ? {} : { note: row.note }),
  });
  if (!parsed.success) throw new ContainedError('INTERNAL', `reviews: row ${row.id} does not match its schema`);
  return parsed.data;
}

export interface ReviewFilter {
  /** Default `pending`; `all` for every status. */
  status?: ReviewStatus | 'all';
  subject?: string;
  limit?: number;
}

export class ReviewQueue {
  constructor(private readonly db: Database.Database) {}

  insert(review: Review): void {
    this.db
      .prepare('INSERT INTO reviews (id, call_id, run_id, subject, capability, method, grant_id, action, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(review.id, review.callId, review.runId, review.subject, review.capability, review.method, review.grantId, JSON.stringify(review.action), review.status, review.createdAt);
  }

  get(id: string): Review | undefined {
    const row = this.db.prepare('SELECT * FROM reviews WHERE id = ?').get(id) as ReviewRow | undefined;
    return row ? reviewFromRow(row) : undefined;
  }

  /** Oldest first (the queue order). */
  list(filter: ReviewFilter = {}): Review[] {
    const where: string[] = [];
    const params: unknown[] = [];
    const status = filter.status ?? 'pending';
    if (status !== 'all') {
      where.push('status = ?');
      params.push(status);
    }
    if (filter.subject !== undefined) {
      where.push('subject = ?');
      params.push(filter.subject);
    }
    const limit = filter.limit ?? 100;
    if (!Number.isSafeInteger(limit) || limit < 1) throw new ContainedError('INVALID_ARGUMENT', `limit must be a whole number >= 1 (got ${String(limit)})`);
    params.push(limit);
    const rows = this.db.prepare(`SELECT * FROM reviews${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id LIMIT ?`).all(...params) as ReviewRow[];
    return rows.map(reviewFromRow);
  }

  /** First verdict wins. Throws NOT_FOUND or ALREADY_RESOLVED. */
  mark(id: string, verdict: ReviewVerdict, by: string, note: string | undefined, at: number): Review {
    const changed = this.db
      .prepare("UPDATE reviews SET status = ?, marked_at = ?, marked_by = ?, note = ? WHERE id = ? AND status = 'pending'")
      .run(verdict, at, by, note ?? null, id).changes;
    const review = this.get(id);
    if (!review) throw new ContainedError('NOT_FOUND', `no review ${id}`);
    if (changed !== 1) throw new ContainedError('ALREADY_RESOLVED', `review ${id} is already marked ${review.status}${review.markedBy ? ` by ${review.markedBy}` : ''}`);
    return review;
  }

  /** Critical reviews, newest first (start-up re-checks that their actions were demoted). */
  critical(): Review[] {
    return (this.db.prepare("SELECT * FROM reviews WHERE status = 'critical' ORDER BY marked_at DESC").all() as ReviewRow[]).map(reviewFromRow);
  }
}
