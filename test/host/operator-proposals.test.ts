/**
 * Hardening finding 1 (High): an edit let one person decide a two-person action. A real host
 * (SQLite store, the example `payments` capability over a real refunds ledger) and operators on
 * real WebSockets over loopback.
 *
 * The rule: every approval is bound to the digest of the exact arguments that will run. An edit is
 * a new proposal; approvals of other arguments stop counting. Every view carries the current
 * proposal (arguments + digest); an approval names the digest it saw, and one sent against
 * arguments that changed since is refused STALE_REQUEST. The audit names each approver's digest.
 *
 * The two exploits, as reported:
 * - Alice approves a refund of 1000 as asked; Bob approves "with edits" 2000: the 2000 refund ran,
 *   audited as approved by both.
 * - Alice edits 100 → 2900 and approves; Bob's views still said 100; Bob's plain approve ran 2900.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../host/cli/main.js';
import { formatRequest, runOperatorTerminal } from '../../host/operator/terminal.js';
import { canonicalJson, sha256Hex } from '../../host/audit/canonical.js';
import { openAuditReader, queryAudit } from '../../host/audit/query.js';
import type { OperatorClient } from '../../host/operator/client.js';
import type { WireRequestView as RequestView } from '../../host/operator/protocol.js';
import { defaultStorePath } from '../../host/store/sqlite-store.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

const PAYMENTS = { capability: 'payments', kind: 'payments', scope: {}, methods: ['refund'], why: 'refunds' };

/** The digest an approval is bound to: sha256 of the arguments' canonical JSON. */
function digestOf(args: unknown): string {
  return `sha256:${sha256Hex(canonicalJson(args))}`;
}

let fx: Fixture;
let dir: string;
let shop: string;
beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'contained-proposals-'));
  shop = path.join(dir, 'shop.db');
  const db = new Database(shop);
  db.exec(`CREATE TABLE orders (id TEXT PRIMARY KEY, customer_email TEXT NOT NULL, status TEXT NOT NULL, amount_cents INTEGER NOT NULL, refunded_cents INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL);
    INSERT INTO orders (id, customer_email, status, amount_cents, refunded_cents, created_at) VALUES
      ('P-1', 'a@example.com', 'delivered', 100000, 0, '2024-06-01T00:00:00Z'), ('P-2', 'b@example.com', 'delivered', 100000, 0, '2024-06-01T00:00:00Z'),
      ('P-3', 'c@example.com', 'delivered', 100000, 0, '2024-06-01T00:00:00Z'), ('P-4', 'd@example.com', 'delivered', 100000, 0, '2024-06-01T00:00:00Z'),
      ('C-1', 'e@example.com', 'delivered', 100000, 0, '2024-06-01T00:00:00Z'), ('C-2', 'f@example.com', 'delivered', 100000, 0, '2024-06-01T00:00:00Z');`);
  db.close();
  fx = await startFixture(
    {
      capabilities: { payments: { kind: 'payments', scope: { currency: 'EUR', maxAmountCents: 50_000 }, host: { ledger: { file: shop, currency: 'EUR' } } } },
    },
    dir,
  );
});
afterAll(async () => {
  await fx?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Cents refunded so far on an order, read from the ledger itself. */
function refunded(orderId: string): number {
  const db = new Database(shop, { readonly: true });
  try {
    return (db.prepare('SELECT refunded_cents FROM orders WHERE id = ?').pluck().get(orderId) as number) ?? -1;
  } finally {
    db.close();
  }
}

function refundAgent(name: string, orderId: string, amountCents: number, why = 'the customer sent photos') {
  const args = { orderId, amountCents, reason: 'parcel arrived damaged' };
  const source = `export default async (input, caps) => (await caps.payments.refund(${JSON.stringify(args)}, { reason: ${JSON.stringify(why)} })).amountCents;`;
  return { image: fx.image(name, source, [PAYMENTS]), args };
}

function next(op: OperatorClient, type: 'created' | 'updated' | 'resolved', filter: (r: RequestView) => boolean): Promise<RequestView> {
  return new Promise((resolve) => {
    const off = op.onEvent((event) => {
      if (event.type === type && filter(event.request as RequestView)) {
        off();
        resolve(event.request as RequestView);
      }
    });
  });
}

async function start(name: string, orderId: string, amountCents: number, watchers: OperatorClient[], why?: string) {
  const { image, args } = refundAgent(name, orderId, amountCents, why);
  await fx.grant(image.digest, { capability: 'payments', methods: ['refund'], mode: 'assisted', approvals: 2 });
  const seen = watchers.map((op) => next(op, 'created', (r) => r.subject === image.digest));
  const { runId } = await fx.host.submit({ image: image.bytes, input: null });
  const views = await Promise.all(seen);
  return { runId, args, request: views[0] as RequestView, outcome: fx.host.waitForRun(runId) };
}

async function auditOf(runId: string) {
  await fx.host.audit.flush();
  const db = openAuditReader(defaultStorePath(fx.dir));
  try {
    return queryAudit(db, { runId }).map((r) => ({ type: r.type, data: r.data as Record<string, unknown> }));
  } finally {
    db.close();
  }
}

describe('two-person requests: approvals are bound to the arguments they approved', () => {
  it('Alice approves 1000 as asked, Bob approves with 2000: nothing runs until Alice approves 2000 too; the audit names both digests', async () => {
    const alice = await fx.operator('alice');
    const bob = await fx.operator('bob');
    const { runId, args, request, outcome } = await start('refund-1000', 'P-1', 1000, [alice, bob]);
    expect(request).toMatchObject({ approvalsRequired: 2, args: { amountCents: 1000 } });
    const asked = digestOf(args);
    const edited = { ...args, amountCents: 2000 };

    await alice.decide({ requestId: request.id, verdict: 'approve' }); // the agent's own arguments
    const afterBob = await bob.decide({ requestId: request.id, verdict: 'approve', args: edited });

    // The exploit: this used to run the 2000 refund, "approved by alice and bob".
    expect(afterBob.status).toBe('pending');
    expect(refunded('P-1')).toBe(0);
    expect(afterBob).toMatchObject({ proposal: { args: edited, argsDigest: digestOf(edited), by: 'bob', approvedBy: ['bob'] } });
    expect(afterBob.approvals.map((a) => [a.operator, a.argsDigest])).toEqual([
      ['alice', asked],
      ['bob', digestOf(edited)],
    ]);

    // Alice, who approved 1000, may now approve 2000 — having seen it: the digest she sends is 2000's.
    const done = await alice.decide({ requestId: request.id, verdict: 'approve', argsDigest: digestOf(edited) });
    expect(done).toMatchObject({ status: 'approved', resolvedBy: ['bob', 'alice'] });
    expect(await outcome).toMatchObject({ status: 'ok', value: 2000 });
    expect(refunded('P-1')).toBe(2000);

    const audit = await auditOf(runId);
    const decision = audit.find((r) => r.type === 'decision' && r.data.allow === true);
    expect(decision?.data).toMatchObject({
      approvedBy: ['bob', 'alice'],
      argsDigest: digestOf(edited),
      approvals: [
        { operator: 'bob', argsDigest: digestOf(edited) },
        { operator: 'alice', argsDigest: digestOf(edited) },
      ],
    });
    const resolved = audit.find((r) => r.type === 'request.resolved');
    expect(resolved?.data).toMatchObject({
      status: 'approved',
      by: ['bob', 'alice'],
      argsDigest: digestOf(edited),
      edited: true,
      approvals: [
        { operator: 'alice', argsDigest: asked, counts: false },
        { operator: 'bob', argsDigest: digestOf(edited), counts: true, edited: true },
        { operator: 'alice', argsDigest: digestOf(edited), counts: true },
      ],
    });
    const partial = audit.filter((r) => r.type === 'request.approval').at(-1);
    expect(partial?.data).toMatchObject({ argsDigest: digestOf(edited), approvals: [{ operator: 'alice', argsDigest: asked, counts: false }, { operator: 'bob', argsDigest: digestOf(edited), counts: true }] });
  });

  it('Alice edits 100 → 2900 and approves: Bob sees 2900 and its digest, his approval of 100 is refused STALE_REQUEST, his approval of 2900 runs it', async () => {
    const alice = await fx.operator('alice');
    const bob = await fx.operator('bob');
    const { runId, args, request, outcome } = await start('refund-100', 'P-2', 100, [alice, bob]);
    const edited = { ...args, amountCents: 2900 };
    const bobSeesEdit = next(bob, 'updated', (r) => r.id === request.id);
    await alice.decide({ requestId: request.id, verdict: 'approve', args: edited, argsDigest: request.proposal.argsDigest });

    // Every view carries what will run: Bob's copy of the request, from the event.
    const view = await bobSeesEdit;
    expect(view).toMatchObject({ args: { amountCents: 100 }, proposal: { args: edited, argsDigest: digestOf(edited), by: 'alice', approvedBy: ['alice'] } });
    expect(bob.pending.get(request.id)?.proposal.args).toEqual(edited);

    // A plain approve that names no digest approves what the agent asked (100): stale now.
    await expect(bob.decide({ requestId: request.id, verdict: 'approve' })).rejects.toMatchObject({
      code: 'STALE_REQUEST',
      data: { argsDigest: digestOf(edited), proposedBy: 'alice' },
    });
    // So is one naming the digest of 100 explicitly, and an edit built on 100.
    await expect(bob.decide({ requestId: request.id, verdict: 'approve', argsDigest: digestOf(args) })).rejects.toMatchObject({ code: 'STALE_REQUEST' });
    await expect(bob.decide({ requestId: request.id, verdict: 'approve', args: { ...args, amountCents: 150 }, argsDigest: digestOf(args) })).rejects.toMatchObject({ code: 'STALE_REQUEST' });
    expect(refunded('P-2')).toBe(0);
    expect(await fx.host.store.getRequest(request.id)).toMatchObject({ status: 'pending', approvals: [{ operator: 'alice' }] });

    const done = await bob.decide({ requestId: request.id, verdict: 'approve', argsDigest: view.proposal.argsDigest });
    expect(done).toMatchObject({ status: 'approved', resolvedBy: ['alice', 'bob'] });
    expect(await outcome).toMatchObject({ status: 'ok', value: 2900 });
    expect(refunded('P-2')).toBe(2900);
    const audit = await auditOf(runId);
    expect(audit.find((r) => r.type === 'request.resolved')?.data).toMatchObject({
      by: ['alice', 'bob'],
      argsDigest: digestOf(edited),
      approvals: [
        { operator: 'alice', argsDigest: digestOf(edited), counts: true, edited: true },
        { operator: 'bob', argsDigest: digestOf(edited), counts: true },
      ],
    });
  });

  it('a malformed digest is INVALID_ARGUMENT; an approval of the same arguments twice is DUPLICATE_APPROVER; a deny needs no digest', async () => {
    const alice = await fx.operator('alice');
    const { request, outcome } = await start('refund-dup', 'P-3', 300, [alice]);
    await expect(alice.decide({ requestId: request.id, verdict: 'approve', argsDigest: 'sha256:abc' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await alice.decide({ requestId: request.id, verdict: 'approve', argsDigest: request.proposal.argsDigest });
    await expect(alice.decide({ requestId: request.id, verdict: 'approve', argsDigest: request.proposal.argsDigest })).rejects.toMatchObject({ code: 'DUPLICATE_APPROVER' });
    await alice.decide({ requestId: request.id, verdict: 'deny', reason: 'not this one' });
    expect(await outcome).toMatchObject({ status: 'error', error: { code: 'ESCALATION_DENIED' } });
    expect(refunded('P-3')).toBe(0);
  });

  it('an approval given while the proposal moved under it is refused, not counted for the new arguments', async () => {
    const alice = await fx.operator('alice');
    const bob = await fx.operator('bob');
    const carol = await fx.operator('carol');
    const { args, request, outcome } = await start('refund-race', 'P-4', 400, [alice, bob, carol]);
    const seen = request.proposal.argsDigest;
    // Bob and Carol both loaded 400. Bob edits to 4000; Carol's approve of 400 arrives after.
    await bob.decide({ requestId: request.id, verdict: 'approve', args: { ...args, amountCents: 4000 }, argsDigest: seen });
    await expect(carol.decide({ requestId: request.id, verdict: 'approve', argsDigest: seen })).rejects.toMatchObject({ code: 'STALE_REQUEST' });
    // Alice edits back to what the agent asked: a new proposal again; Bob's 4000 stops counting.
    const back = await alice.decide({ requestId: request.id, verdict: 'approve', args, argsDigest: digestOf({ ...args, amountCents: 4000 }) });
    expect(back).toMatchObject({ status: 'pending', proposal: { argsDigest: seen, by: 'alice', approvedBy: ['alice'] } });
    await carol.decide({ requestId: request.id, verdict: 'approve', argsDigest: seen });
    expect(await outcome).toMatchObject({ status: 'ok', value: 400 });
    expect(refunded('P-4')).toBe(400);
  });
});

/** The terminal console of one operator, driven through streams. */
function terminal(op: OperatorClient) {
  const input = new PassThrough();
  const output = new PassThrough();
  let text = '';
  output.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  const done = runOperatorTerminal(op, { input, output, terminal: false });
  return {
    done,
    type: (line: string) => input.write(`${line}\n`),
    get text() {
      return text;
    },
    /** Wait until the output (from `from` on) contains `needle`; the output from there. */
    async until(needle: string, from = 0): Promise<string> {
      const deadline = Date.now() + 5000;
      while (!text.slice(from).includes(needle)) {
        if (Date.now() > deadline) throw new Error(`console never printed ${JSON.stringify(needle)}; got:\n${text.slice(from)}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return text.slice(from);
    },
  };
}

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t) });
  return { code, out, err };
}

describe('what decides, besides the arguments', () => {
  it('a two-person escalation reaches only as far as both approvers agreed: once and always is once (no grant written)', async () => {
    const alice = await fx.operator('alice');
    const bob = await fx.operator('bob');
    const { image } = refundAgent('refund-escalated', 'P-3', 50);
    // No grant: the call escalates; financial, so two approvers.
    const seen = next(alice, 'created', (r) => r.subject === image.digest);
    const { runId } = await fx.host.submit({ image: image.bytes, input: null });
    const request = await seen;
    expect(request).toMatchObject({ kind: 'escalation', approvalsRequired: 2 });
    await alice.decide({ requestId: request.id, verdict: 'approve', span: 'once' });
    await bob.decide({ requestId: request.id, verdict: 'approve', span: 'always' });
    expect(await fx.host.waitForRun(runId)).toMatchObject({ status: 'ok', value: 50 });
    const grants = (await fx.host.store.listGrants()).filter((g) => 'digest' in g.subject && g.subject.digest === image.digest);
    expect(grants).toEqual([]);
    const audit = await auditOf(runId);
    expect(audit.find((r) => r.type === 'request.resolved')?.data).toMatchObject({ status: 'approved', span: 'once' });
  });

  it('the store appends an approval only onto the approvals its caller judged, and counts and names approvers per digest', async () => {
    const store = fx.host.store;
    const now = Date.now();
    const a = digestOf({ n: 1 });
    const b = digestOf({ n: 2 });
    await store.insertRequest({
      id: 'store-cas', kind: 'recommendation', runId: 'no-run', capability: 'payments', method: 'refund', args: { n: 1 }, why: 'test',
      approvalsRequired: 2, approvals: [], status: 'pending', createdAt: now, expiresAt: now + 60_000,
    });
    expect(await store.addApproval('store-cas', { operator: 'alice', at: now, argsDigest: a }, { resolve: false, expectApprovals: 0 })).toMatchObject({ ok: true });
    // Judged against an empty list, but alice's landed first: refused, not appended.
    expect(await store.addApproval('store-cas', { operator: 'bob', at: now, argsDigest: a }, { resolve: true, expectApprovals: 0 })).toMatchObject({ ok: false, code: 'STALE_REQUEST' });
    // Bob approves other arguments: alice may approve those too (different digest), but not twice.
    expect(await store.addApproval('store-cas', { operator: 'bob', at: now, argsDigest: b, args: { n: 2 } }, { resolve: false, expectApprovals: 1 })).toMatchObject({ ok: true });
    expect(await store.addApproval('store-cas', { operator: 'bob', at: now, argsDigest: b }, { resolve: true })).toMatchObject({ ok: false, code: 'DUPLICATE_APPROVER' });
    // Three approvals, two of them of b: resolved, by exactly those two.
    const done = await store.addApproval('store-cas', { operator: 'alice', at: now, argsDigest: b }, { resolve: true, expectApprovals: 2 });
    expect(done).toMatchObject({ ok: true, request: { status: 'approved', resolvedBy: ['bob', 'alice'] } });
  });
});

describe('the command line shows and approves exact arguments', () => {
  it('contained operator: a new proposal is printed in full (arguments that run, changes, digest); approve approves what was printed', async () => {
    const alice = await fx.operator('alice');
    const bob = await fx.operator('bob');
    const console = terminal(bob);
    await console.until('type "help" for commands');
    const { args, request, outcome } = await start('refund-cli', 'C-1', 100, [alice, bob]);
    const created = await console.until(`── ${request.id}`);
    expect(created).toContain('args (as the agent asked; these run if approved): {');
    expect(created).toContain('"amountCents": 100');
    expect(created).toContain(`args digest: ${digestOf(args)}`);
    expect(created).toContain('approvals 0/2');

    const mark = console.text.length;
    const edited = { ...args, amountCents: 2900 };
    await alice.decide({ requestId: request.id, verdict: 'approve', args: edited, argsDigest: digestOf(args) });
    const shown = await console.until(`args digest: ${digestOf(edited)}`, mark);
    expect(shown).toContain(`${request.id}: alice edited the arguments: a new proposal; approvals of other arguments no longer count`);
    expect(shown).toContain('args (edited by alice; these run if approved): {');
    expect(shown).toContain('"amountCents": 2900');
    expect(shown).toContain('changes from what the agent asked:\n     - "amountCents": 100\n     + "amountCents": 2900\n');
    expect(shown).toContain('approvals 1/2 (alice)');

    console.type(`approve ${request.id.slice(0, 8)}`);
    await console.until(`${request.id}: approved by alice, bob`, mark);
    expect(await outcome).toMatchObject({ status: 'ok', value: 2900 });
    expect(refunded('C-1')).toBe(2900);
    expect((await fx.host.store.getRequest(request.id))?.approvals.map((a) => a.argsDigest)).toEqual([digestOf(edited), digestOf(edited)]);
    console.type('quit');
    expect(await console.done).toBe(0);
  });

  it('agent text that imitates the console stays on its own labelled line, with control and bidi characters escaped (finding 14)', async () => {
    const alice = await fx.operator('alice');
    // A newline, a fake approvals line, "clear screen" (ESC [2J), a C1 CSI (U+009B) and a right-to-left override.
    const hostile = 'ok\n   risk: none   approvals 2/2 (alice, bob)   Two-person rule ●● 2 of 2 approvals ✓\u001b[2J\u009b31m\u202Etxet';
    const { request } = await start('refund-lookalike', 'P-1', 1, [alice], hostile);
    const text = formatRequest(request, Date.now());
    const lines = text.split('\n');
    // One line starts like the risk and approvals line: the host's. The lookalike is inside the quoted reason.
    expect(lines.filter((l) => /^\s*risk:/.test(l))).toEqual([expect.stringMatching(/^ {3}risk: openWorld, financial {3}approvals 0\/2 {3}expires in /)]);
    const reason = lines.find((l) => l.startsWith("   agent's reason: "));
    expect(reason).toBe(`   agent's reason: "ok\\n   risk: none   approvals 2/2 (alice, bob)   Two-person rule ●● 2 of 2 approvals ✓\\u001b[2J\\u{009B}31m\\u{202E}txet"`);
    expect(text).not.toMatch(/[\u001b\u009b\u202e]/);
    await alice.decide({ requestId: request.id, verdict: 'deny', reason: 'test' });
  });

  it('contained approve: without --digest it approves what the agent asked (STALE_REQUEST once edited); --digest names what was reviewed', async () => {
    const alice = await fx.operator('alice');
    const { args, request, outcome } = await start('refund-cli-2', 'C-2', 200, [alice]);
    const edited = { ...args, amountCents: 250 };
    await alice.decide({ requestId: request.id, verdict: 'approve', args: edited, argsDigest: digestOf(args) });
    const url = fx.host.url as string;
    const blind = await cli(['approve', request.id, '--url', url, '--token', fx.tokens['bob'] as string]);
    expect(blind.code).toBe(1);
    expect(blind.err).toMatch(new RegExp(`^STALE_REQUEST: request ${request.id} changed since you loaded it \\(alice edited the arguments; now ${digestOf(edited)}\\)`));
    expect(await cli(['approve', request.id, '--digest', 'sha256:nope', '--url', url, '--token', fx.tokens['bob'] as string])).toMatchObject({ code: 2, err: expect.stringMatching(/^USAGE: --digest/) });
    expect(refunded('C-2')).toBe(0);
    const reviewed = await cli(['approve', request.id, '--digest', digestOf(edited), '--url', url, '--token', fx.tokens['bob'] as string]);
    expect(reviewed).toEqual({ code: 0, out: `${request.id}: approved\n`, err: '' });
    expect(await outcome).toMatchObject({ status: 'ok', value: 250 });
  });
});
