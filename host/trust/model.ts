/**
 * The trust ledger's records as operators see them — reviews of executed actions, promotion
 * proposals, demotions — as strict zod schemas (the operator protocol validates with them) and
 * their types. Vocabulary from README.md, Concepts: review, ledger, promotion / demotion, phase.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { GrantEvent } from '../model.js';

export const REVIEW_VERDICTS = ['ok', 'error', 'critical'] as const;
export const reviewVerdictSchema = z.enum(REVIEW_VERDICTS);
export type ReviewVerdict = z.infer<typeof reviewVerdictSchema>;

export const REVIEW_STATUSES = ['pending', ...REVIEW_VERDICTS] as const;
export const reviewStatusSchema = z.enum(REVIEW_STATUSES);
export type ReviewStatus = z.infer<typeof reviewStatusSchema>;

/** One executed action waiting for (or given) an after-the-fact verdict. */
export const reviewSchema = z.strictObject({
  id: z.string(),
  callId: z.string(),
  runId: z.string(),
  subject: z.string(),
  capability: z.string(),
  method: z.string(),
  grantId: z.string(),
  /** What was done: arguments (or their sha256), the agent's reason, and the outcome's shape or error code. */
  action: z.record(z.string(), z.unknown()),
  status: reviewStatusSchema,
  createdAt: z.number().int(),
  markedAt: z.number().int().optional(),
  markedBy: z.string().optional(),
  note: z.string().optional(),
});
export type Review = z.infer<typeof reviewSchema>;

export const PROPOSAL_STATUSES = ['proposed', 'accepted', 'declined', 'withdrawn'] as const;
export const proposalStatusSchema = z.enum(PROPOSAL_STATUSES);
export type ProposalStatus = z.infer<typeof proposalStatusSchema>;

/** A proposal to move one action of one subject from assisted to executed, on evidence. */
export const proposalSchema = z.strictObject({
  id: z.string(),
  subject: z.string(),
  capability: z.string(),
  method: z.string(),
  /** The assisted grant the evidence was gathered under; the executed grant copies its subject and scope. */
  grantId: z.string(),
  status: proposalStatusSchema,
  /** The ledger figures that met the bar, as they were when proposed. */
  evidence: z.record(z.string(), z.unknown()),
  createdAt: z.number().int(),
  decidedAt: z.number().int().optional(),
  decidedBy: z.string().optional(),
  reason: z.string().optional(),
  /** The executed grant an acceptance wrote. */
  newGrantId: z.string().optional(),
});
export type Proposal = z.infer<typeof proposalSchema>;

/** An action moved back to assisted. */
export const demotionSchema = z.strictObject({
  subject: z.string(),
  capability: z.string(),
  method: z.string(),
  trigger: z.enum(['critical', 'error-rate']),
  reason: z.string(),
  reviewId: z.string().optional(),
  /** Executed grants revoked (a grant covering other methods is re-issued for those). */
  revokedGrants: z.array(z.string()),
  /** Grants written: the re-issued executed grants and, if none covered it, the assisted grant. */
  addedGrants: z.array(z.string()),
  by: z.string(),
  at: z.number().int(),
});
export type Demotion = z.infer<typeof demotionSchema>;

/** Trust events fanned out to operators (also part of the operator backend's RequestEvent). */
export type TrustEvent =
  | { type: 'review'; change: 'queued' | 'marked'; review: Review }
  | { type: 'promotion'; change: 'proposed' | 'accepted' | 'declined' | 'withdrawn'; proposal: Proposal }
  | { type: 'demotion'; demotion: Demotion };

/** What the trust service tells operators: its own events and the grant changes it makes. */
export type TrustOutEvent = TrustEvent | GrantEvent;

/** Ledger row kinds (trust_events.kind). */
export const ASSISTED_VERDICTS = ['approved', 'edited', 'denied'] as const;
export type AssistedVerdict = (typeof ASSISTED_VERDICTS)[number];

/** `rev_…`, `prm_…`: 16 hex characters of randomness. */
export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(8).toString('hex')}`;
}
