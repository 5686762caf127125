/**
 * Screenshots of every console page in real headless Chromium, in a realistic state: a long email
 * waiting for review, a two-person request half approved, an escalation whose reason hides a
 * right-to-left override (shown as a visible mark), finished runs, grants. The test checks each page
 * renders its key parts; the images go to docs/screenshots/ when UPDATE_SCREENSHOTS=1 (that is how
 * docs/console.md is refreshed), otherwise to a temporary folder so `npm test` leaves the tree clean.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fixture, startFixture } from '../host/helpers/host-fixture.js';
import { hasChromium, launch, loginAs, type OperatorPage } from './browser.js';

const UPDATE = process.env.UPDATE_SCREENSHOTS === '1';
const OUT = UPDATE ? path.resolve('docs/screenshots') : mkdtempSync(path.join(os.tmpdir(), 'console-shots-'));
const MAIL = { capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'email the team' };
const NOTES = { capability: 'notes', kind: 'fs', scope: {}, methods: ['read', 'write'], why: 'keep notes' };

const DIGEST_TEXT = [
  '# Weekly digest 2024-W23',
  '',
  '3 report(s) this week.',
  '',
  '## Payments team — week 23',
  '',
  '- Shipped the new refund screen to all support agents.',
  '- Card-dispute volume down 12% after the descriptor change.',
  "- **Risk:** the acquirer's API migration is blocked on their sandbox credentials.",
  '',
  '## Platform team — week 23',
  '',
  '- Postgres 16 upgrade finished with 4 minutes of read-only time.',
  '- **Risk:** on-call load is high: 3 incidents, 2 paged at night.',
].join('\n');

describe.skipIf(!hasChromium)('console screenshots', () => {
  let fx: Fixture;
  let browser: Browser;
  let base: string;
  let erin: OperatorPage;

  const shot = async (name: string, target: { screenshot(o: { path: string }): Promise<unknown> }): Promise<void> => {
    const file = path.join(OUT, `${name}.png`);
    await target.screenshot({ path: file });
    expect(readFileSync(file).subarray(1, 4).toString()).toBe('PNG');
  };

  beforeAll(async () => {
    mkdirSync(OUT, { recursive: true });
    [fx, browser] = await Promise.all([startFixture(), launch()]);
    base = fx.host.url as string;

    // A finished run with an edited approval, and one denied, for the Runs page.
    const done = fx.image('report-digest', `export default async (input, caps) => { console.log('found 3 reports'); const r = await caps.mail.send({ to: 'team@example.com', subject: 'Digest draft', text: 'hello team' }, { reason: 'Email the 2024-W23 digest' }); return { emailedTo: r.accepted }; }`, [MAIL]);
    await fx.grant(done.digest, { capability: 'mail', methods: ['send'], mode: 'assisted', reason: 'a person reads the digest before it is emailed' });
    await fx.grant(done.digest, { capability: 'notes', methods: ['read'], mode: 'contained', reason: 'read the weekly reports' });
    const alice = await fx.operator('alice');
    const first = await fx.host.submit({ image: done.bytes, input: { week: '2024-W22' } });
    const firstRequest = await waitPending(fx, first.runId);
    await alice.decide({ requestId: firstRequest, verdict: 'approve', args: { to: 'team@example.com', subject: 'Weekly digest 2024-W22', text: 'hello team' }, note: 'clearer subject' });
    await fx.host.waitForRun(first.runId);

    // Waiting: a long email, a two-person refund half approved, an escalation with a hidden character.
    const digest = fx.image('report-digest', `export default async (input, caps) => caps.mail.send({ to: 'team@example.com', subject: 'Weekly digest 2024-W23: 3 reports, 2 open risks', text: ${JSON.stringify(DIGEST_TEXT)} }, { reason: 'Email the 2024-W23 digest to team@example.com' })`, [MAIL]);
    await fx.grant(digest.digest, { capability: 'mail', methods: ['send'], mode: 'assisted', reason: 'a person reads the digest before it is emailed' });
    await fx.host.submit({ image: digest.bytes, input: { week: '2024-W23' } });
    const refund = fx.image('refund-desk', `export default async (input, caps) => caps.mail.send({ to: 'payments@example.com', subject: 'Refund EUR 129.00 on order A-1002', text: 'Refund 12900 cents to bo@example.com for order A-1002.' }, { reason: 'Parcel arrived damaged; customer sent photos.' })`, [MAIL]);
    await fx.grant(refund.digest, { capability: 'mail', methods: ['send'], mode: 'assisted', approvals: 2, reason: 'refunds move money: two people approve each one' });
    const r2 = await fx.host.submit({ image: refund.bytes, input: { orderId: 'A-1002' } });
    await alice.decide({ requestId: await waitPending(fx, r2.runId), verdict: 'approve', note: 'photos checked' });
    const notes = fx.image('notes-keeper', `export default async (input, caps) => caps.notes.write({ path: 'summary.txt', content: 'done' }, { reason: 'save the summary for \u202Etxt.exe\u202C later' })`, [NOTES]);
    await fx.host.submit({ image: notes.bytes });
    await waitFor(async () => (await fx.host.requests.pending()).length === 3);

    // An action performed in executed mode, waiting for its after-the-fact review.
    const reader = fx.image('notes-reader', `export default async (input, caps) => (await caps.notes.read('a.txt', { reason: 'summarise the notes' })).length`, [NOTES]);
    await fx.grant(reader.digest, { capability: 'notes', methods: ['read'], mode: 'executed', reason: 'reading notes is reversible: review afterwards' });
    await fx.host.waitForRun((await fx.host.submit({ image: reader.bytes })).runId);

    erin = await loginAs(browser, base, fx.tokens['erin'] as string);
  });
  afterAll(async () => {
    expect(erin?.errors ?? []).toEqual([]);
    await browser?.close();
    await fx?.close();
    if (!UPDATE) rmSync(OUT, { recursive: true, force: true });
  });

  it('login', async () => {
    const context = await browser.newContext({ viewport: { width: 1000, height: 560 } });
    const page = await context.newPage();
    await page.goto(`${base}/console/`);
    await page.getByLabel('Operator token').waitFor();
    await shot('login', page);
    await context.close();
  });

  it('pending: cards, risk, reason, arguments, two-person progress, hidden characters made visible', async () => {
    const { page } = erin;
    await page.locator('article.card').nth(2).waitFor();
    await page.locator('.progress', { hasText: '1 of 2 approvals' }).waitFor();
    expect(await page.locator('.ctl', { hasText: 'U+202E' }).count()).toBe(1);
    expect(await page.locator('#pending-count').textContent()).toBe('3');
    await page.mouse.move(0, 0);
    await page.evaluate('document.activeElement?.blur()');
    await page.setViewportSize({ width: 1280, height: 1500 });
    await shot('pending', page);
  });

  it('pending: edit then approve, with the diff', async () => {
    const { page } = erin;
    const card = page.locator('article.card', { hasText: 'Weekly digest 2024-W23' });
    await card.focus();
    await page.keyboard.press('e');
    await card.getByLabel('subject', { exact: true }).fill('Weekly digest 2024-W23 (3 reports, 2 risks)');
    const text = card.getByLabel('text', { exact: true });
    await text.fill(DIGEST_TEXT.replace('3 incidents, 2 paged at night', '3 incidents; see the on-call review'));
    await card.locator('.diff .ins').first().waitFor();
    await card.getByLabel('Note (optional)').focus();
    await shot('pending-edit', card);
    await page.keyboard.press('Escape');
  });

  it('runs, with one run opened', async () => {
    const { page } = erin;
    await page.setViewportSize({ width: 1280, height: 1100 });
    await page.keyboard.press('2');
    const row = page.locator('tr.selectable', { hasText: 'report-digest' }).filter({ has: page.locator('.badge', { hasText: 'ok' }) });
    await row.click();
    await page.locator('.detail').getByText('Requests this run made').waitFor();
    await page.locator('.detail td', { hasText: '(edited)' }).waitFor();
    await shot('runs', page);
  });

  it('grants, with the narrow form open', async () => {
    const { page } = erin;
    await page.keyboard.press('3');
    const row = page.locator('tr', { hasText: 'refunds move money' });
    await row.getByRole('button', { name: 'Narrow…' }).click();
    await page.locator('form.inline-form').waitFor();
    await shot('grants', page);
  });

  for (const name of ['Review', 'Trust', 'Audit']) {
    it(name, async () => {
      const { page } = erin;
      await page.setViewportSize({ width: 1280, height: 800 });
      await page.getByRole('link', { name }).click();
      await page.locator('section.page h1').waitFor();
      await page.locator('section.page .muted', { hasText: 'asking the host' }).waitFor({ state: 'detached' });
      if (name === 'Review') await page.locator('article.card', { hasText: 'notes.read' }).waitFor();
      if (name === 'Audit') await page.locator('.status-line .badge', { hasText: 'chain verified' }).waitFor();
      if (name === 'Trust') await page.locator('tr', { hasText: 'notes.read' }).first().waitFor();
      await shot(name.toLowerCase(), page);
    });
  }
});

async function waitFor(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function waitPending(fx: Fixture, runId: string): Promise<string> {
  let id = '';
  await waitFor(async () => {
    id = (await fx.host.requests.pending()).find((r) => r.runId === runId)?.id ?? '';
    return id !== '';
  });
  return id;
}
