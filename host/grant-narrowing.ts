/**
 * Narrowing a grant: the replacement an admin asks for, checked never to widen the old one. The
 * new grant may only drop methods, move toward more oversight (contained → executed → assisted),
 * require more approvals, require passkey-signed approvals (never stop requiring them), stage every run of the subject
 * (never stop staging them) and expire
 * earlier; its scope is the capability's own intersection of the old scope and the asked one, so
 * whatever was asked, it allows no more than before. Budgets,
 * request timeout and review sample carry over (the review sample only while `executed`).
 *
 * Pure: returns the new grant's input for the grant rules (grants.ts `validateNewGrant`), which
 * still apply in full. Fails: ALREADY_RESOLVED for a revoked or expired grant, NOT_NARROWER for
 * methods, mode, approvals, signed approvals or expiry wider than the old grant's (`data.field` names which),
 * INVALID_SCOPE for a scope that does not validate for the capability.
 */
import type { CapabilityInstance } from '../capabilities/sdk/index.js';
import { ContainedError } from '../runtime/errors.js';
import { lessSupervised } from './grant-choice.js';
import { grantInstance } from './grant-scope.js';
import type { NewGrantInput } from './grants.js';
import type { Grant, Mode } from './model.js';

/** What a narrowing may change; anything left out stays as it was. */
export interface GrantNarrowing {
  methods?: string[];
  mode?: Mode;
  approvals?: number;
  /** Grant scope fields, read in the host instance's frame and intersected with the old scope. */
  scope?: Record<string, unknown>;
  /** Epoch ms. */
  expiresAt?: number;
  /** Require passkey-signed approvals; a grant that requires them keeps requiring them (false there: NOT_NARROWER). */
  signedApprovals?: boolean;
  /** Stage every run of the subject; a grant that stages them keeps staging them (false there: NOT_NARROWER). */
  stageRuns?: boolean;
  reason: string;
}

export interface NarrowingContext {
  /** The host capability instance the grant names. */
  instance: CapabilityInstance;
  /** Who narrows (the new grant's author). */
  by: string;
  /** Epoch ms. */
  now: number;
}

/** The input of the grant that replaces `old`, narrowed as asked; throws when it would widen. */
export function narrowedGrantInput(old: Grant, change: GrantNarrowing, ctx: NarrowingContext): NewGrantInput {
  if (old.revokedAt !== undefined || (old.expiresAt !== undefined && old.expiresAt <= ctx.now)) throw new ContainedError('ALREADY_RESOLVED', `grant ${old.id} is no longer active`);

  const methods = change.methods ?? old.methods;
  if (!old.methods.includes('*')) {
    const wider = methods.filter((m) => !old.methods.includes(m));
    if (wider.length > 0) throw new ContainedError('NOT_NARROWER', `narrowing cannot add methods: ${wider.join(', ')} ${wider.length > 1 ? 'are' : 'is'} not in the grant`, { data: { field: 'methods' } });
  }
  const mode = change.mode ?? old.mode;
  if (lessSupervised(mode, old.mode)) throw new ContainedError('NOT_NARROWER', `narrowing cannot move from "${old.mode}" to the less supervised "${mode}"`, { data: { field: 'mode' } });
  const approvals = change.approvals ?? old.approvals;
  if (approvals < old.approvals) throw new ContainedError('NOT_NARROWER', `narrowing cannot lower the approvals from ${old.approvals} to ${approvals}`, { data: { field: 'approvals' } });
  const expiresAt = change.expiresAt ?? old.expiresAt;
  if (old.expiresAt !== undefined && (expiresAt === undefined || expiresAt > old.expiresAt)) throw new ContainedError('NOT_NARROWER', 'narrowing cannot extend the expiry', { data: { field: 'expiresAt' } });

  if (change.signedApprovals !== undefined && typeof change.signedApprovals !== 'boolean') throw new ContainedError('INVALID_ARGUMENT', 'signedApprovals is true or false');
  const signedApprovals = change.signedApprovals ?? old.signedApprovals === true;
  if (old.signedApprovals === true && !signedApprovals) throw new ContainedError('NOT_NARROWER', 'narrowing cannot drop the signed approvals this grant requires', { data: { field: 'signedApprovals' } });

  if (change.stageRuns !== undefined && typeof change.stageRuns !== 'boolean') throw new ContainedError('INVALID_ARGUMENT', 'stageRuns is true or false');
  const stageRuns = change.stageRuns ?? old.stageRuns === true;
  if (old.stageRuns === true && !stageRuns) throw new ContainedError('NOT_NARROWER', "narrowing cannot stop staging this grant's subject's runs", { data: { field: 'stageRuns' } });

  let scope = old.scope;
  if (change.scope !== undefined) {
    // The capability's own intersection: whatever was asked, the result allows no more than before.
    // Both scopes are grant scopes (the fields they change, in the host instance's frame).
    const base = grantInstance(ctx.instance, old);
    scope = JSON.parse(JSON.stringify(base.restrict(change.scope, {}, { exact: false }).scope)) as Record<string, unknown>;
  }

  const input: NewGrantInput = { subject: old.subject, capability: old.capability, methods, mode, approvals, createdBy: ctx.by, reason: `${change.reason} (narrowed from ${old.id})` };
  if (scope !== undefined) input.scope = scope;
  if (expiresAt !== undefined) input.expiresAt = expiresAt;
  if (signedApprovals) input.signedApprovals = true;
  if (stageRuns) input.stageRuns = true;
  for (const key of ['budgets', 'requestTimeoutMs', 'reviewSample'] as const) {
    if (old[key] !== undefined) (input as Record<string, unknown>)[key] = old[key];
  }
  if (input.reviewSample !== undefined && mode !== 'executed') delete input.reviewSample;
  if (input.budgets) input.budgets = Object.fromEntries(Object.entries(input.budgets).filter(([m]) => methods.includes(m) || methods.includes('*')));
  return input;
}
