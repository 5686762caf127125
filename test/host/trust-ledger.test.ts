/**
 * The trust ledger against a scripted sequence: counts of assisted verdicts and executed reviews,
 * the rolling windows (last N days, last N events, last N reviews), rates, idempotent replays, and
 * the phases derived from it. Plus the pure policy functions at their boundaries.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { GateCall } from '../../runtime/gate.js';
import { DEFAULT_TRUST_CONFIG, evaluateBar, evaluateDemotion, phaseOf, type PhaseAction } from '../../host/trust/policy.js';
import { sampled } from '../../host/trust/reviews.js';
import { RISK, startTrust, SUBJECT, type TrustHarness } from './trust-harness.js';

const KEY = { subject: SUBJECT, capability: 'notes', method: 'mkdir' };
const DAY = 86_400_000;
let h: TrustHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

function call(i: number, method = 'mkdir'): GateCall {
  return { callId: `call-${i}`, runId: 'run-1', subject: SUBJECT, capability: 'notes', definition: 'fs', method, args: `dir-${i}`, reason: undefined, risk: RISK.lowStakes, scope: { ok: true } };
}

describe('ledger counts match a scripted sequence', () => {
  it('assisted verdicts, executed reviews, windows and rates', async () => {
    h = await startTrust({ windowDays: 30, windowCount: 10, demoteWindow: 50, demoteErrorRate: 0.5 });
    const grant = await h.grant('notes', ['mkdir'], 'assisted');
    // 40 days ago: 3 approved, 1 edited.
    for (const v of ['approved', 'approved', 'approved', 'edited'] as const) await h.verdict(KEY, v, RISK.lowStakes);
    h.clock.now += 40 * DAY;
    // Today: 2 approved, 1 denied, 1 edited.
    for (const v of ['approved', 'denied', 'edited', 'approved'] as const) await h.verdict(KEY, v, RISK.lowStakes);
    // Then executed: 6 actions, 5 reviewed (ok, ok, error, ok, ok), one left pending.
    const executed = await h.grant('notes', ['mkdir'], 'executed');
    for (let i = 0; i < 6; i++) await h.trust.onExecuted(call(i), executed, { ok: true, value: null });
    const reviews = await h.trust.listReviews();
    expect(reviews).toHaveLength(6);
    const verdicts = ['ok', 'ok', 'error', 'ok', 'ok'] as const;
    for (let i = 0; i < verdicts.length; i++) {
      h.clock.now += 1000;
      await h.trust.markReview('alice', reviews[i]?.id ?? '', verdicts[i] as 'ok', verdicts[i] === 'error' ? 'wrong folder' : undefined);
    }
    const s = await h.trust.tables.stats(KEY, h.clock.now, h.trust.deps.config);
    expect(s.lifetime).toEqual({ recommended: 0, approved: 5, edited: 2, denied: 1, expired: 0, executed: 1, ok: 4, error: 1, critical: 0 });
    expect(s.lastDays).toMatchObject({ approved: 2, edited: 1, denied: 1, ok: 4, error: 1, executed: 1 });
    // The last 10 events: 4 of today's verdicts and the 6 executed actions.
    expect(s.lastEvents).toMatchObject({ approved: 2, edited: 1, denied: 1, ok: 4, error: 1, executed: 1 });
    expect(s.recentAssisted).toEqual({ count: 8, approved: 5, edited: 2, denied: 1 });
    expect(s.reviewWindow).toEqual({ count: 5, errors: 1, critical: 0 });
    expect(s.grantIds).toEqual(expect.arrayContaining([grant.id, executed.id]));
    expect(s.risk).toEqual(RISK.lowStakes);
    const figures = await h.trust.figuresFor({ id: 'x', kind: 'recommendation', runId: 'r', subject: SUBJECT, capability: 'notes', method: 'mkdir', why: 'w', approvalsRequired: 1, approvals: [], status: 'pending', createdAt: 0, expiresAt: 1 });
    expect(figures).toMatchObject({
      action: 'notes.mkdir',
      mode: 'executed',
      assisted: { reviews: 8, approvedAsIs: 5, edited: 2, denied: 1, editRate: '37.5%' },
      executed: { reviews: 5, ok: 4, error: 1, critical: 0, errorRate: '20.0%' },
    });
  });

  it('replaying an event (a restart) never counts it twice; expired recommendations are not verdicts', async () => {
    h = await startTrust();
    await h.grant('notes', ['mkdir']);
    const r = await h.verdict(KEY, 'approved', RISK.lowStakes);
    await h.trust.resolved(r);
    await h.trust.resolved({ ...r, status: 'denied' });
    expect((await h.trust.tables.stats(KEY, h.clock.now, h.trust.deps.config)).lifetime).toMatchObject({ approved: 1, denied: 0 });
    const expired = { ...r, id: 'req-expired', status: 'expired' as const };
    await h.trust.recommended({ ...expired, status: 'pending' });
    await h.trust.resolved(expired);
    expect((await h.trust.tables.stats(KEY, h.clock.now, h.trust.deps.config)).lifetime).toMatchObject({ approved: 1, expired: 1 });
    expect((await h.trust.tables.assistedCount(KEY))).toBe(1);
  });
});

describe('sampling', () => {
  it('is deterministic per call and close to the fraction', () => {
    const ids = Array.from({ length: 4000 }, (_, i) => `call-${i}`);
    const share = ids.filter((id) => sampled(id, 0.1)).length / ids.length;
    expect(share).toBeGreaterThan(0.08);
    expect(share).toBeLessThan(0.12);
    expect(ids.filter((id) => sampled(id, 0.1))).toEqual(ids.filter((id) => sampled(id, 0.1)));
    expect(ids.every((id) => sampled(id, undefined) && sampled(id, 1) && !sampled(id, 0))).toBe(true);
  });
});

describe('policy at its boundaries', () => {
  const cfg = DEFAULT_TRUST_CONFIG;
  it('bar: 199 vs 200 reviews, 19 vs 20 edits, any critical, the ceiling', () => {
    const base = { risk: RISK.lowStakes, assisted: 200, recentEdited: 10, recentDenied: 9, critical: 0 };
    expect(evaluateBar(base, cfg).met).toBe(true);
    expect(evaluateBar({ ...base, assisted: 199 }, cfg).missing).toEqual(['199/200 assisted reviews']);
    expect(evaluateBar({ ...base, recentDenied: 10 }, cfg).missing).toEqual(['edit rate 10.0% (needs < 10.0%)']);
    expect(evaluateBar({ ...base, critical: 1 }, cfg).met).toBe(false);
    for (const risk of [RISK.destructive, RISK.financial, RISK.irreversible, undefined]) expect(evaluateBar({ ...base, risk }, cfg).missing[0]).toMatch(/^ceiling/);
    expect(evaluateBar({ ...base, assisted: 399, lastProposalAt: 200 }, cfg).met).toBe(false);
    expect(evaluateBar({ ...base, assisted: 400, lastProposalAt: 200 }, cfg).met).toBe(true);
  });

  it('demotion: any critical; errors over 5% of max(window, 50)', () => {
    expect(evaluateDemotion({ verdict: 'critical', windowReviews: 1, windowErrors: 0 }, cfg)).toMatchObject({ demote: true, trigger: 'critical' });
    expect(evaluateDemotion({ verdict: 'error', windowReviews: 3, windowErrors: 2 }, cfg).demote).toBe(false);
    expect(evaluateDemotion({ verdict: 'error', windowReviews: 3, windowErrors: 3 }, cfg)).toMatchObject({ demote: true, trigger: 'error-rate' });
    expect(evaluateDemotion({ verdict: 'ok', windowReviews: 50, windowErrors: 10 }, cfg).demote).toBe(false);
  });

  it('phases: 1 nothing executed; 2 executed; 3 executed on established error-rate data and expanded', () => {
    const assisted: PhaseAction = { mode: 'assisted', risk: RISK.lowStakes, reviews: 0, windowReviews: 0, windowErrors: 0, critical: 0, sampled: false };
    const young: PhaseAction = { ...assisted, mode: 'executed', reviews: 10, windowReviews: 10 };
    const proven: PhaseAction = { ...assisted, mode: 'executed', reviews: 60, windowReviews: 50, windowErrors: 2 };
    expect(phaseOf([assisted], cfg).phase).toBe(1);
    expect(phaseOf([], cfg).phase).toBe(1);
    expect(phaseOf([assisted, young], cfg).phase).toBe(2);
    expect(phaseOf([proven], cfg).phase).toBe(2); // evidence, but autonomy not expanded beyond one fully reviewed action
    expect(phaseOf([proven, young], cfg).phase).toBe(3);
    expect(phaseOf([{ ...proven, sampled: true }], cfg).phase).toBe(3);
    expect(phaseOf([{ ...proven, windowErrors: 3 }, young], cfg).phase).toBe(2);
    expect(phaseOf([{ ...proven, critical: 1 }, young], cfg).phase).toBe(2);
  });
});
