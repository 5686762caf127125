/**
 * The operator channel protocol, `contained.operator.v1` (docs/protocol.md): every message in both
 * directions as a zod schema, discriminated by `type`. Client messages carry an `id` that the
 * server's `result` or `error` reply echoes. Schemas are strict: unknown keys fail, so a typo in a
 * field name is an INVALID_ARGUMENT, never a silently ignored option.
 *
 * The server parses client messages with `parseClientMessage`, which never throws: it returns the
 * message or the `error` to send back (with the id echoed whenever one could be read).
 */
import { z } from 'zod';
import { assertionSchema } from '../approvals/challenge.js';
import { ERROR_CODES, type ErrorCode } from '../../runtime/errors.js';
import { ARGS_DIGEST_PATTERN } from '../gate/proposal.js';
import { grantSchema, grantSpanSchema, requestSchema, roleSchema, runRecordSchema } from '../model.js';
import { demotionSchema, proposalSchema, proposalStatusSchema, reviewSchema, reviewStatusSchema, reviewVerdictSchema } from '../trust/model.js';

/** The subprotocol name, and the version every message belongs to. */
export const PROTOCOL = 'contained.operator.v1';

/** Longest accepted client message id (characters). */
export const MAX_ID_LENGTH = 128;
/** Longest accepted reason or note (characters). */
export const MAX_TEXT_LENGTH = 2000;

const idSchema = z.string().min(1).max(MAX_ID_LENGTH);
const refSchema = z.string().min(1).max(200);
const textSchema = z.string().trim().min(1).max(MAX_TEXT_LENGTH);

// ---------------------------------------------------------------------------------------------
// Client → server

export const decideMessageSchema = z
  .strictObject({
    type: z.literal('decide'),
    id: idSchema,
    requestId: refSchema,
    verdict: z.enum(['approve', 'deny']),
    /** Approve with edits: replacement arguments, re-validated by the host against the same schema and scope. A new proposal. */
    args: z.unknown().optional(),
    /**
     * Approve: the `proposal.argsDigest` of the request as the approver saw it (absent: the digest of
     * what the agent asked). Refused STALE_REQUEST when the proposal moved since. With `args`, the
     * proposal the edit was made from.
     */
    argsDigest: z.string().regex(ARGS_DIGEST_PATTERN, 'sha256: and 64 lower-case hex digits (a request view\'s proposal.argsDigest)').optional(),
    /** Escalations: how far the approval reaches (default once). */
    span: grantSpanSchema.optional(),
    /** Approve: an optional note recorded with the approval. */
    note: textSchema.optional(),
    /** Deny: required, shown to the agent in ESCALATION_DENIED. */
    reason: textSchema.optional(),
    /**
     * Approve: a passkey (WebAuthn) assertion whose challenge is derived from (requestId, the digest
     * this approves, "approve") — required where the host asks for signed approvals
     * (SIGNATURE_REQUIRED without it, SIGNATURE_INVALID when it does not verify).
     */
    assertion: assertionSchema.optional(),
  })
  .superRefine((msg, ctx) => {
    if (msg.verdict === 'deny') {
      if (msg.reason === undefined) ctx.addIssue({ code: 'custom', path: ['reason'], message: 'a denial needs a reason' });
      for (const key of ['args', 'argsDigest', 'span', 'note', 'assertion'] as const) {
        if (msg[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: `"${key}" belongs to an approval, not a denial` });
      }
    } else if (msg.reason !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['reason'], message: '"reason" belongs to a denial; use "note" on an approval' });
    }
  });

export const grantsListMessageSchema = z.strictObject({ type: z.literal('grants.list'), id: idSchema });

export const grantsRevokeMessageSchema = z.strictObject({
  type: z.literal('grants.revoke'),
  id: idSchema,
  grantId: refSchema,
  reason: textSchema,
});

export const runsListMessageSchema = z.strictObject({
  type: z.literal('runs.list'),
  id: idSchema,
  /** Most recent runs first; default 50. */
  limit: z.number().int().min(1).max(1000).optional(),
});

export const runsCancelMessageSchema = z.strictObject({ type: z.literal('runs.cancel'), id: idSchema, runId: refSchema });

export const pingMessageSchema = z.strictObject({ type: z.literal('ping'), id: idSchema });

// After-the-fact review and promotions (docs/audit-and-trust.md) --------------------------------

/** Executed actions in the review queue (approver+); default the pending ones, oldest first. */
export const reviewListMessageSchema = z.strictObject({
  type: z.literal('review.list'),
  id: idSchema,
  status: z.union([reviewStatusSchema, z.literal('all')]).optional(),
  limit: z.number().int().min(1).max(1000).optional(),
});

/** A verdict on an executed action (approver+); `error` and `critical` need a note. */
export const reviewMarkMessageSchema = z
  .strictObject({
    type: z.literal('review.mark'),
    id: idSchema,
    reviewId: refSchema,
    verdict: reviewVerdictSchema,
    note: textSchema.optional(),
  })
  .superRefine((msg, ctx) => {
    if (msg.verdict !== 'ok' && msg.note === undefined) ctx.addIssue({ code: 'custom', path: ['note'], message: `an ${msg.verdict} verdict needs a note` });
  });

/** Promotion proposals (viewer+). */
export const promotionListMessageSchema = z.strictObject({ type: z.literal('promotion.list'), id: idSchema, status: proposalStatusSchema.optional() });

/** Accept or decline a promotion proposal (admin). */
export const promotionDecideMessageSchema = z.strictObject({
  type: z.literal('promotion.decide'),
  id: idSchema,
  proposalId: refSchema,
  verdict: z.enum(['accept', 'decline']),
  reason: textSchema,
});

/** Undo a committed changeset's local effects from their before-images (approver+; docs/changesets.md). */
export const changesetUndoMessageSchema = z.strictObject({ type: z.literal('changeset.undo'), id: idSchema, requestId: refSchema });

export const clientMessageSchema = z.discriminatedUnion('type', [
  decideMessageSchema,
  grantsListMessageSchema,
  grantsRevokeMessageSchema,
  runsListMessageSchema,
  runsCancelMessageSchema,
  pingMessageSchema,
  reviewListMessageSchema,
  reviewMarkMessageSchema,
  promotionListMessageSchema,
  promotionDecideMessageSchema,
  changesetUndoMessageSchema,
]);
export type ClientMessage = z.infer<typeof clientMessageSchema>;
export type ClientMessageType = ClientMessage['type'];
export const CLIENT_MESSAGE_TYPES: readonly ClientMessageType[] = clientMessageSchema.options.map((o) => o.shape.type.value);

// ---------------------------------------------------------------------------------------------
// Server → client

/**
 * What runs if a request is approved now (host/gate/proposal.ts): the arguments of the latest edit,
 * else what the agent asked (for `requestCapability`, the scope asked for); their digest, which an
 * approval names; who proposed them by editing (absent: the agent); whose approvals count.
 */
export const argsProposalSchema = z.strictObject({
  args: z.unknown().optional(),
  argsDigest: z.string().regex(ARGS_DIGEST_PATTERN),
  by: z.string().optional(),
  at: z.number().int().optional(),
  approvedBy: z.array(z.string()),
});

/**
 * A request as operators see it: the stored record (`args`: what the agent asked), its current
 * `proposal`, the agent's trust figures when known, and `runEnded` when the run that made it is no
 * longer live (approving then performs the action with no agent waiting for the result).
 */
export const requestViewSchema = requestSchema.extend({
  proposal: argsProposalSchema,
  trust: z.record(z.string(), z.unknown()).optional(),
  runEnded: z.boolean().optional(),
});

/** Runs as operators see them: the stored record (unknown extra fields are dropped, not refused). */
export const runViewSchema = z.object(runRecordSchema.shape);

export const helloMessageSchema = z.strictObject({
  type: z.literal('hello'),
  protocol: z.literal(PROTOCOL),
  operator: z.strictObject({ name: z.string(), role: roleSchema }),
  /** The connection's limits, so a well-behaved client can stay inside them. */
  limits: z.strictObject({
    maxPayloadBytes: z.number().int(),
    messagesPerSecond: z.number(),
    messageBurst: z.number().int(),
    heartbeatMs: z.number().int(),
  }),
});

/** Pending requests at connect time, in one or more pieces; the last has `complete: true`. */
export const snapshotMessageSchema = z.strictObject({
  type: z.literal('snapshot'),
  requests: z.array(requestViewSchema),
  complete: z.boolean(),
});

export const createdMessageSchema = z.strictObject({ type: z.literal('created'), request: requestViewSchema });
export const updatedMessageSchema = z.strictObject({ type: z.literal('updated'), request: requestViewSchema });
export const resolvedMessageSchema = z.strictObject({ type: z.literal('resolved'), request: requestViewSchema });
export const grantEventMessageSchema = z.strictObject({
  type: z.literal('grant'),
  change: z.enum(['added', 'revoked']),
  grant: grantSchema,
});
export const runEventMessageSchema = z.strictObject({ type: z.literal('run'), run: runViewSchema });
/** An executed action entered the review queue, or was marked. */
export const reviewEventMessageSchema = z.strictObject({ type: z.literal('review'), change: z.enum(['queued', 'marked']), review: reviewSchema });
/** A promotion proposal was made, accepted, declined or withdrawn. */
export const promotionEventMessageSchema = z.strictObject({
  type: z.literal('promotion'),
  change: z.enum(['proposed', 'accepted', 'declined', 'withdrawn']),
  proposal: proposalSchema,
});
/** An action was moved back to assisted (a critical review, or the error rate). */
export const demotionEventMessageSchema = z.strictObject({ type: z.literal('demotion'), demotion: demotionSchema });

/** The successful reply to a client message, by the client message's type. */
export const resultPayloadSchemas = {
  decide: z.strictObject({ request: requestViewSchema }),
  'grants.list': z.strictObject({ grants: z.array(grantSchema) }),
  'grants.revoke': z.strictObject({ grant: grantSchema }),
  'runs.list': z.strictObject({ runs: z.array(runViewSchema) }),
  'runs.cancel': z.strictObject({ run: runViewSchema }),
  ping: z.strictObject({ pong: z.literal(true), at: z.number().int() }),
  'review.list': z.strictObject({ reviews: z.array(reviewSchema) }),
  'review.mark': z.strictObject({ review: reviewSchema, demotion: demotionSchema.optional() }),
  'promotion.list': z.strictObject({ proposals: z.array(proposalSchema) }),
  'promotion.decide': z.strictObject({ proposal: proposalSchema }),
  'changeset.undo': z.strictObject({ requestId: z.string(), restored: z.number().int().nonnegative() }),
} as const satisfies Record<ClientMessageType, z.ZodType>;
export type ResultPayload<T extends ClientMessageType> = z.infer<(typeof resultPayloadSchemas)[T]>;

export const resultMessageSchema = z.strictObject({
  type: z.literal('result'),
  id: idSchema,
  /** The client message type this answers. */
  of: z.enum(Object.keys(resultPayloadSchemas) as [ClientMessageType, ...ClientMessageType[]]),
  result: z.union(Object.values(resultPayloadSchemas)),
});

const errorCodeSchema = z.enum(Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]]);

export const errorMessageSchema = z.strictObject({
  type: z.literal('error'),
  /** The id of the client message this answers, when one could be read. */
  id: z.string().optional(),
  code: errorCodeSchema,
  message: z.string(),
  data: z.record(z.string(), z.unknown()).optional(),
});

export const serverMessageSchema = z.discriminatedUnion('type', [
  helloMessageSchema,
  snapshotMessageSchema,
  createdMessageSchema,
  updatedMessageSchema,
  resolvedMessageSchema,
  grantEventMessageSchema,
  runEventMessageSchema,
  reviewEventMessageSchema,
  promotionEventMessageSchema,
  demotionEventMessageSchema,
  resultMessageSchema,
  errorMessageSchema,
]);
export type ServerMessage = z.infer<typeof serverMessageSchema>;
export type HelloMessage = z.infer<typeof helloMessageSchema>;
export type ErrorMessage = z.infer<typeof errorMessageSchema>;
export type ResultMessage = z.infer<typeof resultMessageSchema>;
/** A request view as it travels over the channel (what clients parse; the host builds gate/events.ts `RequestView`). */
export type WireRequestView = z.infer<typeof requestViewSchema>;

// ---------------------------------------------------------------------------------------------
// Parsing client input (never throws)

export type ParsedClientMessage = { ok: true; message: ClientMessage } | { ok: false; error: ErrorMessage };

/** The id of a message that failed validation, if it has a usable one (so the error can echo it). */
export function readId(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const id = (value as { id?: unknown }).id;
  return typeof id === 'string' && id.length > 0 && id.length <= MAX_ID_LENGTH ? id : undefined;
}

export function errorMessage(code: ErrorCode, message: string, id?: string, data?: Record<string, unknown>): ErrorMessage {
  const out: ErrorMessage = { type: 'error', code, message };
  if (id !== undefined) out.id = id;
  if (data !== undefined) out.data = data;
  return out;
}

/** Decode one text frame: JSON, a known `type`, then the schema of that type. */
export function parseClientMessage(text: string): ParsedClientMessage {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, error: errorMessage('INVALID_ARGUMENT', 'message is not valid JSON') };
  }
  const id = readId(value);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, error: errorMessage('INVALID_ARGUMENT', 'message must be a JSON object') };
  }
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string' || !(CLIENT_MESSAGE_TYPES as readonly string[]).includes(type)) {
    const shown = typeof type === 'string' ? JSON.stringify(type.slice(0, 64)) : 'missing';
    return {
      ok: false,
      error: errorMessage('INVALID_ARGUMENT', `unknown message type (${shown}); expected one of ${CLIENT_MESSAGE_TYPES.join(', ')}`, id, {
        path: 'type',
      }),
    };
  }
  const parsed = clientMessageSchema.safeParse(value);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    const path = first?.path.map(String).join('.') ?? '';
    return {
      ok: false,
      error: errorMessage('INVALID_ARGUMENT', `${type}: ${path ? `${path}: ` : ''}${first?.message ?? 'invalid message'}`, id, {
        path,
        issues: parsed.error.issues.slice(0, 10).map((i) => ({ path: i.path.map(String).join('.'), message: i.message })),
      }),
    };
  }
  return { ok: true, message: parsed.data };
}
