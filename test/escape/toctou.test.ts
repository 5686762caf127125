/**
 * Time-of-check/time-of-use probes on capability arguments: getters, Proxies, toJSON, thenables
 * and mutation after the call. The argument is copied out of the isolate exactly once, before
 * anything checks it, and the copy is what is validated, scope-checked and used. Each case asserts
 * what the capability actually received (the test capability records it).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox } from '../../runtime/index.js';
import { createTestNotes } from '../helpers/test-capability.js';
import { MODES, expectCode, expectOk, timed } from '../helpers/sandbox.js';

const limits = { cpuMs: 1000, wallMs: 5000, memoryMb: 64 };

describe.each(MODES)('escape: TOCTOU on capability arguments (%s)', (isolation) => {
  const sb = createSandbox({ isolation });
  afterAll(() => sb.close());
  const run = (source: string) => {
    const notes = createTestNotes('notes/');
    return timed(sb, { source, capabilities: [notes.instance], limits }).then(({ out }) => ({ out, notes }));
  };
  const catching = (call: string, extra = '') =>
    `export default async function main(input, caps) { ${extra} try { const r = await ${call}; return ['ok', r, typeof reads === 'undefined' ? null : reads]; } catch (e) { return [e.code, null, typeof reads === 'undefined' ? null : reads]; } }`;

  it('getter: in scope on the first read, out of scope on the second — the capability gets the first value only', async () => {
    const { out, notes } = await run(
      catching('caps.notes.write(arg)', 'var reads = 0; const arg = { get path() { return ++reads === 1 ? "notes/ok" : "secret/x"; }, text: "t" };'),
    );
    expectOk(out, ['ok', null, 1]);
    expect(notes.received).toEqual([{ method: 'write', args: { path: 'notes/ok', text: 't' } }]);
    expect([...notes.store.keys()]).toEqual(['notes/ok']);
  });

  it('getter: out of scope first, in scope after — denied, the capability never runs', async () => {
    const { out, notes } = await run(
      catching('caps.notes.write(arg)', 'var reads = 0; const arg = { get path() { return ++reads === 1 ? "secret/x" : "notes/ok"; }, text: "t" };'),
    );
    expectOk(out, ['CAPABILITY_DENIED', null, 1]);
    expect(notes.received).toEqual([]);
    expect(notes.store.size).toBe(0);
  });

  it('Proxy argument whose get trap alternates — copied once, the copy is what is used', async () => {
    const extra = 'var reads = 0; const arg = new Proxy({ path: "x", text: "t" }, { get(t, k) { if (k === "path") return ++reads === 1 ? "notes/p" : "secret/p"; return Reflect.get(t, k); } });';
    const { out, notes } = await run(catching('caps.notes.write(arg)', extra));
    expectOk(out, ['ok', null, 1]);
    expect(notes.received).toEqual([{ method: 'write', args: { path: 'notes/p', text: 't' } }]);
  });

  it('Proxy argument with ownKeys/getOwnPropertyDescriptor traps that lie — strict schema still sees a plain copy', async () => {
    const extra = `var reads = 0; const arg = new Proxy({}, {
      ownKeys() { reads++; return reads === 1 ? ['path', 'text'] : ['path', 'text', 'evil']; },
      getOwnPropertyDescriptor(t, k) { return { value: k === 'path' ? 'notes/q' : 'v', enumerable: true, configurable: true }; },
      get(t, k) { return k === 'path' ? 'notes/q' : 'v'; } });`;
    const { out, notes } = await run(catching('caps.notes.write(arg)', extra));
    expectOk(out, ['ok', null, 1]);
    expect(notes.received).toEqual([{ method: 'write', args: { path: 'notes/q', text: 'v' } }]);
  });

  it('toJSON that alternates — called once; an out-of-scope toJSON result is denied', async () => {
    const first = await run(catching('caps.notes.read(arg)', 'var reads = 0; const arg = { toJSON() { return ++reads === 1 ? "notes/a" : "secret/a"; } };'));
    expectOk(first.out, ['ok', null, 1]);
    expect(first.notes.received).toEqual([{ method: 'read', args: 'notes/a' }]);
    const second = await run(catching('caps.notes.read(arg)', 'var reads = 0; const arg = { toJSON() { return ++reads === 1 ? "secret/a" : "notes/a"; } };'));
    expectOk(second.out, ['CAPABILITY_DENIED', null, 1]);
    expect(second.notes.received).toEqual([]);
  });

  it('mutating the argument object right after the call (before the host handles it) changes nothing', async () => {
    const source = `export default async function main(input, caps) {
      const arg = { path: 'notes/m', text: 'before' };
      const p = caps.notes.write(arg);
      arg.path = 'secret/m'; arg.text = 'after';
      await p;
      return 'done';
    }`;
    const { out, notes } = await run(source);
    expectOk(out, 'done');
    expect(notes.received).toEqual([{ method: 'write', args: { path: 'notes/m', text: 'before' } }]);
  });

  it('thenable argument — its then is never called and is not part of the copy', async () => {
    const extra = 'var reads = 0; const arg = { path: "notes/t", text: "t", then(resolve) { reads++; resolve({ path: "secret/t", text: "t" }); } };';
    const { out, notes } = await run(catching('caps.notes.write(arg)', extra));
    expectOk(out, ['ok', null, 0]);
    expect(notes.received).toEqual([{ method: 'write', args: { path: 'notes/t', text: 't' } }]);
  });

  it('a Promise as the argument — not awaited by the bridge, refused by the schema', async () => {
    const extra = 'var reads = 0; const arg = Promise.resolve("notes/a"); arg.then = () => { reads++; };';
    const { out, notes } = await run(catching('caps.notes.read(arg)', extra));
    expectOk(out, ['INVALID_ARGUMENT', null, 0]);
    expect(notes.received).toEqual([]);
  });

  it('a getter on Object.prototype cannot inject a key into the copied argument', async () => {
    const extra = 'var reads = 0; Object.defineProperty(Object.prototype, "evil", { get() { reads++; return "secret/x"; }, enumerable: true, configurable: true });';
    const { out, notes } = await run(catching('caps.notes.write({ path: "notes/o", text: "t" })', extra));
    expectOk(out, ['ok', null, 0]);
    expect(notes.received).toEqual([{ method: 'write', args: { path: 'notes/o', text: 't' } }]);
  });

  it('JSON.stringify replaced by the agent does not change what the host receives', async () => {
    const extra = "JSON.stringify = () => '\"notes/forged\"';";
    const { out, notes } = await run(catching('caps.notes.read("secret/x")', extra));
    expectOk(out, ['CAPABILITY_DENIED', null, null]);
    expect(notes.received).toEqual([]);
  });

  it('Object.prototype.toJSON rewriting every argument only changes what is checked and used together', async () => {
    // toJSON is applied once, inside the isolate, before the copy: the host checks the rewritten
    // value and, since it is out of scope, refuses it — check and use see the same thing.
    // The result is returned as a string: the agent's toJSON would rewrite a returned object too.
    const source = `export default async function main(input, caps) {
      Object.prototype.toJSON = function () { return { path: 'secret/j', text: 't' }; };
      try { await caps.notes.write({ path: 'notes/j', text: 't' }); return 'written'; } catch (e) { return e.code; }
    }`;
    const { out, notes } = await run(source);
    expectOk(out, 'CAPABILITY_DENIED');
    expect(notes.received).toEqual([]);
  });

  it('a reason option with a looping getter is read inside the isolate (stopped by the CPU watchdog), never by the host', async () => {
    const source = 'export default async function main(input, caps) { return caps.notes.read("notes/a", { get reason() { for (;;) {} } }); }';
    const notes = createTestNotes('notes/');
    const { out } = await timed(sb, { source, capabilities: [notes.instance], limits: { ...limits, cpuMs: 200 } });
    expectCode(out, 'CPU_LIMIT');
    expect(notes.received).toEqual([]);
  });
});
