/**
 * The data-flow rule in the web console, in real headless Chromium against a real host: the
 * records table is marked sensitive; a run reads it and sends an email under an `executed` grant.
 * The Pending card says why a human must look ("this run read records (sensitive) before this
 * call"); approved there, the email goes out, and the run's page on Runs says what it read.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fixture, startFixture } from '../host/helpers/host-fixture.js';
import { hasChromium, launch, loginAs, type OperatorPage } from './browser.js';

describe.skipIf(!hasChromium)('the data-flow rule in the console', () => {
  let fx: Fixture;
  let browser: Browser;
  const pages: OperatorPage[] = [];

  beforeAll(async () => {
    [fx, browser] = await Promise.all([
      startFixture({ dataFlow: { sensitive: [{ label: 'records', capability: 'records', methods: ['query'] }] } }),
      launch(),
    ]);
  });
  afterAll(async () => {
    for (const p of pages) expect(p.errors, 'errors in the page').toEqual([]);
    await browser?.close();
    await fx?.close();
  });

  it('the Pending card shows the reason; approved, the email is sent; the run shows the sensitive source', async () => {
    const alice = await loginAs(browser, fx.host.url as string, fx.tokens['alice'] as string);
    pages.push(alice);
    const image = fx.image(
      'console-dataflow',
      "export default async (input, caps) => { const r = await caps.records.query({ sql: 'SELECT name FROM records' }); return (await caps.mail.send({ to: 'team@example.com', subject: 'record names', text: JSON.stringify(r.rows) })).accepted; }",
    );
    await fx.grant(image.digest, { capability: 'records', methods: ['query'], mode: 'contained' });
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'executed' });
    const { runId } = await fx.host.submit({ image: image.bytes });

    const card = alice.page.locator('article.card', { hasText: 'record names' });
    await card.waitFor();
    expect(await card.locator('.why').textContent()).toContain('this run read records (sensitive) before this call');
    expect(fx.mails().filter((m) => m.includes('Subject: record names'))).toHaveLength(0);
    await card.getByRole('button', { name: 'Approve…', exact: true }).click();
    await card.getByRole('button', { name: 'Approve', exact: true }).click();
    expect(await fx.host.waitForRun(runId)).toMatchObject({ status: 'ok', value: ['team@example.com'] });
    expect(fx.mails().filter((m) => m.includes('Subject: record names'))).toHaveLength(1);

    await alice.page.goto(`${fx.host.url as string}/console/#/runs`);
    await alice.page.locator(`tr.selectable[data-id="${runId}"]`).click();
    const facts = alice.page.locator('dl.facts').first();
    await facts.locator('dt', { hasText: 'Read sensitive' }).waitFor();
    expect(await facts.textContent()).toContain('records');
  });
});
