/**
 * What the operator channel (WebSocket server, console) needs from the host. The channel owns
 * sockets, authentication, framing and limits; every decision and every policy check lives behind
 * this interface in the host, so the console and the terminal client are clients of one policy.
 */
import type { ProposalView } from '../gate/proposal.js';
import type { Grant, GrantSpan, Operator, RequestRecord, RunRecord } from '../model.js';
import type { Demotion, Proposal, Review, ReviewStatus, ReviewVerdict, TrustEvent } from '../trust/model.js';

/** Events fanned out to every connected operator allowed to see them. */
export type RequestEvent =
  | { type: 'created'; request: RequestView }
  | { type: 'updated'; request: RequestView }
  | { type: 'resolved'; request: RequestView }
  | { type: 'grant'; change: 'added' | 'revoked'; grant: Grant }
  | { type: 'run'; run: RunRecord }
  | TrustEvent;

/** A request as operators see it (the record, its current proposal, trust figures when available). */
export interface RequestView extends RequestRecord {
  /** What runs if it is approved now, its digest, who proposed it (absent: the agent) and whose approvals count. */
  proposal: ProposalView;
  /** The agent's record for this action (filled by the trust ledger when it exists). */
  trust?: Record<string, unknown>;
  /** The run that made it is no longer live (ended, cancelled, or from before a restart). */
  runEnded?: boolean;
}

export type DecideInput =
  | {
      requestId: string;
      verdict: 'approve';
      /** Edited arguments: a new proposal, approved by this approval. */
      args?: unknown;
      /** The proposal the approver saw (`proposal.argsDigest`); absent: what the agent asked. STALE_REQUEST when it moved since. */
      argsDigest?: string;
      span?: GrantSpan;
      note?: string;
    }
  | { requestId: string; verdict: 'deny'; reason: string };

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
}

/** Authenticates a bearer token (constant-time comparison of hashes inside). */
export interface TokenVerifier {
  verify(token: string): Promise<Operator | undefined>;
}
