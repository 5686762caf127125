/**
 * Passkey-signed approvals against a real host (approvals.signed = "risky"): passkeys registered
 * through the console's routes with a software authenticator (real P-256 keys and signatures), a
 * destructive two-person request approved by two operators each with their own passkey, and every
 * refusal with its code: unsigned (SIGNATURE_REQUIRED), forged, replayed, made for other arguments,
 * another operator's passkey, the same person with a second passkey (DUPLICATE_APPROVER). Then the
 * log alone verifies every signature offline (`contained audit verify`) and `audit show` says who
 * approved which arguments with which passkey.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateAuditKey, signCheckpoint } from '../../host/audit/keys.js';
import { hashRecord, RECORD_COLUMNS, rowToStored, type StoredRecord } from '../../host/audit/record.js';
import { approvalChallenge } from '../../host/approvals/challenge.js';
import { auditCommand } from '../../host/cli/audit.js';
import { argsDigest } from '../../host/gate/proposal.js';
import type { ContainedError } from '../../runtime/errors.js';
import { login, post } from '../console/helpers.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';
import { registerPasskey, SoftAuthenticator, type SoftCredential } from './helpers/soft-authenticator.js';
import { waitUntil } from './helpers/webhook-receiver.js';

let fx: Fixture;
let origin: string;
const keys: Record<string, SoftAuthenticator> = {};

function register(name: string): Promise<SoftCredential> {
  return registerPasskey(fx.host.url as string, fx.tokens[name] as string, (keys[name] ??= new SoftAuthenticator(origin)), `${name}'s key`);
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; reason?: string }> {
  try {
    await p;
  } catch (error) {
    const e = error as ContainedError;
    return { code: e.code, ...(typeof (e.data as { reason?: string } | undefined)?.reason === 'string' ? { reason: (e.data as { reason: string }).reason } : {}) };
  }
  throw new Error('expected a refusal');
}

async function destructiveRequest(file: string, content: string): Promise<{ id: string; digest: string; runId: string }> {
  const source = `export default async (input, caps) => { await caps.notes.write({ path: ${JSON.stringify(file)}, content: ${JSON.stringify(content)} }, { reason: 'keep notes' }); return 'written'; };`;
  const image = fx.image(`signed-${file.replace(/[^a-z0-9]/g, '-')}`, source, [{ capability: 'notes', kind: 'fs', scope: {}, methods: ['write'], why: 'notes' }]);
  await fx.grant(image.digest, { capability: 'notes', methods: ['write'], mode: 'assisted', approvals: 2 });
  const { runId } = await fx.host.submit({ image: image.bytes });
  const request = await waitUntil(async () => (await fx.host.store.listRequests({ runId, status: 'pending' }))[0], 'the request');
  return { id: request.id, digest: argsDigest(request.args), runId };
}

beforeAll(async () => {
  fx = await startFixture({ approvals: { signed: 'risky' } });
  origin = `http://localhost:${new URL(fx.host.url as string).port}`;
});
afterAll(async () => {
  await fx?.close();
});

describe('signed approvals', () => {
  let alice: SoftCredential;
  let aliceSecond: SoftCredential;
  let bob: SoftCredential;

  it('registers passkeys through the console; the audit log records each public key', async () => {
    alice = await register('alice');
    aliceSecond = await register('alice');
    bob = await register('bob');
    await fx.host.audit.flush();
    const records = fx.host.audit.db.prepare("SELECT data FROM audit_records WHERE type = 'passkey.registered' ORDER BY seq").pluck().all() as string[];
    expect(records.map((r) => JSON.parse(r) as { operator: string; credentialId: string; publicKey: string })).toMatchObject([
      { operator: 'alice', credentialId: alice.id, publicKey: Buffer.from(alice.cose).toString('base64url') },
      { operator: 'alice', credentialId: aliceSecond.id },
      { operator: 'bob', credentialId: bob.id },
    ]);
    // A viewer registers nothing.
    const vic = await login(fx.host.url as string, { token: fx.tokens['vic'] as string });
    expect((await post(fx.host.url as string, '/console/api/passkeys/options', {}, vic)).status).toBe(403);
  });

  it('refuses an unsigned approval of a destructive request with SIGNATURE_REQUIRED, and counts nothing', async () => {
    const { id } = await destructiveRequest('unsigned.txt', 'x');
    const client = await fx.operator('alice');
    expect(await refusal(client.decide({ requestId: id, verdict: 'approve' }))).toEqual({ code: 'SIGNATURE_REQUIRED' });
    expect((await fx.host.store.getRequest(id))?.approvals).toEqual([]);
    // Denying needs no signature.
    await client.decide({ requestId: id, verdict: 'deny', reason: 'not today' });
  });

  it('two people, two passkeys, the exact arguments: approved and performed; every forgery refused on the way', async () => {
    const { id, digest, runId } = await destructiveRequest('signed.txt', 'two people said yes');
    const a = await fx.operator('alice');
    const b = await fx.operator('bob');
    const challenge = approvalChallenge(id, digest, 'approve');

    // Made for other arguments, for the other verdict, on another origin: refused.
    const other = keys['alice'] as SoftAuthenticator;
    const forOther = other.assert(alice, approvalChallenge(id, argsDigest({ path: 'signed.txt', content: 'something else' }), 'approve'));
    expect(await refusal(a.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: forOther as never }))).toEqual({ code: 'SIGNATURE_INVALID', reason: 'challenge' });
    const forDeny = other.assert(alice, approvalChallenge(id, digest, 'deny'));
    expect(await refusal(a.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: forDeny as never }))).toEqual({ code: 'SIGNATURE_INVALID', reason: 'challenge' });
    const elsewhere = other.assert(alice, challenge, { origin: 'http://evil.localhost:1234' });
    expect(await refusal(a.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: elsewhere as never }))).toEqual({ code: 'SIGNATURE_INVALID', reason: 'origin' });
    // Forged: alice's credential id, signed by a key that is not hers.
    const mallory = new SoftAuthenticator(origin);
    mallory.register({ challenge: 'AAAA' });
    const fake = { ...(mallory.credentials[0] as SoftCredential), id: alice.id, counter: 1000 };
    const forged = mallory.assert(fake, challenge);
    expect(await refusal(a.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: forged as never }))).toEqual({ code: 'SIGNATURE_INVALID', reason: 'signature' });
    // Without user verification (required by default).
    const presenceOnly = other.assert(alice, challenge, { userVerified: false });
    expect(await refusal(a.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: presenceOnly as never }))).toEqual({ code: 'SIGNATURE_INVALID', reason: 'user-verification' });
    // Bob cannot present alice's passkey.
    const aliceOk = other.assert(alice, challenge);
    expect(await refusal(b.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: aliceOk as never }))).toEqual({ code: 'SIGNATURE_INVALID', reason: 'not-yours' });
    expect((await fx.host.store.getRequest(id))?.approvals).toEqual([]);

    // Alice, properly.
    const first = other.assert(alice, challenge);
    await a.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: first as never });
    // The same assertion again (replayed): by alice, then the counter did not move either.
    expect(await refusal(a.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: first as never }))).toEqual({ code: 'SIGNATURE_INVALID', reason: 'same-credential' });
    // Alice again with her second passkey: still one person.
    const second = other.assert(aliceSecond, challenge);
    expect(await refusal(a.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: second as never }))).toEqual({ code: 'DUPLICATE_APPROVER' });
    expect((await fx.host.store.getRequest(id))?.status).toBe('pending');

    // Bob with his own passkey: the second person. Approved, performed.
    const bobs = (keys['bob'] as SoftAuthenticator).assert(bob, challenge);
    const done = await b.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: bobs as never });
    expect(done.status).toBe('approved');
    expect((await fx.host.waitForRun(runId)).status).toBe('ok');
    const stored = await fx.host.store.getRequest(id);
    expect(stored?.approvals.map((x) => [x.operator, x.signature?.credentialId, x.signature?.userVerified])).toEqual([
      ['alice', alice.id, true],
      ['bob', bob.id, true],
    ]);
  });

  it('an old assertion of a passkey replayed on a later request is refused (challenge), and a counter that went back is refused (counter)', async () => {
    const { id, digest } = await destructiveRequest('later.txt', 'later');
    const a = await fx.operator('alice');
    const auth = keys['alice'] as SoftAuthenticator;
    const old = auth.assert(alice, approvalChallenge('another-request', digest, 'approve'));
    expect(await refusal(a.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: old as never }))).toEqual({ code: 'SIGNATURE_INVALID', reason: 'challenge' });
    alice.counter = 1; // a cloned authenticator whose counter is behind
    const behind = auth.assert(alice, approvalChallenge(id, digest, 'approve'));
    expect(await refusal(a.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: behind as never }))).toEqual({ code: 'SIGNATURE_INVALID', reason: 'counter' });
  });

  it('a revoked passkey signs nothing more; another operator cannot revoke it; the revocation is audited', async () => {
    const base = fx.host.url as string;
    const bobSession = await login(base, { token: fx.tokens['bob'] as string });
    expect((await post(base, `/console/api/passkeys/${aliceSecond.id}/revoke`, {}, bobSession)).status).toBe(404);
    const aliceSession = await login(base, { token: fx.tokens['alice'] as string });
    const revoked = await post(base, `/console/api/passkeys/${aliceSecond.id}/revoke`, {}, aliceSession);
    expect(revoked.status, revoked.body).toBe(200);
    expect(revoked.json().passkey.revokedAt).toBeTypeOf('number');
    expect((await post(base, `/console/api/passkeys/${aliceSecond.id}/revoke`, {}, aliceSession)).json().error.code).toBe('ALREADY_RESOLVED');
    const { id, digest } = await destructiveRequest('revoked.txt', 'r');
    const a = await fx.operator('alice');
    const signed = (keys['alice'] as SoftAuthenticator).assert(aliceSecond, approvalChallenge(id, digest, 'approve'));
    expect(await refusal(a.decide({ requestId: id, verdict: 'approve', argsDigest: digest, assertion: signed as never }))).toEqual({ code: 'SIGNATURE_INVALID', reason: 'revoked' });
    await fx.host.audit.flush();
    expect(fx.host.audit.db.prepare("SELECT json_extract(data, '$.by') FROM audit_records WHERE type = 'passkey.revoked'").pluck().all()).toEqual(['alice']);
    const listed = await (await fetch(`${base}/console/api/passkeys`, { headers: { cookie: aliceSession.cookie } })).json() as { passkeys: Array<{ id: string; revokedAt?: number }> };
    expect(listed.passkeys.find((p) => p.id === aliceSecond.id)?.revokedAt).toBeTypeOf('number');
  });

  it('the console asks for a signature only where the policy does; a read-only request is approved unsigned', async () => {
    const source = `export default async (input, caps) => caps.notes.read('a.txt', { reason: 'look' });`;
    const image = fx.image('signed-read-assisted', source, [{ capability: 'notes', kind: 'fs', scope: {}, methods: ['read'], why: 'notes' }]);
    await fx.grant(image.digest, { capability: 'notes', methods: ['read'], mode: 'assisted' });
    const { runId } = await fx.host.submit({ image: image.bytes });
    const request = await waitUntil(async () => (await fx.host.store.listRequests({ runId, status: 'pending' }))[0], 'the request');
    const base = fx.host.url as string;
    const session = await login(base, { token: fx.tokens['carol'] as string });
    const options = await post(base, '/console/api/approvals/options', { requestId: request.id, argsDigest: argsDigest(request.args) }, session);
    expect(options.json()).toEqual({ required: false });
    const { id, digest } = await destructiveRequest('options.txt', 'o');
    const risky = (await post(base, '/console/api/approvals/options', { requestId: id, argsDigest: digest }, session)).json();
    expect(risky.required).toBe(true);
    expect(risky.options.challenge).toBe(approvalChallenge(id, digest, 'approve'));
    expect(risky.options.allowCredentials).toEqual([]); // carol has no passkey
    const carol = await fx.operator('carol');
    expect((await carol.decide({ requestId: request.id, verdict: 'approve' })).status).toBe('approved');
    expect((await fx.host.waitForRun(runId)).status).toBe('ok');
  });

  it('audit verify checks every signature with the logged public keys; audit show prints who approved which arguments with which passkey', async () => {
    await fx.host.audit.flush();
    const out: string[] = [];
    const err: string[] = [];
    const io = { stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s) };
    expect(await auditCommand(['verify', '--data-dir', fx.dir], io as never)).toBe(0);
    expect(out.join('')).toMatch(/signed approvals: 2 verify with the registered public keys/);
    const approved = (await fx.host.store.listRequests({ status: 'approved' }))[0];
    out.length = 0;
    expect(await auditCommand(['show', approved?.id as string, '--data-dir', fx.dir], io as never)).toBe(0);
    const text = out.join('');
    expect(text).toContain(`alice approved ${argsDigest(approved?.args)}`);
    expect(text).toContain(`passkey ${alice.id}`);
    expect(text).toContain(`passkey ${bob.id}`);
    expect(text).toMatch(/signature verifies/);
    expect(text).toMatch(/decided by people: alice \+ bob/);
    // A call a grant decided: an automatic rule, no person.
    const granted = await grantedCall();
    out.length = 0;
    expect(await auditCommand(['show', granted, '--data-dir', fx.dir], io as never)).toBe(0);
    expect(out.join('')).toMatch(new RegExp(`call ${granted}: notes.read allowed by an automatic rule: grant grt_[0-9a-f]+ in mode contained, added by test; no person decided this call`));
  });

  it('a log rewritten with the host’s own key (chain and checkpoints re-sealed) still fails on an approval whose signature was changed', async () => {
    await fx.host.audit.flush();
    const copy = mkdtempSync(path.join(os.tmpdir(), 'contained-signed-copy-'));
    try {
      // Offline: only the store file and the public key, as an auditor would get them.
      fx.host.audit.checkpoint();
      fx.host.audit.db.prepare('VACUUM INTO ?').run(path.join(copy, 'contained.db'));
      copyFileSync(path.join(fx.dir, 'audit-key.pub.pem'), path.join(copy, 'audit-key.pub.pem'));
      const out: string[] = [];
      const err: string[] = [];
      const io = { stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s) };
      expect(await auditCommand(['verify', '--data-dir', copy], io as never)).toBe(0);

      // Bob's approval now "approves" other arguments: its argsDigest is changed, and the whole chain
      // after it re-hashed and every checkpoint re-signed with the host's private key.
      const db = new Database(path.join(copy, 'contained.db'));
      const key = loadOrCreateAuditKey(fx.dir);
      const rows = (db.prepare(`SELECT ${RECORD_COLUMNS} FROM audit_records ORDER BY seq`).raw().all() as unknown[][]).map(rowToStored);
      const target = rows.find((r) => r.type === 'request.resolved' && r.data.includes('"bob"') && r.data.includes('"signature"'));
      expect(target).toBeDefined();
      const other = argsDigest({ path: 'signed.txt', content: 'transfer everything' });
      let prev = rows[rows.indexOf(target as StoredRecord) - 1]?.hash as string;
      for (const r of rows.slice(rows.indexOf(target as StoredRecord))) {
        if (r === target) r.data = r.data.split(JSON.parse(r.data).argsDigest as string).join(other);
        r.prevHash = prev;
        r.hash = hashRecord(r);
        prev = r.hash;
        db.prepare('UPDATE audit_records SET data = ?, prev_hash = ?, hash = ? WHERE seq = ?').run(r.data, r.prevHash, r.hash, r.seq);
      }
      const bySeq = new Map(rows.map((r) => [r.seq, r.hash]));
      for (const cp of db.prepare('SELECT seq, at FROM audit_checkpoints').all() as Array<{ seq: number; at: number }>) {
        const signed = signCheckpoint(key, cp.seq, bySeq.get(cp.seq) as string, cp.at);
        db.prepare('UPDATE audit_checkpoints SET hash = ?, signature = ? WHERE seq = ?').run(signed.hash, signed.signature, cp.seq);
      }
      db.close();
      out.length = 0;
      expect(await auditCommand(['verify', '--data-dir', copy], io as never)).toBe(1);
      expect(out.join('')).toContain('OK: the chain and every checkpoint verify');
      expect(err.join('')).toMatch(/AUDIT_TAMPERED: signed approval at seq \d+ \(request [0-9a-f-]+, bob\): the assertion does not verify/);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });
});

/** A run whose notes.read a contained-mode grant allows at once: its call id. */
async function grantedCall(): Promise<string> {
  const source = `export default async (input, caps) => caps.notes.read('a.txt');`;
  const image = fx.image('signed-granted-read', source, [{ capability: 'notes', kind: 'fs', scope: {}, methods: ['read'], why: 'notes' }]);
  await fx.grant(image.digest, { capability: 'notes', methods: ['read'], mode: 'contained' });
  const { runId } = await fx.host.submit({ image: image.bytes });
  await fx.host.waitForRun(runId);
  await fx.host.audit.flush();
  const id = fx.host.audit.db.prepare("SELECT call_id FROM audit_records WHERE type = 'decision' AND run_id = ?").pluck().get(runId) as string;
  return id;
}
