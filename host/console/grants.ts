/**
 * Grant changes the console makes that the operator channel has no message for: add a grant, and
 * narrow one. Both are the host's grant service (host/grant-service.ts): the grant rules
 * (host/grants.ts `validateNewGrant`: risk policy, methods, approvals, scope) exactly as
 * `contained grant add` applies them, narrowing that never widens (host/grant-narrowing.ts), the
 * store, and an event to every connected operator. Admins only — the channel's rule for grant
 * messages. The console offers no risk override (`forced`): that stays with the CLI's
 * `--force-reason`.
 */
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import type { GrantService } from '../grant-service.js';
import type { NewGrantInput } from '../grants.js';
import type { Grant, Operator } from '../model.js';
import { modeSchema, roleAtLeast, roleWithArticle, subjectSchema } from '../model.js';

const reasonSchema = z.string().trim().min(1).max(2000);
const scopeSchema = z.record(z.string(), z.unknown());

export const addGrantSchema = z.strictObject({
  subject: subjectSchema,
  capability: z.string().min(1).max(64),
  methods: z.array(z.string().min(1).max(64)).min(1).max(64),
  mode: modeSchema,
  approvals: z.number().int().min(1).max(5).optional(),
  scope: scopeSchema.optional(),
  expiresAt: z.number().int().positive().optional(),
  /** Every approval under the grant passkey-signed, whatever the host policy. */
  signedApprovals: z.boolean().optional(),
  /** Every run of the subject staged (one changeset review), even one not submitted staged. */
  stageRuns: z.boolean().optional(),
  reason: reasonSchema,
});

export const narrowGrantSchema = z.strictObject({
  methods: z.array(z.string().min(1).max(64)).min(1).max(64).optional(),
  mode: modeSchema.optional(),
  approvals: z.number().int().min(1).max(5).optional(),
  scope: scopeSchema.optional(),
  expiresAt: z.number().int().positive().optional(),
  /** Every approval under the grant passkey-signed, whatever the host policy. */
  signedApprovals: z.boolean().optional(),
  /** Every run of the subject staged (one changeset review), even one not submitted staged. */
  stageRuns: z.boolean().optional(),
  reason: reasonSchema,
});

/** What the grant routes use: the host's grant service (the only writer of grants). */
export interface GrantDeps {
  grants: Pick<GrantService, 'add' | 'narrow'>;
}

function requireAdmin(operator: Operator, what: string): void {
  if (!roleAtLeast(operator.role, 'admin')) throw new ContainedError('FORBIDDEN', `${what} needs the admin role; ${operator.name} is ${roleWithArticle(operator.role)}`);
}

export async function addGrant(deps: GrantDeps, operator: Operator, body: z.output<typeof addGrantSchema>): Promise<{ grant: Grant; notes: string[] }> {
  requireAdmin(operator, 'adding a grant');
  const input: NewGrantInput = { subject: body.subject, capability: body.capability, methods: body.methods, mode: body.mode, createdBy: operator.name, reason: body.reason };
  if (body.approvals !== undefined) input.approvals = body.approvals;
  if (body.scope !== undefined) input.scope = body.scope;
  if (body.expiresAt !== undefined) input.expiresAt = body.expiresAt;
  if (body.signedApprovals === true) input.signedApprovals = true;
  if (body.stageRuns === true) input.stageRuns = true;
  return deps.grants.add(input, operator);
}

export async function narrowGrant(deps: GrantDeps, operator: Operator, grantId: string, body: z.output<typeof narrowGrantSchema>): Promise<{ grant: Grant; revoked: Grant; notes: string[] }> {
  requireAdmin(operator, 'narrowing a grant');
  const { reason, methods, mode, approvals, scope, expiresAt, signedApprovals, stageRuns } = body;
  return deps.grants.narrow(
    grantId,
    {
      reason,
      ...(methods ? { methods } : {}),
      ...(mode ? { mode } : {}),
      ...(approvals !== undefined ? { approvals } : {}),
      ...(scope ? { scope } : {}),
      ...(expiresAt !== undefined ? { expiresAt } : {}),
      ...(signedApprovals !== undefined ? { signedApprovals } : {}),
      ...(stageRuns !== undefined ? { stageRuns } : {}),
    },
    operator,
  );
}
