/**
 * GHSA-864f-rcv7-6rh4 (isolated-vm < 7.0.1): guest code that holds an isolated-vm `Reference` and
 * passes it an ExternalCopy transfer list can corrupt host memory. Its precondition is a guest that
 * holds an isolated-vm object at all. This file proves ours never does, in both isolation modes:
 * agent code walks everything reachable from `globalThis`, `caps`, `console`, `requestCapability`,
 * its input, its own module, the values and the errors of capability calls (resolved, refused out
 * of scope, refused by schema, too large, failed host-side, a refused `requestCapability`), pending
 * call promises, and the CallSites and receivers that `Error.prepareStackTrace` hands out while
 * the sandbox bootstrap is on the stack — and finds no `Reference`, `ExternalCopy`, `Callback` or
 * host function (see ./detector.ts for what each looks like inside an isolate).
 *
 * The detector is proven first, in a raw isolate: it flags each isolated-vm object planted in
 * eleven different places, and a leaked private bridge function, (a global, deep in data, behind a getter, under a symbol, on
 * Object.prototype, as a prototype, thrown by a getter, bound, an ExternalCopy's copyInto(), on an
 * error, as a getter itself) and flags nothing in a clean isolate. This test, and no other
 * file outside runtime/, imports isolated-vm: only to build that positive control.
 */
import ivm from 'isolated-vm';
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox, type Gate, passThroughGate } from '../../runtime/index.js';
import { createTestNotes } from '../helpers/test-capability.js';
import { MODES } from '../helpers/sandbox.js';
import { DETECTOR_SOURCE } from './detector.js';

interface Walk {
  counts: { objects: number; functions: number; nativeFunctions: number; gettersInvoked: number; errorsCaught: number; properties: number; intrinsics: number };
  findings: string[];
}

/** What the bootstrap removes from a fresh context (V8's own console, WebAssembly…), for the raw controls. */
const STRIP = "for (const n of ['console', 'WebAssembly', 'WeakRef', 'FinalizationRegistry', 'SharedArrayBuffer']) delete globalThis[n];";

describe('the detector (positive and negative control, raw isolated-vm isolate)', () => {
  it('flags nothing in a clean isolate, after walking thousands of values', async () => {
    const isolate = new ivm.Isolate({ memoryLimit: 128 });
    try {
      const context = await isolate.createContext();
      const text = (await context.evalClosure(`${STRIP} ${DETECTOR_SOURCE}; return JSON.stringify(detect([['globalThis', globalThis]]));`, [], { result: { copy: true } })) as string;
      const walk = JSON.parse(text) as Walk;
      expect(walk.findings).toEqual([]);
      expect(walk.counts.objects).toBeGreaterThan(1500);
      expect(walk.counts.nativeFunctions).toBeGreaterThan(500);
      expect(walk.counts.gettersInvoked).toBeGreaterThan(3000);
    } finally {
      isolate.dispose();
    }
  });

  it('flags every isolated-vm Reference, ExternalCopy and Callback planted in eleven places, and a leaked bridge function', async () => {
    const isolate = new ivm.Isolate({ memoryLimit: 128 });
    try {
      const context = await isolate.createContext();
      const callback = () => new ivm.Callback(() => 1);
      const plants = [
        new ivm.Reference({ a: 1 }), new ivm.Reference(function hostFunction() {}), new ivm.ExternalCopy({ b: 2 }), callback(), callback(),
        new ivm.Reference({}), callback(), callback(), new ivm.ExternalCopy({ c: 3 }), new ivm.Reference({}), callback(),
      ];
      const source = `${STRIP} ${DETECTOR_SOURCE};
        globalThis.leakRef = $0;
        globalThis.deep = { a: { b: [{ c: $1 }] } };
        Object.defineProperty(globalThis, 'lazy', { get() { return $2; }, configurable: true });
        globalThis[Symbol('hidden')] = $3;
        Object.prototype.onEveryObject = $4;
        globalThis.asProto = Object.create($5);
        globalThis.thrower = { get boom() { throw $6; } };
        globalThis.bound = $7.bind(null);
        globalThis.into = $8.copyInto();
        globalThis.errHolder = Object.assign(new Error('x'), { ref: $9 });
        Object.defineProperty(globalThis, 'cbGetter', { get: $10, configurable: true });
        const report = () => {}; globalThis.leakedFinish = function finish(text) { report(text); };
        const walk = detect([['globalThis', globalThis]]);
        delete Object.prototype.onEveryObject;
        return JSON.stringify(walk);`;
      const walk = JSON.parse((await context.evalClosure(source, plants, { result: { copy: true } })) as string) as Walk;
      const expected: Array<[string, RegExp]> = [
        ['a Reference on a global', /^instance of "Reference" at globalThis\.leakRef$/],
        ['a Reference to a host function, deep in data', /^instance of "Reference" at globalThis\.deep\.a\.b\.0\.c$/],
        ['an ExternalCopy behind a getter', /^instance of "ExternalCopy" at globalThis\.lazy\(\)$/],
        ['a Callback under a symbol key', /^native function .* \(name ""\) at globalThis\.\[hidden\]$/],
        ['a Callback on Object.prototype', /^native function .* \(name ""\) at globalThis\.Object\.prototype\.onEveryObject$/],
        ['a Reference as a prototype', /^instance of "Reference" at globalThis\.asProto$/],
        ['a Callback thrown by a getter', /^native function .* \(name ""\) at globalThis\.thrower\.boom!$/],
        ['a bound Callback', /^native function .* \(name "bound "\) at globalThis\.bound$/],
        ["an ExternalCopy's copyInto()", /^instance of "ExternalCopyInto" at globalThis\.into$/],
        ['a Reference on an error', /^instance of "Reference" at globalThis\.errHolder\.ref$/],
        ['a Callback as a getter', /^native function .* \(name ""\) at globalThis\.cbGetter<get>$/],
        ['a private function of the bridge', /^a private function of the bridge \(name "finish"\) at globalThis\.leakedFinish$/],
      ];
      for (const [what, pattern] of expected) expect(walk.findings.some((f) => pattern.test(f)), what).toBe(true);
      expect(walk.findings.some((f) => /isolated-vm method name (derefInto|applySync|copyInto)/.test(f))).toBe(true);
    } finally {
      isolate.dispose();
    }
  });
});

/** The agent program: collect every root it can get, then walk them all. */
const AGENT = `${DETECTOR_SOURCE}
import * as self from './main.js';
export default async function main(input, caps) {
  const roots = [['globalThis', globalThis], ['caps', caps], ['console', console], ['requestCapability', requestCapability],
    ['input', input], ['main', main], ['module namespace', self], ['import.meta', import.meta], ['arguments', arguments]];
  const attempt = async (name, f) => { try { roots.push([name + ' =>', await f()]); } catch (e) { roots.push([name + ' !', e]); } };
  await attempt('read', () => caps.notes.read('notes/a'));
  await attempt('info', () => caps.notes.info());
  await attempt('big', () => caps.notes.big(10));
  await attempt('sleep', () => caps.notes.sleep(1));
  await attempt('write', () => caps.notes.write({ path: 'notes/b', text: 'x' }));
  await attempt('out of scope', () => caps.notes.read('secret/x'));
  await attempt('bad argument', () => caps.notes.write({ path: 1 }));
  await attempt('extra key', () => caps.notes.write({ path: 'notes/a', text: 'x', extra: 1 }));
  await attempt('not serialisable', () => caps.notes.read(1n));
  await attempt('argument too large', () => caps.notes.read('x'.repeat(input.maxCallBytes + 1)));
  await attempt('result too large', () => caps.notes.big(input.maxCallBytes + 1));
  await attempt('host failure', () => caps.notes.fail());
  await attempt('requestCapability refused', () => requestCapability('kv', { prefix: 'x/' }, 'to see'));
  await attempt('requestCapability bad scope', () => requestCapability('kv', 1n, 'to see'));
  const pending = caps.notes.sleep(50);
  roots.push(['pending call', pending]);
  // CallSites and receivers handed out while the bootstrap is on the stack.
  const sites = [];
  Error.prepareStackTrace = (error, callSites) => { for (const s of callSites) sites.push(s, s.getThis(), s.getFunction(), s.getEvalOrigin(), s.getTypeName()); return 'x'; };
  const capture = () => { const h = {}; Error.captureStackTrace(h); h.stack; };
  await caps.notes.read({ toJSON() { capture(); return 'notes/a'; } });
  await caps.notes.read('notes/a', { get reason() { capture(); return 'r'; } });
  console.log({ toString() { capture(); return 's'; } }, { toJSON() { capture(); return 1; } });
  try { await caps.notes.fail(); } catch (e) { e.stack; roots.push(['failure with stack', e]); }
  Error.prepareStackTrace = undefined;
  roots.push(['call sites', sites]);
  await pending;
  const walk = detect(roots);
  return { ...walk, roots: roots.length, sites: sites.length, bootstrapFrames: sites.filter((s) => s && typeof s.getFileName === 'function' && s.getFileName() === '<contained>').length };
}
`;

describe.each(MODES)('reachability: no isolated-vm object or host function is reachable from agent code (%s)', (isolation) => {
  const requests: string[] = [];
  const gate: Gate = {
    ...passThroughGate,
    async requestCapability(request) {
      requests.push(request.capability);
      return { allow: false, code: 'ESCALATION_DENIED', message: 'no' };
    },
  };
  const sb = createSandbox({ isolation, gate });
  afterAll(() => sb.close());

  it('walks globalThis, caps, console, requestCapability, call values, call errors, pending calls and CallSites: nothing found', async () => {
    const notes = createTestNotes('notes/', { 'notes/a': 'hello' });
    const maxCallBytes = 4096;
    const out = await sb.run({ source: AGENT, input: { maxCallBytes }, capabilities: [notes.instance], limits: { cpuMs: 20_000, wallMs: 30_000, memoryMb: 128, maxCallBytes } });
    if (out.status !== 'ok') expect.fail(`${out.error.code}: ${out.error.message}`);
    const walk = out.value as Walk & { roots: number; sites: number; bootstrapFrames: number };
    expect(walk.findings).toEqual([]);
    // Not vacuous: it walked the whole environment and every kind of root.
    expect(walk.roots).toBeGreaterThanOrEqual(24);
    expect(walk.counts.objects).toBeGreaterThan(2000);
    expect(walk.counts.functions).toBeGreaterThan(600);
    expect(walk.counts.nativeFunctions).toBeGreaterThan(500);
    expect(walk.counts.intrinsics).toBeGreaterThan(600);
    expect(walk.counts.gettersInvoked).toBeGreaterThan(4000);
    expect(walk.counts.errorsCaught).toBeGreaterThan(1000);
    expect(walk.sites).toBeGreaterThan(20);
    expect(walk.bootstrapFrames).toBeGreaterThan(0);
    // The calls really happened and were really refused where meant to be.
    expect(notes.received.map((r) => r.method)).toEqual(expect.arrayContaining(['read', 'info', 'big', 'sleep', 'write', 'fail']));
    expect(requests).toEqual(['kv']);
    console.log(`reachability (${isolation}): ${JSON.stringify({ roots: walk.roots, sites: walk.sites, bootstrapFrames: walk.bootstrapFrames, ...walk.counts })}`);
  });
});
