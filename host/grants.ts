/**
 * Grant rules: which grants the host stores, and which grant an operator's "always" answer writes;
 * which grant covers a call is grant-choice.ts, how a grant may be narrowed grant-narrowing.ts.
 * Pure functions (the clock is an argument), so the CLI, the operator channel and the gate apply
 * one policy. Grants are written through the grant service (grant-service.ts).
 *
 * Defends the risk policy (README.md, Concepts and The host): a destructive or financial method is never autonomous
 * (`contained`/`executed`) unless an admin forces it with a recorded reason; assisted, it needs
 * two distinct approvers; `executed` (run now, review later) is for reversible methods only; an
 * "always" answer can never make a destructive or financial method autonomous.
 *
 * Fails closed: rule checks return `{ ok: false, code, message, rule }` on anything they cannot
 * accept (`INVALID_ARGUMENT` for a malformed grant, `GRANT_REFUSED` for a policy breach,
 * `FORBIDDEN` for a role that may not do this, `INVALID_SCOPE` for a scope that does not
 * narrow the instance); the throwing helpers raise the same as a ContainedError.
 */
import { randomBytes } from 'node:crypto';
import { type Budget, budgetSchema } from '../capabilities/sdk/budget.js';
import { CapabilityInstance } from '../capabilities/sdk/instance.js';
import { changedFields } from '../capabilities/sdk/narrowing.js';
import { needsSecondSignOff, type RiskAnnotations, WORST_CASE_RISK } from '../capabilities/sdk/risk.js';
import { ContainedError, type ErrorCode } from '../runtime/errors.js';
import { capabilityOffer } from './grant-scope.js';
import { type Grant, grantSchema, type Mode, type RequestRecord, type Role, roleAtLeast, roleWithArticle, type Subject, subjectSchema } from './model.js';

export { capabilityOffer, grantInstance, grantScopeCheck, restrictToScope } from './grant-scope.js';
export type { CapabilityOffer } from './grant-scope.js';
export { chooseGrant, grantCovers, lessSupervised, MODE_ORDER, subjectMatches } from './grant-choice.js';
export type { GrantCall, GrantChoice } from './grant-choice.js';

export type RuleResult = { ok: true } | { ok: false; code: ErrorCode; message: string; rule: string };

/** What a grant is checked against: the host capability instance's methods and their risk. */
export interface MethodRisk {
  methodNames(): readonly string[];
  risk(method: string): RiskAnnotations;
}

/** A grant as asked for; `approvals` unset takes the risk-based default. */
export type NewGrantInput = Omit<Grant, 'id' | 'createdAt' | 'approvals' | 'revokedAt' | 'revokedBy' | 'revokeReason'> & { approvals?: number };

/** A grant that passed the rules, without its id and creation time. */
export type GrantDraft = Omit<Grant, 'id' | 'createdAt'>;

export interface GrantRuleContext {
  /** Methods of the host capability instance the grant names. */
  methods: readonly string[];
  risk(method: string): RiskAnnotations;
  /** Role of whoever adds the grant (the local CLI acts as `admin`). */
  role: Role;
  /** Epoch ms. */
  now: number;
  /** Throws (INVALID_SCOPE) when `scope` does not validate for, or narrow, the host instance. */
  checkScope?: (scope: Record<string, unknown>) => void;
}

export type ValidatedGrant = { ok: true; grant: GrantDraft; notes: string[] } | Extract<RuleResult, { ok: false }>;

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const KEY_ID = DIGEST;
const MAX_APPROVALS = 5;

function refuse(code: ErrorCode, rule: string, message: string): Extract<RuleResult, { ok: false }> {
  return { ok: false, code, message, rule };
}

function list(methods: readonly string[], capability: string): string {
  return methods.map((m) => `${capability}.${m}`).join(', ');
}

/**
 * The rules for a new grant (CLI `grant add`, admins over the operator channel):
 * - only approvers and admins create grants; only admins force;
 * - the methods exist on the host instance (`*` alone means all of them); budgets name covered
 *   methods; the expiry is in the future; `reviewSample` only for `executed`;
 * - a destructive or financial method is refused `contained`/`executed` unless forced;
 * - `executed` is refused for an irreversible method unless forced;
 * - assisted, a destructive or financial method needs 2 approvals: an unset `approvals` is raised
 *   to 2 (and said so in `notes`); an explicit 1 is refused unless forced;
 * - `forced` is recorded only when it overrode a rule (otherwise dropped, with a note);
 * - autonomous (`contained`/`executed`) grants on `*` are stored as the explicit method list, so a
 *   method the host adds later is never autonomous by accident.
 */
export function validateNewGrant(input: NewGrantInput, ctx: GrantRuleContext): ValidatedGrant {
  const notes: string[] = [];
  if (!roleAtLeast(ctx.role, 'approver')) return refuse('FORBIDDEN', 'role', `${roleWithArticle(ctx.role)} cannot create grants`);
  if (!subjectSchema.safeParse(input.subject).success) return refuse('INVALID_ARGUMENT', 'subject', 'the subject must be an image digest or an image name with a signer key id');
  if (typeof input.reason !== 'string' || input.reason.trim() === '') return refuse('INVALID_ARGUMENT', 'reason', 'a grant needs a reason');
  if (typeof input.createdBy !== 'string' || input.createdBy.trim() === '') return refuse('INVALID_ARGUMENT', 'author', 'a grant needs an author');

  // Methods.
  const { capability } = input;
  if (!Array.isArray(input.methods) || !input.methods.every((m) => typeof m === 'string')) return refuse('INVALID_ARGUMENT', 'methods', 'methods must be a list of names');
  if (input.methods.length === 0) return refuse('INVALID_ARGUMENT', 'methods', 'a grant needs at least one method');
  if (new Set(input.methods).size !== input.methods.length) return refuse('INVALID_ARGUMENT', 'methods', 'a method is listed twice');
  const wildcard = input.methods.includes('*');
  if (wildcard && input.methods.length > 1) return refuse('INVALID_ARGUMENT', 'methods', '"*" stands alone: it already means every method');
  const unknown = input.methods.filter((m) => m !== '*' && !ctx.methods.includes(m));
  if (unknown.length > 0) {
    return refuse('INVALID_ARGUMENT', 'methods', `${capability} has no method ${unknown.map((m) => `"${m}"`).join(', ')} (it has: ${ctx.methods.join(', ')})`);
  }
  const covered = wildcard ? [...ctx.methods] : [...input.methods];
  if (covered.length === 0) return refuse('INVALID_ARGUMENT', 'methods', `${capability} offers no methods`);

  // Expiry, budgets, review sample.
  if (input.expiresAt !== undefined && !(Number.isSafeInteger(input.expiresAt) && input.expiresAt > ctx.now)) {
    return refuse('INVALID_ARGUMENT', 'expiry', 'the expiry must be in the future');
  }
  for (const [method, budget] of Object.entries(input.budgets ?? {})) {
    if (!covered.includes(method)) return refuse('INVALID_ARGUMENT', 'budget', `a budget for ${capability}.${method}, which this grant does not cover`);
    const parsed = budgetSchema.safeParse(budget);
    if (!parsed.success) return refuse('INVALID_ARGUMENT', 'budget', `invalid budget for ${capability}.${method}: ${parsed.error.issues[0]?.message ?? ''}`);
  }
  if (input.reviewSample !== undefined && input.mode !== 'executed') return refuse('INVALID_ARGUMENT', 'review-sample', 'a review sample applies to executed grants only');
  if (input.signedApprovals !== undefined && typeof input.signedApprovals !== 'boolean') return refuse('INVALID_ARGUMENT', 'signed-approvals', 'signedApprovals is true or false');
  if (input.stageRuns !== undefined && typeof input.stageRuns !== 'boolean') return refuse('INVALID_ARGUMENT', 'stage-runs', 'stageRuns is true or false');

  // Force.
  const forced = input.forced;
  if (forced !== undefined) {
    if (ctx.role !== 'admin') return refuse('FORBIDDEN', 'force', 'only an admin can force a grant past the risk policy');
    if (typeof forced.reason !== 'string' || forced.reason.trim() === '' || typeof forced.by !== 'string' || forced.by.trim() === '') {
      return refuse('INVALID_ARGUMENT', 'force', 'a forced grant needs who forced it and why');
    }
  }
  let overridden = false;

  // Risk.
  const risky = covered.filter((m) => needsSecondSignOff(ctx.risk(m)));
  const irreversible = covered.filter((m) => !ctx.risk(m).reversible);
  if ((input.mode === 'contained' || input.mode === 'executed') && risky.length > 0) {
    if (!forced) {
      return refuse(
        'GRANT_REFUSED',
        'autonomous-risk',
        `${list(risky, capability)} ${risky.length > 1 ? 'are' : 'is'} destructive or financial and cannot be granted "${input.mode}": use mode "assisted" (two approvers), or an admin can force it with a recorded reason`,
      );
    }
    overridden = true;
  }
  if (input.mode === 'executed' && irreversible.length > 0) {
    if (!forced) {
      return refuse(
        'GRANT_REFUSED',
        'executed-irreversible',
        `${list(irreversible, capability)} ${irreversible.length > 1 ? 'are' : 'is'} not reversible and cannot be granted "executed" (run first, reviewed after): use "assisted", or an admin can force it with a recorded reason`,
      );
    }
    overridden = true;
  }
  const minimum = risky.length > 0 ? 2 : 1;
  const approvals = input.approvals ?? minimum;
  if (!Number.isInteger(approvals) || approvals < 1 || approvals > MAX_APPROVALS) {
    return refuse('INVALID_ARGUMENT', 'approvals', `approvals must be a whole number from 1 to ${MAX_APPROVALS}`);
  }
  if (input.mode === 'assisted' && approvals < minimum) {
    if (!forced) {
      return refuse(
        'GRANT_REFUSED',
        'second-sign-off',
        `${list(risky, capability)} ${risky.length > 1 ? 'are' : 'is'} destructive or financial: assisted, it needs at least 2 distinct approvers (--approvals 2), or an admin can force it with a recorded reason`,
      );
    }
    overridden = true;
  }
  if (input.approvals === undefined && input.mode === 'assisted' && minimum === 2) {
    notes.push(`approvals set to 2: ${list(risky, capability)} ${risky.length > 1 ? 'are' : 'is'} destructive or financial (second sign-off)`);
  }
  if (forced && !overridden) notes.push('nothing to override: the forced reason is not recorded');

  // Scope.
  if (input.scope !== undefined && ctx.checkScope) {
    try {
      ctx.checkScope(input.scope);
    } catch (error) {
      const message = error instanceof ContainedError ? error.message : 'the scope does not validate';
      return refuse('INVALID_SCOPE', 'scope', message);
    }
  }

  const methods = wildcard && input.mode !== 'assisted' ? covered : input.methods;
  if (wildcard && input.mode !== 'assisted') notes.push(`"*" stored as ${methods.join(',')}: methods added to the host later are not granted "${input.mode}"`);
  // signedApprovals and stageRuns are stored only when true (false asks for nothing).
  const { forced: _forced, approvals: _approvals, methods: _methods, signedApprovals, stageRuns, ...rest } = input;
  const grant: GrantDraft = {
    ...rest,
    methods: [...methods],
    approvals,
    ...(signedApprovals === true ? { signedApprovals: true } : {}),
    ...(stageRuns === true ? { stageRuns: true } : {}),
    ...(overridden && forced ? { forced: { by: forced.by, reason: forced.reason } } : {}),
  };
  const parsed = grantSchema.safeParse({ ...grant, id: 'draft', createdAt: ctx.now });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return refuse('INVALID_ARGUMENT', 'schema', `invalid grant${issue?.path.length ? ` at ${issue.path.join('.')}` : ''}: ${issue?.message ?? ''}`);
  }
  const { id: _id, createdAt: _createdAt, ...draft } = parsed.data;
  return { ok: true, grant: draft, notes };
}

/** `validateNewGrant`, then an id and creation time; throws the refusal as a ContainedError. */
export function buildGrant(input: NewGrantInput, ctx: GrantRuleContext, id: string = newGrantId()): { grant: Grant; notes: string[] } {
  const verdict = validateNewGrant(input, ctx);
  if (!verdict.ok) throw new ContainedError(verdict.code, verdict.message, { data: { rule: verdict.rule } });
  return { grant: { ...verdict.grant, id, createdAt: ctx.now }, notes: verdict.notes };
}

export function newGrantId(): string {
  return `grt_${randomBytes(8).toString('hex')}`;
}

export interface AlwaysContext {
  /** Name of the operator whose answer it was. */
  by: string;
  now: number;
  /**
   * The host capability instance; needed for `requestCapability` escalations. A real instance also
   * narrows the grant: to the methods the requested scope leaves usable, or to the scope that
   * admits just the call (its definition's `narrowestScope`); bare methods and risk do not.
   */
  host?: MethodRisk | CapabilityInstance;
  /** The arguments the operators approved (possibly edited); default the request's. */
  args?: unknown;
  id?: string;
  /** Epoch ms; default: no expiry. */
  expiresAt?: number;
}

/**
 * The grant an "always" answer to an escalation writes — as narrow as the request: exactly its
 * subject, capability and method; scope = the requested scope, or for a call the narrowest scope
 * that admits its (approved) arguments (fs `list("sub")`: `{ paths: ["sub"] }`), stored as the
 * fields that differ from the host instance's scope.
 * - A method that is neither destructive nor financial: mode `contained`.
 * - A destructive or financial method (or one whose risk is unknown: worst case): mode `assisted`
 *   with 2 approvals. "Always" can never make such a method autonomous; it makes future calls
 *   recommendations under a standing grant instead of escalations.
 * - A `requestCapability` escalation (no method): of the methods the requested scope leaves usable
 *   (a read-only scope: the read methods), those neither destructive nor financial, `contained`;
 *   when there are none, all of them, `assisted`, 2 approvals.
 * Throws GRANT_REFUSED when the request has no subject a grant can name (no digest, no signed
 * name), a capability request comes without the host instance, or its scope is not an object.
 */
export function narrowestGrantFor(request: RequestRecord, ctx: AlwaysContext): Grant {
  const subject = request.subject === undefined ? undefined : trySubject(request.subject);
  if (!subject) {
    throw new ContainedError('GRANT_REFUSED', `request ${request.id}: the run has no image digest or signed name, so "always" cannot be written as a grant (answer once or run)`, {
      data: { rule: 'always-subject' },
    });
  }
  let methods: string[];
  let risky: boolean;
  if (request.requestedScope !== undefined && !isPlainObject(request.requestedScope)) {
    // A grant's scope is an object; dropping the one asked for would grant the whole instance.
    throw new ContainedError('GRANT_REFUSED', `request ${request.id}: the requested scope is not an object a grant can hold (answer once or run)`, { data: { rule: 'always-scope' } });
  }
  let scope = request.requestedScope;
  const instance = ctx.host instanceof CapabilityInstance ? ctx.host : undefined;
  if (request.method !== undefined) {
    methods = [request.method];
    risky = needsSecondSignOff(request.risk ?? ctx.host?.risk(request.method) ?? WORST_CASE_RISK);
    if (instance && scope === undefined) {
      const narrowest = instance.narrowestScopeFor(request.method, 'args' in ctx ? ctx.args : request.args);
      const fields = narrowest === undefined ? undefined : changedFields(instance.scope, narrowest);
      if (isPlainObject(fields) && Object.keys(fields).length > 0) scope = fields;
    }
  } else {
    if (!ctx.host) throw new ContainedError('GRANT_REFUSED', `request ${request.id}: the host instance is needed to grant a requested capability`, { data: { rule: 'always-host' } });
    const host = ctx.host;
    const all = instance ? capabilityOffer(instance, request.requestedScope).methods : [...host.methodNames()];
    const safe = all.filter((m) => !needsSecondSignOff(host.risk(m)));
    risky = safe.length === 0;
    methods = risky ? all : safe;
  }
  if (methods.length === 0) throw new ContainedError('GRANT_REFUSED', `request ${request.id}: nothing to grant`, { data: { rule: 'always-methods' } });
  const grant: Grant = {
    id: ctx.id ?? newGrantId(),
    subject,
    capability: request.capability,
    ...(scope === undefined ? {} : { scope }),
    methods,
    mode: risky ? 'assisted' : 'contained',
    approvals: risky ? 2 : 1,
    ...(ctx.expiresAt === undefined ? {} : { expiresAt: ctx.expiresAt }),
    createdBy: ctx.by,
    reason: `"always" answer to ${request.kind} ${request.id}${risky ? ' (destructive or financial: kept assisted, two approvers)' : ''}`,
    createdAt: ctx.now,
  };
  const parsed = grantSchema.safeParse(grant);
  if (!parsed.success) throw new ContainedError('INTERNAL', `request ${request.id}: the "always" grant does not validate`, { cause: parsed.error });
  return parsed.data;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.getPrototypeOf(value) === Object.prototype;
}

// Parsing -----------------------------------------------------------------------------------

function trySubject(text: string): Subject | undefined {
  try {
    return parseSubject(text);
  } catch {
    return undefined;
  }
}

/** `sha256:<64 hex>` (an image digest) or `<image name>@sha256:<64 hex>` (name + signer key id). */
export function parseSubject(text: string): Subject {
  if (DIGEST.test(text)) return { digest: text };
  const at = text.indexOf('@');
  const name = at < 0 ? '' : text.slice(0, at);
  const signer = at < 0 ? '' : text.slice(at + 1);
  if (name === '' || !KEY_ID.test(signer)) {
    throw new ContainedError('INVALID_ARGUMENT', `subject "${text.slice(0, 200)}": expected sha256:<64 lower-case hex> (image digest) or <image name>@sha256:<64 hex> (signer key id)`, {
      data: { field: 'subject' },
    });
  }
  const parsed = subjectSchema.safeParse({ name, signer });
  if (!parsed.success) throw new ContainedError('INVALID_ARGUMENT', `subject "${text.slice(0, 200)}": ${parsed.error.issues[0]?.message ?? 'invalid'}`, { data: { field: 'subject' } });
  return parsed.data;
}

export function formatSubject(subject: Subject): string {
  return 'digest' in subject ? subject.digest : `${subject.name}@${subject.signer}`;
}

const UNITS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `+<n>s|m|h|d|w` relative to `now`, or an ISO-8601 date-time with a zone; epoch ms. INVALID_ARGUMENT otherwise. */
export function parseExpiry(text: string, now: number): number {
  const rel = /^\+(\d{1,9})([smhdw])$/.exec(text);
  const unit = rel?.[2] === undefined ? undefined : UNITS[rel[2]];
  if (rel?.[1] !== undefined && unit !== undefined && Number(rel[1]) > 0) return now + Number(rel[1]) * unit;
  // Only full date-times with a zone: a bare date or local time would depend on the host's zone.
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(text) && !Number.isNaN(Date.parse(text))) return Date.parse(text);
  throw new ContainedError('INVALID_ARGUMENT', `expiry "${text.slice(0, 100)}": expected +<n>s|m|h|d|w (n > 0) or an ISO-8601 date-time with a zone (2030-01-31T12:00:00Z)`, {
    data: { field: 'expires' },
  });
}

/** One `<method>=<field>:<n>[,<field>:<n>]` per entry → budgets (fields maxCalls, perSecond, maxBytes). */
export function parseBudgets(entries: readonly string[]): Record<string, Budget> {
  const out: Record<string, Budget> = {};
  for (const entry of entries) {
    const eq = entry.indexOf('=');
    const method = eq < 0 ? '' : entry.slice(0, eq);
    if (!/^[a-z][a-zA-Z0-9]{0,63}$/.test(method) || Object.prototype.hasOwnProperty.call(out, method)) {
      throw new ContainedError('INVALID_ARGUMENT', `budget "${entry.slice(0, 100)}": expected <method>=<field>:<n>[,<field>:<n>], one per method`, { data: { field: 'budget' } });
    }
    const budget: Record<string, number> = {};
    for (const item of entry.slice(eq + 1).split(',')) {
      const [field, n, ...extra] = item.split(':');
      if (field === undefined || n === undefined || extra.length > 0 || !/^\d+(\.\d+)?$/.test(n) || Object.prototype.hasOwnProperty.call(budget, field)) {
        throw new ContainedError('INVALID_ARGUMENT', `budget "${entry.slice(0, 100)}": expected <field>:<n> with fields maxCalls, perSecond, maxBytes`, { data: { field: 'budget' } });
      }
      budget[field] = Number(n);
    }
    const parsed = budgetSchema.safeParse(budget);
    if (!parsed.success) throw new ContainedError('INVALID_ARGUMENT', `budget for ${method}: ${parsed.error.issues[0]?.message ?? 'invalid'} (fields maxCalls, perSecond, maxBytes)`, { data: { field: 'budget' } });
    out[method] = parsed.data;
  }
  return out;
}

/** Modes, for CLI validation. */
export function isMode(value: string): value is Mode {
  return value === 'contained' || value === 'executed' || value === 'assisted';
}
