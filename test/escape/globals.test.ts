/**
 * Escape probes on the global environment: inside a sandbox there is nothing but ECMAScript
 * built-ins, the captured `console` and `requestCapability`. No `require`, `process`, `fetch`,
 * timers, `SharedArrayBuffer`, `Atomics.wait`, `WebAssembly`, `FinalizationRegistry`, `WeakRef`,
 * nor any isolated-vm object (`$0`, `Reference`, `ExternalCopy`…), by any constructor chain.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox } from '../../runtime/index.js';
import { MODES, expectCode, expectOk, timed } from '../helpers/sandbox.js';

const limits = { cpuMs: 1000, wallMs: 10_000, memoryMb: 64 };

/** ECMAScript built-ins (as V8 ships them) plus the two things the sandbox adds. */
const ALLOWED_GLOBALS = new Set([
  'AggregateError', 'Array', 'ArrayBuffer', 'Atomics', 'BigInt', 'BigInt64Array', 'BigUint64Array', 'Boolean', 'DataView', 'Date',
  'Error', 'EvalError', 'Float32Array', 'Float64Array', 'Function', 'Infinity', 'Int16Array', 'Int32Array', 'Int8Array', 'Intl',
  'JSON', 'Map', 'Math', 'NaN', 'Number', 'Object', 'Promise', 'Proxy', 'RangeError', 'ReferenceError', 'Reflect', 'RegExp', 'Set',
  'String', 'Symbol', 'SyntaxError', 'TypeError', 'URIError', 'Uint16Array', 'Uint32Array', 'Uint8Array', 'Uint8ClampedArray',
  'WeakMap', 'WeakSet', 'decodeURI', 'decodeURIComponent', 'encodeURI', 'encodeURIComponent', 'escape', 'eval', 'globalThis',
  'isFinite', 'isNaN', 'parseFloat', 'parseInt', 'undefined', 'unescape',
  'console', 'requestCapability',
  // The global object's prototype carries a `constructor` (the isolate's own Object).
  'constructor',
  // Newer V8 built-ins, should the isolate's V8 ship them.
  'Iterator', 'Float16Array', 'SuppressedError', 'DisposableStack', 'AsyncDisposableStack',
  // ECMAScript 2026's Temporal (V8 in Node 26). Temporal.Now reads the clock, as Date.now() already does.
  'Temporal',
]);

const FORBIDDEN = [
  'require', 'process', 'module', 'exports', 'Buffer', 'global', 'fetch', 'setTimeout', 'setInterval', 'setImmediate',
  'clearTimeout', 'queueMicrotask', 'structuredClone', 'SharedArrayBuffer', 'WebAssembly', 'FinalizationRegistry', 'WeakRef',
  '$0', '$1', '$2', 'ivm', 'Reference', 'ExternalCopy', 'Callback', 'Isolate', 'Context', 'import', '__dirname', '__filename',
];

describe.each(MODES)('escape: globals (%s)', (isolation) => {
  const sb = createSandbox({ isolation });
  afterAll(() => sb.close());

  it("this.constructor.constructor('return process')() — `this` is undefined in a module function", async () => {
    const source = "export default function main() { try { return this.constructor.constructor('return process')(); } catch (e) { return e.name + ': ' + e.message; } }";
    expectOk((await timed(sb, { source, limits })).out, "TypeError: Cannot read properties of undefined (reading 'constructor')");
  });

  it("({}).constructor.constructor('return process')() — the Function constructor is the isolate's", async () => {
    const source = "export default function main() { try { return typeof ({}).constructor.constructor('return process')(); } catch (e) { return e.name + ': ' + e.message; } }";
    expectOk((await timed(sb, { source, limits })).out, 'ReferenceError: process is not defined');
  });

  it('constructor chains of async, generator and async generator functions reach no host', async () => {
    const source = `export default async function main() {
      const body = 'return typeof process + typeof require + typeof globalThis.process';
      const [AsyncFunction, GeneratorFunction, AsyncGeneratorFunction] = [async function () {}, function* () {}, async function* () {}].map((f) => f.constructor);
      return [
        await AsyncFunction(body)(),
        GeneratorFunction(body)().next().value,
        (await AsyncGeneratorFunction(body)().next()).value,
        (() => {}).constructor(body)(),
      ];
    }`;
    expectOk((await timed(sb, { source, limits })).out, Array(4).fill('undefinedundefinedundefined'));
  });

  it("Function('return this')() lists only ECMAScript built-ins, console and requestCapability", async () => {
    const source = `export default function main() {
      const g = Function('return this')();
      const names = new Set();
      for (let o = g; o; o = Object.getPrototypeOf(o)) {
        if (o === Object.prototype) break;
        for (const k of Reflect.ownKeys(o)) names.add(typeof k === 'symbol' ? String(k) : k);
      }
      return { same: g === globalThis, names: [...names].sort(), ctor: Object.getPrototypeOf(g).constructor === Object };
    }`;
    const { out } = await timed(sb, { source, limits });
    expect(out.status).toBe('ok');
    const { same, names, ctor } = (out as { value: { same: boolean; names: string[]; ctor: boolean } }).value;
    expect(same).toBe(true);
    expect(ctor).toBe(true);
    const unexpected = names.filter((n) => !ALLOWED_GLOBALS.has(n) && !n.startsWith('Symbol('));
    expect(unexpected).toEqual([]);
    for (const name of FORBIDDEN) expect(names).not.toContain(name);
  });

  it('forbidden host objects are not reachable by name, eval or indirect eval', async () => {
    const source = `export default function main() {
      const names = ${JSON.stringify(FORBIDDEN.filter((n) => /^[A-Za-z_$][\w$]*$/.test(n) && n !== 'import'))};
      const out = {};
      for (const n of names) out[n] = [typeof globalThis[n], (0, eval)('typeof ' + n), eval('typeof ' + n)].join();
      return out;
    }`;
    const { out } = await timed(sb, { source, limits });
    expect(out.status).toBe('ok');
    for (const [name, kinds] of Object.entries((out as { value: Record<string, string> }).value)) {
      expect(kinds, name).toBe('undefined,undefined,undefined');
    }
  });

  it('Atomics.wait/waitAsync are removed; SharedArrayBuffer cannot be recovered', async () => {
    const source = `export default function main() {
      let sab = 'none';
      try { sab = typeof new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }).buffer; } catch (e) { sab = e.name; }
      return [typeof Atomics, typeof Atomics.wait, typeof Atomics.waitAsync, sab];
    }`;
    expectOk((await timed(sb, { source, limits })).out, ['object', 'undefined', 'undefined', 'ReferenceError']);
  });

  it('dynamic import() and import.meta give nothing', async () => {
    const source = `export default async function main() {
      const r = [];
      for (const s of ['node:fs', 'fs', './main.js', 'data:text/javascript,export default 1']) {
        try { await import(s); r.push('imported ' + s); } catch (e) { r.push(e.name); }
      }
      r.push(Object.keys(import.meta).length);
      return r;
    }`;
    expectOk((await timed(sb, { source, limits })).out, ['Error', 'Error', 'Error', 'Error', 0]);
  });

  it('console and requestCapability cannot be replaced or reveal host functions', async () => {
    const source = `export default function main() {
      'use strict';
      const r = [];
      try { console.log = () => {}; r.push('replaced'); } catch (e) { r.push(e.name); }
      try { globalThis.console = {}; r.push('replaced'); } catch (e) { r.push(e.name); }
      try { globalThis.requestCapability = null; r.push('replaced'); } catch (e) { r.push(e.name); }
      r.push(Object.getPrototypeOf(console), Object.keys(console).sort().join());
      r.push(console.log.constructor('return typeof process')(), requestCapability.constructor('return typeof process')());
      return r;
    }`;
    expectOk((await timed(sb, { source, limits })).out, ['TypeError', 'TypeError', 'TypeError', null, 'debug,error,info,log,warn', 'undefined', 'undefined']);
  });

  it('a sloppy function called by the sandbox bootstrap sees no caller (arguments.callee.caller)', async () => {
    // The getter runs inside the bootstrap while the thrown value is described; a sloppy function's
    // `.caller` would expose a sloppy caller — the bootstrap is strict, so it is null.
    const source = `export default function main() {
      const getter = Function('return "caller:" + String(arguments.callee.caller)');
      throw Object.defineProperty({}, 'message', { get: getter });
    }`;
    const error = expectCode((await timed(sb, { source, limits })).out, 'AGENT_ERROR');
    expect(error.message).toBe('caller:null');
  });
});
