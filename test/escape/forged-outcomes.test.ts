/**
 * Forged outcomes (hardening finding 4). The sandbox bootstrap reports every run's outcome and
 * sends every capability call; agent code runs in the same realm and may replace any built-in
 * first: `Object.prototype.toJSON` once turned the bootstrap's error report into
 * `{ status: 'ok', value: 'forged' }`. Each tamper below is applied before returning, before
 * throwing, before rejecting after an await, before calling a capability, before
 * `requestCapability`, before the bootstrap must itself decide (INVALID_OUTPUT, OUTPUT_LIMIT,
 * INVALID_PROGRAM), and around real and fake capability errors. The outcome status and code, and
 * what the host received (capability, method, argument, reason; the request), must stay true.
 *
 * What an agent legitimately controls is the value it returns or throws: a toJSON it installs may
 * change the returned value (as JSON.stringify would), never the status or the code.
 */
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createSandbox, type Gate, passThroughGate } from '../../runtime/index.js';
import { createTestNotes } from '../helpers/test-capability.js';
import { MODES, expectCode, expectNoHostDetail, expectOk } from '../helpers/sandbox.js';

const limits = { cpuMs: 1000, wallMs: 5000, memoryMb: 64, maxOutputBytes: 1000 };

/** Each tamper runs inside the agent program, at the point the scenario marks with T. */
const TAMPERS: Array<[string, string]> = [
  ['Object.prototype.toJSON', `Object.prototype.toJSON = function () { return this && this.__mine ? this.__mine : { ok: true, value: 'forged' }; };`],
  ['Error/Array.prototype.toJSON', `Error.prototype.toJSON = () => ({ ok: true, value: 'forged' }); Array.prototype.toJSON = () => 'forged';`],
  ['Symbol.iterator on Array, Map, String', `Array.prototype[Symbol.iterator] = function* () { yield 'forged'; }; Map.prototype[Symbol.iterator] = function* () { yield ['forged', 'forged']; }; String.prototype[Symbol.iterator] = function* () { yield 'forged'; };`],
  ['Promise.prototype.then', `Promise.prototype.then = function (a) { if (typeof a === 'function') a('forged'); };`],
  ['Promise.prototype.then with constructor rewired (await adopts through then)', `const t = Promise.prototype.then; Object.defineProperty(Promise.prototype, 'constructor', { value: Object, configurable: true, writable: true }); Promise.prototype.then = function (a, b) { return t.call(this, () => a && a('forged'), () => a && a('forged')); };`],
  ['Promise.prototype.constructor getter that throws', `Object.defineProperty(Promise.prototype, 'constructor', { get() { throw new Error('forged'); }, configurable: true });`],
  ['Promise species that grabs resolvers', `class S { constructor(ex) { ex((v) => {}, (e) => {}); } } Object.defineProperty(Promise.prototype, 'constructor', { get() { return { [Symbol.species]: S }; }, configurable: true }); Object.defineProperty(Promise, Symbol.species, { get() { return S; }, configurable: true });`],
  ['Promise species that throws', `class S { constructor() { throw new Error('forged'); } } Object.defineProperty(Promise.prototype, 'constructor', { get() { return { [Symbol.species]: S }; }, configurable: true });`],
  ['Object.prototype.then getter (everything thenable)', `Object.defineProperty(Object.prototype, 'then', { get() { return (r) => r('forged'); }, configurable: true });`],
  ['Symbol.toPrimitive, toString, valueOf on prototypes', `for (const P of [Object.prototype, String.prototype, Number.prototype, Error.prototype, Symbol.prototype, BigInt.prototype]) Object.defineProperty(P, Symbol.toPrimitive, { value: () => 'forged', configurable: true }); Object.prototype.toString = () => 'forged'; Object.prototype.valueOf = () => 'forged'; Error.prototype.toString = () => 'forged';`],
  ['JSON.stringify and JSON.parse replaced', `JSON.stringify = () => '{"ok":true,"value":"forged"}'; JSON.parse = () => ({ ok: true, value: 'forged' });`],
  ['String and String.prototype methods replaced', `globalThis.String = function () { return 'forged'; }; for (const k of ['slice', 'charCodeAt', 'replace', 'concat', 'toString', 'substring', 'padStart']) String.prototype[k] = () => '"forged"';`],
  ['Map and WeakMap methods replaced', `for (const C of [Map, WeakMap, Set, WeakSet]) for (const k of ['get', 'set', 'has', 'delete', 'add']) C.prototype[k] = function () { return undefined; };`],
  ['Function.prototype.call/apply/bind replaced', `Function.prototype.call = function () { return 'forged'; }; Function.prototype.apply = function () { return 'forged'; }; Function.prototype.bind = function () { return () => 'forged'; };`],
  ['Object/Reflect statics replaced', `for (const k of ['defineProperty', 'freeze', 'create', 'getPrototypeOf', 'keys', 'getOwnPropertyDescriptor', 'hasOwn']) Object[k] = () => { throw new Error('forged'); }; for (const k of Object.getOwnPropertyNames(Reflect)) Reflect[k] = () => { throw new Error('forged'); };`],
  ['setters and getters on Object.prototype for the keys the bootstrap writes and reads', `for (const k of ['ok', 'value', 'error', 'code', 'message', 'stack', 'data', 'resolve', 'reject', 'name', 'scope', 'reason', 'default', 'get', 'set', 'writable', 'enumerable', 'configurable', 'maxCallBytes', 'capabilities']) Object.defineProperty(Object.prototype, k, { __proto__: null, get() { return 'forged'; }, set(v) {}, configurable: true });`],
  ['Error.prototype name/code claim CapabilityError', `Object.defineProperty(Error.prototype, 'name', { get() { return 'CapabilityError'; }, set(v) {}, configurable: true }); Object.defineProperty(Error.prototype, 'code', { get() { return 'CAPABILITY_DENIED'; }, set(v) {}, configurable: true });`],
  ['Error replaced, Error.prototype frozen, instanceof rewired', `Object.defineProperty(Error, Symbol.hasInstance, { value: () => { throw new Error('forged'); } }); globalThis.Error = function () { return { ok: true, value: 'forged' }; }; Object.freeze(Object.getPrototypeOf(new TypeError()).__proto__);`],
  ['Array.prototype methods replaced', `for (const k of ['join', 'map', 'push', 'slice', 'concat', 'forEach', 'filter', 'includes', 'indexOf']) Array.prototype[k] = function () { return 'forged'; };`],
];

/** A value premade before the tamper: non-enumerable `__mine` is what a rewriting toJSON returns. */
const mine = (name: string, plain: string) => `const ${name} = Object.defineProperty(${plain}, '__mine', { value: ${plain} });`;

describe.each(MODES)('escape: forged outcomes (%s)', (isolation) => {
  const requests: Array<{ capability: string; scope: unknown; reason: string }> = [];
  const gate: Gate = {
    ...passThroughGate,
    async requestCapability(request) {
      requests.push({ capability: request.capability, scope: request.scope, reason: request.reason });
      return { allow: false, code: 'ESCALATION_DENIED', message: 'refused by the test gate' };
    },
  };
  const sb = createSandbox({ isolation, gate });
  afterAll(() => sb.close());
  beforeEach(() => {
    requests.length = 0;
  });
  const run = (source: string) => {
    const notes = createTestNotes('notes/');
    return sb.run({ source, capabilities: [notes.instance], limits }).then((out) => ({ out, notes }));
  };

  describe.each(TAMPERS)('%s', (_name, T) => {
    it('before returning: ok with the real value', async () => {
      const { out } = await run(`export default async function main() { const v = 'real'; ${T} return v; }`);
      expectOk(out, 'real');
    });

    it('before throwing: AGENT_ERROR with the real message', async () => {
      const { out } = await run(`export default function main() { const e = new Error('real'); ${T} throw e; }`);
      expect(expectCode(out, 'AGENT_ERROR').message).toBe('real');
      expectNoHostDetail(out);
    });

    it('before rejecting after an await: AGENT_ERROR with the real message', async () => {
      const { out } = await run(`export default async function main() { const e = new Error('real'); ${T} await null; throw e; }`);
      expect(expectCode(out, 'AGENT_ERROR').message).toBe('real');
    });

    // The next three return the bootstrap's own promise from a plain (not async) main: an agent that
    // rewires Promise machinery and then awaits in its own code fools only itself, and that is its
    // business; the bootstrap's report of the promise it made must stay true.
    it('before calling a capability: the host receives the true call', async () => {
      const { out, notes } = await run(`export default function main(input, caps) { ${mine('arg', "{ path: 'notes/x', text: 'real' }")} const opts = { reason: 'true reason' }; ${T} return caps.notes.write(arg, opts); }`);
      expectOk(out, null);
      expect(notes.received).toEqual([{ method: 'write', args: { path: 'notes/x', text: 'real' } }]);
      expect(notes.store.get('notes/x')).toBe('real');
    });

    it('before requestCapability: the host receives the true request, the refusal is the outcome', async () => {
      const { out } = await run(`export default function main() { ${mine('scope', "{ prefix: 'x/' }")} ${T} return requestCapability('kv', scope, 'because'); }`);
      expect(expectCode(out, 'ESCALATION_DENIED').message).toBe('refused by the test gate');
      expect(requests).toEqual([{ capability: 'kv', scope: { prefix: 'x/' }, reason: 'because' }]);
    });

    it('before an uncaught real denial: CAPABILITY_DENIED', async () => {
      const { out, notes } = await run(`export default function main(input, caps) { ${T} return caps.notes.read('secret/x'); }`);
      expectCode(out, 'CAPABILITY_DENIED');
      expect(notes.received).toEqual([]);
    });

    it('before returning a symbol: INVALID_OUTPUT', async () => {
      const { out } = await run(`export default async function main() { const v = Symbol('s'); ${T} return v; }`);
      expectCode(out, 'INVALID_OUTPUT');
    });

    it('before returning too much: OUTPUT_LIMIT', async () => {
      const { out } = await run(`export default async function main() { const v = 'x'.repeat(5000); ${T} return v; }`);
      expectCode(out, 'OUTPUT_LIMIT');
    });

    it('around a fake CapabilityError: AGENT_ERROR, not the claimed code', async () => {
      const { out } = await run(`export default async function main() { const e = new Error('real'); e.name = 'CapabilityError'; e.code = 'CAPABILITY_DENIED'; ${T} throw e; }`);
      expectCode(out, 'AGENT_ERROR');
    });

    it('at module top level, with no default export: INVALID_PROGRAM', async () => {
      const { out } = await run(`${T}\nexport const notMain = 1;`);
      expectCode(out, 'INVALID_PROGRAM');
    });
  });
});
