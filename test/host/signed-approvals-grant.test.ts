/**
 * Signed approvals required by one grant (`signedApprovals: true`), against a real host whose own
 * policy asks for none (`approvals.signed = "off"`): the request raised under that grant carries the
 * requirement, an unsigned approval is refused SIGNATURE_REQUIRED and counts nothing, a passkey
 * assertion (software authenticator, real P-256 signatures) over the exact arguments counts; the
 * same method under a grant without the flag is approved without a signature. The flag survives
 * the store, a narrowing keeps it (and may add it, never drop it), a staged run under such a grant
 * opens a changeset that needs signatures too, trust never promotes such a grant's calls to executed
 * (not even with autoAccept) and a demotion's assisted grant keeps the flag, and `contained grant add
 * --signed-approvals` writes it and `grant list` shows it.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approvalChallenge } from '../../host/approvals/challenge.js';
import { main } from '../../host/cli/main.js';
import { argsDigest } from '../../host/gate/proposal.js';
import type { Grant } from '../../host/model.js';
import { defaultStorePath, openSqliteStore } from '../../host/store/sqlite-store.js';
import type { ContainedError } from '../../runtime/errors.js';
import { login, post } from '../console/helpers.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';
import { registerPasskey, SoftAuthenticator, type SoftCredential } from './helpers/soft-authenticator.js';
import { waitUntil } from './helpers/webhook-receiver.js';
import { DIGEST } from './store-fixtures.js';
import { demotionPlan } from '../../host/trust/grant-changes.js';
import { RISK, startTrust, SUBJECT } from './trust-harness.js';

let fx: Fixture;
let origin: string;
let alice: SoftCredential;
const keys: Record<string, SoftAuthenticator> = {};

function register(name: string): Promise<SoftCredential> {
  return registerPasskey(fx.host.url as string, fx.tokens[name] as string, (keys[name] ??= new SoftAuthenticator(origin)));
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; field?: string }> {
  try {
    await p;
  } catch (error) {
    const e = error as ContainedError;
    const field = (e.data as { field?: unknown } | undefined)?.field;
    return { code: e.code, ...(typeof field === 'string' ? { field } : {}) };
  }
  throw new Error('expected a refusal');
}

const ADMIN = { name: 'erin', role: 'admin' } as const;

/** An image that appends to notes/<file> (not destructive, not financial: one approver, no policy signature). */
function appender(file: string): { bytes: Buffer; digest: string } {
  const source = `export default async (input, caps) => { await caps.notes.append({ path: ${JSON.stringify(file)}, content: 'line\\n' }, { reason: 'log a line' }); return 'appended'; };`;
  return fx.image(`append-${file.replace(/[^a-z0-9]/g, '-')}`, source, [{ capability: 'notes', kind: 'fs', scope: {}, methods: ['append'], why: 'notes' }]);
}

async function grantFor(digest: string, extra: Partial<Grant> = {}): Promise<Grant> {
  const { grant } = await fx.host.grants.add({ subject: { digest }, capability: 'notes', methods: ['append'], mode: 'assisted', createdBy: 'erin', reason: 'append notes', ...extra }, ADMIN);
  return grant;
}

async function pendingOf(image: { bytes: Buffer }): Promise<{ id: string; digest: string; runId: string; signedApprovals: boolean | undefined }> {
  const { runId } = await fx.host.submit({ image: image.bytes });
  const request = await waitUntil(async () => (await fx.host.store.listRequests({ runId, status: 'pending' }))[0], 'the request');
  return { id: request.id, digest: argsDigest(request.args), runId, signedApprovals: request.signedApprovals };
}

beforeAll(async () => {
  fx = await startFixture({ approvals: { signed: 'off' } });
  origin = `http://localhost:${new URL(fx.host.url as string).port}`;
  alice = await register('alice');
});
afterAll(async () => {
  await fx?.close();
});

describe('a grant that requires signed approvals (host policy off)', () => {
  it('stores the flag: added through the grant service, read back from the store', async () => {
    const image = appender('stored.txt');
    const grant = await grantFor(image.digest, { signedApprovals: true });
    expect(grant.signedApprovals).toBe(true);
    expect((await fx.host.store.getGrant(grant.id))?.signedApprovals).toBe(true);
    // Without the flag: absent, not false (grants written before it existed read the same).
    const plain = await grantFor(appender('plain-stored.txt').digest);
    expect((await fx.host.store.getGrant(plain.id))?.signedApprovals).toBeUndefined();
    // false asks for nothing and is not stored.
    const off = await grantFor(appender('off-stored.txt').digest, { signedApprovals: false });
    expect(off.signedApprovals).toBeUndefined();
    // Not a boolean: refused by the rules, nothing written.
    expect(await refusal(grantFor(appender('bad.txt').digest, { signedApprovals: 'yes' as never }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('refuses an unsigned approval with SIGNATURE_REQUIRED; a passkey-signed one counts and the call runs', async () => {
    const image = appender('signed.txt');
    await grantFor(image.digest, { signedApprovals: true });
    const { id, digest, runId, signedApprovals } = await pendingOf(image);
    expect(signedApprovals).toBe(true);
    const a = await fx.operator('alice');
    expect(await refusal(a.decide({ requestId: id, verdict: 'approve' }))).toEqual({ code: 'SIGNATURE_REQUIRED' });
    expect(await refusal(a.decide({ requestId: id, verdict: 'approve', argsDigest: digest }))).toEqual({ code: 'SIGNATURE_REQUIRED' });
    expect((await fx.host.store.getRequest(id))?.approvals).toEqual([]);

    // The console asks the browser for a signature on this request (and only on this one).
    const session = await login(fx.host.url as string, { token: fx.tokens['alice'] as string });
    const options = await post(fx.host.url as string, '/console/api/approvals/options', { requestId: id, argsDigest: digest }, session);
    expect(options.status, options.body).toBe(200);
    expect(options.json()).toMatchObject({ required: true, options: { challenge: approvalChallenge(id, digest, 'approve') } });

    const assertion = (keys['alice'] as SoftAuthenticator).assert(alice, approvalChallenge(id, digest, 'approve'));
    const done = await a.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: assertion as never });
    expect(done.status).toBe('approved');
    expect((await fx.host.waitForRun(runId)).status).toBe('ok');
    expect(readFileSync(path.join(fx.dir, 'notes', 'signed.txt'), 'utf8')).toBe('line\n');
    expect((await fx.host.store.getRequest(id))?.approvals[0]?.signature?.credentialId).toBe(alice.id);
  });

  it('the same method under a grant without the flag is approved without a signature', async () => {
    const image = appender('unsigned.txt');
    await grantFor(image.digest);
    const { id, digest, runId, signedApprovals } = await pendingOf(image);
    expect(signedApprovals).toBeUndefined();
    const session = await login(fx.host.url as string, { token: fx.tokens['alice'] as string });
    const options = await post(fx.host.url as string, '/console/api/approvals/options', { requestId: id, argsDigest: digest }, session);
    expect(options.json()).toEqual({ required: false });
    const a = await fx.operator('alice');
    expect((await a.decide({ requestId: id, verdict: 'approve', argsDigest: digest })).status).toBe('approved');
    expect((await fx.host.waitForRun(runId)).status).toBe('ok');
  });

  it('narrowing keeps the flag, may add it, and never drops it (NOT_NARROWER)', async () => {
    const signed = await grantFor(appender('narrow-signed.txt').digest, { signedApprovals: true });
    const narrowed = await fx.host.grants.narrow(signed.id, { approvals: 2, reason: 'two people' }, ADMIN);
    expect(narrowed.grant).toMatchObject({ approvals: 2, signedApprovals: true });
    expect(await refusal(fx.host.grants.narrow(narrowed.grant.id, { signedApprovals: false, reason: 'faster' }, ADMIN))).toEqual({ code: 'NOT_NARROWER', field: 'signedApprovals' });
    expect((await fx.host.store.getGrant(narrowed.grant.id))?.revokedAt).toBeUndefined();

    const plain = await grantFor(appender('narrow-plain.txt').digest);
    const added = await fx.host.grants.narrow(plain.id, { signedApprovals: true, reason: 'sign from now on' }, ADMIN);
    expect(added.grant.signedApprovals).toBe(true);
    const kept = await fx.host.grants.narrow(added.grant.id, { reason: 'same again' }, ADMIN);
    expect(kept.grant.signedApprovals).toBe(true);
  });

  it('the console adds and narrows such a grant (admin endpoints), and refuses a narrowing that drops the flag', async () => {
    const base = fx.host.url as string;
    const s = await login(base, { token: fx.tokens['erin'] as string });
    const { digest } = appender('console.txt');
    const added = await post(base, '/console/api/grants', { subject: { digest }, capability: 'notes', methods: ['append'], mode: 'assisted', signedApprovals: true, reason: 'signed from the console' }, s);
    expect(added.status, added.body).toBe(201);
    const g = added.json().grant as Grant;
    expect(g.signedApprovals).toBe(true);
    expect((await fx.host.store.getGrant(g.id))?.signedApprovals).toBe(true);
    expect((await post(base, '/console/api/grants', { subject: { digest }, capability: 'notes', methods: ['append'], mode: 'assisted', signedApprovals: 'yes', reason: 'x' }, s)).json().error.code).toBe('INVALID_ARGUMENT');
    const dropped = await post(base, `/console/api/grants/${g.id}/narrow`, { signedApprovals: false, reason: 'faster' }, s);
    expect(dropped.json().error).toMatchObject({ code: 'NOT_NARROWER' });
    const kept = await post(base, `/console/api/grants/${g.id}/narrow`, { approvals: 2, reason: 'two people' }, s);
    expect(kept.status, kept.body).toBe(201);
    expect(kept.json().grant).toMatchObject({ approvals: 2, signedApprovals: true });
    const plain = await post(base, '/console/api/grants', { subject: { digest }, capability: 'notes', methods: ['append'], mode: 'assisted', reason: 'plain' }, s);
    expect(plain.json().grant.signedApprovals).toBeUndefined();
    const raised = await post(base, `/console/api/grants/${plain.json().grant.id}/narrow`, { signedApprovals: true, reason: 'sign it' }, s);
    expect(raised.json().grant.signedApprovals).toBe(true);
  });

  it('a staged run under such a grant opens a changeset that needs signatures too', async () => {
    const image = appender('staged.txt');
    await grantFor(image.digest, { signedApprovals: true });
    const { runId } = await fx.host.submit({ image: image.bytes, staged: true });
    expect((await fx.host.waitForRun(runId)).status).toBe('ok');
    const request = await waitUntil(async () => (await fx.host.store.listRequests({ runId, status: 'pending' }))[0], 'the changeset');
    expect(request).toMatchObject({ kind: 'changeset', signedApprovals: true });
    const digest = argsDigest(request.args);
    const a = await fx.operator('alice');
    expect(await refusal(a.decide({ requestId: request.id, verdict: 'approve', argsDigest: digest }))).toEqual({ code: 'SIGNATURE_REQUIRED' });
    const assertion = (keys['alice'] as SoftAuthenticator).assert(alice, approvalChallenge(request.id, digest, 'approve'));
    expect((await a.decide({ requestId: request.id, verdict: 'approve', argsDigest: digest, assertion: assertion as never })).status).toBe('approved');
    await waitUntil(async () => (await fx.host.store.getRequest(request.id))?.execution?.state === 'done' || undefined, 'the commit');
    expect(readFileSync(path.join(fx.dir, 'notes', 'staged.txt'), 'utf8')).toBe('line\n');
  });

  it('a staged run under a grant without the flag opens a changeset approved without a signature', async () => {
    const image = appender('staged-plain.txt');
    await grantFor(image.digest);
    const { runId } = await fx.host.submit({ image: image.bytes, staged: true });
    expect((await fx.host.waitForRun(runId)).status).toBe('ok');
    const request = await waitUntil(async () => (await fx.host.store.listRequests({ runId, status: 'pending' }))[0], 'the changeset');
    expect(request.signedApprovals).toBeUndefined();
    const a = await fx.operator('alice');
    expect((await a.decide({ requestId: request.id, verdict: 'approve', argsDigest: argsDigest(request.args) })).status).toBe('approved');
  });
});

describe('trust: automatic rules never drop the requirement', () => {
  const KEY = { subject: SUBJECT, capability: 'notes', method: 'mkdir' };

  it('a grant that requires signed approvals is never proposed for promotion, not even with autoAccept', async () => {
    const t = await startTrust({ minAssistedReviews: 5, autoAccept: true });
    try {
      const signed = await t.grant('notes', ['mkdir'], 'assisted', { signedApprovals: true });
      for (let i = 0; i < 8; i++) await t.verdict(KEY, 'approved', RISK.lowStakes);
      expect(await t.trust.promotions.list()).toEqual([]);
      expect((await t.store.listGrants()).filter((g) => g.mode === 'executed')).toEqual([]);
      // The same record under a plain grant is promoted (the bar is met): the flag is what held it.
      await t.store.revokeGrant(signed.id, 'erin', 'replaced', t.clock.now);
      const plain = await t.grant('notes', ['mkdir']);
      await t.verdict(KEY, 'approved', RISK.lowStakes, plain.id);
      expect(await t.trust.promotions.list()).toMatchObject([{ status: 'accepted', grantId: plain.id }]);
    } finally {
      await t.close();
    }
  });

  it('refuses to accept an open proposal once the grant of the action requires signed approvals (PROMOTION_REFUSED)', async () => {
    const t = await startTrust({ minAssistedReviews: 5 });
    try {
      const plain = await t.grant('notes', ['mkdir']);
      for (let i = 0; i < 5; i++) await t.verdict(KEY, 'approved', RISK.lowStakes);
      const [proposal] = await t.trust.promotions.list();
      expect(proposal).toMatchObject({ status: 'proposed', grantId: plain.id });
      // Another assisted grant of the action, which requires signatures, now decides it (the gate
      // chooses the oldest of equally supervised grants: this one is dated before the plain one).
      await t.grant('notes', ['mkdir'], 'assisted', { signedApprovals: true, createdAt: plain.createdAt - 1 });
      await expect(t.trust.promotions.decide('erin', proposal?.id ?? '', 'accept', 'clean record')).rejects.toMatchObject({ code: 'PROMOTION_REFUSED' });
      expect((await t.trust.promotions.list())[0]).toMatchObject({ status: 'withdrawn' });
    } finally {
      await t.close();
    }
  });

  it('a demotion\'s assisted grant keeps the flag of the executed grant it replaces', () => {
    const executed: Grant = { id: 'grt_00000000000000aa', subject: { digest: SUBJECT }, capability: 'notes', methods: ['mkdir', 'read'], mode: 'executed', approvals: 1, signedApprovals: true, createdBy: 'erin', reason: 'r', createdAt: 1 };
    const plan = demotionPlan([executed], [], KEY, { by: 'host', reason: 'critical review', now: 2, risk: RISK.lowStakes });
    expect(plan.add.map((g) => [g.mode, g.methods, g.signedApprovals])).toEqual([
      ['executed', ['read'], true],
      ['assisted', ['mkdir'], true],
    ]);
  });
});

describe('contained grant add --signed-approvals', () => {
  let dir: string;
  let config: string;

  async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = '';
    let stderr = '';
    const code = await main(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
    return { code, stdout, stderr };
  }

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'contained-cli-signed-'));
    config = path.join(dir, 'contained.config.json');
    await writeFile(config, JSON.stringify({ dataDir: './state', capabilities: { reports: { kind: 'fs', scope: { root: dir } } } }));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the flag, and grant list shows it (table and --json)', async () => {
    const base = ['grant', 'add', '--config', config, '--subject', DIGEST, '--capability', 'reports', '--methods', 'append', '--mode', 'assisted', '--reason', 'weekly notes', '--by', 'erin'];
    const added = await cli(...base, '--signed-approvals');
    expect(added, added.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(added.stdout).toMatch(/mode\s+assisted \(1 approval, passkey-signed\)/);
    const id = /granted (grt_[0-9a-f]{16})/.exec(added.stdout)?.[1];
    const plain = await cli(...base);
    expect(plain.code).toBe(0);
    const plainId = /granted (grt_[0-9a-f]{16})/.exec(plain.stdout)?.[1];

    const store = await openSqliteStore(defaultStorePath(path.join(dir, 'state')));
    try {
      expect((await store.getGrant(id as string))?.signedApprovals).toBe(true);
      expect((await store.getGrant(plainId as string))?.signedApprovals).toBeUndefined();
    } finally {
      await store.close();
    }

    const listed = await cli('grant', 'list', '--config', config);
    expect(listed.code).toBe(0);
    const row = (needle: string): string => listed.stdout.split('\n').find((l) => l.startsWith(needle)) ?? '';
    expect(row(id as string)).toMatch(/assisted\s+1 signed\s/);
    expect(row(plainId as string)).toMatch(/assisted\s+1\s/);
    expect(row(plainId as string)).not.toContain('signed ');
    const json = JSON.parse((await cli('grant', 'list', '--config', config, '--json')).stdout) as Grant[];
    expect(json.find((g) => g.id === id)?.signedApprovals).toBe(true);
    expect(json.find((g) => g.id === plainId)?.signedApprovals).toBeUndefined();
  });
});
