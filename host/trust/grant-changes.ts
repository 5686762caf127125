/**
 * How promotions and demotions change grants. Grants are never edited in place: a grant records
 * who decided what and why, so a mode change is a revocation plus a new grant, each with its
 * author and reason (and each audited by the store's triggers as it happens).
 *
 * - Promotion (accepted proposal): a new `executed` grant for exactly that method, copying the
 *   assisted grant's subject, scope, expiry, budget for the method and request timeout. The
 *   assisted grant stays; the gate prefers the executed one while it is active.
 * - Demotion: every active `executed` grant of the subject covering the method is revoked; one
 *   that also covered other methods is re-issued for those (so only the demoted action loses
 *   autonomy); when no active assisted grant covers the method, one is written (two approvers for
 *   destructive or financial methods). The next call becomes a recommendation.
 *
 * Reading: `activeGrants` reads the grants table synchronously on the audit connection (trust
 * figures are computed while a request is being announced); writes go through the Store.
 * Budgets restart with a new grant (a grant's budget is counted per grant).
 */
import type Database from 'better-sqlite3';
import { needsSecondSignOff, type RiskAnnotations, WORST_CASE_RISK } from '../../capabilities/sdk/risk.js';
import { formatSubject, newGrantId } from '../grants.js';
import { type Grant, grantSchema, type Mode } from '../model.js';
import { rowToGrant, type Row } from '../store/rows.js';
import type { Store } from '../store/store.js';
import type { ActionKey } from './ledger.js';

const MODE_ORDER: Readonly<Record<Mode, number>> = { contained: 0, executed: 1, assisted: 2 };

/** Grants neither revoked nor expired at `now`. */
export function activeGrants(db: Database.Database, now: number): Grant[] {
  const rows = db.prepare('SELECT * FROM grants WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at, id').all(now) as Row[];
  return rows.map(rowToGrant);
}

/** Grants covering the action: same capability, the method (or `*`), and the subject (by digest, or one of `grantIds`). */
export function grantsFor(grants: readonly Grant[], key: ActionKey, grantIds: readonly string[] = []): Grant[] {
  return grants.filter(
    (g) => g.capability === key.capability && (g.methods.includes(key.method) || g.methods.includes('*')) && (formatSubject(g.subject) === key.subject || grantIds.includes(g.id)),
  );
}

/** The mode the gate applies (the least restrictive covering grant wins, as in the gate), or `none`. */
export function effectiveMode(covering: readonly Grant[]): { mode: Mode | 'none'; grant: Grant | undefined } {
  const sorted = [...covering].sort((a, b) => MODE_ORDER[a.mode] - MODE_ORDER[b.mode]);
  const grant = sorted[0];
  return { mode: grant?.mode ?? 'none', grant };
}

function budgetFor(grant: Grant, method: string): Pick<Grant, 'budgets'> {
  const budget = grant.budgets?.[method];
  return budget === undefined ? {} : { budgets: { [method]: budget } };
}

function copyFields(grant: Grant): Pick<Grant, 'subject' | 'capability' | 'scope' | 'expiresAt' | 'requestTimeoutMs'> {
  return {
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

export interface DemotionChange {
  revoked: Grant[];
  added: Grant[];
}

/**
 * Move the action back to assisted: revoke the executed grants covering it, re-issue their other
 * methods, and make sure an assisted grant covers it. `methodsOf` expands a `*` grant.
 */
export async function demoteGrants(
  store: Store,
  executed: readonly Grant[],
  assistedCovering: readonly Grant[],
  key: ActionKey,
  ctx: { by: string; reason: string; now: number; risk: RiskAnnotations | undefined; methodsOf?: (capability: string) => readonly string[] | undefined },
): Promise<DemotionChange> {
  const change: DemotionChange = { revoked: [], added: [] };
  for (const grant of executed) {
    const revoked = await store.revokeGrant(grant.id, ctx.by, ctx.reason, ctx.now);
    if (revoked) change.revoked.push(revoked);
    const all = grant.methods.includes('*') ? (ctx.methodsOf?.(grant.capability) ?? []) : grant.methods;
    const rest = all.filter((m) => m !== key.method && m !== '*');
    if (rest.length > 0) {
      const budgets = grant.budgets ? Object.fromEntries(Object.entries(grant.budgets).filter(([m]) => rest.includes(m))) : undefined;
      const { revokedAt: _at, revokedBy: _by, revokeReason: _why, budgets: _budgets, ...kept } = grant;
      const reissued = grantSchema.parse({
        ...kept,
        id: newGrantId(),
        methods: rest,
        ...(budgets && Object.keys(budgets).length > 0 ? { budgets } : {}),
        createdBy: ctx.by,
        reason: `re-issued from ${grant.id} without ${key.method} (${key.capability}.${key.method} demoted: ${ctx.reason})`,
        createdAt: ctx.now,
      });
      await store.insertGrant(reissued);
      change.added.push(reissued);
    }
  }
  const template = executed[0];
  if (assistedCovering.length === 0 && template) {
    const risky = needsSecondSignOff(ctx.risk ?? WORST_CASE_RISK);
    const assisted = grantSchema.parse({
      id: newGrantId(),
      ...copyFields(template),
      ...budgetFor(template, key.method),
      methods: [key.method],
      mode: 'assisted',
      approvals: risky ? 2 : 1,
      createdBy: ctx.by,
      reason: `demotion of ${key.capability}.${key.method}: ${ctx.reason}`,
      createdAt: ctx.now,
    });
    await store.insertGrant(assisted);
    change.added.push(assisted);
  }
  return change;
}
