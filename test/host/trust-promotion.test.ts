/**
 * Promotion by evidence. A property test (fast-check) over random sequences of assisted verdicts
 * and critical reviews: a proposal appears exactly after the first event at which an oracle,
 * written independently here, says the bar is met — never earlier, never twice — and never for a
 * destructive, financial or irreversible action. Then the default bar (200 reviews, < 10% edits)
 * at its boundary, acceptance (executed grant), decline, autoAccept, refusal, and shadow evidence.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { RiskAnnotations } from '../../capabilities/sdk/risk.js';
import { AUTO_ACCEPT_BY } from '../../host/trust/promotions.js';
import { RISK, startTrust, SUBJECT, type TrustHarness } from './trust-harness.js';

const KEY = { subject: SUBJECT, capability: 'notes', method: 'mkdir' };
let h: TrustHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

type Step = 'approved' | 'edited' | 'denied' | 'critical';

/** The bar, computed from scratch: eligible risk, ≥ min verdicts, no critical, (edits + denials) in the last min < rate × min. */
function oracleMet(steps: readonly Step[], risk: RiskAnnotations, min: number, maxEditRate: number): boolean {
  const eligible = risk.reversible && !risk.destructive && !risk.financial;
  const verdicts = steps.filter((s) => s !== 'critical');
  const recent = verdicts.slice(-min);
  const bad = recent.filter((s) => s !== 'approved').length;
  return eligible && verdicts.length >= min && !steps.includes('critical') && bad / min < maxEditRate;
}

const step = fc.oneof(
  { weight: 88, arbitrary: fc.constant<Step>('approved') },
  { weight: 5, arbitrary: fc.constant<Step>('edited') },
  { weight: 5, arbitrary: fc.constant<Step>('denied') },
  { weight: 2, arbitrary: fc.constant<Step>('critical') },
);
const riskName = fc.constantFrom<keyof typeof RISK>('lowStakes', 'lowStakes', 'destructive', 'financial', 'irreversible');

describe('property: the proposal fires exactly at the bar', () => {
  it('over random sequences of verdicts and critical reviews', async () => {
    const MIN = 12;
    const RATE = 0.1;
    const seen = { fired: 0, held: 0 };
    await fc.assert(
      fc.asyncProperty(riskName, fc.array(step, { maxLength: 45, size: 'max' }), async (name, steps) => {
        const t = await startTrust({ minAssistedReviews: MIN, maxEditRate: RATE });
        try {
          await t.grant('notes', ['mkdir']);
          const risk = RISK[name];
          const expectedAt = steps.findIndex((_, i) => oracleMet(steps.slice(0, i + 1), risk, MIN, RATE));
          let firedAt = -1;
          for (let i = 0; i < steps.length; i++) {
            const s = steps[i] as Step;
            if (s === 'critical') await t.critical(KEY, risk);
            else await t.verdict(KEY, s, risk);
            const proposals = (await t.trust.promotions.list());
            expect(proposals.length).toBeLessThanOrEqual(1);
            if (proposals.length === 1 && firedAt < 0) firedAt = i;
          }
          expect(firedAt).toBe(expectedAt);
          seen[firedAt >= 0 ? 'fired' : 'held'] += 1;
          if (name !== 'lowStakes') expect(firedAt).toBe(-1);
          if (firedAt >= 0) {
            const [proposal] = (await t.trust.promotions.list());
            const verdictsAtBar = steps.slice(0, firedAt + 1).filter((s) => s !== 'critical').length;
            expect(proposal?.evidence).toMatchObject({ assistedReviews: verdictsAtBar, critical: 0 });
            expect(t.events.filter((e) => e.type === 'promotion')).toHaveLength(1);
          }
        } finally {
          await t.close();
        }
      }),
      { numRuns: 60 },
    );
    // Not vacuous: the generator reaches the bar in some runs and misses it in others.
    expect(seen.fired).toBeGreaterThan(0);
    expect(seen.held).toBeGreaterThan(0);
  }, 60_000);
});

describe('the default bar: 200 assisted reviews, zero critical, edit rate under 10%', () => {
  it('199 approvals propose nothing; the 200th proposes, with the evidence', async () => {
    h = await startTrust();
    await h.grant('notes', ['read', 'mkdir']);
    for (let i = 0; i < 199; i++) await h.verdict(KEY, 'approved', RISK.lowStakes);
    expect((await h.trust.promotions.list())).toEqual([]);
    await h.verdict(KEY, 'approved', RISK.lowStakes);
    const [proposal] = (await h.trust.promotions.list());
    expect(proposal).toMatchObject({ ...KEY, status: 'proposed', evidence: { assistedReviews: 200, approvedAsIs: 200, editRate: '0.0%', critical: 0 } });
    expect(h.events).toContainEqual({ type: 'promotion', change: 'proposed', proposal });
  });

  it('20 edits or denials in the last 200 (10%) hold it back; one more approval pushes the oldest out and it fires', async () => {
    h = await startTrust();
    await h.grant('notes', ['mkdir']);
    for (let i = 0; i < 10; i++) await h.verdict(KEY, 'edited', RISK.lowStakes);
    for (let i = 0; i < 10; i++) await h.verdict(KEY, 'denied', RISK.lowStakes);
    for (let i = 0; i < 180; i++) await h.verdict(KEY, 'approved', RISK.lowStakes);
    expect((await h.trust.promotions.list())).toEqual([]);
    await h.verdict(KEY, 'approved', RISK.lowStakes);
    expect((await h.trust.promotions.list())).toHaveLength(1);
  });

  it('never proposes a destructive, financial or irreversible action, whatever the record', async () => {
    h = await startTrust();
    await h.grant('notes', ['remove', 'pay', 'send']);
    for (const [method, risk] of [['remove', RISK.destructive], ['pay', RISK.financial], ['send', RISK.irreversible]] as const) {
      for (let i = 0; i < 250; i++) await h.verdict({ ...KEY, method }, 'approved', risk);
    }
    expect((await h.trust.promotions.list())).toEqual([]);
    const figures = await h.trust.figuresFor({ ...(await h.verdict({ ...KEY, method: 'pay' }, 'approved', RISK.financial)), status: 'pending' });
    expect(figures).toMatchObject({ bar: expect.stringContaining('ceiling: it is financial') });
  });
});

describe('deciding a proposal', () => {
  async function proposed(config = {}): Promise<string> {
    h = await startTrust({ minAssistedReviews: 5, ...config });
    await h.grant('notes', ['read', 'mkdir'], 'assisted', { scope: { readOnly: false }, budgets: { mkdir: { maxCalls: 10 } } });
    for (let i = 0; i < 5; i++) await h.verdict(KEY, 'approved', RISK.lowStakes);
    const [p] = (await h.trust.promotions.list());
    return p?.id ?? 'none';
  }

  it('accept: an executed grant for exactly that method, copying subject, scope and budget; audited and announced', async () => {
    const id = await proposed();
    const t = h as TrustHarness;
    const accepted = await t.trust.promotions.decide('erin', id, 'accept', 'clean record');
    expect(accepted).toMatchObject({ status: 'accepted', decidedBy: 'erin', reason: 'clean record' });
    const grant = await t.store.getGrant(accepted.newGrantId ?? '');
    expect(grant).toMatchObject({ mode: 'executed', methods: ['mkdir'], scope: { readOnly: false }, budgets: { mkdir: { maxCalls: 10 } }, createdBy: 'erin', subject: { digest: SUBJECT } });
    expect(await t.trust.figuresFor({ ...(await t.verdict(KEY, 'approved', RISK.lowStakes)), status: 'pending' })).toMatchObject({ mode: 'executed', phase: 2 });
    await expect(t.trust.promotions.decide('erin', id, 'decline', 'changed my mind')).rejects.toMatchObject({ code: 'ALREADY_RESOLVED' });
    await t.audit.flush();
    const types = t.audit.db.prepare("SELECT type FROM audit_records WHERE type LIKE 'promotion.%' OR type = 'grant.added' ORDER BY seq").pluck().all();
    expect(types).toEqual(['grant.added', 'promotion.proposed', 'promotion.accepted', 'grant.added']);
  });

  it('decline: nothing changes, and the next proposal needs as many reviews again', async () => {
    const id = await proposed();
    const t = h as TrustHarness;
    await t.trust.promotions.decide('erin', id, 'decline', 'not yet');
    for (let i = 0; i < 4; i++) await t.verdict(KEY, 'approved', RISK.lowStakes);
    expect(await t.trust.promotions.list('proposed')).toEqual([]);
    await t.verdict(KEY, 'approved', RISK.lowStakes);
    expect(await t.trust.promotions.list('proposed')).toHaveLength(1);
  });

  it('refuses (PROMOTION_REFUSED) and withdraws when a critical review arrived since the proposal', async () => {
    const id = await proposed();
    const t = h as TrustHarness;
    await t.critical(KEY, RISK.lowStakes);
    await expect(t.trust.promotions.decide('erin', id, 'accept', 'ok')).rejects.toMatchObject({ code: 'PROMOTION_REFUSED' });
    expect((await t.trust.promotions.list())[0]).toMatchObject({ status: 'withdrawn' });
  });

  it('autoAccept: the host accepts at once — still a proposal, an acceptance, and announcements', async () => {
    await proposed({ autoAccept: true });
    const t = h as TrustHarness;
    const [p] = (await t.trust.promotions.list());
    expect(p).toMatchObject({ status: 'accepted', decidedBy: AUTO_ACCEPT_BY });
    expect(t.events.filter((e) => e.type === 'promotion').map((e) => (e as { change: string }).change)).toEqual(['proposed', 'accepted']);
  });
});

describe('shadow evidence', () => {
  it('records, per recommendation, whether the policy would have allowed it, and what humans then said', async () => {
    h = await startTrust({ minAssistedReviews: 10, maxEditRate: 0.3 });
    await h.grant('notes', ['mkdir']);
    for (let i = 0; i < 10; i++) await h.verdict(KEY, 'approved', RISK.lowStakes);
    // Bar met (proposal open, not accepted): the next recommendations are shadow-allowed —
    // each judged on the evidence before it (one edit in the last 10 is 10%, still under 30%).
    await h.verdict(KEY, 'approved', RISK.lowStakes);
    await h.verdict(KEY, 'edited', RISK.lowStakes);
    await h.verdict(KEY, 'denied', RISK.lowStakes);
    const stats = await h.trust.tables.stats(KEY, h.clock.now, h.trust.deps.config);
    expect(stats.shadow).toEqual({ wouldAllow: 3, approved: 1, edited: 1, denied: 1, pending: 0 });
    // Two more denials: 3 of the last 10 is 30%, not under 30% — from here the policy would not allow it.
    await h.verdict(KEY, 'denied', RISK.lowStakes);
    await h.verdict(KEY, 'approved', RISK.lowStakes);
    expect((await h.trust.tables.stats(KEY, h.clock.now, h.trust.deps.config)).shadow).toMatchObject({ wouldAllow: 4, denied: 2 });
  });
});
