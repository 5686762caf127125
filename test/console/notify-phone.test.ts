/**
 * The Pending page at a phone's width, in real headless Chromium with a mobile viewport (390 × 844,
 * touch): an operator opens the link of a notification email, logs in, lands on that request's card,
 * reads its arguments (nothing wider than the screen), and approves it by tapping; a second request
 * is denied with a reason. A link to a request that is no longer pending says so. The screenshot goes
 * to docs/screenshots/pending-phone.png when UPDATE_SCREENSHOTS=1 (docs/approvals.md shows it).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fixture, startFixture } from '../host/helpers/host-fixture.js';
import { waitUntil } from '../host/helpers/webhook-receiver.js';
import { hasChromium, launch } from './browser.js';

const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };
const MAIL = { capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'mail' };

describe.skipIf(!hasChromium)('Pending at a phone’s width', () => {
  let fx: Fixture;
  let browser: Browser;
  let page: Page;
  let inbox: string;
  const errors: string[] = [];

  beforeAll(async () => {
    inbox = mkdtempSync(path.join(os.tmpdir(), 'contained-notify-inbox-'));
    [fx, browser] = await Promise.all([startFixture({ notify: { email: { folder: inbox, from: 'contained@example.com', to: ['ops@example.com'] }, pollMs: 20 } }), launch()]);
    const context = await browser.newContext(PHONE);
    page = await context.newPage();
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(`console: ${m.text()}`);
    });
  });
  afterAll(async () => {
    expect(errors, 'errors in the page').toEqual([]);
    await browser?.close();
    await fx?.close();
    rmSync(inbox, { recursive: true, force: true });
  });

  async function request(subject: string, text: string): Promise<string> {
    const source = `export default async (input, caps) => (await caps.mail.send({ to: 'customers@example.com', subject: ${JSON.stringify(subject)}, text: ${JSON.stringify(text)} }, { reason: 'the monthly newsletter' })).accepted;`;
    const image = fx.image(`phone-${subject.toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 30)}`, source, [MAIL]);
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const { runId } = await fx.host.submit({ image: image.bytes });
    return (await waitUntil(async () => (await fx.host.store.listRequests({ runId, status: 'pending' }))[0], 'the request')).id;
  }

  /** The console link in the notification email about `id`. */
  async function linkFromEmail(id: string): Promise<string> {
    const mail = await waitUntil(() => {
      const folder = path.join(inbox, 'new');
      let names: string[] = [];
      try {
        names = readdirSync(folder);
      } catch {
        return undefined;
      }
      return names.map((n) => readFileSync(path.join(folder, n), 'utf8').replace(/=\r?\n/g, '').replace(/=3D/g, '=')).find((m) => m.includes(id));
    }, 'the notification email');
    const link = new RegExp(`https?://[^\\s]+#/pending/${id}`).exec(mail)?.[0];
    expect(link).toBe(`${fx.host.url}/console/#/pending/${id}`);
    return link as string;
  }

  /** Nothing on the page is wider than the screen (no sideways scrolling). */
  async function fitsTheScreen(): Promise<void> {
    // Run in the page (a string: the test is compiled without the DOM's types). Every element not
    // inside something that scrolls sideways on purpose (the nav bar) ends inside the screen.
    const { scroll, width, wide } = await page.evaluate<{ scroll: number; width: number; wide: string[] }>(`(() => {
      const wide = [...document.querySelectorAll('body *')]
        .filter((el) => !el.closest('nav') && el.getClientRects().length > 0)
        .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5)
        .map((el) => el.tagName.toLowerCase() + '.' + [...el.classList].join('.'));
      return { scroll: document.documentElement.scrollWidth, width: window.innerWidth, wide };
    })()`);
    expect(wide).toEqual([]);
    expect(scroll).toBeLessThanOrEqual(width);
  }

  it('opens the emailed link, logs in, reads the arguments and approves by tapping', async () => {
    const longLine = 'Dear customer, '.repeat(30);
    const id = await request('Our December newsletter with a subject long enough to wrap on a phone', `${longLine}\nSecond paragraph.\nThird.`);
    const link = await linkFromEmail(id);

    await page.goto(link);
    await page.getByLabel('Operator token').fill(fx.tokens['alice'] as string);
    await page.getByRole('button', { name: 'Log in' }).tap();
    await page.locator('#link-state[data-state="live"]').waitFor();
    const card = page.locator(`article.card[data-id="${id}"]`);
    await card.and(page.locator('.linked')).waitFor();
    expect(new URL(page.url()).hash).toBe(`#/pending/${id}`);
    expect(await page.evaluate<boolean>(`document.querySelector('article.card[data-id="${id}"]').contains(document.activeElement)`)).toBe(true);

    // The arguments: every field readable, inside the screen.
    const args = card.locator('.proposal dl.args');
    await expect.poll(() => args.locator('dt').allTextContents()).toEqual(['to', 'subject', 'text']);
    expect(await args.textContent()).toContain('Our December newsletter');
    expect(await args.textContent()).toContain('Second paragraph.');
    const boxes = await Promise.all((await args.locator('pre.value').all()).map((el) => el.boundingBox()));
    expect(boxes.length).toBe(3);
    for (const box of boxes) {
      expect(box?.x).toBeGreaterThanOrEqual(0);
      expect((box?.x ?? 0) + (box?.width ?? 999)).toBeLessThanOrEqual(390);
    }
    await fitsTheScreen();
    // Touch-sized buttons, one per row.
    const approve = card.getByRole('button', { name: 'Approve…', exact: true });
    const size = await approve.boundingBox();
    expect(size?.height).toBeGreaterThanOrEqual(40);
    expect(size?.width).toBeGreaterThan(300);

    await page.screenshot({ path: path.join(process.env.UPDATE_SCREENSHOTS === '1' ? path.resolve('docs/screenshots') : inbox, 'pending-phone.png') });
    await approve.tap();
    await card.getByRole('button', { name: 'Approve', exact: true }).tap();
    await card.waitFor({ state: 'detached' });
    expect(await fx.host.store.getRequest(id)).toMatchObject({ status: 'approved', resolvedBy: ['alice'] });
  });

  it('denies with a reason by tapping', async () => {
    const id = await request('A second mailing', 'short');
    const card = page.locator(`article.card[data-id="${id}"]`);
    await card.waitFor();
    await fitsTheScreen();
    await card.getByRole('button', { name: 'Deny…' }).tap();
    await card.getByLabel('Reason for denying (the agent sees it)').fill('Not this week');
    await fitsTheScreen();
    await card.getByRole('button', { name: 'Deny request' }).tap();
    await card.waitFor({ state: 'detached' });
    expect(await fx.host.store.getRequest(id)).toMatchObject({ status: 'denied', denyReason: 'Not this week', resolvedBy: ['alice'] });
  });

  it('a link to a request that is no longer pending says so', async () => {
    const decided = (await fx.host.store.listRequests({ status: 'denied' }))[0]?.id as string;
    await page.goto(`${fx.host.url}/console/#/pending/${decided}`);
    await page.locator('#link-state[data-state="live"]').waitFor();
    const note = page.locator('.link-note');
    await note.waitFor();
    expect(await note.textContent()).toContain('is not pending any more');
    await fitsTheScreen();
  });
});
