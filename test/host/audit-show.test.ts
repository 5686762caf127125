/**
 * `contained audit show CALL` on a real audit log (a trust service on a real store): a call allowed
 * by a grant is an automatic rule, and the log says how that grant came to be — a promotion the host
 * accepted by itself (trust.autoAccept), or one an admin accepted. The decision record is appended
 * through the real AuditLog in the shape the gate writes (host/audit/gate-audit.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { showCall } from '../../host/audit/signatures.js';
import { RISK, startTrust, SUBJECT, type TrustHarness } from './trust-harness.js';

const KEY = { subject: SUBJECT, capability: 'notes', method: 'mkdir' };
let h: TrustHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function promotedGrant(autoAccept: boolean): Promise<{ t: TrustHarness; grantId: string }> {
  const t = (h = await startTrust({ minAssistedReviews: 5, autoAccept }));
  await t.grant('notes', ['mkdir']);
  for (let i = 0; i < 5; i++) await t.verdict(KEY, 'approved', RISK.lowStakes);
  let [p] = await t.trust.promotions.list();
  if (!autoAccept) p = await t.trust.promotions.decide('erin', p?.id ?? '', 'accept', 'clean record');
  return { t, grantId: p?.newGrantId ?? '' };
}

async function decidedBy(t: TrustHarness, grantId: string): Promise<string[]> {
  await t.audit.append({ type: 'decision', runId: 'run-1', subject: SUBJECT, capability: 'notes', method: 'mkdir', callId: 'call-1', data: { allow: true, basis: `grant:${grantId}`, grantId, mode: 'executed' } });
  await t.audit.flush();
  return showCall(t.audit.db, 'call-1');
}

describe('audit show CALL: people or an automatic rule', () => {
  it('names a grant made by an auto-accepted promotion', async () => {
    const { t, grantId } = await promotedGrant(true);
    expect(grantId).toMatch(/^grt_/);
    const lines = await decidedBy(t, grantId);
    expect(lines[0]).toMatch(new RegExp(`^call call-1: notes.mkdir allowed by an automatic rule: grant ${grantId} in mode executed, made by a promotion the host accepted automatically \\(trust.autoAccept, seq \\d+\\); no person decided this call$`));
  });

  it('names the admin who accepted the promotion', async () => {
    const { t, grantId } = await promotedGrant(false);
    const lines = await decidedBy(t, grantId);
    expect(lines[0]).toMatch(/made by a promotion erin accepted \(seq \d+\); no person decided this call$/);
  });

  it('says nothing for a call the log does not have', async () => {
    const { t } = await promotedGrant(false);
    expect(await showCall(t.audit.db, 'no-such-call')).toEqual([]);
  });
});
