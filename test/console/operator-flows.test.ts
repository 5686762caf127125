/**
 * The console end to end in real headless Chromium against a real host: log in; a request
 * appears live while its agent waits; edit and approve it and the run finishes with the edited
 * action performed (checked in the maildir); deny with a reason; a viewer has no decision controls
 * and the host refuses its forged decision; the second approver of a two-person request completes
 * it; a state change without the CSRF token — from the page or from another origin — is refused;
 * an executed action is reviewed; a one-time login link works once; logout ends the session.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fixture, startFixture } from '../host/helpers/host-fixture.js';
import { hasChromium, launch, loginAs, type OperatorPage } from './browser.js';

/** In the page: the status of GET /console/api/session (200 logged in, 401 not). */
const SESSION_STATUS = "fetch('/console/api/session').then((r) => r.status)";
const MAIL = { capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'mail' };

function mailer(fx: Fixture, name: string, subject: string, text = 'line one\nline two') {
  const source = `export default async (input, caps) => (await caps.mail.send({ to: 'team@example.com', subject: ${JSON.stringify(subject)}, text: ${JSON.stringify(text)} }, { reason: 'send the weekly digest' })).accepted;`;
  return fx.image(name, source, [MAIL]);
}

describe.skipIf(!hasChromium)('web console in headless Chromium', () => {
  let fx: Fixture;
  let browser: Browser;
  let base: string;
  let alice: OperatorPage;
  const pages: OperatorPage[] = [];

  beforeAll(async () => {
    [fx, browser] = await Promise.all([startFixture(), launch()]);
    base = fx.host.url as string;
    alice = await loginAs(browser, base, fx.tokens['alice'] as string);
    pages.push(alice);
  });
  afterAll(async () => {
    for (const p of pages) expect(p.errors, 'errors in the page').toEqual([]);
    await browser?.close();
    await fx?.close();
  });

  it('shows a request live, edit-then-approve with a diff, and the run finishes with the edited action', async () => {
    const { page } = alice;
    expect(await page.locator('#whoami').textContent()).toBe('alice · approver');
    const image = mailer(fx, 'console-mailer', 'digest draft');
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const { runId } = await fx.host.submit({ image: image.bytes });
    const outcome = fx.host.waitForRun(runId);

    const card = page.locator('article.card', { hasText: 'digest draft' });
    await card.waitFor(); // no reload: it arrives over the operator WebSocket
    expect(await card.locator('.reason').textContent()).toContain('send the weekly digest');
    expect(await card.locator('.risks').textContent()).toContain('open world');
    await card.focus();
    await page.keyboard.press('e');
    const subject = card.getByLabel('subject', { exact: true });
    await subject.fill('digest FINAL');
    await card.locator('.diff .del', { hasText: 'digest draft' }).waitFor();
    await card.locator('.diff .ins', { hasText: 'digest FINAL' }).waitFor();
    await card.getByRole('button', { name: 'Approve with edits' }).click();
    await card.waitFor({ state: 'detached' });

    expect(await outcome).toMatchObject({ status: 'ok', value: ['team@example.com'] });
    const mails = fx.mails();
    expect(mails.filter((m) => m.includes('Subject: digest FINAL'))).toHaveLength(1);
    expect(mails.some((m) => m.includes('Subject: digest draft'))).toBe(false);

    // Runs: the run is ok, and its request shows the edited approval.
    await page.keyboard.press('2');
    const row = page.locator(`tr[data-id="${runId}"]`);
    await row.locator('.badge', { hasText: 'ok' }).waitFor();
    await row.click();
    const detail = page.locator('.detail');
    await detail.getByText('Requests this run made').waitFor();
    await detail.locator('td', { hasText: 'alice' }).filter({ hasText: '(edited)' }).waitFor();
    await page.keyboard.press('1');
  });

  it('denies with a reason the agent sees', async () => {
    const { page } = alice;
    const image = mailer(fx, 'console-denied', 'please deny me');
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const { runId } = await fx.host.submit({ image: image.bytes });
    const card = page.locator('article.card', { hasText: 'please deny me' });
    await card.waitFor();
    await card.getByRole('button', { name: 'Deny…' }).click();
    await card.getByLabel(/Reason for denying/).fill('wrong week');
    await page.keyboard.press('Control+Enter');
    await card.waitFor({ state: 'detached' });
    expect(await fx.host.waitForRun(runId)).toMatchObject({ status: 'error', error: { code: 'ESCALATION_DENIED', message: expect.stringContaining('wrong week') } });
  });

  it('a viewer sees requests but cannot decide: no controls, and the host refuses a forged decision', async () => {
    const vic = await loginAs(browser, base, fx.tokens['vic'] as string);
    pages.push(vic);
    const image = mailer(fx, 'console-viewer', 'viewer watches this');
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const { runId } = await fx.host.submit({ image: image.bytes });
    const card = vic.page.locator('article.card', { hasText: 'viewer watches this' });
    await card.waitFor();
    await vic.page.getByText('You are a viewer').waitFor();
    expect(await card.locator('button').count()).toBe(0);
    await card.focus();
    await vic.page.keyboard.press('a');
    expect(await card.locator('form').count()).toBe(0);

    const requestId = (await card.getAttribute('data-id')) as string;
    // Forge it from the viewer's own page and session: the channel, not the page, decides.
    // (Browser code is passed as text: the tests are type-checked without the DOM library.)
    const reply = await vic.page.evaluate(`(async (id) => {
      const session = await (await fetch('/console/api/session')).json();
      const t = await (await fetch('/console/api/ticket', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': session.csrf }, body: '{}' })).json();
      const ws = new WebSocket('ws://' + location.host + t.path + '?ticket=' + encodeURIComponent(t.ticket), ['contained.operator.v1']);
      return new Promise((resolve) => {
        ws.onmessage = (event) => {
          const m = JSON.parse(event.data);
          if (m.type === 'snapshot' && m.complete) ws.send(JSON.stringify({ type: 'decide', id: 'forged', requestId: id, verdict: 'approve' }));
          if (m.id === 'forged') {
            ws.close();
            resolve(m);
          }
        };
      });
    })(${JSON.stringify(requestId)})`);
    expect(reply).toMatchObject({ type: 'error', code: 'FORBIDDEN' });
    expect((await fx.host.store.getRequest(requestId))?.status).toBe('pending');

    // An approver clears it.
    const aliceCard = alice.page.locator(`article.card[data-id="${requestId}"]`);
    await aliceCard.getByRole('button', { name: 'Approve…', exact: true }).click();
    await aliceCard.getByRole('button', { name: 'Approve', exact: true }).click();
    expect(await fx.host.waitForRun(runId)).toMatchObject({ status: 'ok' });
    await card.waitFor({ state: 'detached' }); // and the viewer's list follows live
    await vic.context.close();
  });

  it('two-person rule: the first approval shows progress everywhere; the second approver completes it', async () => {
    const bob = await loginAs(browser, base, fx.tokens['bob'] as string);
    pages.push(bob);
    const image = mailer(fx, 'console-two-person', 'needs two people');
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted', approvals: 2 });
    const { runId } = await fx.host.submit({ image: image.bytes });
    const outcome = fx.host.waitForRun(runId);

    const aliceCard = alice.page.locator('article.card', { hasText: 'needs two people' });
    await aliceCard.waitFor();
    expect(await aliceCard.locator('.progress').textContent()).toContain('0 of 2 approvals');
    await aliceCard.getByRole('button', { name: 'Approve…', exact: true }).click();
    await aliceCard.getByRole('button', { name: 'Approve (first of two)' }).click();
    await aliceCard.locator('.progress', { hasText: '1 of 2 approvals' }).waitFor();
    await aliceCard.getByText('You approved this').waitFor();
    expect(await aliceCard.getByRole('button', { name: 'Approve…', exact: true }).count()).toBe(0);

    const bobCard = bob.page.locator('article.card', { hasText: 'needs two people' });
    await bobCard.locator('.progress', { hasText: '1 of 2 approvals' }).waitFor();
    expect(await bobCard.locator('.approver').textContent()).toContain('alice');
    expect(fx.mails().some((m) => m.includes('Subject: needs two people'))).toBe(false);
    await bobCard.getByRole('button', { name: 'Approve…', exact: true }).click();
    await bobCard.getByRole('button', { name: 'Approve', exact: true }).click();
    await Promise.all([bobCard.waitFor({ state: 'detached' }), aliceCard.waitFor({ state: 'detached' })]);
    expect(await outcome).toMatchObject({ status: 'ok' });
    expect(fx.mails().filter((m) => m.includes('Subject: needs two people'))).toHaveLength(1);
    expect((await fx.host.store.listRequests({ runId }))[0]).toMatchObject({ status: 'approved', resolvedBy: ['alice', 'bob'] });
    await bob.context.close();
  });

  it('CSRF: a state change without the token is refused, from the page itself and from another origin', async () => {
    const { page } = alice;
    const results = await page.evaluate<{ none: { status: number; body: unknown }; wrong: { status: number }; right: { status: number } }>(`(async () => {
      const session = await (await fetch('/console/api/session')).json();
      const send = (headers) => fetch('/console/api/ticket', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{}' }).then(async (r) => ({ status: r.status, body: await r.json() }));
      return { none: await send({}), wrong: await send({ 'x-csrf-token': 'A'.repeat(43) }), right: await send({ 'x-csrf-token': session.csrf }) };
    })()`);
    expect(results.none).toMatchObject({ status: 403, body: { error: { code: 'FORBIDDEN' } } });
    expect(results.wrong.status).toBe(403);
    expect(results.right.status).toBe(200);

    // Another origin on the same machine (same site: the cookie IS sent) tries to log alice out.
    const hits: string[] = [];
    const evil: Server = createServer((req, res) => {
      hits.push(req.url ?? '');
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<!doctype html><form id="f" method="POST" action="${base}/console/api/logout" enctype="text/plain"><input name='{"a":"' value='"}'></form>
        <script>fetch(${JSON.stringify(`${base}/console/api/logout`)}, { method: 'POST', mode: 'no-cors', credentials: 'include', body: '{}' }).finally(() => document.getElementById('f').submit());</script>`);
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', () => resolve()));
    const evilPage = await alice.context.newPage();
    const refused = evilPage.waitForResponse((r) => r.url().endsWith('/console/api/logout') && r.request().method() === 'POST' && r.request().resourceType() === 'document');
    await evilPage.goto(`http://127.0.0.1:${(evil.address() as AddressInfo).port}/`);
    expect((await refused).status()).toBe(403);
    await evilPage.close();
    await new Promise<void>((resolve) => evil.close(() => resolve()));
    expect(hits).toContain('/');
    expect(await page.evaluate(SESSION_STATUS)).toBe(200);
    await page.locator('#link-state[data-state="live"]').waitFor();
  });

  it('review: an executed action appears live in the queue and an approver marks it ok', async () => {
    const { page } = alice;
    await page.getByRole('link', { name: 'Review' }).click();
    await page.getByText('Nothing to review.').waitFor();
    const notes = { capability: 'notes', kind: 'fs', scope: {}, methods: ['read'], why: 'notes' };
    const image = fx.image('console-reader', "export default async (input, caps) => (await caps.notes.read('a.txt', { reason: 'summarise the notes' })).length", [notes]);
    await fx.grant(image.digest, { capability: 'notes', methods: ['read'], mode: 'executed' });
    await fx.host.waitForRun((await fx.host.submit({ image: image.bytes })).runId);
    const card = page.locator('article.card', { hasText: 'summarise the notes' });
    await card.waitFor();
    await card.getByRole('button', { name: 'OK', exact: true }).click();
    await card.getByRole('button', { name: 'Mark ok' }).click();
    await card.waitFor({ state: 'detached' });
    expect((await fx.host.trust.listReviews({ status: 'ok' })).filter((r) => r.subject === image.digest)).toMatchObject([{ status: 'ok', markedBy: 'alice' }]);
    await page.getByRole('link', { name: /Pending/ }).click();
  });

  it('a one-time login link signs in once, and never again', async () => {
    const link = await fx.host.console?.loginLink(fx.tokens['erin'] as string);
    const first = await browser.newContext();
    const page = await first.newPage();
    await page.goto(`${base}${link?.path ?? ''}`);
    await page.locator('#link-state[data-state="live"]').waitFor();
    expect(await page.locator('#whoami').textContent()).toBe('erin · admin');
    expect(page.url()).toBe(`${base}/console/#/pending`); // the code left the address bar
    const second = await browser.newContext();
    const again = await second.newPage();
    await again.goto(`${base}${link?.path ?? ''}`);
    await again.getByText('That login link did not work').waitFor();
    await Promise.all([first.close(), second.close()]);
  });

  it('logout ends the session: the login form returns and the API answers 401', async () => {
    const { page } = alice;
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByLabel('Operator token').waitFor();
    expect(await page.evaluate(SESSION_STATUS)).toBe(401);
    expect(await page.locator('#nav').isHidden()).toBe(true);
  });
});
