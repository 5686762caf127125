/**
 * Grant rules: the risk policy for new grants (destructive/financial never autonomous without a
 * forced admin override, two approvers when assisted, executed only for reversible methods), the
 * shape rules (methods, expiry, budgets, scope), which grant covers a call and which one decides it
 * (with lookalike subjects), what an "always" answer writes, and the small parsers.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createFs } from '../../capabilities/fs/index.js';
import { builtinCapabilities, lookupKind, openKind } from '../../capabilities/registry.js';
import { type CapabilityInstance, createInstance, defineCapability, method } from '../../capabilities/sdk/index.js';
import { type RiskAnnotations, resolveRisk } from '../../capabilities/sdk/risk.js';
import {
  buildGrant,
  capabilityOffer,
  chooseGrant,
  type GrantRuleContext,
  grantCovers,
  grantInstance,
  grantScopeCheck,
  lessSupervised,
  MODE_ORDER,
  narrowestGrantFor,
  type NewGrantInput,
  parseBudgets,
  parseExpiry,
  parseSubject,
  validateNewGrant,
} from '../../host/grants.js';
import type { Grant, RunSubject } from '../../host/model.js';
import { ContainedError } from '../../runtime/errors.js';
import { DIGEST, grant, KEY, OTHER_DIGEST, request } from './store-fixtures.js';

const NOW = 1_700_000_000_000;

/** A host instance with one method of each risk profile. */
const RISK: Record<string, Partial<RiskAnnotations>> = {
  read: { readOnly: true, openWorld: false },
  move: { readOnly: false, destructive: false, reversible: true, openWorld: false },
  append: { readOnly: false, destructive: false, reversible: false, openWorld: false },
  remove: { readOnly: false, destructive: true, reversible: false, openWorld: false },
  refund: { readOnly: false, destructive: false, reversible: false, openWorld: true, financial: true },
};
const host = { methodNames: () => Object.keys(RISK), risk: (m: string) => resolveRisk(RISK[m]) };

function ctx(over: Partial<GrantRuleContext> = {}): GrantRuleContext {
  return { methods: host.methodNames(), risk: host.risk, role: 'admin', now: NOW, ...over };
}

function input(over: Partial<NewGrantInput> = {}): NewGrantInput {
  return { subject: { digest: DIGEST }, capability: 'files', methods: ['read'], mode: 'contained', createdBy: 'alice', reason: 'weekly report', ...over };
}

function refused(over: Partial<NewGrantInput>, context: Partial<GrantRuleContext> = {}): { code: string; rule: string; message: string } {
  const verdict = validateNewGrant(input(over), ctx(context));
  if (verdict.ok) throw new Error(`expected a refusal, got ${JSON.stringify(verdict.grant)}`);
  return verdict;
}

function accepted(over: Partial<NewGrantInput>, context: Partial<GrantRuleContext> = {}): { grant: Omit<Grant, 'id' | 'createdAt'>; notes: string[] } {
  const verdict = validateNewGrant(input(over), ctx(context));
  if (!verdict.ok) throw new Error(`expected acceptance, got ${verdict.code}: ${verdict.message}`);
  return verdict;
}

describe('validateNewGrant: risk policy', () => {
  it('accepts read-only and reversible methods contained', () => {
    expect(accepted({ methods: ['read', 'move'] }).grant).toMatchObject({ methods: ['read', 'move'], mode: 'contained', approvals: 1 });
  });

  it.each([['remove'], ['refund']])('refuses %s (destructive or financial) as contained or executed without a forced override', (method) => {
    for (const mode of ['contained', 'executed'] as const) {
      const r = refused({ methods: ['read', method], mode });
      expect(r).toMatchObject({ code: 'GRANT_REFUSED', rule: 'autonomous-risk' });
      expect(r.message).toContain(`files.${method}`);
      expect(r.message).toContain('assisted');
    }
  });

  it('refuses "*" contained when any method of the instance is destructive or financial', () => {
    const r = refused({ methods: ['*'] });
    expect(r.code).toBe('GRANT_REFUSED');
    expect(r.message).toContain('files.remove, files.refund');
  });

  it('accepts a forced override by an admin and records who and why', () => {
    const { grant: g, notes } = accepted({ methods: ['remove'], forced: { by: 'root', reason: 'nightly cleanup job, audited' } });
    expect(g).toMatchObject({ mode: 'contained', forced: { by: 'root', reason: 'nightly cleanup job, audited' } });
    expect(notes).toEqual([]);
  });

  it('refuses a forced override by anyone but an admin, and any grant by a viewer or platform client', () => {
    expect(refused({ methods: ['remove'], forced: { by: 'bob', reason: 'x' } }, { role: 'approver' })).toMatchObject({ code: 'FORBIDDEN', rule: 'force' });
    expect(refused({}, { role: 'viewer' })).toMatchObject({ code: 'FORBIDDEN', rule: 'role' });
    expect(refused({}, { role: 'platform' })).toMatchObject({ code: 'FORBIDDEN', rule: 'role' });
    expect(accepted({}, { role: 'approver' }).grant.mode).toBe('contained');
  });

  it('refuses a forced grant without a reason', () => {
    expect(refused({ methods: ['remove'], forced: { by: 'root', reason: '  ' } })).toMatchObject({ code: 'INVALID_ARGUMENT', rule: 'force' });
  });

  it('drops a force that overrode nothing, and says so', () => {
    const { grant: g, notes } = accepted({ methods: ['read'], forced: { by: 'root', reason: 'just in case' } });
    expect(g.forced).toBeUndefined();
    expect(notes.join()).toMatch(/nothing to override/);
  });

  it('executed: only reversible methods, unless forced', () => {
    expect(accepted({ methods: ['read', 'move'], mode: 'executed', reviewSample: 0.1 }).grant).toMatchObject({ mode: 'executed', reviewSample: 0.1 });
    expect(refused({ methods: ['append'], mode: 'executed' })).toMatchObject({ code: 'GRANT_REFUSED', rule: 'executed-irreversible' });
    expect(accepted({ methods: ['append'], mode: 'executed', forced: { by: 'root', reason: 'append-only log' } }).grant.forced).toBeDefined();
  });

  it('assisted destructive or financial: approvals default to 2 (with a note); an explicit 1 is refused unless forced', () => {
    const raised = accepted({ methods: ['refund'], mode: 'assisted' });
    expect(raised.grant.approvals).toBe(2);
    expect(raised.notes.join()).toMatch(/approvals set to 2/);
    expect(accepted({ methods: ['refund'], mode: 'assisted', approvals: 3 }).grant.approvals).toBe(3);
    expect(refused({ methods: ['refund'], mode: 'assisted', approvals: 1 })).toMatchObject({ code: 'GRANT_REFUSED', rule: 'second-sign-off' });
    expect(accepted({ methods: ['refund'], mode: 'assisted', approvals: 1, forced: { by: 'root', reason: 'small shop, one person' } }).grant).toMatchObject({ approvals: 1, forced: { by: 'root' } });
    expect(accepted({ methods: ['read'], mode: 'assisted' }).grant.approvals).toBe(1);
  });

  it('unannotated methods are judged by the worst case', () => {
    const worst = ctx({ methods: ['mystery'], risk: () => resolveRisk(undefined) });
    const verdict = validateNewGrant(input({ methods: ['mystery'] }), worst);
    expect(verdict).toMatchObject({ ok: false, code: 'GRANT_REFUSED' });
  });
});

describe('validateNewGrant: shape', () => {
  it('refuses unknown, duplicate and mixed-wildcard methods', () => {
    expect(refused({ methods: ['read', 'delete'] })).toMatchObject({ code: 'INVALID_ARGUMENT', rule: 'methods' });
    expect(refused({ methods: ['read', 'read'] })).toMatchObject({ code: 'INVALID_ARGUMENT', rule: 'methods' });
    expect(refused({ methods: ['*', 'read'] })).toMatchObject({ code: 'INVALID_ARGUMENT', rule: 'methods' });
    expect(refused({ methods: [] })).toMatchObject({ code: 'INVALID_ARGUMENT', rule: 'methods' });
    expect(refused({ methods: ['__proto__'] }).rule).toBe('methods');
  });

  it('stores "*" as the explicit list when autonomous, as "*" when assisted', () => {
    const safe = { methods: ['read', 'move'], risk: host.risk };
    const auto = accepted({ methods: ['*'] }, safe);
    expect(auto.grant.methods).toEqual(['read', 'move']);
    expect(auto.notes.join()).toMatch(/stored as read,move/);
    expect(accepted({ methods: ['*'], mode: 'assisted' }).grant).toMatchObject({ methods: ['*'], approvals: 2 });
  });

  it('refuses an expiry that is not in the future', () => {
    expect(refused({ expiresAt: NOW })).toMatchObject({ code: 'INVALID_ARGUMENT', rule: 'expiry' });
    expect(refused({ expiresAt: NOW - 1 })).toMatchObject({ rule: 'expiry' });
    expect(refused({ expiresAt: Number.NaN })).toMatchObject({ rule: 'expiry' });
    expect(accepted({ expiresAt: NOW + 1 }).grant.expiresAt).toBe(NOW + 1);
  });

  it('budgets only for covered methods, and valid', () => {
    expect(refused({ methods: ['read'], budgets: { move: { maxCalls: 1 } } })).toMatchObject({ code: 'INVALID_ARGUMENT', rule: 'budget' });
    expect(refused({ methods: ['read'], budgets: { read: { maxCalls: -1 } } })).toMatchObject({ rule: 'budget' });
    expect(accepted({ methods: ['read'], budgets: { read: { maxCalls: 5 } } }).grant.budgets).toEqual({ read: { maxCalls: 5 } });
    expect(accepted({ methods: ['*'], mode: 'assisted', budgets: { refund: { maxCalls: 2 } } }).grant.budgets).toEqual({ refund: { maxCalls: 2 } });
  });

  it('refuses a review sample outside executed mode, bad approvals, no reason, bad subject', () => {
    expect(refused({ reviewSample: 0.5 })).toMatchObject({ rule: 'review-sample' });
    expect(refused({ approvals: 0 })).toMatchObject({ rule: 'approvals' });
    expect(refused({ approvals: 6 })).toMatchObject({ rule: 'approvals' });
    expect(refused({ approvals: 1.5 })).toMatchObject({ rule: 'approvals' });
    expect(refused({ reason: ' ' })).toMatchObject({ rule: 'reason' });
    expect(refused({ subject: { digest: DIGEST.toUpperCase() } })).toMatchObject({ rule: 'subject' });
  });

  it('runs the scope check and maps its failure to INVALID_SCOPE', () => {
    const checkScope = (scope: Record<string, unknown>): void => {
      if (scope.root !== '/srv/reports/2024') throw new ContainedError('INVALID_SCOPE', 'cannot widen: /etc is outside /srv/reports');
    };
    expect(refused({ scope: { root: '/etc' } }, { checkScope })).toMatchObject({ code: 'INVALID_SCOPE', message: 'cannot widen: /etc is outside /srv/reports' });
    expect(accepted({ scope: { root: '/srv/reports/2024' } }, { checkScope }).grant.scope).toEqual({ root: '/srv/reports/2024' });
  });

  it('buildGrant adds id and time, and throws refusals with their code and rule', () => {
    const { grant: g } = buildGrant(input(), ctx(), 'grt_1');
    expect(g).toMatchObject({ id: 'grt_1', createdAt: NOW });
    const error = (() => {
      try {
        buildGrant(input({ methods: ['remove'] }), ctx());
      } catch (e) {
        return e as ContainedError;
      }
      return undefined;
    })();
    expect(error?.code).toBe('GRANT_REFUSED');
    expect(error?.data).toEqual({ rule: 'autonomous-risk' });
  });
});

describe('grantCovers', () => {
  const run: RunSubject = { digest: DIGEST, name: 'refund-desk', signers: [KEY] };
  const call = { subject: run, capability: 'reports', method: 'read', now: NOW };

  it('matches by exact digest, capability and method', () => {
    expect(grantCovers(grant(), call)).toBe(true);
    expect(grantCovers(grant(), { ...call, method: 'write' })).toBe(false);
    expect(grantCovers(grant(), { ...call, capability: 'Reports' })).toBe(false);
    expect(grantCovers(grant({ methods: ['*'] }), { ...call, method: 'anything' })).toBe(true);
  });

  it('refuses lookalike and missing digests', () => {
    expect(grantCovers(grant(), { ...call, subject: { ...run, digest: OTHER_DIGEST } })).toBe(false);
    expect(grantCovers(grant(), { ...call, subject: { ...run, digest: DIGEST.toUpperCase() } })).toBe(false);
    expect(grantCovers(grant(), { ...call, subject: { ...run, digest: `${DIGEST} ` } })).toBe(false);
    expect(grantCovers(grant(), { ...call, subject: { ...run, digest: undefined } })).toBe(false);
  });

  it('matches name + signer only when the signer is among the trusted signers of that very name', () => {
    const named = grant({ subject: { name: 'refund-desk', signer: KEY } });
    expect(grantCovers(named, call)).toBe(true);
    expect(grantCovers(named, { ...call, subject: { ...run, digest: undefined } })).toBe(true);
    expect(grantCovers(named, { ...call, subject: { ...run, signers: [] } })).toBe(false);
    expect(grantCovers(named, { ...call, subject: { ...run, signers: [`sha256:${'13'.repeat(32)}`] } })).toBe(false);
    expect(grantCovers(named, { ...call, subject: { ...run, name: 'refund-desk2' } })).toBe(false);
    expect(grantCovers(named, { ...call, subject: { ...run, name: undefined } })).toBe(false);
  });

  it('refuses revoked grants and expired ones (at the expiry instant)', () => {
    expect(grantCovers(grant({ revokedAt: NOW - 1 }), call)).toBe(false);
    expect(grantCovers(grant({ expiresAt: NOW + 1 }), call)).toBe(true);
    expect(grantCovers(grant({ expiresAt: NOW }), call)).toBe(false);
  });
});

describe('chooseGrant: the one rule the gate and trust decide by', () => {
  const run: RunSubject = { digest: DIGEST, name: 'refund-desk', signers: [KEY] };
  const call = { subject: run, capability: 'reports', method: 'read', now: NOW };

  it('the least supervised covering grant wins; among equals the first given', () => {
    const grants = [grant({ id: 'a', mode: 'assisted' }), grant({ id: 'e1', mode: 'executed' }), grant({ id: 'e2', mode: 'executed' }), grant({ id: 'other', methods: ['list'], mode: 'contained' })];
    expect(chooseGrant(grants, call)).toEqual({ grant: grants[1], covering: grants.slice(0, 3) });
    expect(chooseGrant([...grants, grant({ id: 'c', subject: { name: 'refund-desk', signer: KEY }, mode: 'contained' })], call).grant?.id).toBe('c');
    expect(MODE_ORDER.contained < MODE_ORDER.executed && MODE_ORDER.executed < MODE_ORDER.assisted).toBe(true);
  });

  it('admits is asked in order of preference, not after the first yes; covering still lists every covering grant', () => {
    const grants = [grant({ id: 'a', mode: 'assisted' }), grant({ id: 'c', mode: 'contained' }), grant({ id: 'e', mode: 'executed' })];
    const asked: string[] = [];
    const choice = chooseGrant(grants, call, (g) => {
      asked.push(g.id);
      return g.id !== 'c';
    });
    expect(asked).toEqual(['c', 'e']);
    expect(choice.grant?.id).toBe('e');
    expect(choice.covering.map((g) => g.id)).toEqual(['a', 'c', 'e']);
    expect(chooseGrant(grants, call, () => false)).toEqual({ grant: undefined, covering: grants });
  });

  it('lookalike subjects, revoked and expired grants are never chosen', () => {
    const grants = [
      grant({ id: 'upper', subject: { digest: DIGEST.toUpperCase() } }),
      grant({ id: 'signer', subject: { name: 'refund-desk', signer: `sha256:${'13'.repeat(32)}` } }),
      grant({ id: 'name', subject: { name: 'refund-desk2', signer: KEY } }),
      grant({ id: 'revoked', revokedAt: NOW - 1 }),
      grant({ id: 'expired', expiresAt: NOW }),
    ];
    expect(chooseGrant(grants, call)).toEqual({ grant: undefined, covering: [] });
  });

  it('narrowing may not take a human out of the loop', () => {
    expect(lessSupervised('contained', 'executed')).toBe(true);
    expect(lessSupervised('executed', 'assisted')).toBe(true);
    expect(lessSupervised('assisted', 'contained')).toBe(false);
    expect(lessSupervised('executed', 'executed')).toBe(false);
  });
});

describe('narrowestGrantFor ("always")', () => {
  const escalation = request({ kind: 'escalation', capability: 'files', method: 'read', risk: resolveRisk(RISK.read), requestedScope: undefined, grantId: undefined, approvalsRequired: 1 });

  it('a safe method: exactly that subject, capability and method, contained, with the requested scope', () => {
    const g = narrowestGrantFor({ ...escalation, requestedScope: { root: '/srv/reports/2024' } }, { by: 'bob', now: NOW, id: 'grt_a' });
    expect(g).toEqual({
      id: 'grt_a',
      subject: { digest: DIGEST },
      capability: 'files',
      scope: { root: '/srv/reports/2024' },
      methods: ['read'],
      mode: 'contained',
      approvals: 1,
      createdBy: 'bob',
      reason: '"always" answer to escalation r1',
      createdAt: NOW,
    });
  });

  it('a destructive or financial method stays assisted with two approvers, never contained', () => {
    for (const method of ['remove', 'refund']) {
      const g = narrowestGrantFor({ ...escalation, method, risk: resolveRisk(RISK[method]) }, { by: 'bob', now: NOW });
      expect(g).toMatchObject({ methods: [method], mode: 'assisted', approvals: 2 });
      expect(g.reason).toMatch(/kept assisted/);
    }
  });

  it('unknown risk (no annotation on the request, no host) is the worst case: assisted', () => {
    const { risk: _risk, ...noRisk } = escalation;
    expect(narrowestGrantFor(noRisk, { by: 'bob', now: NOW }).mode).toBe('assisted');
    expect(narrowestGrantFor({ ...noRisk, method: 'move' }, { by: 'bob', now: NOW, host }).mode).toBe('contained');
  });

  it('a requestCapability escalation: the safe methods contained; only risky ones: assisted', () => {
    const { method: _m, risk: _r, ...asked } = escalation;
    expect(narrowestGrantFor(asked, { by: 'bob', now: NOW, host })).toMatchObject({ methods: ['read', 'move', 'append'], mode: 'contained' });
    const risky = { methodNames: () => ['remove', 'refund'], risk: host.risk };
    expect(narrowestGrantFor(asked, { by: 'bob', now: NOW, host: risky })).toMatchObject({ methods: ['remove', 'refund'], mode: 'assisted', approvals: 2 });
    expect(() => narrowestGrantFor(asked, { by: 'bob', now: NOW })).toThrow(expect.objectContaining({ code: 'GRANT_REFUSED' }));
  });

  it('a signed-name subject; no subject is refused', () => {
    expect(narrowestGrantFor({ ...escalation, subject: `refund-desk@${KEY}` }, { by: 'bob', now: NOW }).subject).toEqual({ name: 'refund-desk', signer: KEY });
    const { subject: _s, ...anonymous } = escalation;
    expect(() => narrowestGrantFor(anonymous, { by: 'bob', now: NOW })).toThrow(expect.objectContaining({ code: 'GRANT_REFUSED' }));
    expect(() => narrowestGrantFor({ ...escalation, subject: 'sha256:short' }, { by: 'bob', now: NOW })).toThrow(expect.objectContaining({ code: 'GRANT_REFUSED' }));
  });

  it('an expiry can be given', () => {
    expect(narrowestGrantFor(escalation, { by: 'bob', now: NOW, expiresAt: NOW + 1_000 }).expiresAt).toBe(NOW + 1_000);
  });
});

describe('parsers', () => {
  it('parseSubject: digest or name@keyid; lookalikes refused', () => {
    expect(parseSubject(DIGEST)).toEqual({ digest: DIGEST });
    expect(parseSubject(`refund-desk@${KEY}`)).toEqual({ name: 'refund-desk', signer: KEY });
    for (const bad of [DIGEST.toUpperCase(), DIGEST.slice(0, -1), `${DIGEST}0`, `sha512:${'ab'.repeat(32)}`, `@${KEY}`, 'refund-desk@', 'refund-desk@abc', `refund-desk${KEY}`, '', ` ${DIGEST}`]) {
      expect(() => parseSubject(bad), bad).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });

  it('parseExpiry: relative units and zoned ISO date-times only', () => {
    expect(parseExpiry('+7d', NOW)).toBe(NOW + 7 * 86_400_000);
    expect(parseExpiry('+90m', NOW)).toBe(NOW + 90 * 60_000);
    expect(parseExpiry('+2w', NOW)).toBe(NOW + 14 * 86_400_000);
    expect(parseExpiry('2030-01-31T12:00:00Z', NOW)).toBe(Date.UTC(2030, 0, 31, 12));
    expect(parseExpiry('2030-01-31T12:00:00+02:00', NOW)).toBe(Date.UTC(2030, 0, 31, 10));
    for (const bad of ['+0d', '7d', '+7y', '+-1d', '2030-01-31', '2030-01-31T12:00:00', 'tomorrow', '', '+1e3s']) {
      expect(() => parseExpiry(bad, NOW), bad).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });

  it('parseBudgets: one entry per method', () => {
    expect(parseBudgets(['read=maxCalls:10,perSecond:0.5', 'list=maxBytes:1000'])).toEqual({ read: { maxCalls: 10, perSecond: 0.5 }, list: { maxBytes: 1000 } });
    for (const bad of [['read'], ['read=maxCalls'], ['read=calls:1'], ['read=maxCalls:1:2'], ['read=maxCalls:1', 'read=maxBytes:1'], ['read=maxCalls:1,maxCalls:2'], ['=maxCalls:1'], ['read=maxCalls:-1']]) {
      expect(() => parseBudgets(bad), bad.join(' ')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });
});

describe('grant scopes never show more than they allow', () => {
  let dir: string;
  let instances: Record<string, CapabilityInstance>;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'grant-scopes-'));
    mkdirSync(path.join(dir, 'reports', 'sub'), { recursive: true });
    const db = new Database(path.join(dir, 'records.db'));
    db.exec('CREATE TABLE records (id INTEGER PRIMARY KEY); CREATE TABLE secrets (id INTEGER PRIMARY KEY);');
    db.close();
    const host = { dataDir: dir, configDir: dir, logger: pino({ level: 'silent' }) };
    const hostOptions: Record<string, unknown> = { outbox: { folder: 'mail' }, payments: { ledger: { file: 'shop.db', currency: 'EUR' } } };
    const make = async (kind: string, scope: unknown) => {
      const plugin = lookupKind(builtinCapabilities, kind);
      if (!plugin) throw new Error(kind);
      return (await openKind(kind, plugin, { name: kind, hostOptions: hostOptions[kind], host })).create(scope);
    };
    instances = {
      fs: await make('fs', { root: path.join(dir, 'reports'), readOnly: true, extensions: ['md'] }),
      kv: await make('kv', { file: 'notes.db', namespace: 'notes', prefix: 'p/' }),
      sql: await make('sql', { file: 'records.db', tables: ['records'], readOnly: true }),
      clock: await make('clock', {}),
      random: await make('random', { seed: 1 }),
      log: await make('log', { minLevel: 'info' }),
      http: await make('http', { origins: ['https://api.example.com'], pathPrefixes: ['/v1'], timeoutMs: 5000 }),
      outbox: await make('outbox', { from: 'agent@example.com', allowedRecipients: ['@example.com'], maxPerRun: 5 }),
      payments: await make('payments', { maxAmountCents: 50_000, currency: 'EUR' }),
    };
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const check = (kind: string, scope: Record<string, unknown>) => {
    const instance = instances[kind] as CapabilityInstance;
    return validateNewGrant(input({ capability: kind, scope, methods: [instance.methodNames()[0] as string], mode: 'assisted', approvals: 2 }), ctx({ methods: instance.methodNames(), risk: (m) => instance.risk(m), checkScope: grantScopeCheck(instance) }));
  };

  it.each([
    ['fs', { readOnly: false }, /readOnly/],
    ['fs', { extensions: ['md', 'txt'] }, /extensions/],
    ['fs', { maxFileBytes: 64 * 1024 * 1024 }, /maxFileBytes/],
    ['fs', { root: os.tmpdir() }, /same folder or a subfolder/],
    ['kv', { prefix: '' }, /prefix/],
    ['kv', { maxTotalBytes: 2 ** 40 }, /maxTotalBytes/],
    ['kv', { maxValueBytes: 2 ** 30 }, /maxValueBytes/],
    ['sql', { tables: ['records', 'secrets'] }, /tables/],
    ['sql', { readOnly: false }, /readOnly/],
    ['sql', { maxRows: 10_000_000 }, /maxRows/],
    ['clock', { anything: 1 }, /invalid scope for clock/],
    ['random', { seed: 2 }, /re-seeded/],
    ['log', { minLevel: 'debug' }, /minLevel/],
    ['http', { origins: ['https://api.example.com', 'https://evil.example'] }, /origins/],
    ['http', { pathPrefixes: ['/'] }, /pathPrefixes/],
    ['http', { methods: ['GET', 'POST'] }, /methods/],
    ['http', { timeoutMs: 60_000 }, /timeoutMs/],
    ['http', { allowPrivateNetwork: true }, /allowPrivateNetwork/],
    ['outbox', { allowedRecipients: ['@example.com', '@evil.org'] }, /allowedRecipients/],
    ['outbox', { maxPerRun: 50 }, /maxPerRun/],
    ['payments', { maxAmountCents: 90_000 }, /maxAmountCents 90000 \(the instance allows 50000\)/],
    ['payments', { maxAmountCents: 90_000, currency: 'EUR' }, /maxAmountCents/],
    ['payments', { currency: 'USD' }, /currency/],
  ])('%s: a wider scope %j is refused INVALID_SCOPE', (kind, scope, message) => {
    const verdict = check(kind, scope);
    expect(verdict).toMatchObject({ ok: false, code: 'INVALID_SCOPE', rule: 'scope' });
    expect(verdict.ok ? '' : verdict.message).toMatch(message);
  });

  it.each([
    ['fs', { root: '{dir}/reports/sub' }],
    ['fs', { maxFileBytes: 1024, extensions: ['.MD'] }],
    ['kv', { prefix: 'p/q/', readOnly: true }],
    ['kv', { maxTotalBytes: 1024 }],
    ['sql', { tables: ['records'], maxRows: 10 }],
    ['clock', {}],
    ['random', { seed: 1 }],
    ['log', { minLevel: 'error' }],
    ['http', { pathPrefixes: ['/v1/reports'], timeoutMs: 1000 }],
    ['outbox', { allowedRecipients: ['alice@example.com'], maxPerRun: 1 }],
    ['payments', { maxAmountCents: 20_000 }],
    ['payments', { maxAmountCents: 50_000, currency: 'EUR' }],
  ])('%s: an equal or narrower scope %j is stored as written', (kind, raw) => {
    const scope = JSON.parse(JSON.stringify(raw).replace('{dir}', dir)) as Record<string, unknown>;
    const verdict = check(kind, scope);
    expect(verdict).toMatchObject({ ok: true, grant: { scope } });
  });

  it('a custom capability whose intersect answers the parent for a wider child is refused too', () => {
    type P = { prefix: string };
    const lax = defineCapability<P>({
      name: 'docs',
      description: 'Documents under a prefix.',
      scope: z.strictObject({ prefix: z.string() }),
      intersect: (parent, narrower) => (narrower.prefix.startsWith(parent.prefix) ? narrower : parent),
      describeScope: (s) => `documents under ${s.prefix}`,
      methods: { get: method({ description: 'Get.', args: z.string(), result: z.null(), risk: { readOnly: true }, run: () => null }) },
    });
    const instance = createInstance(lax, { prefix: 'team/' }, undefined);
    const rules = ctx({ methods: ['get'], risk: (m) => instance.risk(m), checkScope: grantScopeCheck(instance) });
    for (const wider of [{ prefix: '' }, { prefix: 'other/' }, { prefix: 'tea' }]) {
      expect(validateNewGrant(input({ capability: 'docs', methods: ['get'], scope: wider }), rules), JSON.stringify(wider)).toMatchObject({ ok: false, code: 'INVALID_SCOPE' });
    }
    expect(validateNewGrant(input({ capability: 'docs', methods: ['get'], scope: { prefix: 'team/a/' } }), rules)).toMatchObject({ ok: true });
  });
});

describe('"always" with the host instance: the narrowest grant', () => {
  let dir: string;
  let notes: CapabilityInstance;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'grant-always-'));
    mkdirSync(path.join(dir, 'notes', 'sub'), { recursive: true });
    notes = createFs({ root: path.join(dir, 'notes') });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const asked = (requestedScope: unknown) => request({ kind: 'escalation', capability: 'notes', definition: 'fs', method: undefined, args: undefined, risk: undefined, grantId: undefined, requestedScope, approvalsRequired: 1 });

  it('requestCapability with a read-only scope: only the read methods, contained, one approval', () => {
    const scope = { root: path.join(dir, 'notes', 'sub'), readOnly: true };
    expect(capabilityOffer(notes, scope)).toMatchObject({ methods: ['read', 'list', 'stat'], approvals: 1 });
    expect(narrowestGrantFor(asked(scope), { by: 'bob', now: NOW, host: notes })).toMatchObject({ methods: ['read', 'list', 'stat'], mode: 'contained', approvals: 1, scope });
  });

  it('requestCapability without read-only: the safe methods contained, while the request itself needs two approvals (its run span allows write and remove)', () => {
    expect(capabilityOffer(notes, { root: path.join(dir, 'notes', 'sub') })).toMatchObject({ methods: ['read', 'write', 'append', 'list', 'stat', 'remove', 'mkdir', 'move'], approvals: 2 });
    expect(narrowestGrantFor(asked({ root: path.join(dir, 'notes', 'sub') }), { by: 'bob', now: NOW, host: notes })).toMatchObject({ methods: ['read', 'append', 'list', 'stat', 'mkdir', 'move'], mode: 'contained' });
  });

  it('a requested scope a grant cannot hold (not an object) refuses "always" rather than granting the whole instance', () => {
    const strings = createInstance(defineCapability<string>({
      name: 'tagged',
      description: 'One tag.',
      scope: z.string(),
      intersect: (p, n) => (n.startsWith(p) ? n : p),
      describeScope: (s) => `tag ${s}`,
      methods: { get: method({ description: 'Get.', args: z.undefined(), result: z.null(), risk: { readOnly: true }, run: () => null }) },
    }), 'team/', undefined);
    expect(capabilityOffer(strings, 'team/a').methods).toEqual(['get']);
    expect(() => narrowestGrantFor(asked('team/a'), { by: 'bob', now: NOW, host: strings })).toThrow(expect.objectContaining({ code: 'GRANT_REFUSED', data: { rule: 'always-scope' } }));
    expect(() => narrowestGrantFor(asked(['x']), { by: 'bob', now: NOW, host })).toThrow(expect.objectContaining({ code: 'GRANT_REFUSED' }));
  });

  it('requestCapability with a wider scope than the host instance: INVALID_SCOPE', () => {
    const ro = createFs({ root: path.join(dir, 'notes'), readOnly: true });
    expect(() => capabilityOffer(ro, { readOnly: false })).toThrow(expect.objectContaining({ code: 'INVALID_SCOPE' }));
    expect(() => capabilityOffer(notes, { root: dir })).toThrow(expect.objectContaining({ code: 'INVALID_SCOPE' }));
  });

  it('a call escalation: the scope narrows to the path the call touched', () => {
    const listSub = request({ kind: 'escalation', capability: 'notes', definition: 'fs', method: 'list', args: 'sub', risk: notes.risk('list'), grantId: undefined, approvalsRequired: 1 });
    expect(narrowestGrantFor(listSub, { by: 'bob', now: NOW, host: notes })).toMatchObject({ methods: ['list'], mode: 'contained', scope: { paths: ['sub'] } });
    // the approved (possibly edited) arguments decide, not the ones first asked
    expect(narrowestGrantFor(listSub, { by: 'bob', now: NOW, host: notes, args: 'sub/deeper' }).scope).toEqual({ paths: ['sub/deeper'] });
    expect(narrowestGrantFor({ ...listSub, args: undefined }, { by: 'bob', now: NOW, host: notes }).scope).toBeUndefined(); // the root: nothing narrower
    const g = narrowestGrantFor(listSub, { by: 'bob', now: NOW, host: notes });
    const via = grantInstance(notes, g);
    expect(via.checkScope('list', 'sub').ok).toBe(true);
    expect(via.checkScope('list', 'sub/deeper').ok).toBe(true);
    expect(via.checkScope('list', undefined).ok).toBe(false);
    expect(via.checkScope('list', 'subway').ok).toBe(false);
  });
});
