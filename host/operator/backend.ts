/**
 * What the operator channel (WebSocket server, console) needs from the host. The channel owns
 * sockets, authentication, framing and limits; every decision and every policy check lives behind
 * this interface in the host, so the console and the terminal client are clients of one policy.
 */
import type { DecideInput, RequestEvent, RequestView } from '../gate/events.js';
import type { Grant, Operator, RunRecord } from '../model.js';
import type { Demotion, Proposal, Review, ReviewStatus, ReviewVerdict } from '../trust/model.js';

export type { DecideInput, RequestEvent, RequestView } from '../gate/events.js';
export type { TokenVerifier } from '../tokens.js';

/** Thrown as ContainedError with codes NOT_FOUND, ALREADY_RESOLVED, INVALID_ARGUMENT, FORBIDDEN (role), DUPLICATE_APPROVER, STALE_REQUEST (decide). */
export interface OperatorBackend {
  /** Pending requests this operator may see. */
  pending(operator: Operator): Promise<RequestView[]>;
  decide(operator: Operator, input: DecideInput): Promise<RequestView>;
  listGrants(operator: Operator): Promise<Grant[]>;
  revokeGrant(operator: Operator, grantId: string, reason: string): Promise<Grant>;
  listRuns(operator: Operator, limit?: number): Promise<RunRecord[]>;
  cancelRun(operator: Operator, runId: string): Promise<RunRecord>;
  /** Subscribe to events; returns the unsubscribe function. */
  subscribe(listener: (event: RequestEvent) => void): () => void;
  // After-the-fact review and promotions (host/trust); absent on a host without a ledger.
  /** Executed actions to review (approver+); default the pending ones, oldest first. */
  listReviews?(operator: Operator, filter: { status?: ReviewStatus | 'all'; limit?: number }): Promise<Review[]>;
  /** Mark an executed action ok / error / critical (approver+); a critical verdict demotes it at once. */
  markReview?(operator: Operator, input: { reviewId: string; verdict: ReviewVerdict; note?: string }): Promise<{ review: Review; demotion?: Demotion }>;
  /** Promotion proposals (viewer+). */
  listPromotions?(operator: Operator, status?: Proposal['status']): Promise<Proposal[]>;
  /** Accept (writes the executed grant) or decline a proposal (admin). */
  decidePromotion?(operator: Operator, input: { proposalId: string; verdict: 'accept' | 'decline'; reason: string }): Promise<Proposal>;
  /** Undo a committed changeset's local effects (approver+); CHANGESET_CONFLICT when anything changed since. Absent: NOT_FOUND. */
  undoChangeset?(operator: Operator, requestId: string): Promise<{ requestId: string; restored: number }>;
}
