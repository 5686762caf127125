/**
 * Trust figures for one action and phases for one subject, computed from the ledger, the active
 * grants and the policy: what an approver sees next to a request (`trustFor`), what
 * `contained trust report` prints, and what the promotion check evaluates. Read-only.
 */
import type Database from 'better-sqlite3';
import type { RiskAnnotations } from '../../capabilities/sdk/risk.js';
import { formatSubject } from '../grants.js';
import type { Grant, Mode } from '../model.js';
import { actionGrants, activeGrants } from './grant-changes.js';
import type { ActionKey, ActionStats } from './ledger.js';
import { type BarVerdict, evaluateBar, type Phase, type PhaseAction, phaseOf, pct, type TrustConfig } from './policy.js';
import type { TrustTables } from './tables.js';

export interface ActionFigures {
  key: ActionKey;
  stats: ActionStats;
  risk: RiskAnnotations | undefined;
  mode: Mode | 'none';
  /** The grant that decides the mode (the one the gate would pick). */
  grant: Grant | undefined;
  bar: BarVerdict;
  /** Shadow verdict: the evidence alone meets the bar (ignoring the spacing after an earlier proposal). */
  wouldAllow: boolean;
  openProposal: string | undefined;
}

export interface FigureSources {
  /** The SQLite store file holding the grants (read synchronously); absent with a PostgreSQL store. */
  db?: Database.Database | undefined;
  /**
   * Active grants at `now` when they are not in `db` (a PostgreSQL store): the trust service's
   * snapshot of GrantService.active, kept fresh by `refreshGrants`. Absent: read from `db`.
   */
  activeGrants?(now: number): Grant[];
  /** Bring that snapshot up to date (before promotion checks, decisions, demotions). */
  refreshGrants?(): Promise<void>;
  /** The ledger, reviews and proposals (either store). */
  tables: TrustTables;
  config: TrustConfig;
  riskOf?(capability: string, method: string): RiskAnnotations | undefined;
}

/** The active grants trust figures are computed with: the snapshot, or the grants table in `db`. */
export function grantsOf(src: FigureSources, now: number): Grant[] {
  if (src.activeGrants) return src.activeGrants(now);
  if (!src.db) throw new Error('trust: no grants to compute figures with');
  return activeGrants(src.db, now);
}

export async function actionFigures(src: FigureSources, key: ActionKey, now: number, grants: readonly Grant[] = grantsOf(src, now), excludeProposal?: string): Promise<ActionFigures> {
  const [stats, lastProposalAt, open] = await Promise.all([src.tables.stats(key, now, src.config), src.tables.lastProposalAt(key, excludeProposal), src.tables.openProposal(key)]);
  const risk = stats.risk ?? src.riskOf?.(key.capability, key.method);
  const { grant } = actionGrants(grants, key, now, stats.grantIds);
  const mode = grant?.mode ?? 'none';
  const assisted = stats.lifetime.approved + stats.lifetime.edited + stats.lifetime.denied;
  const input = { risk, assisted, recentEdited: stats.recentAssisted.edited, recentDenied: stats.recentAssisted.denied, critical: stats.lifetime.critical };
  const bar = evaluateBar({ ...input, lastProposalAt }, src.config);
  const wouldAllow = evaluateBar(input, src.config).met;
  return { key, stats, risk, mode, grant, bar, wouldAllow, openProposal: open?.id };
}

export async function phaseForSubject(src: FigureSources, subject: string, now: number, grants: readonly Grant[] = grantsOf(src, now)): Promise<Phase> {
  const keys = await src.tables.actions(subject);
  const figures = await Promise.all(keys.map((key) => actionFigures(src, key, now, grants)));
  const actions: PhaseAction[] = figures.map((f) => {
    return {
      mode: f.mode,
      risk: f.risk,
      reviews: f.stats.lifetime.ok + f.stats.lifetime.error + f.stats.lifetime.critical,
      windowReviews: f.stats.reviewWindow.count,
      windowErrors: f.stats.reviewWindow.errors,
      critical: f.stats.lifetime.critical,
      sampled: f.mode === 'executed' && f.grant?.reviewSample !== undefined && f.grant.reviewSample < 1,
    };
  });
  // Executed grants of the subject (a digest, or name@signer) with no ledger events yet still count as executed actions.
  for (const g of grants) {
    if (g.mode !== 'executed' || formatSubject(g.subject) !== subject) continue;
    for (const method of g.methods) {
      if (keys.some((k) => k.capability === g.capability && k.method === method)) continue;
      actions.push({ mode: 'executed', risk: src.riskOf?.(g.capability, method), reviews: 0, windowReviews: 0, windowErrors: 0, critical: 0, sampled: g.reviewSample !== undefined && g.reviewSample < 1 });
    }
  }
  return phaseOf(actions, src.config);
}

/**
 * Where an action stands against the promotion bar, in words: `met`, what is missing, or — for an
 * action already contained or executed — that it needs no promotion (the bar is only for assisted).
 */
export function promotionBar(f: Pick<ActionFigures, 'mode' | 'bar'>): string {
  if (f.mode === 'contained' || f.mode === 'executed') return `not needed (already ${f.mode})`;
  return f.bar.met ? 'met' : f.bar.missing.join('; ');
}

/**
 * The compact figures shown to an approver with a request (RequestView.trust). Kept small: they go
 * out with every request in every operator snapshot (the full windows are in `trust report`).
 */
export function compactFigures(f: ActionFigures, phase: Phase, _config?: TrustConfig): Record<string, unknown> {
  const s = f.stats;
  return {
    action: `${f.key.capability}.${f.key.method}`,
    mode: f.mode,
    phase: phase.phase,
    assisted: {
      reviews: s.lifetime.approved + s.lifetime.edited + s.lifetime.denied,
      approvedAsIs: s.lifetime.approved,
      edited: s.lifetime.edited,
      denied: s.lifetime.denied,
      // Observed over the last minAssistedReviews verdicts (the bar divides by minAssistedReviews itself).
      editRate: pct(s.recentAssisted.count > 0 ? (s.recentAssisted.edited + s.recentAssisted.denied) / s.recentAssisted.count : 0),
    },
    executed: {
      reviews: s.lifetime.ok + s.lifetime.error + s.lifetime.critical,
      ok: s.lifetime.ok,
      error: s.lifetime.error,
      critical: s.lifetime.critical,
      // Observed over the last demoteWindow reviews (demotion divides by at least demoteWindow).
      errorRate: pct(s.reviewWindow.count > 0 ? s.reviewWindow.errors / s.reviewWindow.count : 0),
    },
    shadow: { wouldAllowNow: f.wouldAllow, wouldAllow: s.shadow.wouldAllow, approved: s.shadow.approved, edited: s.shadow.edited, denied: s.shadow.denied },
    bar: promotionBar(f),
    ...(f.openProposal === undefined ? {} : { proposal: f.openProposal }),
  };
}
