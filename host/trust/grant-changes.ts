/**
 * How promotions and demotions change grants. Grants are never edited in place: a grant records
 * who decided what and why, so a mode change is a revocation plus a new grant, each with its
 * author and reason (and each audited by the store's triggers as it happens).
 *
 * - Promotion (accepted proposal): a new `executed` grant for exactly that method, copying the
 *   assisted grant's subject, scope, expiry, budget for the method and request timeout. The
 *   assisted grant stays; the gate prefers the executed one while it is active. A grant that
 *   requires passkey-signed approvals is never promoted (promotions.ts).
 * - Demotion: every active `executed` grant of the subject covering the method is revoked; one
 *   that also covered other methods is re-issued for those (so only the demoted action loses
 *   autonomy); when no active assisted grant covers the method, one is written (two approvers for
 *   destructive or financial methods; passkey-signed when the executed grant required it). The next
 *   call becomes a recommendation.
 *
 * Which grant covers an action is the gate's own rule (`chooseGrant`, grant-choice.ts) applied to
 * the action's subject: its digest, with the image name and signers the gate matched it by (read
 * from the grants its events were recorded under), or a `name@signer` subject. An action has no
 * arguments, so every grant's scope is taken to admit it.
 *
 * Pure, except `activeGrants`, which reads the grants table of a SQLite store file (the CLI's
 * report reads it read-only; the host reads grants through its grant service). The changes are
 * written by the
 * grant service (grant-service.ts). Budgets restart with a new grant (counted per grant).
 */
import type Database from 'better-sqlite3';
import { needsSecondSignOff, type RiskAnnotations, WORST_CASE_RISK } from '../../capabilities/sdk/risk.js';
import { chooseGrant, type GrantChoice } from '../grant-choice.js';
import { newGrantId, parseSubject } from '../grants.js';
import { type Grant, grantSchema, type RunSubject } from '../model.js';
import { rowToGrant, type Row } from '../store/rows.js';
import type { ActionKey } from './ledger.js';

/** Grants neither revoked nor expired at `now`. */
export function activeGrants(db: Database.Database, now: number): Grant[] {
  const rows = db.prepare('SELECT * FROM grants WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at, id').all(now) as Row[];
  return rows.map(rowToGrant);
}

/**
 * The run subject an action's subject stands for. A digest, with the image name and trusted signers
 * of the signed-name grants its events were recorded under (`recordedGrantIds`: the gate matched
 * the run by them); `name@signer`; anything else matches no grant.
 */
export function actionSubject(subject: string, grants: readonly Grant[], recordedGrantIds: readonly string[] = []): RunSubject {
  let parsed: ReturnType<typeof parseSubject>;
  try {
    parsed = parseSubject(subject);
  } catch {
    return { digest: undefined, name: undefined, signers: [] };
  }
  if (!('digest' in parsed)) return { digest: undefined, name: parsed.name, signers: [parsed.signer] };
  let name: string | undefined;
  const signers: string[] = [];
  for (const g of grants) {
    if (!recordedGrantIds.includes(g.id) || 'digest' in g.subject) continue;
    if (name !== undefined && name !== g.subject.name) continue; // one digest, one image name
    name = g.subject.name;
    if (!signers.includes(g.subject.signer)) signers.push(g.subject.signer);
  }
  return { digest: parsed.digest, name, signers };
}

/** The grant that decides the action (the gate's choice, for any arguments) and every grant covering it. */
export function actionGrants(grants: readonly Grant[], key: ActionKey, now: number, recordedGrantIds: readonly string[] = []): GrantChoice {
  return chooseGrant(grants, { subject: actionSubject(key.subject, grants, recordedGrantIds), capability: key.capability, method: key.method, now });
}

function budgetFor(grant: Grant, method: string): Pick<Grant, 'budgets'> {
  const budget = grant.budgets?.[method];
  return budget === undefined ? {} : { budgets: { [method]: budget } };
}

function copyFields(grant: Grant): Pick<Grant, 'subject' | 'capability' | 'scope' | 'expiresAt' | 'requestTimeoutMs' | 'signedApprovals'> {
  return {
    // A grant's signed approvals go wherever its calls go (a demotion's assisted grant keeps them).
    ...(grant.signedApprovals === true ? { signedApprovals: true } : {}),
    subject: grant.subject,
    capability: grant.capability,
    ...(grant.scope === undefined ? {} : { scope: grant.scope }),
    ...(grant.expiresAt === undefined ? {} : { expiresAt: grant.expiresAt }),
    ...(grant.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: grant.requestTimeoutMs }),
  };
}

/** The executed grant an accepted promotion writes (not yet stored). */
export function promotionGrant(base: Grant, method: string, by: string, reason: string, reviewSample: number, now: number, id: string = newGrantId()): Grant {
  return grantSchema.parse({
    id,
    ...copyFields(base),
    ...budgetFor(base, method),
    methods: [method],
    mode: 'executed',
    approvals: 1,
    ...(reviewSample < 1 ? { reviewSample } : {}),
    createdBy: by,
    reason,
    createdAt: now,
  });
}

export interface DemotionPlan {
  /** The executed grants to revoke. */
  revoke: Grant[];
  /** Their other methods re-issued, and the assisted grant when none covers the action. */
  add: Grant[];
}

/**
 * Move the action back to assisted: revoke the executed grants covering it, re-issue their other
 * methods, and make sure an assisted grant covers it. `methodsOf` expands a `*` grant.
 */
export function demotionPlan(
  executed: readonly Grant[],
  assistedCovering: readonly Grant[],
  key: ActionKey,
  ctx: { by: string; reason: string; now: number; risk: RiskAnnotations | undefined; methodsOf?: (capability: string) => readonly string[] | undefined },
): DemotionPlan {
  const plan: DemotionPlan = { revoke: [...executed], add: [] };
  for (const grant of executed) {
    const all = grant.methods.includes('*') ? (ctx.methodsOf?.(grant.capability) ?? []) : grant.methods;
    const rest = all.filter((m) => m !== key.method && m !== '*');
    if (rest.length > 0) {
      const budgets = grant.budgets ? Object.fromEntries(Object.entries(grant.budgets).filter(([m]) => rest.includes(m))) : undefined;
      const { revokedAt: _at, revokedBy: _by, revokeReason: _why, budgets: _budgets, ...kept } = grant;
      plan.add.push(
        grantSchema.parse({
          ...kept,
          id: newGrantId(),
          methods: rest,
          ...(budgets && Object.keys(budgets).length > 0 ? { budgets } : {}),
          createdBy: ctx.by,
          reason: `re-issued from ${grant.id} without ${key.method} (${key.capability}.${key.method} demoted: ${ctx.reason})`,
          createdAt: ctx.now,
        }),
      );
    }
  }
  const template = executed[0];
  if (assistedCovering.length === 0 && template) {
    const risky = needsSecondSignOff(ctx.risk ?? WORST_CASE_RISK);
    plan.add.push(
      grantSchema.parse({
        id: newGrantId(),
        ...copyFields(template),
        ...budgetFor(template, key.method),
        methods: [key.method],
        mode: 'assisted',
        approvals: risky ? 2 : 1,
        createdBy: ctx.by,
        reason: `demotion of ${key.capability}.${key.method}: ${ctx.reason}`,
        createdAt: ctx.now,
      }),
    )
  }
  return plan;
}
