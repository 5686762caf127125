/**
 * Trust figures for one action and phases for one subject, computed from the ledger, the active
 * grants and the policy: what an approver sees next to a request (`trustFor`), what
 * `contained trust report` prints, and what the promotion check evaluates. Read-only.
 */
import type { RiskAnnotations } from '../../capabilities/sdk/risk.js';
import { formatSubject } from '../grants.js';
import type { Grant, Mode } from '../model.js';
import { actionGrants } from './grant-changes.js';
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
  /** The grants active at `now` (the host's grant service: current as of the store's change counter). */
  grants(now: number): Promise<Grant[]>;
  /** The ledger, reviews and proposals (either store). */
  tables: TrustTables;
  config: TrustConfig;
  riskOf?(capability: string, method: string): RiskAnnotations | undefined;
}

/** Figures of one action; `grants`: the active grants when the caller has read them already. */
export async function actionFigures(src: FigureSources, key: ActionKey, now: number, known?: readonly Grant[], excludeProposal?: string): Promise<ActionFigures> {
  const [stats, lastProposalAt, open, grants] = await Promise.all([
    src.tables.stats(key, now, src.config),
    src.tables.lastProposalAt(key, excludeProposal),
    src.tables.openProposal(key),
    known ?? src.grants(now),
  ]);
  const risk = stats.risk ?? src.riskOf?.(key.capability, key.method);
  const { grant } = actionGrants(grants, key, now, stats.grantIds);
  const mode = grant?.mode ?? 'none';
  const assisted = stats.lifetime.approved + stats.lifetime.edited + stats.lifetime.denied;
  const input = { risk, assisted, recentEdited: stats.recentAssisted.edited, recentDenied: stats.recentAssisted.denied, critical: stats.lifetime.critical };
  const bar = evaluateBar({ ...input, lastProposalAt }, src.config);
  const wouldAllow = evaluateBar(input, src.config).met;
  return { key, stats, risk, mode, grant, bar, wouldAllow, openProposal: open?.id };
}

export async function phaseForSubject(src: FigureSources, subject: string, now: number, known?: readonly Grant[]): Promise<Phase> {
  const [keys, grants] = await Promise.all([src.tables.actions(subject), known ?? src.grants(now)]);
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
