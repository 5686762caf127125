/**
 * Escape probes through the capability bridge: the functions in `caps`, their prototypes,
 * `Object.getPrototypeOf(caps)`, errors thrown by capability calls and objects they return. Every
 * one must be a plain isolate value whose constructor chains end in the isolate's own `Function`,
 * never an isolated-vm `Reference`/`Callback`/`ExternalCopy` (a "springboard back into the nodejs
 * isolate"), and the host's error detail (messages, stacks, paths) must never come through.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox } from '../../runtime/index.js';
import { createTestNotes } from '../helpers/test-capability.js';
import { HOST_DETAIL, MODES, expectCode, expectNoHostDetail, expectOk, timed } from '../helpers/sandbox.js';

const limits = { cpuMs: 2000, wallMs: 10_000, memoryMb: 64 };

/**
 * Agent-side walker: from each root, visit every reachable value through own properties (values,
 * getters, setters), prototypes and constructors; report anything that is not a plain isolate
 * value. A host object would show up as a function whose constructor is not one of the isolate's
 * function constructors, or as an object with isolated-vm's method names.
 */
const WALKER = `
function walk(roots) {
  const fnCtors = new Set([Function, (async () => {}).constructor, (function* () {}).constructor, (async function* () {}).constructor]);
  const ivmNames = ['applySync', 'applyIgnored', 'derefInto', 'copySync', 'copyInto', 'getSync', 'setSync', 'evalClosure', 'compileScript'];
  const seen = new Set();
  const queue = [...roots];
  const findings = [];
  while (queue.length && seen.size < 50000) {
    const v = queue.shift();
    if ((typeof v !== 'object' && typeof v !== 'function') || v === null || seen.has(v)) continue;
    seen.add(v);
    if (typeof v === 'function' && !fnCtors.has(v.constructor)) findings.push('foreign function ' + String(v.name));
    let keys = [];
    try { keys = Reflect.ownKeys(v); } catch { findings.push('unlistable'); }
    for (const k of keys) {
      if (ivmNames.includes(k)) findings.push('isolated-vm method ' + String(k));
      let d;
      try { d = Reflect.getOwnPropertyDescriptor(v, k); } catch { continue; }
      if (!d) continue;
      // Skip the legacy accessors that throw in strict code.
      if ('value' in d) queue.push(d.value); else { queue.push(d.get, d.set); }
    }
    try { queue.push(Reflect.getPrototypeOf(v)); } catch {}
  }
  return { visited: seen.size, findings };
}`;

describe.each(MODES)('escape: capabilities (%s)', (isolation) => {
  const sb = createSandbox({ isolation });
  afterAll(() => sb.close());

  const run = (source: string) => {
    const notes = createTestNotes('notes/', { 'notes/a': 'hello' });
    return timed(sb, { source, capabilities: [notes.instance], limits }).then(({ out }) => ({ out, notes }));
  };

  it("caps.notes.read.constructor('return process')() — the isolate's Function, no process", async () => {
    const source = "export default function main(input, caps) { try { return caps.notes.read.constructor('return process')(); } catch (e) { return e.name + ': ' + e.message; } }";
    expectOk((await run(source)).out, 'ReferenceError: process is not defined');
  });

  it("caps.notes.read.constructor('return this')() is the sandbox's own globalThis", async () => {
    const source = "export default function main(input, caps) { return caps.notes.read.constructor('return this')() === globalThis; }";
    expectOk((await run(source)).out, true);
  });

  it('prototypes: caps and each capability object have a null prototype; methods inherit the isolate Function.prototype', async () => {
    const source = `export default function main(input, caps) {
      const m = caps.notes.read;
      return [
        Object.getPrototypeOf(caps), Object.getPrototypeOf(caps.notes),
        Object.getPrototypeOf(m) === Function.prototype, Object.getPrototypeOf(Object.getPrototypeOf(m)) === Object.prototype,
        Object.getOwnPropertyNames(m).sort(), Object.keys(caps), Object.keys(caps.notes).sort(),
        typeof m.prototype, Object.getPrototypeOf(caps.notes.read.call) === Function.prototype,
      ];
    }`;
    expectOk((await run(source)).out, [null, null, true, true, ['length', 'name'], ['notes'], ['big', 'fail', 'info', 'read', 'sleep', 'write'], 'undefined', true]);
  });

  it('caps is frozen: methods cannot be replaced, added, re-prototyped or constructed', async () => {
    const source = `export default function main(input, caps) {
      'use strict';
      const r = [];
      const attempts = [
        () => { caps.notes.read = () => 'x'; }, () => { caps.evil = {}; }, () => { delete caps.notes; },
        () => Object.setPrototypeOf(caps.notes, {}), () => Object.defineProperty(caps.notes, 'read', { get() { return 1; } }),
        () => new caps.notes.read('notes/a'), () => { caps.notes.read.extra = 1; },
      ];
      for (const a of attempts) { try { a(); r.push('allowed'); } catch (e) { r.push(e.name); } }
      return r;
    }`;
    expectOk((await run(source)).out, Array(7).fill('TypeError'));
  });

  it('walking everything reachable from caps, globalThis, a capability error and a capability result finds no host object', async () => {
    const source = `${WALKER}
    export default async function main(input, caps) {
      let denied, failed, invalid;
      try { await caps.notes.read('secret/x'); } catch (e) { denied = e; }
      try { await caps.notes.fail(); } catch (e) { failed = e; }
      try { await caps.notes.write({ path: 'notes/a', text: 1 }); } catch (e) { invalid = e; }
      const result = await caps.notes.info();
      const pending = caps.notes.read('notes/a');
      await pending;
      return walk([caps, globalThis, denied, failed, invalid, result, pending, console, requestCapability]);
    }`;
    const { out } = await run(source);
    expect(out.status).toBe('ok');
    const { visited, findings } = (out as { value: { visited: number; findings: string[] } }).value;
    expect(findings).toEqual([]);
    expect(visited).toBeGreaterThan(500);
  });

  it("thrown capability errors: isolate Error objects with code and message only; e.constructor.constructor reaches no process", async () => {
    const source = `export default async function main(input, caps) {
      try { await caps.notes.read('secret/x'); } catch (e) {
        return [e instanceof Error, e.constructor === Error, Object.getPrototypeOf(e) === Error.prototype, e.name, e.code,
          Object.getOwnPropertyNames(e).sort(), e.constructor.constructor('return typeof process')()];
      }
    }`;
    expectOk((await run(source)).out, [true, true, true, 'CapabilityError', 'CAPABILITY_DENIED', ['code', 'message', 'name', 'stack'], 'undefined']);
  });

  it('a host exception inside a capability reaches the agent as code + generic message, no host stack or path', async () => {
    const source = `export default async function main(input, caps) {
      try { await caps.notes.fail(); } catch (e) { return { name: e.name, code: e.code, message: e.message, stack: e.stack, keys: Object.getOwnPropertyNames(e).sort() }; }
    }`;
    const { out, notes } = await run(source);
    expect(notes.received).toEqual([{ method: 'fail', args: undefined }]);
    expect(out.status).toBe('ok');
    const v = (out as { value: { name: string; code: string; message: string; stack: string; keys: string[] } }).value;
    expect([v.name, v.code, v.message]).toEqual(['CapabilityError', 'CAPABILITY_FAILED', 'notes.fail failed']);
    expect(v.keys).toEqual(['code', 'message', 'name', 'stack']);
    expect(v.stack).not.toMatch(HOST_DETAIL);
    expectNoHostDetail(out);
  });

  it('validation errors carry data that is a plain isolate object', async () => {
    const source = `export default async function main(input, caps) {
      try { await caps.notes.write({ path: 'notes/a', text: 'x', extra: 1 }); } catch (e) {
        return [e.code, Object.getPrototypeOf(e.data) === Object.prototype, e.data.constructor.constructor('return typeof process')(), Array.isArray(e.data.issues)];
      }
    }`;
    const { out, notes } = await run(source);
    expectOk(out, ['INVALID_ARGUMENT', true, 'undefined', true]);
    expect(notes.received).toEqual([]);
  });

  it("returned objects are plain isolate copies: prototypes and constructors are the sandbox's own", async () => {
    const source = `export default async function main(input, caps) {
      const o = await caps.notes.info();
      return [Object.getPrototypeOf(o) === Object.prototype, Object.getPrototypeOf(o.items) === Array.prototype,
        Object.getPrototypeOf(o.nested) === Object.prototype, o.constructor.constructor('return typeof process')(),
        Object.isFrozen(o), (o.extra = 1, o.extra), o];
    }`;
    expectOk((await run(source)).out, [true, true, true, 'undefined', false, 1, { name: 'notes', items: [1, 2, 3], nested: { ok: true }, extra: 1 }]);
  });

  it('an uncaught host exception from a capability is a typed outcome without host detail', async () => {
    const { out } = await run('export default async function main(input, caps) { await caps.notes.fail(); }');
    const error = expectCode(out, 'CAPABILITY_FAILED');
    expect(error.message).toBe('notes.fail failed');
    expectNoHostDetail(out);
  });

  it('calling a method the run does not hold, by name through the bridge, is impossible: caps has only granted methods', async () => {
    const source = `export default async function main(input, caps) {
      return [typeof caps.other, typeof caps.notes.constructor, typeof caps.notes.__proto__, 'hasOwnProperty' in caps.notes];
    }`;
    expectOk((await run(source)).out, ['undefined', 'undefined', 'undefined', false]);
  });
});
