/** Grant specs and the registry: syntax, @file scopes, options, typed errors, dataDir resolution. */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseGrantSpec, parseGrantSpecText } from '../../capabilities/grant-spec.js';
import { definePlugin, NO_HOST_OPTIONS } from '../../capabilities/plugin.js';
import { builtinCapabilities, createRegistry, lookupKind } from '../../capabilities/registry.js';
import { createInstance, defineCapability, method } from '../../capabilities/sdk/index.js';
import { call, errorOf, tempDir } from './helpers.js';

let dir: string;
let cleanup: () => void;
beforeEach(() => {
  ({ dir, cleanup } = tempDir('grant-'));
  mkdirSync(path.join(dir, 'reports'));
  writeFileSync(path.join(dir, 'reports', 'q1.md'), '# Q1');
});
afterEach(() => cleanup());

describe('parseGrantSpecText', () => {
  it('parses name, kind, inline scope and options', () => {
    expect(parseGrantSpecText('reports=fs:{"root":"/srv/a;b","x":[1,{"y":"}"}]};methods=read,list;expires=+2h;budget.read=maxCalls:10,perSecond:0.5')).toEqual({
      name: 'reports',
      kind: 'fs',
      scope: { inline: { root: '/srv/a;b', x: [1, { y: '}' }] } },
      methods: ['read', 'list'],
      expires: { inMs: 7_200_000 },
      budgets: { read: { maxCalls: 10, perSecond: 0.5 } },
    });
    expect(parseGrantSpecText('now=clock')).toEqual({ name: 'now', kind: 'clock', scope: { inline: {} } });
    expect(parseGrantSpecText('db=sql:@scopes/db.json;methods=query')).toEqual({ name: 'db', kind: 'sql', scope: { file: 'scopes/db.json' }, methods: ['query'] });
    expect(parseGrantSpecText('t=clock;expires=2030-01-01T00:00:00Z').expires).toEqual({ at: Date.parse('2030-01-01T00:00:00Z') });
    expect(parseGrantSpecText('t=clock:{"s":"say \\"hi\\" }"}').scope).toEqual({ inline: { s: 'say "hi" }' } });
  });

  it('refuses malformed specs with INVALID_ARGUMENT naming the spec', async () => {
    const bad = [
      'fs:{"root":"/x"}', // no name
      'Reports=fs', // name not lower camel
      'r=', // no kind
      'r=fs:{"root":"/x"', // unclosed JSON
      'r=fs:{"root":/x}', // invalid JSON
      'r=fs:"/x"', // scope not an object
      'r=fs:{}x', // trailing text
      'r=fs;methods=', // empty value
      'r=fs;methods=read;methods=list', // repeated option
      'r=fs;mode=ro', // unknown option
      'r=fs;methods=read,Write', // bad method name
      'r=fs;expires=tomorrow',
      'r=fs;expires=2030-01-01', // no time and zone: ambiguous
      'r=fs;budget.read=calls:3', // unknown field
      'r=fs;budget.read=maxCalls:-1',
      'r=fs;budget.read=maxCalls',
      'r=fs:@', // no file
    ];
    for (const spec of bad) {
      const e = await errorOf(() => parseGrantSpecText(spec));
      expect(e.code, spec).toBe('INVALID_ARGUMENT');
      expect(e.data).toEqual({ spec });
    }
  });
});

describe('parseGrantSpec', () => {
  it('creates a working instance with the binding name, methods, budget and expiry', async () => {
    let now = 1000;
    const inst = await parseGrantSpec(`reports=fs:${JSON.stringify({ root: path.join(dir, 'reports'), readOnly: true })};methods=read,list;expires=+1s;budget.read=maxCalls:1`, {
      host: { now: () => now },
    });
    expect(inst.name).toBe('reports');
    expect(inst.methodNames()).toEqual(['read', 'list']);
    expect(inst.expiresAt).toBe(2000);
    expect(await call(inst, 'read', 'q1.md')).toBe('# Q1');
    expect((await errorOf(call(inst, 'read', 'q1.md'))).code).toBe('BUDGET_EXCEEDED');
    expect((await errorOf(() => inst.parseArgs('write', { path: 'x.md', content: '' }))).code).toBe('UNKNOWN_CAPABILITY');
    now = 2000;
    expect((await errorOf(call(inst, 'list'))).code).toBe('CAPABILITY_EXPIRED');
  });

  it('reads @file scopes relative to cwd, and resolves relative paths against dataDir', async () => {
    writeFileSync(path.join(dir, 'scope.json'), JSON.stringify({ root: 'reports' }));
    const inst = await parseGrantSpec('r=fs:@scope.json', { cwd: dir, host: { dataDir: dir } });
    expect(inst.scope.root).toBe(path.join(dir, 'reports'));
    const kv = await parseGrantSpec('mem=kv:{"file":"state.db","namespace":"agent1"}', { host: { dataDir: dir } });
    await call(kv, 'set', { key: 'k', value: 1 });
    expect((await errorOf(parseGrantSpec('r=fs:@missing.json', { cwd: dir }))).code).toBe('INVALID_ARGUMENT');
    writeFileSync(path.join(dir, 'bad.json'), '{ nope');
    expect((await errorOf(parseGrantSpec('r=fs:@bad.json', { cwd: dir }))).code).toBe('INVALID_ARGUMENT');
    // without dataDir, a relative root is refused by the scope schema
    expect((await errorOf(parseGrantSpec('r=fs:{"root":"reports"}'))).code).toBe('INVALID_SCOPE');
  });

  it('types its errors: unknown kind, unknown method, bad scope', async () => {
    expect(await errorOf(parseGrantSpec('x=teleport'))).toMatchObject({ code: 'INVALID_ARGUMENT', data: { spec: 'x=teleport' } });
    expect((await errorOf(parseGrantSpec('x=toString'))).code).toBe('INVALID_ARGUMENT');
    expect((await errorOf(parseGrantSpec('x=clock;methods=later'))).code).toBe('INVALID_ARGUMENT');
    expect(await errorOf(parseGrantSpec('x=random:{"seed":-1}'))).toMatchObject({ code: 'INVALID_SCOPE', data: { spec: 'x=random:{"seed":-1}' } });
    expect((await errorOf(parseGrantSpec(`x=fs:{"root":"${dir}","bogus":1}`))).code).toBe('INVALID_SCOPE');
  });

  it('a platform registers its own kind and grants it like a built-in', async () => {
    const refunds = defineCapability<{ maxCents: number }, unknown>({
      name: 'refunds',
      description: 'Refund orders.',
      scope: z.strictObject({ maxCents: z.number().int().positive() }),
      intersect: (p, n) => ({ maxCents: Math.min(p.maxCents, n.maxCents) }),
      describeScope: (s) => `up to ${s.maxCents} cents`,
      methods: {
        refund: method({
          description: 'Refund an order.',
          args: z.strictObject({ order: z.string(), cents: z.number().int() }),
          result: z.strictObject({ ok: z.boolean() }),
          risk: { financial: true, openWorld: true, reversible: false },
          run: () => ({ ok: true }),
        }),
      },
    });
    const registry = createRegistry({ refunds: definePlugin({ definition: refunds, hostOptions: NO_HOST_OPTIONS, create: (scope, _context, options) => createInstance(refunds, scope, {}, options) }) });
    expect(lookupKind(registry, 'fs')).toBe(builtinCapabilities.fs);
    expect(lookupKind(builtinCapabilities, 'refunds')).toBeUndefined();
    const inst = await parseGrantSpec('pay=refunds:{"maxCents":500}', { registry });
    expect(inst.risk('refund')).toMatchObject({ financial: true });
    expect(await call(inst, 'refund', { order: 'o1', cents: 100 })).toEqual({ ok: true });
  });
});
