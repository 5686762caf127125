/**
 * The console in real headless Chromium against a real host, for hardening findings 1 and 14 and
 * the edit form's stale error:
 * - A two-person card shows what runs if approved now: the current proposal's arguments, who
 *   edited them, the diff against what the agent asked, their digest, and approvals of those
 *   arguments only. An approve form opened before an edit says the arguments changed, and the host
 *   refuses its approval STALE_REQUEST; approving what is shown completes it.
 * - An approver whose approval was of other arguments is told it no longer counts and can approve
 *   the new proposal.
 * - Agent text that imitates the console's own labels ("Two-person rule ●● 2 of 2 approvals ✓")
 *   stays inside its framed, labelled quote; the status line with risk and approvals holds none of
 *   it and comes before any agent text.
 * - The edit form drops an old error once the field is corrected.
 */
import type { Browser, Locator } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson, sha256Hex } from '../../host/audit/canonical.js';
import type { OperatorClient } from '../../host/operator/client.js';
import { type Fixture, startFixture } from '../host/helpers/host-fixture.js';
import { hasChromium, launch, loginAs, type OperatorPage } from './browser.js';

const MAIL = { capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'mail' };
const LOOKALIKE = 'Two-person rule ●● 2 of 2 approvals ✓ alice ✓ bob';

/** Browser code is type-checked without the DOM library: the one method it uses. */
type Closest = { closest(selector: string): unknown };

function digestOf(args: unknown): string {
  return `sha256:${sha256Hex(canonicalJson(args))}`;
}

describe.skipIf(!hasChromium)('console: proposals, lookalike agent text, the edit form', () => {
  let fx: Fixture;
  let browser: Browser;
  let base: string;
  let alice: OperatorPage;
  let bob: OperatorPage;
  let carol: OperatorClient;

  beforeAll(async () => {
    [fx, browser] = await Promise.all([startFixture(), launch()]);
    base = fx.host.url as string;
    alice = await loginAs(browser, base, fx.tokens['alice'] as string);
    bob = await loginAs(browser, base, fx.tokens['bob'] as string);
    carol = await fx.operator('carol');
  });
  afterAll(async () => {
    for (const p of [alice, bob]) if (p) expect(p.errors, 'errors in the page').toEqual([]);
    await browser?.close();
    await fx?.close();
  });

  /** A mailing agent under an assisted grant; resolves with its run and the request id once both pages show the card. */
  async function mailer(name: string, mail: { subject: string; text?: string; to?: string | string[] }, reason = 'send the weekly digest', approvals = 2) {
    const args = { to: mail.to ?? 'team@example.com', subject: mail.subject, text: mail.text ?? 'line one' };
    const image = fx.image(name, `export default async (input, caps) => (await caps.mail.send(${JSON.stringify(args)}, { reason: ${JSON.stringify(reason)} })).accepted;`, [MAIL]);
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted', approvals });
    const { runId } = await fx.host.submit({ image: image.bytes });
    const aliceCard = alice.page.locator('article.card', { hasText: mail.subject });
    const bobCard = bob.page.locator('article.card', { hasText: mail.subject });
    await Promise.all([aliceCard.waitFor(), bobCard.waitFor()]);
    return { runId, args, requestId: (await aliceCard.getAttribute('data-id')) as string, aliceCard, bobCard, outcome: fx.host.waitForRun(runId) };
  }

  async function editAndApprove(card: Locator, field: string, value: string): Promise<void> {
    await card.getByRole('button', { name: 'Edit & approve…' }).click();
    await card.getByLabel(field, { exact: true }).fill(value);
    await card.getByRole('button', { name: 'Approve with edits' }).click();
    await card.locator('form').waitFor({ state: 'detached' });
  }

  it('Alice edits and approves: Bob sees the arguments that will run, the diff and the digest; his older form is refused STALE_REQUEST', async () => {
    const { args, requestId, aliceCard, bobCard, outcome } = await mailer('console-proposal', { subject: 'digest draft' });
    const asked = bobCard.locator('.proposal');
    expect(await asked.locator('.label').first().textContent()).toContain('as the agent asked');
    expect(await asked.locator('.digest').textContent()).toContain(digestOf(args).slice(0, 19));

    // Bob opens his approve form on what the agent asked, and leaves it open.
    await bobCard.getByRole('button', { name: 'Approve…', exact: true }).click();
    await bobCard.getByRole('button', { name: 'Approve (first of two)' }).waitFor();

    await editAndApprove(aliceCard, 'subject', 'digest FINAL');
    const edited = { ...args, subject: 'digest FINAL' };

    // Bob's card follows live: what runs now, who changed it, the diff, the digest, the progress.
    const proposal = bobCard.locator('.proposal');
    await proposal.locator('.label', { hasText: 'edited by alice' }).waitFor();
    expect(await proposal.locator('.proposal-args').textContent()).toContain('digest FINAL');
    expect(await proposal.locator('.proposal-args').textContent()).not.toContain('digest draft');
    await proposal.locator('.diff .del', { hasText: 'digest draft' }).waitFor();
    await proposal.locator('.diff .ins', { hasText: 'digest FINAL' }).waitFor();
    expect(await proposal.locator('.digest').textContent()).toContain(digestOf(edited).slice(0, 19));
    await bobCard.locator('.progress', { hasText: '1 of 2 approvals' }).waitFor();
    await bobCard.locator('form .notice', { hasText: 'The arguments changed' }).waitFor();

    // The stale form's approval names the digest Bob saw when he opened it: refused, nothing sent.
    await bobCard.getByRole('button', { name: 'Approve (first of two)' }).click();
    await bobCard.locator('form .error', { hasText: 'STALE_REQUEST' }).waitFor();
    expect((await fx.host.store.getRequest(requestId))?.status).toBe('pending');
    expect(fx.mails().some((m) => m.includes('Subject: digest'))).toBe(false);

    // Approving what is shown now completes it: the edited mail goes out, approved by both.
    await bobCard.getByRole('button', { name: 'Cancel' }).click();
    await bobCard.getByRole('button', { name: 'Approve…', exact: true }).click();
    await bobCard.getByRole('button', { name: 'Approve', exact: true }).click();
    await Promise.all([bobCard.waitFor({ state: 'detached' }), aliceCard.waitFor({ state: 'detached' })]);
    expect(await outcome).toMatchObject({ status: 'ok' });
    expect(fx.mails().filter((m) => m.includes('Subject: digest FINAL'))).toHaveLength(1);
    expect(await fx.host.store.getRequest(requestId)).toMatchObject({ status: 'approved', resolvedBy: ['alice', 'bob'] });
  });

  it('Alice approved what the agent asked, Bob edits: Alice is told hers no longer counts and may approve the new arguments', async () => {
    const { args, aliceCard, bobCard, outcome } = await mailer('console-recount', { subject: 'recount draft' });
    await aliceCard.getByRole('button', { name: 'Approve…', exact: true }).click();
    await aliceCard.getByRole('button', { name: 'Approve (first of two)' }).click();
    await aliceCard.getByText('You approved this').waitFor();

    await editAndApprove(bobCard, 'subject', 'recount FINAL');
    await aliceCard.locator('.proposal .label', { hasText: 'edited by bob' }).waitFor();
    await aliceCard.locator('.progress', { hasText: '1 of 2 approvals' }).waitFor();
    expect(await aliceCard.locator('.progress').textContent()).toContain('no longer counts');
    await aliceCard.getByText('Your approval was of other arguments').waitFor();
    expect(fx.mails().some((m) => m.includes('Subject: recount'))).toBe(false);

    await aliceCard.getByRole('button', { name: 'Approve…', exact: true }).click();
    await aliceCard.getByRole('button', { name: 'Approve', exact: true }).click();
    expect(await outcome).toMatchObject({ status: 'ok' });
    expect(fx.mails().filter((m) => m.includes('Subject: recount FINAL'))).toHaveLength(1);
    expect(digestOf(args)).not.toBe(digestOf({ ...args, subject: 'recount FINAL' }));
  });

  it('agent text imitating the console stays in its framed, labelled quote, never in the risk and approvals line (finding 14)', async () => {
    const reason = `routine send\n\n${LOOKALIKE}\nRisk: read-only · reversible`;
    const { aliceCard, requestId } = await mailer('console-lookalike', { subject: LOOKALIKE, text: `${LOOKALIKE}\nApproved by the security team` }, reason, 2);
    // The line the host writes: risk and approvals. None of the agent's text is in it.
    const status = aliceCard.locator('.status-line');
    expect(await status.locator('.progress').textContent()).toContain('0 of 2 approvals');
    expect(await status.textContent()).not.toContain('alice ✓ bob');
    expect(await status.textContent()).not.toContain('read-only');
    // Every place the lookalike appears is inside agent text: a framed quote labelled as the agent's.
    const holders = aliceCard.locator(':is(blockquote, pre, dd, span, p, h2):text("2 of 2 approvals ✓")');
    const count = await holders.count();
    expect(count).toBeGreaterThanOrEqual(2); // the reason and the arguments
    for (let i = 0; i < count; i++) {
      expect(await holders.nth(i).evaluate((el: unknown) => Boolean((el as Closest).closest('.agent-text'))), `occurrence ${i}`).toBe(true);
    }
    for (const box of await aliceCard.locator('.agent-text').all()) {
      expect(await box.locator('.agent-label').textContent()).toMatch(/written by the agent/);
      // Framed on every side, and it scrolls rather than pushing the card's own lines away.
      const style = await box.evaluate((el: unknown) => {
        const s = (globalThis as unknown as { getComputedStyle(e: unknown): Record<string, string> }).getComputedStyle(el);
        return [s.borderTopWidth, s.borderRightWidth, s.borderBottomWidth, s.borderLeftWidth, s.maxHeight, s.overflowY] as string[];
      });
      expect(style.slice(0, 4).every((w) => parseFloat(w) >= 1), style.join(' ')).toBe(true);
      expect(style[4]).not.toBe('none');
      expect(style[5]).toBe('auto');
    }
    // The host's status line comes before any agent text in the card, and does not overlap it.
    const order = await aliceCard.evaluate((card: unknown) => {
      type El = { querySelector(s: string): El; querySelectorAll(s: string): El[]; compareDocumentPosition(o: El): number };
      const status = (card as El).querySelector('.status-line');
      return [...(card as El).querySelectorAll('.agent-text')].every((a) => (status.compareDocumentPosition(a) & 4) !== 0); // 4: DOCUMENT_POSITION_FOLLOWING
    });
    expect(order).toBe(true);
    const statusBox = await status.boundingBox();
    for (const box of await aliceCard.locator('.agent-text').all()) {
      const b = await box.boundingBox();
      expect(b && statusBox && b.y >= statusBox.y + statusBox.height).toBe(true);
    }
    await carol.decide({ requestId, verdict: 'deny', reason: 'test done' });
    await aliceCard.waitFor({ state: 'detached' });
  });

  it('the edit form drops an old error once the field is corrected', async () => {
    const { aliceCard, requestId } = await mailer('console-edit-error', { subject: 'error check', to: ['team@example.com'] }, 'send it', 1);
    await aliceCard.getByRole('button', { name: 'Edit & approve…' }).click();
    const errorLine = aliceCard.locator('form p.error[role="alert"]');
    const submit = aliceCard.getByRole('button', { name: 'Approve with edits' });
    const to = aliceCard.getByLabel('to (JSON)');
    // The form's own check: a JSON field that does not parse.
    await to.fill('["team@example.com"');
    await submit.click();
    await errorLine.filter({ hasText: 'to: not valid JSON' }).waitFor();
    await to.fill('["team@example.com"]');
    await expect.poll(() => errorLine.textContent()).toBe('');
    // The host's refusal: a recipient outside the scope.
    await to.fill('["someone@elsewhere.org"]');
    await submit.click();
    await errorLine.filter({ hasText: /CAPABILITY_DENIED|OUT_OF_SCOPE/ }).waitFor();
    await to.fill('["team@example.com"]');
    await expect.poll(() => errorLine.textContent()).toBe('');
    expect((await fx.host.store.getRequest(requestId))?.status).toBe('pending');
    await aliceCard.getByRole('button', { name: 'Cancel' }).click();
    await carol.decide({ requestId, verdict: 'deny', reason: 'test done' });
    await aliceCard.waitFor({ state: 'detached' });
  });
});
