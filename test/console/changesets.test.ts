/**
 * The console's changeset view in headless Chromium: a staged run's changeset appears on the
 * Pending page as one card whose effects are shown as a diff — the file's removed and added lines,
 * the kv value before and after, the e-mail as it will be sent (last) — with no edit button; two
 * approvals from two browsers commit it, and the files change only then; the run's page then offers
 * the changeset's undo, which restores the file and shows who undid it. Agent-written text that
 * looks like markup stays text.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fixture, startFixture } from '../host/helpers/host-fixture.js';
import { hasChromium, launch, loginAs, type OperatorPage } from './browser.js';

describe.skipIf(!hasChromium)('console: the changeset of a staged run', () => {
  let fx: Fixture;
  let browser: Browser;
  let alice: OperatorPage;
  let bob: OperatorPage;

  beforeAll(async () => {
    [fx, browser] = await Promise.all([startFixture(), launch()]);
    const base = fx.host.url as string;
    alice = await loginAs(browser, base, fx.tokens['alice'] as string);
    bob = await loginAs(browser, base, fx.tokens['bob'] as string);
  });
  afterAll(async () => {
    for (const p of [alice, bob]) if (p) expect(p.errors, 'errors in the page').toEqual([]);
    await browser?.close();
    await fx?.close();
  });

  it('shows every effect as a diff, offers no edit, and commits after two approvals', async () => {
    writeFileSync(path.join(fx.dir, 'notes', 'a.txt'), 'first line\nsecond line\n');
    const source = `export default async (input, caps) => {
      const text = await caps.notes.read('a.txt');
      await caps.notes.write({ path: 'a.txt', content: text.replace('second line', '<b>changed</b> line') });
      await caps.mail.send({ to: 'team@example.com', subject: 'notes changed', text: 'see a.txt' });
      return 'done';
    }`;
    const image = fx.image('console-staged', source, []);
    for (const capability of ['notes', 'mail']) await fx.grant(image.digest, { capability, methods: ['*'], mode: 'contained' });
    const { runId } = await fx.host.submit({ image: image.bytes, staged: true });
    const card = alice.page.locator('article.card', { hasText: '$changeset.commit' });
    await card.waitFor();
    const effects = card.locator('ol.changeset > li.effect');
    await expect.poll(() => effects.count()).toBe(2);
    // Local first: the file's diff; the e-mail last.
    const file = effects.nth(0);
    expect(await file.locator('.effect-head code').textContent()).toBe('notes.write');
    expect(await file.locator('span.del').allTextContents()).toEqual(['- second line\n']);
    expect(await file.locator('span.ins').allTextContents()).toEqual(['+ <b>changed</b> line\n']);
    expect(await file.locator('b').count()).toBe(0);
    const mail = effects.nth(1);
    expect(await mail.locator('.effect-head code').textContent()).toBe('mail.send');
    expect(await mail.textContent()).toContain('notes changed');
    expect(await card.getByRole('button', { name: 'Edit & approve…' }).count()).toBe(0);
    expect(await card.locator('p.digest code').textContent()).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(readFileSync(path.join(fx.dir, 'notes', 'a.txt'), 'utf8')).toBe('first line\nsecond line\n');
    // docs/changesets.md's picture (UPDATE_SCREENSHOTS=1, as the other console screenshots).
    if (process.env.UPDATE_SCREENSHOTS === '1') await card.screenshot({ path: path.resolve('docs/screenshots/changeset.png') });

    for (const who of [alice, bob]) {
      const c = who.page.locator('article.card', { hasText: '$changeset.commit' });
      await c.getByRole('button', { name: /^Approve/ }).first().click();
      await c.locator('form').getByRole('button', { name: /^Approve/ }).click();
    }
    await expect.poll(() => readFileSync(path.join(fx.dir, 'notes', 'a.txt'), 'utf8'), { timeout: 10_000 }).toBe('first line\n<b>changed</b> line\n');
    await expect.poll(() => fx.mails().length, { timeout: 10_000 }).toBe(1);
    // The mail is out before the outcome is recorded: wait for the request to say done.
    const request = async () => (await fx.host.store.listRequests({ runId })).find((r) => r.kind === 'changeset');
    await expect.poll(async () => (await request())?.execution?.state, { timeout: 10_000 }).toBe('done');
    expect(await request()).toMatchObject({ status: 'approved', execution: { state: 'done', ok: true } });

    // The run's page offers the undo of its committed changeset; undone, the file is back and the row says by whom.
    await alice.page.goto(`${fx.host.url as string}/console/#/runs`);
    await alice.page.locator(`tr.selectable[data-id="${runId}"]`).click();
    await alice.page.getByRole('button', { name: 'Undo', exact: true }).click();
    await expect.poll(() => readFileSync(path.join(fx.dir, 'notes', 'a.txt'), 'utf8'), { timeout: 10_000 }).toBe('first line\nsecond line\n');
    const row = alice.page.locator('table.list tr', { hasText: 'changeset' });
    await row.locator('.badge', { hasText: 'undone' }).waitFor();
    expect(await row.textContent()).toContain('by alice');
    expect(await alice.page.getByRole('button', { name: 'Undo', exact: true }).count()).toBe(0);
    expect((await request())?.execution?.undone).toMatchObject({ by: 'alice', restored: 1 });
  });
});
