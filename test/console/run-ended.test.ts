/**
 * The Pending page and runs that end, in real headless Chromium against a real host: by default a
 * cancelled run's recommendation leaves the page (withdrawn); with `cancelledRunRecommendations:
 * "keep"` its card stays and says "run ended" — at once, from the run event, and after a reload,
 * from the snapshot's `runEnded` — and the run's Runs page shows the request as cancelled.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fixture, startFixture } from '../host/helpers/host-fixture.js';
import { hasChromium, launch, loginAs, type OperatorPage } from './browser.js';

const MAIL = { capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'mail' };

function mailer(fx: Fixture, name: string, subject: string) {
  const source = `export default async (input, caps) => (await caps.mail.send({ to: 'team@example.com', subject: ${JSON.stringify(subject)}, text: 'x' }, { reason: 'tell the team' })).accepted;`;
  return fx.image(name, source, [MAIL]);
}

describe.skipIf(!hasChromium)('Pending cards of runs that end', () => {
  let withdraw: Fixture;
  let keep: Fixture;
  let browser: Browser;
  const pages: OperatorPage[] = [];

  beforeAll(async () => {
    [withdraw, keep, browser] = await Promise.all([startFixture(), startFixture({ cancelledRunRecommendations: 'keep' }), launch()]);
  });
  afterAll(async () => {
    for (const p of pages) expect(p.errors, 'errors in the page').toEqual([]);
    await browser?.close();
    await withdraw?.close();
    await keep?.close();
  });

  it('default: cancelling the run withdraws the card', async () => {
    const alice = await loginAs(browser, withdraw.host.url as string, withdraw.tokens['alice'] as string);
    pages.push(alice);
    const image = mailer(withdraw, 'console-withdrawn', 'withdrawn on cancel');
    await withdraw.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const { runId } = await withdraw.host.submit({ image: image.bytes });
    const card = alice.page.locator('article.card', { hasText: 'withdrawn on cancel' });
    await card.waitFor();
    expect(await card.locator('.run-state').textContent()).toBe('');
    await withdraw.host.cancelRun(runId, { by: 'plat' });
    await card.waitFor({ state: 'detached' });
    await withdraw.host.waitForRun(runId);
  });

  it('keep: the card stays and says "run ended", live and after a reload', async () => {
    const alice = await loginAs(browser, keep.host.url as string, keep.tokens['alice'] as string);
    pages.push(alice);
    const image = mailer(keep, 'console-kept', 'kept after cancel');
    await keep.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const { runId } = await keep.host.submit({ image: image.bytes });
    const card = alice.page.locator('article.card', { hasText: 'kept after cancel' });
    await card.waitFor();
    expect(await card.locator('.run-state').textContent()).toBe('');
    await keep.host.cancelRun(runId);
    await keep.host.waitForRun(runId);
    await card.locator('.run-state .badge', { hasText: 'run ended' }).waitFor(); // from the run event, no reload
    await alice.page.reload();
    await alice.page.locator('#link-state[data-state="live"]').waitFor();
    const again = alice.page.locator('article.card', { hasText: 'kept after cancel' });
    await again.locator('.run-state .badge', { hasText: 'run ended' }).waitFor(); // from the snapshot's runEnded
    expect(await again.locator('.run-state').getAttribute('title')).toContain('no agent waiting');
  });
});
