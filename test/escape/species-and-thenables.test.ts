/**
 * Escape probes with `Symbol.species`, replaced promise machinery and thenables: the agent can
 * rewire Array/Promise species, `Promise.prototype.then` and `constructor` properties, return
 * subclassed arrays and promises or thenables from main — the bridge (which captured its built-ins
 * before agent code ran, and copies results as JSON text) must still deliver the right values, and
 * the host-side outcome must stay a typed, plain copy.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox } from '../../runtime/index.js';
import { createTestNotes } from '../helpers/test-capability.js';
import { MODES, expectCode, expectOk, timed } from '../helpers/sandbox.js';

const limits = { cpuMs: 500, wallMs: 3000, memoryMb: 64 };

describe.each(MODES)('escape: Symbol.species and thenables (%s)', (isolation) => {
  const sb = createSandbox({ isolation });
  afterAll(() => sb.close());
  const run = (source: string) => {
    const notes = createTestNotes('notes/', { 'notes/a': 'hello' });
    return timed(sb, { source, capabilities: [notes.instance], limits }).then(({ out }) => ({ out, notes }));
  };

  it('a returned Array subclass whose species throws is copied as a plain array (species never consulted)', async () => {
    const source = `export default function main() {
      class Evil extends Array { static get [Symbol.species]() { throw new Error('species touched'); } }
      return Evil.from([1, 2, 3]);
    }`;
    const { out } = await run(source);
    expectOk(out, [1, 2, 3]);
    expect(Array.isArray((out as { value: unknown }).value)).toBe(true);
  });

  it('Array[Symbol.species] rewired globally: capability results still arrive as plain arrays', async () => {
    const source = `export default async function main(input, caps) {
      Object.defineProperty(Array, Symbol.species, { get() { return function () { return new Proxy({}, { get() { throw new Error('trap'); } }); }; } });
      Array.prototype.constructor = undefined;
      const info = await caps.notes.info();
      return [Array.isArray(info.items), info.items.length, info.items[2]];
    }`;
    expectOk((await run(source)).out, [true, 3, 3]);
  });

  it('Promise[Symbol.species], Promise.prototype.then and constructor rewired: capability calls still resolve with the right value', async () => {
    const source = `export default async function main(input, caps) {
      const log = [];
      class P extends Promise { static get [Symbol.species]() { log.push('species'); return Promise; } }
      Object.defineProperty(Promise, Symbol.species, { get() { log.push('Promise species'); return P; } });
      const origThen = Promise.prototype.then;
      Promise.prototype.then = function (a, b) { log.push('then'); return origThen.call(this, a, b); };
      const r1 = await caps.notes.read('notes/a');
      Promise.prototype.then = function () { log.push('swallowed'); };
      const r2 = await caps.notes.read('notes/a');
      return [r1, r2];
    }`;
    const { out, notes } = await run(source);
    expectOk(out, ['hello', 'hello']);
    expect(notes.received.map((r) => r.args)).toEqual(['notes/a', 'notes/a']);
  });

  it('Promise.prototype.then replaced by a loop before main returns: the host does not call it, the run ends OK', async () => {
    const source = 'export default async function main() { Promise.prototype.then = function () { for (;;) {} }; return 1; }';
    expectOk((await run(source)).out, 1);
  });

  it('Promise.prototype.then replaced by a no-op: the host still gets the outcome', async () => {
    const source = 'export default async function main(input, caps) { Promise.prototype.then = function () {}; return await caps.notes.read("notes/a"); }';
    expectOk((await run(source)).out, 'hello');
  });

  it('String.prototype.then / Object.prototype.then set by the agent do not turn the outcome into a thenable', async () => {
    const source = 'export default async function main() { String.prototype.then = function () { for (;;) {} }; Object.prototype.then = function (r) { r("hijacked"); }; return "real"; }';
    // Object.prototype.then makes every object a thenable inside the isolate; the outcome is copied as text.
    const { out } = await run(source);
    expect(out.status).toBe('ok');
    expect((out as { value: unknown }).value).toBe('real');
  });

  it('main returning a Promise subclass resolves to its value, copied out plain', async () => {
    const source = `export default function main() {
      class P extends Promise { static get [Symbol.species]() { return Promise; } }
      return P.resolve({ v: 1 });
    }`;
    expectOk((await run(source)).out, { v: 1 });
  });

  it('main returning a Promise subclass whose species loops → CPU_LIMIT (awaited inside the isolate, under the watchdog)', async () => {
    // Observed: awaiting a non-native promise calls its then(), which consults the species: that
    // happens in the sandbox bootstrap, inside the isolate, so the CPU watchdog stops it.
    const source = `export default function main() {
      class P extends Promise { static get [Symbol.species]() { for (;;) {} } }
      return P.resolve({ v: 1 });
    }`;
    expectCode((await run(source)).out, 'CPU_LIMIT');
  });

  it('main returning a thenable that resolves with a looping getter → CPU_LIMIT (copy-out runs under the watchdog)', async () => {
    const source = 'export default function main() { return { then(resolve) { resolve({ get x() { for (;;) {} } }); } }; }';
    expectCode((await run(source)).out, 'CPU_LIMIT');
  });

  it('main returning a thenable that never resolves → WALL_LIMIT', async () => {
    const source = 'export default function main() { return { then() {} }; }';
    const { out } = await timed(sb, { source, limits: { ...limits, wallMs: 300 } });
    expectCode(out, 'WALL_LIMIT');
  });

  it('JSON.stringify replaced by the agent cannot forge the outcome', async () => {
    const source = `export default function main() {
      JSON.stringify = () => '{"ok":true,"value":"forged"}';
      JSON.parse = () => ({ ok: true, value: 'forged' });
      return 'real';
    }`;
    expectOk((await run(source)).out, 'real');
  });

  it('Object.prototype.toJSON set by the agent is applied inside the isolate only; the host receives plain JSON', async () => {
    const source = 'export default function main() { Object.prototype.toJSON = function () { return "tojson"; }; return { a: 1 }; }';
    expectOk((await run(source)).out, 'tojson');
    expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'toJSON')).toBe(false);
  });
});
