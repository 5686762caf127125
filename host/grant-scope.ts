/**
 * Grant scopes against the host's capability instances: one place that decides what a grant's
 * scope gives, used by `grant add` (CLI and console), by the gate for every stored grant and
 * every `requestCapability`, and by "always".
 *
 * A grant narrows the binding an agent already holds, so its scope is written as the fields it
 * changes, is put in the host instance's frame (fs: a subfolder `root` does not move the folder
 * the agent's paths start from), and must lie within the host instance exactly: a wider field is
 * refused `INVALID_SCOPE` naming what was asked and what the instance allows — never stored and
 * silently intersected (a grant showing 90000 while 50000 applies). Host paths may appear in these
 * messages: they go to operators, never to agents (the gate words its own refusal).
 */
import { needsSecondSignOff } from '../capabilities/sdk/risk.js';
import { type CapabilityInstance, mergeScopeFields } from '../capabilities/sdk/index.js';
import { ContainedError } from '../runtime/errors.js';
import type { Grant } from './model.js';

function clip(value: unknown): string {
  const text = JSON.stringify(value) ?? 'unset';
  return text.length > 100 ? `${text.slice(0, 97)}...` : text;
}

/**
 * The host instance restricted to a grant's (or a capability request's) scope. Throws
 * INVALID_SCOPE when the scope does not validate or asks for more than the instance allows; the
 * message names each wider field with the value asked and the value the instance allows.
 */
export function restrictToScope(host: CapabilityInstance, scope: unknown): CapabilityInstance {
  try {
    return host.restrict(scope);
  } catch (error) {
    const fields = error instanceof ContainedError ? (error.data?.fields as string[] | undefined) : undefined;
    if (!(error instanceof ContainedError) || !fields?.length) throw error;
    const asked = mergeScopeFields(host.scope, scope) as Record<string, unknown>;
    const allowed = host.scope as Record<string, unknown>;
    const detail = fields.map((f) => `${f} ${clip(asked?.[f])} (the instance allows ${clip(allowed?.[f])})`).join('; ');
    throw new ContainedError('INVALID_SCOPE', `${host.name}: the scope asks for more than the host instance allows: ${detail}`, { data: { fields }, cause: error });
  }
}

/** `GrantRuleContext.checkScope` for a host instance: refuses a scope `restrictToScope` refuses. */
export function grantScopeCheck(host: CapabilityInstance): (scope: Record<string, unknown>) => void {
  return (scope) => void restrictToScope(host, scope);
}

/**
 * The instance a stored grant's calls are performed through: the host instance restricted to the
 * grant's scope, with its budgets and expiry. A grant written before the host instance was
 * narrowed is intersected with it rather than refused (it can only lose, never gain).
 */
export function grantInstance(host: CapabilityInstance, grant: Pick<Grant, 'scope' | 'budgets' | 'expiresAt'>): CapabilityInstance {
  const options = { ...(grant.budgets ? { budgets: grant.budgets } : {}), ...(grant.expiresAt !== undefined ? { expiresAt: grant.expiresAt } : {}) };
  return host.restrict(grant.scope ?? {}, options, { exact: false });
}

/** What a `requestCapability` escalation offers, decided once for the request and its answer. */
export interface CapabilityOffer {
  /** The host instance restricted to the requested scope. */
  via: CapabilityInstance;
  /** The methods that can do anything under that scope: a "run" answer allows these. */
  methods: string[];
  /** 2 when any of them is destructive or financial (a "run" answer would allow it), else 1. */
  approvals: 1 | 2;
}

/**
 * The offer for `requestCapability(name, scope)`; INVALID_SCOPE when the scope is wider than the
 * host's. Its refusal names fields only, never the host's values: the agent reads it.
 */
export function capabilityOffer(host: CapabilityInstance, scope: unknown): CapabilityOffer {
  const via = scope === null || scope === undefined ? host : host.restrict(scope);
  const methods = via.usableMethods();
  return { via, methods, approvals: methods.some((m) => needsSecondSignOff(via.risk(m))) ? 2 : 1 };
}
