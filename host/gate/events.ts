/**
 * What operators see of the host: a request as a view (the record, its current proposal, trust
 * figures, whether its run has ended), the input of a decision, and the one stream of events the
 * host fans out — request changes, grant changes, run changes and trust changes. Types only.
 *
 * Declared here, in the gate layer that builds the views and emits the request events, so that
 * everything above it (audit and trust, runs, the operator backend, the adapters) imports them
 * downwards; host/operator/backend.ts re-exports them for the operator channel.
 */
import type { AssertionJSON } from '../approvals/challenge.js';
import type { GrantEvent, GrantSpan, RequestRecord, RunRecord } from '../model.js';
import type { TrustEvent } from '../trust/model.js';
import type { ProposalView } from './proposal.js';

/** Events fanned out to every connected operator allowed to see them. */
export type RequestEvent =
  | { type: 'created'; request: RequestView }
  | { type: 'updated'; request: RequestView }
  | { type: 'resolved'; request: RequestView }
  | GrantEvent
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
      /** A passkey assertion over (requestId, the digest this approves, 'approve'): required where the host asks for signed approvals. */
      assertion?: AssertionJSON;
    }
  | { requestId: string; verdict: 'deny'; reason: string };
