// The custom-capability example: `payments` over a real SQLite ledger seeded with the refund-desk
// example data (sandbox-images/examples/refund-desk/data/seed.sql).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPayments, createSqliteLedger, paymentsCapability } from '../../capabilities/examples/payments.js';
import type { CapabilityInstance } from '../../capabilities/sdk/index.js';

const seedFile = path.join(import.meta.dirname, '../../sandbox-images/examples/refund-desk/data/seed.sql');
let dir = '';
let file = '';

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'payments-test-'));
  file = path.join(dir, 'shop.db');
  const db = new Database(file);
  db.exec(await readFile(seedFile, 'utf8'));
  db.close();
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const ledger = () => createSqliteLedger({ file, currency: 'EUR', now: () => Date.parse('2024-07-01T10:00:00Z') });

async function call(inst: CapabilityInstance, method: string, raw: unknown): Promise<any> {
  return inst.invoke(method, inst.parseArgs(method, raw), { runId: 'run-1', signal: new AbortController().signal });
}

async function refusal(p: Promise<unknown> | (() => unknown)): Promise<{ code: string; message: string; data?: Record<string, unknown> }> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (error) {
    return error as { code: string; message: string };
  }
  throw new Error('expected a refusal');
}

describe('payments (custom capability example)', () => {
  it('carries the risk annotations the gate needs', () => {
    expect(paymentsCapability.methods.refund!.riskResolved).toEqual({ readOnly: false, destructive: false, reversible: false, openWorld: true, financial: true });
    expect(paymentsCapability.methods.lookup!.riskResolved).toMatchObject({ readOnly: true, destructive: false, financial: false });
    const d = createPayments({ maxAmountCents: 50_000, currency: 'EUR' }, { ledger: ledger() }).describe();
    expect(d.scope).toBe('refunds in EUR of at most 50000 cents each');
  });

  it('looks an order up, and answers null for an unknown one', async () => {
    const inst = createPayments({ maxAmountCents: 50_000, currency: 'EUR' }, { ledger: ledger() });
    expect(await call(inst, 'lookup', { orderId: 'A-1005' })).toEqual({
      orderId: 'A-1005', status: 'paid', currency: 'EUR', amountCents: 99900, refundedCents: 10000, refundableCents: 89900,
    });
    expect(await call(inst, 'lookup', { orderId: 'Z-9' })).toBeNull();
  });

  it('refunds into the ledger: the order table shows it and the refund is recorded', async () => {
    const inst = createPayments({ maxAmountCents: 50_000, currency: 'EUR' }, { ledger: ledger() });
    const r = await call(inst, 'refund', { orderId: 'A-1002', amountCents: 12900, reason: 'Parcel arrived damaged' });
    expect(r).toMatchObject({ orderId: 'A-1002', amountCents: 12900, currency: 'EUR', refundedCents: 12900, refundableCents: 0, createdAt: '2024-07-01T10:00:00.000Z' });
    expect(r.refundId).toMatch(/^rf_/);
    const db = new Database(file, { readonly: true });
    expect(db.prepare('SELECT refunded_cents FROM orders WHERE id = ?').get('A-1002')).toEqual({ refunded_cents: 12900 });
    expect(db.prepare('SELECT order_id, amount_cents, reason FROM refunds').all()).toEqual([{ order_id: 'A-1002', amount_cents: 12900, reason: 'Parcel arrived damaged' }]);
    db.close();
  });

  it('refuses a refund above the scope limit with OUT_OF_SCOPE, before the ledger is touched', async () => {
    const inst = createPayments({ maxAmountCents: 5000, currency: 'EUR' }, { ledger: ledger() });
    const args = inst.parseArgs('refund', { orderId: 'A-1002', amountCents: 5001, reason: 'x' });
    expect(inst.checkScope('refund', args).ok).toBe(false);
    expect((await refusal(call(inst, 'refund', { orderId: 'A-1002', amountCents: 5001, reason: 'x' }))).code).toBe('OUT_OF_SCOPE');
    expect((await call(inst, 'lookup', { orderId: 'A-1002' })).refundedCents).toBe(0);
  });

  it('never refunds more than is left on the order, even with concurrent calls', async () => {
    const inst = createPayments({ maxAmountCents: 50_000, currency: 'EUR' }, { ledger: ledger() });
    const results = await Promise.allSettled([
      call(inst, 'refund', { orderId: 'A-1001', amountCents: 3000, reason: 'a' }),
      call(inst, 'refund', { orderId: 'A-1001', amountCents: 3000, reason: 'b' }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(failed.reason).toMatchObject({ code: 'CAPABILITY_FAILED', data: { reason: 'over-refund', refundableCents: 1999 } });
    expect((await call(inst, 'lookup', { orderId: 'A-1001' })).refundedCents).toBe(3000);
    expect((await refusal(call(inst, 'refund', { orderId: 'A-1003', amountCents: 1, reason: 'x' }))).data?.reason).toBe('over-refund');
    expect((await refusal(call(inst, 'refund', { orderId: 'NOPE', amountCents: 1, reason: 'x' }))).data?.reason).toBe('unknown-order');
  });

  it('refuses a grant in another currency than the ledger', async () => {
    const inst = createPayments({ maxAmountCents: 50_000, currency: 'USD' }, { ledger: ledger() });
    expect((await refusal(call(inst, 'refund', { orderId: 'A-1002', amountCents: 100, reason: 'x' }))).code).toBe('OUT_OF_SCOPE');
  });

  it('validates arguments strictly', () => {
    const inst = createPayments({ maxAmountCents: 50_000, currency: 'EUR' }, { ledger: ledger() });
    for (const bad of [
      { orderId: 'A-1002', amountCents: 10.5, reason: 'x' },
      { orderId: 'A-1002', amountCents: -5, reason: 'x' },
      { orderId: 'A-1002', amountCents: 100, reason: '   ' },
      { orderId: "A-1002' OR 1=1 --", amountCents: 100, reason: 'x' },
      { orderId: 'A-1002', amountCents: 100, reason: 'x', currency: 'USD' },
    ]) {
      expect(() => inst.parseArgs('refund', bad), JSON.stringify(bad)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });

  it('attenuates down, never up or across currencies; revocation stops refunds', async () => {
    const parent = createPayments({ maxAmountCents: 10_000, currency: 'EUR' }, { ledger: ledger() });
    const child = parent.attenuate({ maxAmountCents: 1_000_000, currency: 'EUR' });
    expect(child.scope.maxAmountCents).toBe(10_000);
    expect(() => parent.attenuate({ maxAmountCents: 100, currency: 'USD' })).toThrow(expect.objectContaining({ code: 'INVALID_SCOPE' }));
    const small = parent.attenuate({ maxAmountCents: 100, currency: 'EUR' }, { methods: ['lookup'] });
    expect(small.methodNames()).toEqual(['lookup']);
    parent.revoke('incident');
    expect((await refusal(call(child, 'refund', { orderId: 'A-1002', amountCents: 100, reason: 'x' }))).code).toBe('CAPABILITY_REVOKED');
  });

  it('a budget caps the number of refunds', async () => {
    const inst = createPayments({ maxAmountCents: 50_000, currency: 'EUR' }, { ledger: ledger() }, { budgets: { refund: { maxCalls: 1 } } });
    await call(inst, 'refund', { orderId: 'A-1002', amountCents: 100, reason: 'x' });
    expect((await refusal(call(inst, 'refund', { orderId: 'A-1002', amountCents: 100, reason: 'x' }))).code).toBe('BUDGET_EXCEEDED');
  });

  it('bad scopes fail at creation', () => {
    for (const scope of [{ maxAmountCents: 0, currency: 'EUR' }, { maxAmountCents: 10, currency: 'eur' }, { maxAmountCents: 10, currency: 'EUR', extra: 1 }]) {
      expect(() => createPayments(scope as never, { ledger: ledger() })).toThrow(expect.objectContaining({ code: 'INVALID_SCOPE' }));
    }
  });
});

describe('payments: a grant never shows more than it allows', () => {
  it('restrict refuses a higher per-refund limit or another currency (INVALID_SCOPE); a lower one is kept as asked', async () => {
    const parent = createPayments({ maxAmountCents: 50_000, currency: 'EUR' }, { ledger: ledger() });
    for (const wider of [{ maxAmountCents: 90_000 }, { maxAmountCents: 90_000, currency: 'EUR' }, { maxAmountCents: 50_001 }]) {
      expect(await refusal(() => parent.restrict(wider)), JSON.stringify(wider)).toMatchObject({ code: 'INVALID_SCOPE', data: { fields: ['maxAmountCents'] } });
    }
    expect((await refusal(() => parent.restrict({ currency: 'USD' }))).code).toBe('INVALID_SCOPE');
    expect(parent.restrict({ maxAmountCents: 20_000 }).scope).toEqual({ maxAmountCents: 20_000, currency: 'EUR' });
    expect(parent.restrict({ maxAmountCents: 50_000 }).scope).toEqual({ maxAmountCents: 50_000, currency: 'EUR' });
  });
});
