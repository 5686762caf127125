/**
 * Where the trust service keeps its state — the ledger (`trust_events`), the review queue
 * (`reviews`) and promotion proposals (`promotions`) — as one interface with two implementations:
 * SQLite (sqlite-tables.ts, the host store file) and PostgreSQL (pg-tables.ts, the fleet's shared
 * database). The trust service, the report and the CLI see only this; which one is open follows the
 * store (`openTrustTables`).
 *
 * Reads are async. Writes are `Within` steps (host/audit/log.ts) that the caller hands to the audit
 * log with their record: they run in the audit batch's transaction, on the same database as the
 * chain, so a ledger row, a review verdict or a proposal's decision and its audit record commit or
 * vanish together on either store. `chain` runs several steps as one.
 *
 * Idempotent where a replay can happen (refs are unique: request id, call id); compare-and-set where
 * two decisions can race (a review's first verdict, a proposal's first decision, one open proposal
 * per action). Fails: NOT_FOUND / ALREADY_RESOLVED from the compare-and-set steps, INVALID_ARGUMENT
 * for a bad list limit, INTERNAL for a row that does not match its schema.
 */
import type { RiskAnnotations } from '../../capabilities/sdk/risk.js';
import type { Within } from '../store/within.js';
import type { ActionKey, ActionStats } from './ledger.js';
import type { Proposal, ProposalStatus, Review, ReviewVerdict } from './model.js';
import type { TrustConfig } from './policy.js';
import type { ReviewFilter } from './reviews.js';

export type AssistedKind = 'approved' | 'edited' | 'denied' | 'expired';

export interface TrustTables {
  readonly kind: 'sqlite' | 'pg';

  // The ledger -------------------------------------------------------------------------------
  /** Whether the ledger has an event for `ref` (a request or call id). */
  has(ref: string): Promise<boolean>;
  stats(key: ActionKey, now: number, config: TrustConfig): Promise<ActionStats>;
  /** Assisted verdicts so far (lifetime). */
  assistedCount(key: ActionKey): Promise<number>;
  /** Every action in the ledger (optionally of one subject), sorted. */
  actions(subject?: string): Promise<ActionKey[]>;
  /** A recommendation was made; `shadow`: the policy would have allowed it on its own. Idempotent. */
  recommended(ref: string, key: ActionKey, at: number, grantId: string | undefined, risk: RiskAnnotations | undefined, shadow: boolean): Within<void>;
  /** A recommendation's final verdict (inserted when its creation was missed); whether it changed anything. */
  verdict(ref: string, key: ActionKey, kind: AssistedKind, at: number, grantId: string | undefined, risk: RiskAnnotations | undefined): Within<boolean>;
  /** An action performed in executed mode. Idempotent. */
  executed(ref: string, key: ActionKey, at: number, grantId: string, risk: RiskAnnotations | undefined): Within<void>;
  /** The review verdict of an executed action. */
  reviewed(ref: string, verdict: ReviewVerdict, at: number): Within<void>;

  // The review queue -------------------------------------------------------------------------
  review(id: string): Promise<Review | undefined>;
  /** Oldest first (the queue order). */
  reviews(filter?: ReviewFilter): Promise<Review[]>;
  /** Critical reviews, newest first. */
  criticalReviews(): Promise<Review[]>;
  queueReview(review: Review): Within<void>;
  /** First verdict wins: NOT_FOUND or ALREADY_RESOLVED otherwise. */
  markReview(id: string, verdict: ReviewVerdict, by: string, note: string | undefined, at: number): Within<Review>;

  // Promotion proposals ----------------------------------------------------------------------
  proposal(id: string): Promise<Proposal | undefined>;
  openProposal(key: ActionKey): Promise<Proposal | undefined>;
  /** Assisted verdicts counted when the latest proposal for this action was made (any status). */
  lastProposalAt(key: ActionKey, excludeId?: string): Promise<number | undefined>;
  proposals(status?: ProposalStatus): Promise<Proposal[]>;
  /** Insert an open proposal; false when one is already open for the action. */
  insertProposal(proposal: Proposal, assistedCount: number): Within<boolean>;
  /** First decision wins: NOT_FOUND or ALREADY_RESOLVED otherwise. */
  decideProposal(id: string, status: Exclude<ProposalStatus, 'proposed'>, by: string, reason: string, at: number, newGrantId?: string): Within<Proposal>;

  /** Release what the tables opened themselves (not the audit log's connections). */
  close(): Promise<void>;
}

export { chain, mapStep } from '../store/within.js';
