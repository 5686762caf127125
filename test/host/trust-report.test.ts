/**
 * The trust report is built once (host/trust/report.ts): `contained trust report --json` and the
 * console's trust data (`trustReport`, GET /console/api/trust) list the same subjects, actions,
 * modes, phases and promotion bars — here on a data folder holding a `*` grant and grants for a
 * signed name. And the mode trust reports for an action is the grant the gate would choose
 * (`chooseGrant`), including a signed-name grant the action has no event under yet.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { trustCommand } from '../../host/cli/trust.js';
import { trustReport } from '../../host/console/oversight.js';
import { chooseGrant } from '../../host/grant-choice.js';
import { actionGrants } from '../../host/trust/grant-changes.js';
import type { SubjectReport } from '../../host/trust/report.js';
import { RISK, startTrust, SUBJECT, type TrustHarness } from './trust-harness.js';

const SIGNER = `sha256:${'12'.repeat(32)}`;
const NAMED = `refund-desk@${SIGNER}`;

let h: TrustHarness;
beforeEach(async () => {
  h = await startTrust();
});
afterEach(async () => {
  await h.close();
});

/** Assisted notes.read with a record; `kv.*` assisted; mail.send assisted for the signed name (the digest's events under it), then executed for it (a promotion, no events yet). */
async function fixture(): Promise<{ executedId: string }> {
  const read = await h.grant('notes', ['read']);
  await h.verdict({ subject: SUBJECT, capability: 'notes', method: 'read' }, 'approved', RISK.lowStakes, read.id);
  await h.verdict({ subject: SUBJECT, capability: 'notes', method: 'read' }, 'edited', RISK.lowStakes, read.id);
  await h.grant('kv', ['*']);
  const named = { name: 'refund-desk', signer: SIGNER };
  const assisted = await h.grant('mail', ['send'], 'assisted', { subject: named });
  await h.verdict({ subject: SUBJECT, capability: 'mail', method: 'send' }, 'approved', RISK.lowStakes, assisted.id);
  const executed = await h.grant('mail', ['send'], 'executed', { subject: named });
  await h.audit.flush();
  return { executedId: executed.id };
}

async function cliReport(): Promise<SubjectReport[]> {
  let out = '';
  const code = await trustCommand(['report', '--json', '--data-dir', h.dir], { stdout: (t) => (out += t), stderr: () => undefined });
  expect(code).toBe(0);
  return JSON.parse(out) as SubjectReport[];
}

describe('trust report: one builder for the CLI and the console', () => {
  it('the CLI report and the console trust data agree on a * grant and a signed-name subject', async () => {
    await fixture();
    const now = Date.now();
    const cli = await cliReport();
    const web = await trustReport({ trust: h.trust }, now);

    const fromCli = cli.map((s) => ({ subject: s.subject, phase: s.phase, why: s.why, actions: s.actions.map((a) => [a.action, a.mode, a.bar]) }));
    const fromWeb = web.map((s) => ({ subject: s.subject, phase: s.phase.phase, why: s.phase.why, actions: s.actions.map((a) => [a['action'], a['mode'], a['bar']]) }));
    expect(fromWeb).toEqual(fromCli);

    // What both say: the signed name is a subject of its own (its grants let any image of that
    // name signed by that key act); the `*` grant is one action; the digest's mail.send is
    // executed, by the signed-name grant the gate would choose for it.
    expect(fromCli.map((s) => s.subject)).toEqual([NAMED, SUBJECT]);
    expect(fromCli[0]).toMatchObject({ phase: 2, actions: [['mail.send', 'executed', 'not needed (already executed)']] });
    expect(fromCli[1]?.actions.map(([action, mode]) => [action, mode])).toEqual([
      ['kv.*', 'assisted'],
      ['mail.send', 'executed'],
      ['notes.read', 'assisted'],
    ]);
  });

  it('--subject and the console filter pick the same rows, for a digest and for a signed name', async () => {
    await fixture();
    for (const subject of [SUBJECT, NAMED]) {
      let out = '';
      await trustCommand(['report', '--json', '--subject', subject, '--data-dir', h.dir], { stdout: (t) => (out += t), stderr: () => undefined });
      const cli = (JSON.parse(out) as SubjectReport[]).map((s) => [s.subject, s.actions.map((a) => a.action)]);
      const web = (await trustReport({ trust: h.trust }, Date.now(), subject)).map((s) => [s.subject, s.actions.map((a) => a['action'])]);
      expect(web, subject).toEqual(cli);
      expect(cli.map(([s]) => s)).toEqual([subject]);
    }
  });

  it('without a trust service the console answers NOT_FOUND', async () => {
    await expect(trustReport({}, Date.now())).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('trust and the gate choose the same grant', () => {
  it("an action's grant is the gate's choice for a run of that image, including a signed-name grant it has no event under", async () => {
    const { executedId } = await fixture();
    const now = Date.now();
    const grants = await h.trust.sources.grants(now);
    const stats = await h.trust.tables.stats({ subject: SUBJECT, capability: 'mail', method: 'send' }, now, h.trust.sources.config);
    expect(stats.grantIds).not.toContain(executedId);
    const run = { digest: SUBJECT, name: 'refund-desk', signers: [SIGNER] };
    for (const [capability, method] of [['mail', 'send'], ['notes', 'read'], ['kv', 'get'], ['notes', 'write']] as const) {
      const key = { subject: SUBJECT, capability, method };
      const ids = (await h.trust.tables.stats(key, now, h.trust.sources.config)).grantIds;
      expect(actionGrants(grants, key, now, ids).grant?.id, `${capability}.${method}`).toBe(chooseGrant(grants, { subject: run, capability, method, now }).grant?.id);
    }
    expect(actionGrants(grants, { subject: SUBJECT, capability: 'mail', method: 'send' }, now, stats.grantIds).grant?.id).toBe(executedId);
  });

  it('a digest with no event under a signed-name grant is not covered by it (trust cannot know the image name)', async () => {
    await fixture();
    const now = Date.now();
    const other = `sha256:${'77'.repeat(32)}`;
    expect(actionGrants(await h.trust.sources.grants(now), { subject: other, capability: 'mail', method: 'send' }, now).grant).toBeUndefined();
    // A lookalike subject string matches nothing.
    for (const subject of [`refund-desk@${SIGNER.toUpperCase()}`, `refund-desk2@${SIGNER}`, 'refund-desk', SUBJECT.toUpperCase()]) {
      expect(actionGrants(await h.trust.sources.grants(now), { subject, capability: 'mail', method: 'send' }, now).grant, subject).toBeUndefined();
    }
  });
});
