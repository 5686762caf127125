/**
 * Grant changes the console makes that the operator channel has no message for: add a grant, and
 * narrow one. Both go through the host's own grant rules (host/grants.ts `buildGrant`: risk policy,
 * methods, approvals, scope), exactly as `contained grant add` does, then the store, then an event
 * to every connected operator. Admins only — the channel's rule for grant messages.
 *
 * Narrowing never widens: the new grant may only drop methods, move toward more oversight
 * (contained → executed → assisted), require more approvals, expire earlier, and its scope is the
 * capability's own intersection of the old scope and the asked one. The new grant is stored first
 * and the old one revoked after, so there is no moment with neither. The console offers no risk
 * override (`forced`): that stays with the CLI's `--force-reason`.
 */
import { z } from 'zod';
import type { CapabilityInstance } from '../../capabilities/sdk/index.js';
import { ContainedError } from '../../runtime/errors.js';
import { buildGrant, grantInstance, grantScopeCheck, type NewGrantInput } from '../grants.js';
import type { Grant, Mode, Operator } from '../model.js';
import { modeSchema, roleAtLeast, roleWithArticle, subjectSchema } from '../model.js';
import type { RequestManager } from '../gate/requests.js';
import type { PolicyGate } from '../gate/policy-gate.js';
import type { Store } from '../store/store.js';

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
  reason: reasonSchema,
});

export const narrowGrantSchema = z.strictObject({
  methods: z.array(z.string().min(1).max(64)).min(1).max(64).optional(),
  mode: modeSchema.optional(),
  approvals: z.number().int().min(1).max(5).optional(),
  scope: scopeSchema.optional(),
  expiresAt: z.number().int().positive().optional(),
  reason: reasonSchema,
});

export interface GrantDeps {
  store: Store;
  requests: RequestManager;
  gate: PolicyGate;
  instances: ReadonlyMap<string, CapabilityInstance>;
  now: () => number;
}

/** How much a human is in the loop: narrowing may only raise it. */
const OVERSIGHT: Readonly<Record<Mode, number>> = { contained: 0, executed: 1, assisted: 2 };

function requireAdmin(operator: Operator, what: string): void {
  if (!roleAtLeast(operator.role, 'admin')) throw new ContainedError('FORBIDDEN', `${what} needs the admin role; ${operator.name} is ${roleWithArticle(operator.role)}`);
}

function instanceOf(deps: GrantDeps, capability: string): CapabilityInstance {
  const instance = deps.instances.get(capability);
  if (!instance) throw new ContainedError('NOT_FOUND', `this host offers no capability "${capability}" (it has: ${[...deps.instances.keys()].join(', ') || 'none'})`);
  return instance;
}

function rules(deps: GrantDeps, instance: CapabilityInstance, operator: Operator) {
  return { methods: instance.methodNames(), risk: (m: string) => instance.risk(m), role: operator.role, now: deps.now(), checkScope: grantScopeCheck(instance) };
}

export async function addGrant(deps: GrantDeps, operator: Operator, body: z.output<typeof addGrantSchema>): Promise<{ grant: Grant; notes: string[] }> {
  requireAdmin(operator, 'adding a grant');
  const instance = instanceOf(deps, body.capability);
  const input: NewGrantInput = { subject: body.subject, capability: body.capability, methods: body.methods, mode: body.mode, createdBy: operator.name, reason: body.reason };
  if (body.approvals !== undefined) input.approvals = body.approvals;
  if (body.scope !== undefined) input.scope = body.scope;
  if (body.expiresAt !== undefined) input.expiresAt = body.expiresAt;
  const built = buildGrant(input, rules(deps, instance, operator));
  await deps.store.insertGrant(built.grant);
  deps.requests.emit({ type: 'grant', change: 'added', grant: built.grant });
  return built;
}

export async function narrowGrant(deps: GrantDeps, operator: Operator, grantId: string, body: z.output<typeof narrowGrantSchema>): Promise<{ grant: Grant; revoked: Grant; notes: string[] }> {
  requireAdmin(operator, 'narrowing a grant');
  const old = await deps.store.getGrant(grantId);
  if (!old) throw new ContainedError('NOT_FOUND', `no grant ${grantId}`);
  const now = deps.now();
  if (old.revokedAt !== undefined || (old.expiresAt !== undefined && old.expiresAt <= now)) throw new ContainedError('ALREADY_RESOLVED', `grant ${grantId} is no longer active`);
  const instance = instanceOf(deps, old.capability);

  const methods = body.methods ?? old.methods;
  if (!old.methods.includes('*')) {
    const wider = methods.filter((m) => !old.methods.includes(m));
    if (wider.length > 0) throw new ContainedError('INVALID_SCOPE', `narrowing cannot add methods: ${wider.join(', ')} ${wider.length > 1 ? 'are' : 'is'} not in the grant`);
  }
  const mode = body.mode ?? old.mode;
  if (OVERSIGHT[mode] < OVERSIGHT[old.mode]) throw new ContainedError('INVALID_SCOPE', `narrowing cannot move from "${old.mode}" to the less supervised "${mode}"`);
  const approvals = body.approvals ?? old.approvals;
  if (approvals < old.approvals) throw new ContainedError('INVALID_SCOPE', `narrowing cannot lower the approvals from ${old.approvals} to ${approvals}`);
  const expiresAt = body.expiresAt ?? old.expiresAt;
  if (old.expiresAt !== undefined && (expiresAt === undefined || expiresAt > old.expiresAt)) throw new ContainedError('INVALID_SCOPE', 'narrowing cannot extend the expiry');

  let scope = old.scope;
  if (body.scope !== undefined) {
    // The capability's own intersection: whatever was asked, the result allows no more than before.
    // Both scopes are grant scopes (the fields they change, in the host instance's frame).
    const base = grantInstance(instance, old);
    scope = JSON.parse(JSON.stringify(base.restrict(body.scope, {}, { exact: false }).scope)) as Record<string, unknown>;
  }

  const input: NewGrantInput = { subject: old.subject, capability: old.capability, methods, mode, approvals, createdBy: operator.name, reason: `${body.reason} (narrowed from ${old.id})` };
  if (scope !== undefined) input.scope = scope;
  if (expiresAt !== undefined) input.expiresAt = expiresAt;
  for (const key of ['budgets', 'requestTimeoutMs', 'reviewSample'] as const) {
    if (old[key] !== undefined) (input as Record<string, unknown>)[key] = old[key];
  }
  if (input.reviewSample !== undefined && mode !== 'executed') delete input.reviewSample;
  if (input.budgets) input.budgets = Object.fromEntries(Object.entries(input.budgets).filter(([m]) => methods.includes(m) || methods.includes('*')));
  const built = buildGrant(input, rules(deps, instance, operator));
  await deps.store.insertGrant(built.grant);
  deps.requests.emit({ type: 'grant', change: 'added', grant: built.grant });
  const why = `narrowed into ${built.grant.id}: ${body.reason}`;
  const revoked = (await deps.store.revokeGrant(old.id, operator.name, why, deps.now())) ?? old;
  deps.gate.revokeGrant(old.id, why);
  deps.requests.emit({ type: 'grant', change: 'revoked', grant: revoked });
  return { grant: built.grant, revoked, notes: built.notes };
}
