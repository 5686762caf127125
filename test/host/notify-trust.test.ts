/**
 * Trust events as notifications, end to end on a real host: a promotion proposal (the bar lowered to
 * one assisted approval) and a demotion (a critical review of an executed action) reach a webhook
 * that listens to those two events only — and it hears nothing about requests. Their link opens the
 * console's Trust page.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fixture, startFixture } from './helpers/host-fixture.js';
import { type Receiver, startReceiver, waitUntil } from './helpers/webhook-receiver.js';

const SECRET = 'whsec_trust_0123456789abcdef';
const NOTES = { capability: 'notes', kind: 'fs', scope: {}, methods: ['mkdir'], why: 'notes' };

describe('trust notifications', () => {
  let fx: Fixture;
  let hook: Receiver;

  beforeAll(async () => {
    hook = await startReceiver(SECRET);
    fx = await startFixture({
      trust: { minAssistedReviews: 1 },
      notify: { webhooks: [{ name: 'trust', url: hook.url, secret: SECRET, events: ['demotion', 'promotion.proposed'] }], pollMs: 20 },
    });
  });
  afterAll(async () => {
    await fx?.close();
    await hook?.close();
  });

  it('a promotion proposal and a demotion are delivered, signed, with a link to the Trust page', async () => {
    // Promotion: one approved assisted mkdir meets the (lowered) bar.
    const assisted = fx.image('trust-promote', "export default async (input, caps) => caps.notes.mkdir('promoted', { reason: 'tidy up' })", [NOTES]);
    await fx.grant(assisted.digest, { capability: 'notes', methods: ['mkdir'], mode: 'assisted' });
    const alice = await fx.operator('alice');
    const { runId } = await fx.host.submit({ image: assisted.bytes });
    const request = await waitUntil(async () => (await fx.host.store.listRequests({ runId, status: 'pending' }))[0], 'the request');
    await alice.decide({ requestId: request.id, verdict: 'approve' });
    const proposed = await waitUntil(() => hook.accepted().find((r) => r.json.event === 'promotion.proposed'), 'the proposal');
    expect(proposed.json.promotion).toMatchObject({ subject: assisted.digest, capability: 'notes', method: 'mkdir', status: 'proposed' });
    expect(proposed.json.url).toBe(`${fx.host.url}/console/#/trust`);
    expect(proposed.signature).toMatchObject({ ok: true });

    // Demotion: a critical review of an executed mkdir.
    const executed = fx.image('trust-demote', "export default async (input, caps) => caps.notes.mkdir('demoted', { reason: 'tidy up' })", [NOTES]);
    await fx.grant(executed.digest, { capability: 'notes', methods: ['mkdir'], mode: 'executed' });
    const second = await fx.host.submit({ image: executed.bytes });
    await fx.host.waitForRun(second.runId);
    const review = await waitUntil(async () => (await alice.listReviews()).find((r) => r.subject === executed.digest), 'the review');
    await alice.markReview({ reviewId: review.id, verdict: 'critical', note: 'wrong folder' });
    const demotion = await waitUntil(() => hook.accepted().find((r) => r.json.event === 'demotion'), 'the demotion');
    expect(demotion.json.demotion).toMatchObject({ subject: executed.digest, capability: 'notes', method: 'mkdir', trigger: 'critical', by: 'alice' });
    expect(demotion.json.url).toBe(`${fx.host.url}/console/#/trust`);
    expect(demotion.signature).toMatchObject({ ok: true });

    // This endpoint listens to trust events only.
    expect(hook.received.filter((r) => String(r.json.event).startsWith('request.'))).toEqual([]);
  });
});
