/**
 * The host's data model: grants, requests (recommendations and escalations), decisions, runs,
 * operators and their tokens — zod schemas (validated at every boundary: store rows, CLI, the
 * operator channel) and the inferred types. One vocabulary: README.md, Concepts.
 */
import { z } from 'zod';
import { budgetSchema } from '../capabilities/sdk/budget.js';
import { approvalSignatureSchema } from './approvals/challenge.js';

export const ROLES = ['viewer', 'approver', 'admin', 'platform'] as const;
export const roleSchema = z.enum(ROLES);
export type Role = z.infer<typeof roleSchema>;

export const MODES = ['contained', 'executed', 'assisted'] as const;
export const modeSchema = z.enum(MODES);
export type Mode = z.infer<typeof modeSchema>;

/** Who is acting: an image digest, or an image name signed by a given key. */
export const subjectSchema = z.union([
  z.strictObject({ digest: z.string().regex(/^sha256:[0-9a-f]{64}$/) }),
  z.strictObject({ name: z.string().min(1).max(200), signer: z.string().min(1).max(200) }),
]);
export type Subject = z.infer<typeof subjectSchema>;

/** A run's identity as far as grants are concerned. */
export interface RunSubject {
  digest: string | undefined;
  name: string | undefined;
  /** Key ids of trusted signers of the image. */
  signers: readonly string[];
}

export const grantSchema = z.strictObject({
  id: z.string().min(1),
  subject: subjectSchema,
  /** Name of a capability instance configured on the host (`caps.<capability>` for the agent). */
  capability: z.string().min(1),
  /** Optional narrower scope (attenuates the host instance). */
  scope: z.record(z.string(), z.unknown()).optional(),
  /** Methods covered; `['*']` for all. */
  methods: z.array(z.string().min(1)).min(1),
  mode: modeSchema,
  /** Distinct approvals needed for assisted calls (destructive/financial: at least 2). */
  approvals: z.number().int().min(1).max(5),
  /** Epoch ms; absent: no expiry. */
  expiresAt: z.number().int().optional(),
  budgets: z.record(z.string(), budgetSchema).optional(),
  /** How long a request under this grant waits for a human; default 15 min. */
  requestTimeoutMs: z.number().int().positive().optional(),
  /** Executed mode: fraction of actions queued for after-the-fact review (default 1). */
  reviewSample: z.number().min(0).max(1).optional(),
  /**
   * Every approval of a request raised under this grant carries a passkey assertion, whatever the
   * host's `approvals.signed` policy (host/approvals/signed.ts). Stored only when true; a narrowing keeps it.
   */
  signedApprovals: z.boolean().optional(),
  /**
   * Every run of this grant's subject is staged (docs/changesets.md), even one not submitted
   * staged. Stored only when true; a narrowing keeps it (and may add it).
   */
  stageRuns: z.boolean().optional(),
  createdBy: z.string().min(1),
  reason: z.string().min(1),
  createdAt: z.number().int(),
  /** Set when an admin overrode the risk policy (e.g. a destructive method granted `contained`). */
  forced: z.strictObject({ by: z.string(), reason: z.string().min(1) }).optional(),
  revokedAt: z.number().int().optional(),
  revokedBy: z.string().optional(),
  revokeReason: z.string().optional(),
});
export type Grant = z.infer<typeof grantSchema>;

/** A grant change, as operators hear it (written only by the grant service, host/grant-service.ts). */
export type GrantEvent = { type: 'grant'; change: 'added' | 'revoked'; grant: Grant };

/** `changeset`: every effect of a staged run, reviewed and committed as one (host/changesets/). */
export const REQUEST_KINDS = ['recommendation', 'escalation', 'changeset'] as const;
export type RequestKind = (typeof REQUEST_KINDS)[number];

/** `cancelled`: withdrawn because the run that made it was cancelled (never performed). */
export const REQUEST_STATUSES = ['pending', 'approved', 'denied', 'expired', 'run_gone', 'cancelled'] as const;
export type RequestStatus = (typeof REQUEST_STATUSES)[number];

/** How far an escalation's approval reaches. */
export const GRANT_SPANS = ['once', 'run', 'always'] as const;
export const grantSpanSchema = z.enum(GRANT_SPANS);
export type GrantSpan = z.infer<typeof grantSpanSchema>;

export const approvalSchema = z.strictObject({
  operator: z.string(),
  at: z.number().int(),
  /** Edited arguments (approve-with-edits), already re-validated: a new proposal. */
  args: z.unknown().optional(),
  /**
   * `sha256:<hex>` of the canonical JSON of the arguments this approval approved (host/gate/proposal.ts):
   * only approvals of the current proposal's digest count. Absent on approvals stored before it existed (they never count).
   */
  argsDigest: z.string().optional(),
  span: grantSpanSchema.optional(),
  note: z.string().optional(),
  /** A passkey (WebAuthn) assertion over (request id, argsDigest, verdict), verified before the approval counted (host/approvals/). */
  signature: approvalSignatureSchema.optional(),
});
export type Approval = z.infer<typeof approvalSchema>;

export const riskSchema = z.strictObject({
  readOnly: z.boolean(),
  destructive: z.boolean(),
  reversible: z.boolean(),
  openWorld: z.boolean(),
  financial: z.boolean(),
});

export const requestSchema = z.strictObject({
  id: z.string(),
  kind: z.enum(REQUEST_KINDS),
  runId: z.string(),
  /** The host whose run opened it (RunRecord.hostId): that host's gate waits on it; absent before several hosts existed. */
  hostId: z.string().optional(),
  subject: z.string().optional(),
  /** Host capability instance name (binding). */
  capability: z.string(),
  /** Definition name behind it (fs, outbox…). */
  definition: z.string().optional(),
  /** For `requestCapability` escalations: the method is absent and `scope` is what was asked. */
  method: z.string().optional(),
  args: z.unknown().optional(),
  requestedScope: z.unknown().optional(),
  reason: z.string().optional(),
  risk: riskSchema.optional(),
  /** Why it needs a human, in words ("assisted mode", "outside every grant: …"). */
  why: z.string(),
  grantId: z.string().optional(),
  /** Its approvals must be passkey-signed whatever the host policy: the grant it was raised under asked for it (`Grant.signedApprovals`). */
  signedApprovals: z.boolean().optional(),
  approvalsRequired: z.number().int().min(1),
  approvals: z.array(approvalSchema),
  status: z.enum(REQUEST_STATUSES),
  createdAt: z.number().int(),
  expiresAt: z.number().int(),
  resolvedAt: z.number().int().optional(),
  resolvedBy: z.array(z.string()).optional(),
  denyReason: z.string().optional(),
  /** Recommendations are performed by the host after approval, exactly once. */
  execution: z
    .strictObject({
      state: z.enum(['claimed', 'done']),
      at: z.number().int(),
      ok: z.boolean().optional(),
      result: z.unknown().optional(),
      error: z.strictObject({ code: z.string(), message: z.string() }).optional(),
      /** A committed changeset whose local effects were undone (ChangesetService.undo): when, by whom, how many resources restored. */
      undone: z.strictObject({ at: z.number().int(), by: z.string(), restored: z.number().int() }).optional(),
    })
    .optional(),
});
export type RequestRecord = z.infer<typeof requestSchema>;

export const RUN_STATUSES = ['queued', 'running', 'ok', 'error', 'cancelled'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

/** A run as stored and as shown to operators (validated on every read from the store). */
export const runRecordSchema = z.strictObject({
  id: z.string().min(1),
  subject: z.string().optional(),
  imageName: z.string().optional(),
  status: z.enum(RUN_STATUSES),
  input: z.unknown(),
  createdAt: z.number().int(),
  endedAt: z.number().int().optional(),
  outcome: z.unknown().optional(),
  submittedBy: z.string().optional(),
  /** The sensitive sources the run read (the data-flow rule, docs/data-flow.md), first read first; absent: none. */
  sensitiveSources: z.array(z.string()).optional(),
  hostId: z.string().optional(),
});

export interface RunRecord {
  id: string;
  subject: string | undefined;
  imageName: string | undefined;
  status: RunStatus;
  input: unknown;
  createdAt: number;
  endedAt?: number;
  /** The RunOutcome as JSON once finished. */
  outcome?: unknown;
  submittedBy?: string;
  /** The sensitive sources the run read (the data-flow rule), first read first; absent: none. */
  sensitiveSources?: string[];
  /**
   * The host (its `HostRecord.id`, one per host process start) whose sandbox runs it: a run lives
   * and ends on the host that started it. Absent in records written before several hosts existed.
   */
  hostId?: string;
}

export interface TokenRecord {
  id: string;
  name: string;
  role: Role;
  /** sha256 of the token, hex; the token itself is shown once and never stored. */
  hash: string;
  createdAt: number;
  createdBy: string;
  revokedAt?: number;
}

/** An authenticated operator (or platform client). */
export interface Operator {
  tokenId: string;
  name: string;
  role: Role;
}

export const ROLE_RANK: Readonly<Record<Role, number>> = { platform: 0, viewer: 1, approver: 2, admin: 3 };

/** A role with its article, for messages: "a viewer", "an approver", "an admin", "a platform client". */
export function roleWithArticle(role: Role): string {
  return role === 'platform' ? 'a platform client' : role === 'approver' || role === 'admin' ? `an ${role}` : `a ${role}`;
}

/** viewer < approver < admin; `platform` is for the HTTP API only. */
export function roleAtLeast(role: Role, needed: Exclude<Role, 'platform'>): boolean {
  return role !== 'platform' && ROLE_RANK[role] >= ROLE_RANK[needed];
}
