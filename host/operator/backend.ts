/**
 * What the operator channel (WebSocket server, console) needs from the host. The channel owns
 * sockets, authentication, framing and limits; every decision and every policy check lives behind
 * this interface in the host, so the console and the terminal client are clients of one policy.
 */
import type { Grant, GrantSpan, Operator, RequestRecord, RunRecord } from '../model.js';

/** Events fanned out to every connected operator allowed to see them. */
export type RequestEvent =
  | { type: 'created'; request: RequestView }
  | { type: 'updated'; request: RequestView }
  | { type: 'resolved'; request: RequestView }
  | { type: 'grant'; change: 'added' | 'revoked'; grant: Grant }
  | { type: 'run'; run: RunRecord };

/** A request as operators see it (the record plus trust figures when available). */
export interface RequestView extends RequestRecord {
  /** The agent's record for this action (filled by the trust ledger when it exists). */
  trust?: Record<string, unknown>;
}

export type DecideInput =
  | { requestId: string; verdict: 'approve'; args?: unknown; span?: GrantSpan; note?: string }
  | { requestId: string; verdict: 'deny'; reason: string };

/** Thrown as ContainedError with codes NOT_FOUND, ALREADY_RESOLVED, INVALID_ARGUMENT, CAPABILITY_DENIED (role). */
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
}

/** Authenticates a bearer token (constant-time comparison of hashes inside). */
export interface TokenVerifier {
  verify(token: string): Promise<Operator | undefined>;
}
