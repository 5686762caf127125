/**
 * Notifications in the console: the admin JSON endpoint (`GET /console/api/notify`: targets with
 * delivered / pending / failing / given-up counts and the last error, the latest deliveries) and the
 * Notifications page in real Chromium. Admins only; no secret and no URL path is ever shown.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fixture, startFixture } from '../host/helpers/host-fixture.js';
import { type Receiver, startReceiver, waitUntil } from '../host/helpers/webhook-receiver.js';
import { hasChromium, launch, loginAs } from './browser.js';
import { login, raw } from './helpers.js';

const SECRET = 'whsec_console_0123456789abcdef';
const MAIL = { capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'mail' };

describe('notifications in the console', () => {
  let fx: Fixture;
  let good: Receiver;
  let bad: Receiver;
  let requestId: string;

  beforeAll(async () => {
    [good, bad] = await Promise.all([startReceiver(SECRET), startReceiver(SECRET, 'fail')]);
    fx = await startFixture({
      notify: {
        webhooks: [
          { name: 'ops', url: `${good.url}?token=path-secret`, secret: SECRET },
          { name: 'broken', url: bad.url, secret: SECRET, format: 'teams' },
        ],
        initialDelayMs: 20,
        maxDelayMs: 40,
        maxAttempts: 2,
        pollMs: 20,
      },
    });
    const source = "export default async (input, caps) => (await caps.mail.send({ to: 'team@example.com', subject: 'console', text: 'x' }, { reason: 'r' })).accepted;";
    const image = fx.image('notify-console', source, [MAIL]);
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const { runId } = await fx.host.submit({ image: image.bytes });
    requestId = (await waitUntil(async () => (await fx.host.store.listRequests({ runId, status: 'pending' }))[0], 'the request')).id;
    await waitUntil(async () => {
      const d = (await fx.host.notify.status()).deliveries;
      return d.some((x) => x.target === 'webhook:broken' && x.status === 'failed') && d.some((x) => x.target === 'webhook:ops' && x.status === 'delivered');
    }, 'one delivered, one given up');
  });
  afterAll(async () => {
    await fx?.close();
    await Promise.all([good?.close(), bad?.close()]);
  });

  it('GET /console/api/notify: admins see targets and deliveries; others are refused', async () => {
    const base = fx.host.url as string;
    const admin = await login(base, { token: fx.tokens['erin'] as string });
    const res = await raw(base, 'GET', '/console/api/notify', { headers: { cookie: admin.cookie } });
    expect(res.status).toBe(200);
    const body = res.json();
    expect(body.targets).toEqual([
      expect.objectContaining({ target: 'webhook:ops', kind: 'webhook', format: 'json', delivered: 1, failed: 0, to: `http://127.0.0.1:${good.port}/…` }),
      expect.objectContaining({ target: 'webhook:broken', kind: 'webhook', format: 'teams', delivered: 0, failed: 1, lastError: expect.stringMatching(/answered 503/) }),
    ]);
    expect(body.deliveries).toEqual(expect.arrayContaining([expect.objectContaining({ target: 'webhook:broken', status: 'failed', attempts: 2, requestId, event: 'request.created' })]));
    expect(res.body).not.toContain(SECRET);
    expect(res.body).not.toContain('path-secret');

    const filtered = await raw(base, 'GET', '/console/api/notify?target=webhook:ops&limit=1', { headers: { cookie: admin.cookie } });
    expect(filtered.json().deliveries.map((d: { target: string }) => d.target)).toEqual(['webhook:ops']);
    const badQuery = await raw(base, 'GET', '/console/api/notify?target=../../etc', { headers: { cookie: admin.cookie } });
    expect(badQuery.status).toBe(400);
    expect(badQuery.json().error.code).toBe('INVALID_ARGUMENT');

    const approver = await login(base, { token: fx.tokens['alice'] as string });
    const refused = await raw(base, 'GET', '/console/api/notify', { headers: { cookie: approver.cookie } });
    expect(refused.status).toBe(403);
    expect(refused.json().error.code).toBe('FORBIDDEN');
    expect((await raw(base, 'GET', '/console/api/notify')).status).toBe(401);
  });

  describe.skipIf(!hasChromium)('the Notifications page', () => {
    let browser: Browser;
    beforeAll(async () => {
      browser = await launch();
    });
    afterAll(async () => {
      await browser?.close();
    });

    it('shows each target with its counts and last error, and links a delivery to its request', async () => {
      const erin = await loginAs(browser, fx.host.url as string, fx.tokens['erin'] as string);
      await erin.page.goto(`${fx.host.url}/console/#/notify`);
      const broken = erin.page.locator('table.notify-targets tr[data-target="webhook:broken"]');
      await broken.waitFor();
      expect(await broken.textContent()).toContain('answered 503');
      expect(await erin.page.locator('table.notify-targets tr[data-target="webhook:ops"]').textContent()).toContain(`http://127.0.0.1:${good.port}/…`);
      const row = erin.page.locator('table.notify-deliveries tr', { hasText: 'webhook:broken' }).first();
      expect(await row.textContent()).toContain('given up');
      await row.getByRole('link').click();
      await erin.page.locator(`article.card.linked[data-id="${requestId}"]`).waitFor();
      expect(erin.errors).toEqual([]);

      const alice = await loginAs(browser, fx.host.url as string, fx.tokens['alice'] as string);
      await alice.page.goto(`${fx.host.url}/console/#/notify`);
      await alice.page.getByText('notification targets are shown to admins only').waitFor();
    });
  });
});
