/**
 * Promotion proposals in the `promotions` table: at most one open (`proposed`) per action (a
 * partial unique index), decided exactly once (compare-and-set from `proposed`). Synchronous, on
 * the audit connection, so a proposal and its decision each commit with their audit record.
 *
 * Fails: NOT_FOUND for an unknown id, ALREADY_RESOLVED for a proposal no longer open; a row that
 * does not match the schema is INTERNAL.
 */
import type Database from 'better-sqlite3';
import { ContainedError } from '../../runtime/errors.js';
import type { ActionKey } from './ledger.js';
import { type Proposal, proposalSchema, type ProposalStatus } from './model.js';

export interface ProposalRow {
  id: string;
  subject: string;
  capability: string;
  method: string;
  grant_id: string;
  status: string;
  evidence: string;
  created_at: number;
  decided_at: number | null;
  decided_by: string | null;
  decide_reason: string | null;
  new_grant_id: string | null;
  events_at_proposal: number;
}

export function proposalFromRow(row: ProposalRow): Proposal {
  let evidence: unknown;
  try {
    evidence = JSON.parse(row.evidence) as unknown;
  } catch {
    evidence = undefined;
  }
  const parsed = proposalSchema.safeParse({
    id: row.id,
    subject: row.subject,
    capability: row.capability,
    method: row.method,
    grantId: row.grant_id,
    status: row.status,
    evidence,
    createdAt: row.created_at,
    ...(row.decided_at === null ? {} : { decidedAt: row.decided_at }),
    ...(row.decided_by === null ? {} : { decidedBy: row.decided_by }),
    ...(row.decide_reason === null ? {} : { reason: row.decide_reason }),
    ...(row.new_grant_id === null ? {} : { newGrantId: row.new_grant_id }),
  });
  if (!parsed.success) throw new ContainedError('INTERNAL', `promotions: row ${row.id} does not match its schema`);
  return parsed.data;
}

export class Proposals {
  constructor(private readonly db: Database.Database) {}

  /** Insert an open proposal; false when one is already open for the action. */
  insert(p: Proposal, assistedCount: number): boolean {
    return (
      this.db
        .prepare(
          `INSERT OR IGNORE INTO promotions (id, subject, capability, method, grant_id, status, evidence, created_at, events_at_proposal)
           VALUES (?, ?, ?, ?, ?, 'proposed', ?, ?, ?)`,
        )
        .run(p.id, p.subject, p.capability, p.method, p.grantId, JSON.stringify(p.evidence), p.createdAt, assistedCount).changes === 1
    );
  }

  get(id: string): Proposal | undefined {
    const row = this.db.prepare('SELECT * FROM promotions WHERE id = ?').get(id) as ProposalRow | undefined;
    return row ? proposalFromRow(row) : undefined;
  }

  open(key: ActionKey): Proposal | undefined {
    const row = this.db.prepare("SELECT * FROM promotions WHERE subject = ? AND capability = ? AND method = ? AND status = 'proposed'").get(key.subject, key.capability, key.method) as ProposalRow | undefined;
    return row ? proposalFromRow(row) : undefined;
  }

  /** Assisted verdicts counted when the latest proposal for this action was made (any status). */
  lastProposalAt(key: ActionKey, excludeId?: string): number | undefined {
    const n = this.db
      .prepare('SELECT MAX(events_at_proposal) FROM promotions WHERE subject = ? AND capability = ? AND method = ? AND id IS NOT ?')
      .pluck()
      .get(key.subject, key.capability, key.method, excludeId ?? null) as number | null;
    return n ?? undefined;
  }

  list(status?: ProposalStatus): Proposal[] {
    const rows = status === undefined
      ? (this.db.prepare('SELECT * FROM promotions ORDER BY created_at, id').all() as ProposalRow[])
      : (this.db.prepare('SELECT * FROM promotions WHERE status = ? ORDER BY created_at, id').all(status) as ProposalRow[]);
    return rows.map(proposalFromRow);
  }

  /** Accepted proposals (start-up re-checks that their grants exist). */
  accepted(): Proposal[] {
    return this.list('accepted');
  }

  /** First decision wins. Throws NOT_FOUND or ALREADY_RESOLVED. */
  decide(id: string, status: Exclude<ProposalStatus, 'proposed'>, by: string, reason: string, at: number, newGrantId?: string): Proposal {
    const changed = this.db
      .prepare("UPDATE promotions SET status = ?, decided_at = ?, decided_by = ?, decide_reason = ?, new_grant_id = ? WHERE id = ? AND status = 'proposed'")
      .run(status, at, by, reason, newGrantId ?? null, id).changes;
    const proposal = this.get(id);
    if (!proposal) throw new ContainedError('NOT_FOUND', `no promotion proposal ${id}`);
    if (changed !== 1) throw new ContainedError('ALREADY_RESOLVED', `promotion proposal ${id} is already ${proposal.status}`);
    return proposal;
  }
}
