/**
 * The promotion policy, demotion rule and phases as pure functions of ledger figures, plus the
 * host config's `trust` section. Pure so one definition is used by the host, the CLI report and
 * the property tests, and so the docs can state it exactly (docs/audit-and-trust.md).
 *
 * Defends the founding principle: autonomy follows demonstrated reliability, and some actions
 * never become autonomous. The ceiling (destructive, financial, or not reversible) is checked
 * first and cannot be configured away.
 */
import { z } from 'zod';
import type { RiskAnnotations } from '../../capabilities/sdk/risk.js';

export const trustConfigSchema = z.strictObject({
  /** Assisted verdicts (approved as-is, approved with edits, denied) needed before a proposal. */
  minAssistedReviews: z.number().int().min(1).max(1_000_000).default(200),
  /** Proposal only while (edited + denied) / minAssistedReviews over the last minAssistedReviews verdicts is below this. */
  maxEditRate: z.number().min(0).max(1).default(0.1),
  /** Accept proposals at once, as `host (autoAccept)`, instead of waiting for an admin. Still audited and announced. */
  autoAccept: z.boolean().default(false),
  /** Demote when (error + critical) / max(reviews in window, demoteWindow) over the last demoteWindow reviews exceeds this. */
  demoteErrorRate: z.number().min(0).max(1).default(0.05),
  /** Reviews in the demotion window. */
  demoteWindow: z.number().int().min(1).max(100_000).default(50),
  /** Rolling windows shown in reports: the last N days and the last N events. */
  windowDays: z.number().int().min(1).max(3650).default(30),
  windowCount: z.number().int().min(1).max(1_000_000).default(200),
  /** Executed reviews an action needs before its error rate counts as established (phase 3). */
  phase3MinReviews: z.number().int().min(1).max(1_000_000).default(50),
  /** `reviewSample` of the executed grants that accepted promotions write (1: review every action). */
  promotedReviewSample: z.number().min(0).max(1).default(1),
});
export type TrustConfig = z.output<typeof trustConfigSchema>;
export const DEFAULT_TRUST_CONFIG: TrustConfig = trustConfigSchema.parse({});

/** Why an action can never be promoted (the ceiling), or undefined when it may be. */
export function ceilingReason(risk: RiskAnnotations | undefined): string | undefined {
  if (!risk) return 'its risk is unknown';
  if (risk.financial) return 'it is financial';
  if (risk.destructive) return 'it is destructive';
  if (!risk.reversible) return 'it is not reversible';
  return undefined;
}

/** Figures the bar is evaluated on, for one (subject, capability.method). */
export interface BarInput {
  risk: RiskAnnotations | undefined;
  /** Assisted verdicts so far (lifetime). */
  assisted: number;
  /** Among the last `minAssistedReviews` assisted verdicts: approved with edits, and denied. */
  recentEdited: number;
  recentDenied: number;
  /** Critical reviews ever. */
  critical: number;
  /** Assisted verdicts counted when the previous proposal for this action was made (any outcome), if any. */
  lastProposalAt?: number | undefined;
}

export interface BarVerdict {
  met: boolean;
  /** What is missing, in words (empty when met). */
  missing: string[];
  /** (edited + denied) / minAssistedReviews over the recent window. */
  editRate: number;
}

/**
 * The promotion bar: not under the ceiling; at least `minAssistedReviews` assisted verdicts (and as
 * many more since a previous proposal); no critical review ever; edit rate below `maxEditRate`.
 */
export function evaluateBar(input: BarInput, config: TrustConfig): BarVerdict {
  const missing: string[] = [];
  const ceiling = ceilingReason(input.risk);
  if (ceiling) missing.push(`ceiling: ${ceiling}`);
  const needed = (input.lastProposalAt ?? 0) + config.minAssistedReviews;
  if (input.assisted < needed) {
    missing.push(input.lastProposalAt === undefined ? `${input.assisted}/${needed} assisted reviews` : `${input.assisted}/${needed} assisted reviews (${config.minAssistedReviews} more since the last proposal)`);
  }
  if (input.critical > 0) missing.push(`${input.critical} critical review${input.critical > 1 ? 's' : ''}`);
  const editRate = (input.recentEdited + input.recentDenied) / config.minAssistedReviews;
  if (!(editRate < config.maxEditRate)) missing.push(`edit rate ${pct(editRate)} (needs < ${pct(config.maxEditRate)})`);
  return { met: missing.length === 0, missing, editRate };
}

/** Figures of the demotion window (the last `demoteWindow` reviews of executed actions). */
export interface DemotionInput {
  verdict: 'ok' | 'error' | 'critical';
  windowReviews: number;
  windowErrors: number;
}

export function evaluateDemotion(input: DemotionInput, config: TrustConfig): { demote: false } | { demote: true; trigger: 'critical' | 'error-rate'; reason: string } {
  if (input.verdict === 'critical') return { demote: true, trigger: 'critical', reason: 'a critical review' };
  const rate = input.windowErrors / Math.max(input.windowReviews, config.demoteWindow);
  if (input.verdict === 'error' && rate > config.demoteErrorRate) {
    return { demote: true, trigger: 'error-rate', reason: `error rate ${pct(rate)} over the last ${config.demoteWindow} reviews (threshold ${pct(config.demoteErrorRate)})` };
  }
  return { demote: false };
}

/** One action of a subject, for its phase. */
export interface PhaseAction {
  mode: 'contained' | 'executed' | 'assisted' | 'none';
  risk: RiskAnnotations | undefined;
  /** Executed reviews ever, and in the demotion window. */
  reviews: number;
  windowReviews: number;
  windowErrors: number;
  critical: number;
  /** The executed grant reviews only a sample (reviewSample < 1). */
  sampled: boolean;
}

export interface Phase {
  phase: 1 | 2 | 3;
  why: string;
}

/** Established error-rate evidence: enough reviews, error rate within the threshold, no critical. */
export function established(action: PhaseAction, config: TrustConfig): boolean {
  return (
    action.mode === 'executed' &&
    action.reviews >= config.phase3MinReviews &&
    action.critical === 0 &&
    action.windowErrors / Math.max(action.windowReviews, config.demoteWindow) <= config.demoteErrorRate
  );
}

/**
 * 1: no action executed. 2: some actions executed. 3: autonomy expanded on error-rate data — an
 * executed action has established evidence AND autonomy goes beyond one fully reviewed action
 * (two or more actions executed, or an executed grant reviews only a sample).
 */
export function phaseOf(actions: readonly PhaseAction[], config: TrustConfig): Phase {
  const executed = actions.filter((a) => a.mode === 'executed');
  if (executed.length === 0) return { phase: 1, why: 'every action needs a human first (assisted) or stays contained' };
  const evidence = executed.filter((a) => established(a, config));
  const expanded = executed.length >= 2 || executed.some((a) => a.sampled);
  if (evidence.length > 0 && expanded) {
    return { phase: 3, why: `${executed.length} executed action(s), ${evidence.length} with an established error rate (≥ ${config.phase3MinReviews} reviews, ≤ ${pct(config.demoteErrorRate)} errors, no critical)` };
  }
  return { phase: 2, why: `${executed.length} executed action(s)${evidence.length > 0 ? ', one with an established error rate, not yet expanded' : ', no established error rate yet'}` };
}

export function pct(rate: number): string {
  return `${(Math.round(rate * 1000) / 10).toFixed(1)}%`;
}
