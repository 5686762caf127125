/**
 * The capability SDK on a small test capability: budgets (calls, rate with an injected clock,
 * bytes) at their boundaries, revocation and expiry through the attenuation tree, strict
 * arguments, unknown methods, attenuation that cannot add methods, and the fail-closed paths.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import { createInstance, defineCapability, IN_SCOPE, method, outOfScope } from '../../capabilities/sdk/index.js';
import { call, errorOf } from './helpers.js';

type Scope = { max: number };

const addArgs = z.strictObject({ n: z.number().int(), note: z.strictObject({ text: z.string() }).optional() });

const counter = defineCapability<Scope, { log: string[] }>({
  name: 'counter',
  description: 'A test counter.',
  scope: z.strictObject({ max: z.number().int().nonnegative() }),
  intersect: (p, n) => ({ max: Math.min(p.max, n.max) }),
  describeScope: (s) => `adds up to ${s.max}`,
  methods: {
    get: method({ description: 'Read.', args: z.undefined(), result: z.number(), risk: { readOnly: true, openWorld: false }, run: () => 1 }),
    add: method<typeof addArgs, z.ZodNumber, Scope, { log: string[] }>({
      description: 'Add n.',
      argName: 'args',
      args: addArgs,
      result: z.number(),
      risk: { readOnly: false, destructive: false, reversible: true, openWorld: false },
      inScope: (a, s) => (a.n <= s.max ? IN_SCOPE : outOfScope(`n > ${s.max}`)),
      run: (a, { deps }) => {
        deps.log.push(`add ${a.n}`);
        return a.n;
      },
    }),
    echo: method({ description: 'Echo.', args: z.string(), result: z.string(), run: (s: string) => s }),
    broken: method({ description: 'Returns the wrong type.', args: z.undefined(), result: z.number(), run: () => 'nope' as unknown as number }),
    fails: method({
      description: 'Throws a host error.',
      args: z.undefined(),
      result: z.null(),
      run: () => {
        throw Object.assign(new Error('EACCES: permission denied, open /etc/shadow'), { code: 'EACCES' });
      },
    }),
    throwsInScope: method({
      description: 'Its scope check throws.',
      args: z.undefined(),
      result: z.null(),
      inScope: () => {
        throw new Error('bug');
      },
      run: () => null,
    }),
    guarded: method({
      description: 'Refuses "x" before the gate.',
      args: z.string(),
      result: z.string(),
      precheck: (s: string) => {
        if (s === 'x') throw new ContainedError('SQL_REFUSED', 'never x');
      },
      run: (s: string) => s,
    }),
  },
});

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms), set: (ms: number) => void (t = ms) };
}

const make = (options: Parameters<typeof createInstance>[3] = {}, max = 10) => createInstance(counter, { max }, { log: [] }, options);

describe('budgets', () => {
  it('maxCalls: exactly N calls, then BUDGET_EXCEEDED; refused calls are not charged', async () => {
    const c = make({ budgets: { add: { maxCalls: 2 } } });
    await expect(call(c, 'add', { n: 99 })).rejects.toMatchObject({ code: 'OUT_OF_SCOPE' }); // not charged
    await call(c, 'add', { n: 1 });
    await call(c, 'add', { n: 1 });
    expect(await errorOf(call(c, 'add', { n: 1 }))).toMatchObject({ code: 'BUDGET_EXCEEDED', data: { budget: 'maxCalls', limit: 2 } });
    expect(await call(c, 'get')).toBe(1); // other methods have their own (no) budget
    expect(c.usage()).toEqual({ add: { calls: 2, bytes: expect.any(Number) } });
  });

  it('perSecond: a burst of the rate, then one call per 1/rate seconds (injected clock)', async () => {
    const t = clock();
    const c = make({ budgets: { add: { perSecond: 2 } }, now: t.now });
    await call(c, 'add', { n: 1 });
    await call(c, 'add', { n: 1 });
    expect(await errorOf(call(c, 'add', { n: 1 }))).toMatchObject({ code: 'BUDGET_EXCEEDED', data: { budget: 'perSecond' } });
    t.advance(499);
    expect((await errorOf(call(c, 'add', { n: 1 }))).code).toBe('BUDGET_EXCEEDED');
    t.advance(1);
    await call(c, 'add', { n: 1 });
    t.advance(10_000); // idle time refills only up to the burst size
    await call(c, 'add', { n: 1 });
    await call(c, 'add', { n: 1 });
    expect((await errorOf(call(c, 'add', { n: 1 }))).code).toBe('BUDGET_EXCEEDED');
  });

  it('perSecond below 1 still allows one call per period; a clock going backwards mints nothing', async () => {
    const t = clock();
    const c = make({ budgets: { add: { perSecond: 0.5 } }, now: t.now });
    await call(c, 'add', { n: 1 });
    t.advance(1999);
    expect((await errorOf(call(c, 'add', { n: 1 }))).code).toBe('BUDGET_EXCEEDED');
    t.advance(1);
    await call(c, 'add', { n: 1 });
    t.advance(-60_000);
    expect((await errorOf(call(c, 'add', { n: 1 }))).code).toBe('BUDGET_EXCEEDED');
    t.advance(60_000);
    expect((await errorOf(call(c, 'add', { n: 1 }))).code).toBe('BUDGET_EXCEEDED');
  });

  it('maxBytes: argument + result JSON, at the boundary', async () => {
    // echo("ab"): argument "\"ab\"" is 4 bytes, result 4 bytes: 8 per call
    const c = make({ budgets: { echo: { maxBytes: 16 } } });
    await call(c, 'echo', 'ab');
    await call(c, 'echo', 'ab');
    expect(c.usage().echo).toEqual({ calls: 2, bytes: 16 });
    expect(await errorOf(call(c, 'echo', ''))).toMatchObject({ code: 'BUDGET_EXCEEDED', data: { budget: 'maxBytes', limit: 16 } });
  });

  it('a child is charged to every ancestor: attenuation cannot escape a budget', async () => {
    const parent = make({ budgets: { add: { maxCalls: 3 } } });
    const child = parent.attenuate({ max: 5 }, { budgets: { add: { maxCalls: 10 } } });
    await call(child, 'add', { n: 1 });
    await call(child, 'add', { n: 1 });
    await call(parent, 'add', { n: 1 });
    expect((await errorOf(call(child, 'add', { n: 1 }))).code).toBe('BUDGET_EXCEEDED');
    expect(child.describe().methods.find((m) => m.name === 'add')?.budget).toEqual({ maxCalls: 3 });
  });

  it('rejects a budget for a method the instance does not expose', async () => {
    expect((await errorOf(() => make({ methods: ['get'], budgets: { add: { maxCalls: 1 } } }))).code).toBe('INVALID_ARGUMENT');
  });
});

describe('revocation and expiry', () => {
  it('revoking a parent revokes every descendant; a child revoke leaves the parent alive', async () => {
    const parent = make();
    const child = parent.attenuate({ max: 5 });
    const grandchild = child.attenuate({ max: 1 });
    const sibling = parent.attenuate({ max: 5 });
    sibling.revoke('not needed');
    expect((await errorOf(call(sibling, 'get'))).code).toBe('CAPABILITY_REVOKED');
    expect(await call(grandchild, 'get')).toBe(1);
    parent.revoke('incident 42');
    for (const inst of [parent, child, grandchild]) {
      const e = await errorOf(call(inst, 'get'));
      expect(e.code).toBe('CAPABILITY_REVOKED');
      expect(e.message).toContain('incident 42');
    }
    // invoke re-checks even when the caller validated earlier (the gate may have held the call)
    expect((await errorOf(grandchild.invoke('get', undefined, { runId: 'r', signal: new AbortController().signal }))).code).toBe('CAPABILITY_REVOKED');
  });

  it('expires at expiresAt (inclusive), from an injected clock; a child cannot outlive its parent', async () => {
    const t = clock(0);
    const parent = make({ expiresAt: 1000, now: t.now });
    const child = parent.attenuate({ max: 1 }, { expiresAt: 5000 });
    const shorter = parent.attenuate({ max: 1 }, { expiresAt: 500 });
    expect(child.expiresAt).toBe(1000);
    expect(shorter.expiresAt).toBe(500);
    t.set(499);
    await call(shorter, 'get');
    t.set(500);
    expect((await errorOf(call(shorter, 'get'))).code).toBe('CAPABILITY_EXPIRED');
    await call(child, 'get');
    t.set(1000);
    expect((await errorOf(call(parent, 'get'))).code).toBe('CAPABILITY_EXPIRED');
    expect((await errorOf(call(child, 'get'))).code).toBe('CAPABILITY_EXPIRED');
    expect(parent.liveness()?.code).toBe('CAPABILITY_EXPIRED');
  });
});

describe('arguments, methods, attenuation', () => {
  it('strict arguments: extra keys, also nested, fail INVALID_ARGUMENT with the path', async () => {
    const c = make();
    expect(await errorOf(() => c.parseArgs('add', { n: 1, extra: true }))).toMatchObject({ code: 'INVALID_ARGUMENT', data: { path: [] } });
    expect(await errorOf(() => c.parseArgs('add', { n: 1, note: { text: 'x', more: 1 } }))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      data: { path: ['note'] },
    });
    expect(await errorOf(() => c.parseArgs('add', { n: 'one' }))).toMatchObject({ code: 'INVALID_ARGUMENT', data: { path: ['n'] } });
    expect(await errorOf(() => c.parseArgs('get', {}))).toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('unknown or unexposed methods fail UNKNOWN_CAPABILITY, prototype names included', async () => {
    const c = make({ methods: ['get'] });
    for (const m of ['nope', 'add', '__proto__', 'toString', 'constructor', 'hasOwnProperty']) {
      expect((await errorOf(() => c.parseArgs(m, undefined))).code, m).toBe('UNKNOWN_CAPABILITY');
      expect((await errorOf(c.invoke(m, undefined, { runId: 'r', signal: new AbortController().signal }))).code, m).toBe('UNKNOWN_CAPABILITY');
    }
    expect(c.hasMethod('add')).toBe(false);
  });

  it('attenuation never adds methods and never widens the scope', async () => {
    const narrow = make({ methods: ['get', 'add'] });
    expect((await errorOf(() => narrow.attenuate({ max: 1 }, { methods: ['get', 'echo'] }))).code).toBe('INVALID_SCOPE');
    const child = narrow.attenuate({ max: 100 }); // asks for more, gets the intersection
    expect(child.scope).toEqual({ max: 10 });
    expect(child.methodNames().sort()).toEqual(['add', 'get']);
    expect((await errorOf(call(child, 'add', { n: 11 }))).code).toBe('OUT_OF_SCOPE');
    const dropped = child.attenuate({ max: 3 }, { methods: ['get'] });
    expect((await errorOf(() => dropped.attenuate({ max: 3 }, { methods: ['add'] }))).code).toBe('INVALID_SCOPE');
    expect((await errorOf(() => narrow.attenuate({ max: -1 }))).code).toBe('INVALID_SCOPE');
    expect((await errorOf(() => narrow.attenuate({ max: 1, more: 1 }))).code).toBe('INVALID_SCOPE');
  });

  it('checks the scope of every ancestor, and invoke re-checks it', async () => {
    // a definition whose intersect misbehaves (returns the narrower scope as asked) is still
    // held by the ancestor check
    const leaky = defineCapability({ ...counter, intersect: (_p: Scope, n: Scope) => n });
    const parent = createInstance(leaky, { max: 5 }, { log: [] });
    const child = parent.attenuate({ max: 1000 });
    expect(child.scope).toEqual({ max: 1000 });
    expect(Object.isFrozen(child.scope)).toBe(true);
    expect(child.checkScope('add', { n: 6 })).toMatchObject({ ok: false, code: 'OUT_OF_SCOPE' });
    expect((await errorOf(child.invoke('add', { n: 6 }, { runId: 'r', signal: new AbortController().signal }))).code).toBe('OUT_OF_SCOPE');
  });

  it('fails closed: a throwing scope check, a bad result, a host error', async () => {
    const c = make();
    expect(c.checkScope('throwsInScope', undefined)).toMatchObject({ ok: false, code: 'OUT_OF_SCOPE' });
    expect((await errorOf(call(c, 'broken'))).code).toBe('INTERNAL');
    const e = await errorOf(call(c, 'fails'));
    expect(e.code).toBe('CAPABILITY_FAILED');
    expect(e.message).toContain('EACCES');
    expect(e.message).not.toContain('/etc/shadow'); // host detail stays in `cause`, for the log
  });

  it('precheck refuses before the gate with its own code, and again in invoke', async () => {
    const c = make();
    expect((await errorOf(() => c.parseArgs('guarded', 'x'))).code).toBe('SQL_REFUSED');
    expect((await errorOf(c.invoke('guarded', 'x', { runId: 'r', signal: new AbortController().signal }))).code).toBe('SQL_REFUSED');
    expect(await call(c, 'guarded', 'y')).toBe('y');
  });

  it('unset risk annotations take the worst case', () => {
    const c = make();
    expect(c.risk('echo')).toEqual({ readOnly: false, destructive: true, reversible: false, openWorld: true, financial: false });
    expect(c.risk('get')).toEqual({ readOnly: true, destructive: false, reversible: true, openWorld: false, financial: false });
  });

  it('validates names and scopes at definition and creation', async () => {
    const base = { description: 'x', scope: z.strictObject({}), intersect: () => ({}), describeScope: () => '' };
    const m = { description: 'x', args: z.undefined(), result: z.null(), run: () => null };
    expect((await errorOf(() => defineCapability({ ...base, name: 'Bad-Name', methods: { m } }))).code).toBe('INVALID_ARGUMENT');
    expect((await errorOf(() => defineCapability({ ...base, name: 'ok', methods: { 'bad name': m } }))).code).toBe('INVALID_ARGUMENT');
    expect((await errorOf(() => defineCapability({ ...base, name: 'ok', methods: {} }))).code).toBe('INVALID_ARGUMENT');
    expect((await errorOf(() => createInstance(counter, { max: 'x' }, { log: [] }))).code).toBe('INVALID_SCOPE');
    expect((await errorOf(() => make({ name: 'Not OK' }))).code).toBe('INVALID_ARGUMENT');
    expect((await errorOf(() => make({ methods: ['nope'] }))).code).toBe('INVALID_ARGUMENT');
  });

  it('describe() names the binding, scope in words, methods with risk and argument name', () => {
    const d = make({ name: 'tally', methods: ['get', 'add'], expiresAt: 5 }).describe();
    expect(d).toMatchObject({ name: 'tally', capability: 'counter', scope: 'adds up to 10', expiresAt: 5 });
    expect(d.methods.map((m) => [m.name, m.argName])).toEqual([
      ['get', 'args'],
      ['add', 'args'],
    ]);
  });
});

describe('restrict: the narrowing grants and capability requests use', () => {
  type Prefix = { prefix: string; max: number; readOnly?: boolean };
  const prefixed = (intersect: (p: Prefix, n: Prefix) => Prefix) =>
    defineCapability<Prefix, null>({
      name: 'store',
      description: 'Keys under a prefix.',
      scope: z.strictObject({ prefix: z.string(), max: z.number().int().positive(), readOnly: z.boolean().optional() }),
      intersect,
      describeScope: (s) => `keys under ${s.prefix}`,
      methodUsable: (s, m) => !s.readOnly || m.risk.readOnly,
      methods: {
        get: method({ description: 'Get.', args: z.string(), result: z.null(), risk: { readOnly: true, openWorld: false }, inScope: (k: string, s: Prefix) => (k.startsWith(s.prefix) ? IN_SCOPE : outOfScope('other prefix')), run: () => null }),
        put: method({ description: 'Put.', args: z.string(), result: z.null(), risk: { readOnly: false, destructive: true, openWorld: false }, inScope: (k: string, s: Prefix) => (s.readOnly ? outOfScope('read-only') : k.startsWith(s.prefix) ? IN_SCOPE : outOfScope('other prefix')), run: () => null }),
      },
    });
  const sound = prefixed((p, n) => {
    const prefix = n.prefix.startsWith(p.prefix) ? n.prefix : p.prefix.startsWith(n.prefix) ? p.prefix : undefined;
    if (prefix === undefined) throw new ContainedError('INVALID_SCOPE', 'prefixes do not overlap');
    return { prefix, max: Math.min(p.max, n.max), ...(p.readOnly || n.readOnly ? { readOnly: true } : {}) };
  });
  // The README's first sketch: when the child is not inside the parent it silently answers the parent.
  const lax = prefixed((p, n) => (n.prefix.startsWith(p.prefix) ? { ...n, max: Math.min(p.max, n.max) } : p));

  it('refuses (INVALID_SCOPE, naming the fields) a scope that asks for more, where attenuate would intersect it away', async () => {
    const parent = createInstance(sound, { prefix: 'a/', max: 10 }, null);
    expect(parent.attenuate({ prefix: 'a/', max: 90 }).scope).toEqual({ prefix: 'a/', max: 10 });
    const wider = await errorOf(() => parent.restrict({ prefix: 'a/', max: 90 }));
    expect(wider).toMatchObject({ code: 'INVALID_SCOPE', data: { fields: ['max'] } });
    expect(wider.message).toMatch(/max/);
    expect((await errorOf(() => parent.restrict({ prefix: '', max: 10 }))).data).toEqual({ fields: ['prefix'] });
    expect((await errorOf(() => parent.restrict({ prefix: 'b/', max: 10 }))).code).toBe('INVALID_SCOPE');
    expect((await errorOf(() => createInstance(sound, { prefix: 'a/', max: 10, readOnly: true }, null).restrict({ readOnly: false }))).data).toEqual({ fields: ['readOnly'] });
  });

  it('takes the fields it changes (the rest from the parent) and keeps exactly what was asked', () => {
    const parent = createInstance(sound, { prefix: 'a/', max: 10 }, null);
    expect(parent.restrict({ max: 4 }).scope).toEqual({ prefix: 'a/', max: 4 });
    expect(parent.restrict({ prefix: 'a/b/', readOnly: true }).scope).toEqual({ prefix: 'a/b/', max: 10, readOnly: true });
    expect(parent.restrict({}).scope).toEqual(parent.scope);
    const child = parent.restrict({ max: 4 }, { methods: ['get'] });
    expect(child.methodNames()).toEqual(['get']);
    expect(child.checkScope('get', 'a/x').ok).toBe(true);
  });

  it('a lax intersect that answers the parent for a child outside it is caught: INVALID_SCOPE, not the parent scope', async () => {
    const parent = createInstance(lax, { prefix: 'a/', max: 10 }, null);
    expect((await errorOf(() => parent.restrict({ prefix: 'b/' }))).code).toBe('INVALID_SCOPE');
    expect((await errorOf(() => parent.restrict({ prefix: '' }))).code).toBe('INVALID_SCOPE');
    expect((await errorOf(() => parent.restrict({ max: 11 }))).code).toBe('INVALID_SCOPE');
    // attenuate (the SDK's intersection) refuses too when the answer is wider than the child asked for
    expect((await errorOf(() => parent.attenuate({ prefix: 'b/', max: 10 }))).code).toBe('INVALID_SCOPE');
    expect(parent.restrict({ prefix: 'a/b/', max: 3 }).scope).toEqual({ prefix: 'a/b/', max: 3 });
  });

  it('usableMethods: the methods that can do anything under the scope (methodUsable), every ancestor included', () => {
    const parent = createInstance(sound, { prefix: 'a/', max: 10 }, null);
    expect(parent.usableMethods()).toEqual(['get', 'put']);
    expect(parent.restrict({ readOnly: true }).usableMethods()).toEqual(['get']);
    expect(createInstance(counter, { max: 1 }, { log: [] }).usableMethods()).toEqual(Object.keys(counter.methods));
  });

  it('narrowestScopeFor: the hook\'s scope only when it is within the instance and still admits the call', () => {
    const hooked = (narrowest: (s: Prefix, m: string, a: unknown) => Prefix | undefined) => createInstance(defineCapability({ ...sound, narrowestScope: narrowest }), { prefix: 'a/', max: 10 }, null);
    expect(hooked((s, _m, key) => ({ ...s, prefix: String(key) })).narrowestScopeFor('get', 'a/b/c')).toEqual({ prefix: 'a/b/c', max: 10 });
    expect(hooked((s) => ({ ...s, prefix: '' })).narrowestScopeFor('get', 'a/b/c')).toBeUndefined(); // wider than the instance
    expect(hooked((s) => ({ ...s, prefix: 'a/z/' })).narrowestScopeFor('get', 'a/b/c')).toBeUndefined(); // does not admit the call
    expect(hooked(() => {
      throw new Error('bug');
    }).narrowestScopeFor('get', 'a/b/c')).toBeUndefined();
    expect(createInstance(sound, { prefix: 'a/', max: 10 }, null).narrowestScopeFor('get', 'a/b')).toBeUndefined(); // no hook
  });
});
