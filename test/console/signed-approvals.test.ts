/**
 * Passkey-signed approvals in real headless Chromium, with Chrome's virtual authenticators (the
 * DevTools Protocol `WebAuthn` domain: a CTAP2 platform authenticator with user verification, one per
 * operator's browser) against a real host whose policy signs every destructive or financial approval
 * (`approvals.signed: "risky"`). The console is opened on http://localhost:<port> (WebAuthn needs a
 * domain: an IP address cannot be a relying party).
 *
 * - registration: Alice and Bob each add a passkey on the Passkeys page; the host stores it and logs
 *   its public key;
 * - a signed approval: Alice and Bob approve a two-person request on the Pending page, each signing
 *   with their own passkey; it is approved with both signatures on record;
 * - a forged assertion (one byte of a real signature changed) and a replayed one (the same assertion
 *   again, by Alice, then presented by Bob) are refused SIGNATURE_INVALID;
 * - an assertion the authenticator made for other arguments is refused (`challenge`);
 * - the same person with a second passkey is refused as the second approver (DUPLICATE_APPROVER),
 *   and the page says so.
 */
import type { Browser, CDPSession, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { argsDigest } from '../../host/gate/proposal.js';
import type { ContainedError } from '../../runtime/errors.js';
import { type Fixture, startFixture } from '../host/helpers/host-fixture.js';
import { waitUntil } from '../host/helpers/webhook-receiver.js';
import { hasChromium, launch, loginAs, type OperatorPage } from './browser.js';

const NOTES = { capability: 'notes', kind: 'fs', scope: {}, methods: ['write'], why: 'notes' };

describe.skipIf(!hasChromium)('passkey-signed approvals in Chromium with a virtual authenticator', () => {
  let fx: Fixture;
  let browser: Browser;
  let base: string;
  const pages: Record<string, OperatorPage & { cdp: CDPSession; authenticator: string }> = {};

  async function operatorPage(name: string): Promise<OperatorPage & { cdp: CDPSession; authenticator: string }> {
    const op = await loginAs(browser, base, fx.tokens[name] as string);
    const cdp = await op.context.newCDPSession(op.page);
    await cdp.send('WebAuthn.enable', { enableUI: false });
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
    });
    return { ...op, cdp, authenticator: authenticatorId };
  }

  async function addPasskey(op: { page: Page }, label: string): Promise<void> {
    await op.page.goto(`${base}/console/#/passkeys`);
    await op.page.getByLabel('Name').fill(label);
    await op.page.getByRole('button', { name: 'Add a passkey' }).click();
    await op.page.locator('table.passkeys td', { hasText: label }).waitFor();
  }

  /** The credential ids (base64url) in an operator's virtual authenticator. */
  async function credentialIds(op: { cdp: CDPSession; authenticator: string }): Promise<string[]> {
    const { credentials } = await op.cdp.send('WebAuthn.getCredentials', { authenticatorId: op.authenticator });
    return credentials.map((c) => Buffer.from(c.credentialId, 'base64').toString('base64url'));
  }

  async function destructiveRequest(file: string): Promise<{ id: string; digest: string; runId: string }> {
    const source = `export default async (input, caps) => { await caps.notes.write({ path: ${JSON.stringify(file)}, content: 'signed by two people' }, { reason: 'keep notes' }); return 'written'; };`;
    const image = fx.image(`browser-signed-${file.replace(/[^a-z0-9]/g, '-')}`, source, [NOTES]);
    await fx.grant(image.digest, { capability: 'notes', methods: ['write'], mode: 'assisted', approvals: 2 });
    const { runId } = await fx.host.submit({ image: image.bytes });
    const request = await waitUntil(async () => (await fx.host.store.listRequests({ runId, status: 'pending' }))[0], 'the request');
    return { id: request.id, digest: argsDigest(request.args), runId };
  }

  async function approveOnPending(op: { page: Page }, id: string): Promise<void> {
    await op.page.goto(`${base}/console/#/pending/${id}`);
    const card = op.page.locator(`article.card[data-id="${id}"]`);
    await card.getByRole('button', { name: 'Approve…', exact: true }).click();
    // "Approve (first of two)" on a two-person request with no approval yet.
    await card.getByRole('button', { name: /^Approve( \(first of two\))?$/ }).click();
  }

  /** A real assertion from the operator's authenticator, made in the page for `digest` of request `id`. */
  async function assertionIn(op: { page: Page }, id: string, digest: string): Promise<Record<string, unknown>> {
    return op.page.evaluate<Record<string, unknown>>(`(async () => {
      const { signApproval } = await import('/console/static/lib/passkey.js');
      return signApproval(${JSON.stringify(id)}, ${JSON.stringify(digest)});
    })()`);
  }

  async function refusal(p: Promise<unknown>): Promise<{ code: string; reason?: string }> {
    try {
      await p;
    } catch (error) {
      const e = error as ContainedError;
      const reason = (e.data as { reason?: unknown } | undefined)?.reason;
      return { code: e.code, ...(typeof reason === 'string' ? { reason } : {}) };
    }
    throw new Error('expected a refusal');
  }

  beforeAll(async () => {
    [fx, browser] = await Promise.all([startFixture({ approvals: { signed: 'risky' } }), launch()]);
    base = `http://localhost:${new URL(fx.host.url as string).port}`;
    pages['alice'] = await operatorPage('alice');
    pages['bob'] = await operatorPage('bob');
  });
  afterAll(async () => {
    for (const op of Object.values(pages)) expect(op.errors, 'errors in the page').toEqual([]);
    await browser?.close();
    await fx?.close();
  });

  it('registers a passkey per operator on the Passkeys page; the audit log holds its public key', async () => {
    await addPasskey(pages['alice'] as OperatorPage, 'alice laptop');
    await addPasskey(pages['bob'] as OperatorPage, 'bob phone');
    const [alice] = await credentialIds(pages['alice'] as never);
    const [bob] = await credentialIds(pages['bob'] as never);
    await fx.host.audit.flush();
    const logged = (fx.host.audit.db.prepare("SELECT data FROM audit_records WHERE type = 'passkey.registered' ORDER BY seq").pluck().all() as string[]).map((d) => JSON.parse(d) as Record<string, unknown>);
    expect(logged).toMatchObject([
      { operator: 'alice', credentialId: alice, rpId: 'localhost', origin: base, label: 'alice laptop' },
      { operator: 'bob', credentialId: bob, rpId: 'localhost', origin: base },
    ]);
  });

  it('two operators approve on the Pending page, each signing with their own passkey: approved and performed', async () => {
    const { id, digest, runId } = await destructiveRequest('browser-signed.txt');
    await approveOnPending(pages['alice'] as OperatorPage, id);
    await waitUntil(async () => ((await fx.host.store.getRequest(id))?.approvals.length === 1 ? true : undefined), 'alice\'s approval');
    await approveOnPending(pages['bob'] as OperatorPage, id);
    const approved = await waitUntil(async () => {
      const r = await fx.host.store.getRequest(id);
      return r?.status === 'approved' ? r : undefined;
    }, 'the approval');
    expect((await fx.host.waitForRun(runId)).status).toBe('ok');
    const [alice] = await credentialIds(pages['alice'] as never);
    const [bob] = await credentialIds(pages['bob'] as never);
    expect(approved.approvals.map((a) => ({ operator: a.operator, argsDigest: a.argsDigest, credentialId: a.signature?.credentialId, origin: a.signature?.origin, userVerified: a.signature?.userVerified }))).toEqual([
      { operator: 'alice', argsDigest: digest, credentialId: alice, origin: base, userVerified: true },
      { operator: 'bob', argsDigest: digest, credentialId: bob, origin: base, userVerified: true },
    ]);
  });

  it('edit then approve: the passkey signs the digest of the edited arguments, and that is what the two approve and what runs', async () => {
    const { id, runId } = await destructiveRequest('browser-edited.txt');
    const alice = pages['alice'] as OperatorPage;
    await alice.page.goto(`${base}/console/#/pending/${id}`);
    const card = alice.page.locator(`article.card[data-id="${id}"]`);
    await card.getByRole('button', { name: 'Edit & approve…', exact: true }).click();
    await card.getByLabel('content', { exact: true }).fill('signed by two people, edited by alice');
    await card.getByRole('button', { name: 'Approve with edits' }).click();
    const edited = { path: 'browser-edited.txt', content: 'signed by two people, edited by alice' };
    const afterEdit = await waitUntil(async () => {
      const r = await fx.host.store.getRequest(id);
      return r?.approvals.length === 1 ? r : undefined;
    }, 'alice\'s edited approval');
    expect(afterEdit.approvals[0]).toMatchObject({ operator: 'alice', args: edited, argsDigest: argsDigest(edited) });
    expect(afterEdit.approvals[0]?.signature?.credentialId).toBe((await credentialIds(pages['alice'] as never))[0]);
    // Bob approves the edited proposal on his page, signing its digest.
    await approveOnPending(pages['bob'] as OperatorPage, id);
    await waitUntil(async () => ((await fx.host.store.getRequest(id))?.status === 'approved' ? true : undefined), 'the approval');
    expect((await fx.host.waitForRun(runId)).status).toBe('ok');
    expect((await fx.host.store.getRequest(id))?.approvals.map((a) => [a.operator, a.argsDigest, a.signature !== undefined])).toEqual([
      ['alice', argsDigest(edited), true],
      ['bob', argsDigest(edited), true],
    ]);
  });

  it('refuses a forged assertion, a replayed one, and one made for other arguments', async () => {
    const { id, digest } = await destructiveRequest('browser-forged.txt');
    const alice = await fx.operator('alice');
    const bob = await fx.operator('bob');

    // Made by Alice's authenticator, but for other arguments.
    const otherArgs = await assertionIn(pages['alice'] as OperatorPage, id, argsDigest({ path: 'browser-forged.txt', content: 'something else' }));
    expect(await refusal(alice.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: otherArgs as never }))).toEqual({ code: 'SIGNATURE_INVALID', reason: 'challenge' });

    // A real assertion for these arguments, with one byte of its signature changed: forged.
    const real = await assertionIn(pages['alice'] as OperatorPage, id, digest);
    const response = real.response as Record<string, string>;
    const sig = Buffer.from(response.signature as string, 'base64url');
    sig[sig.length - 1] = (sig[sig.length - 1] as number) ^ 0x01;
    const forged = { ...real, response: { ...response, signature: sig.toString('base64url') } };
    expect(await refusal(alice.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: forged as never }))).toEqual({ code: 'SIGNATURE_INVALID', reason: 'signature' });
    expect((await fx.host.store.getRequest(id))?.approvals).toEqual([]);

    // The real one counts; replayed, by Alice or presented by Bob, it does not.
    await alice.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: real as never });
    expect(await refusal(alice.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: real as never }))).toEqual({ code: 'SIGNATURE_INVALID', reason: 'same-credential' });
    expect(await refusal(bob.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: real as never }))).toEqual({ code: 'SIGNATURE_INVALID', reason: 'not-yours' });
    // Unsigned, Bob is refused too.
    expect(await refusal(bob.decide({ requestId: id, verdict: 'approve', argsDigest: digest }))).toEqual({ code: 'SIGNATURE_REQUIRED' });
    const stored = await fx.host.store.getRequest(id);
    expect(stored?.status).toBe('pending');
    expect(stored?.approvals.map((a) => a.operator)).toEqual(['alice']);
  });

  it('refuses the same person with a second passkey as the second approver', async () => {
    const op = pages['alice'] as OperatorPage & { cdp: CDPSession; authenticator: string };
    const { id } = await destructiveRequest('browser-same-person.txt');
    await approveOnPending(op, id);
    await waitUntil(async () => ((await fx.host.store.getRequest(id))?.approvals.length === 1 ? true : undefined), 'alice\'s first approval');
    const first = (await fx.host.store.getRequest(id))?.approvals[0]?.signature?.credentialId;

    // Alice's second authenticator (a security key), with a second passkey of hers.
    await op.cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: op.authenticator });
    const { authenticatorId } = await op.cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: { protocol: 'ctap2', transport: 'usb', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
    });
    op.authenticator = authenticatorId;
    await addPasskey(op, 'alice key');
    const [second] = await credentialIds(op);
    expect(second).not.toBe(first);

    // The page does not offer her a second approval…
    await op.page.goto(`${base}/console/#/pending/${id}`);
    const card = op.page.locator(`article.card[data-id="${id}"]`);
    await card.getByText('You approved this (these exact arguments)').waitFor();
    expect(await card.getByRole('button', { name: 'Approve…', exact: true }).count()).toBe(0);
    // …and the host refuses one her second passkey signed in this page, sent over the operator channel.
    const digest = (await fx.host.store.getRequest(id))?.approvals[0]?.argsDigest as string;
    const signed = await assertionIn(op, id, digest);
    expect(signed.id).toBe(second);
    const client = await fx.operator('alice');
    expect(await refusal(client.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: signed as never }))).toEqual({ code: 'DUPLICATE_APPROVER' });
    const stored = await fx.host.store.getRequest(id);
    expect(stored?.status).toBe('pending');
    expect(stored?.approvals.map((a) => [a.operator, a.signature?.credentialId])).toEqual([['alice', first]]);
  });
});
