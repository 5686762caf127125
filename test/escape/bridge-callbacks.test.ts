/**
 * The bridge's host callbacks (`submit`, `hostLog`, `report`) live in the sandbox bootstrap's
 * closure; agent code must not reach them, nor the bootstrap's private functions that call them,
 * nor make them carry anything but the true call. Probes, at every point where the bootstrap calls
 * agent code (an argument's toJSON, a reason getter, a requestCapability name and scope, console
 * formatting, a thrown value's message/stack getters, Error.prepareStackTrace, the return value's
 * toJSON, a returned thenable's then, a returned Proxy's traps):
 * - CallSites of bootstrap frames give no function and no receiver; a sloppy hook's `caller` is null;
 * - Function.prototype.call/apply/bind/toString and Symbol.hasInstance replaced by recorders are
 *   never invoked by the bridge;
 * - Proxy traps and thenable resolvers receive only the agent's own values and plain data, and a
 *   returned thenable's resolvers settle only the agent's own value, once;
 * - a caps method called with any receiver, extra arguments or an odd reason still sends exactly
 *   its own capability and method.
 * What a guest could do if it did reach the callbacks is covered host-side in
 * test/runtime/bridge-host.test.ts; test/escape/reachability.test.ts walks everything reachable.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox, type Gate, passThroughGate, type RunOutcome } from '../../runtime/index.js';
import { createTestNotes } from '../helpers/test-capability.js';
import { MODES, expectOk } from '../helpers/sandbox.js';
import { DETECTOR_SOURCE } from './detector.js';

const limits = { cpuMs: 10_000, wallMs: 20_000, memoryMb: 128 };

/**
 * Agent-side probe: `probe(label)` records the stack at this point (CallSites, their function and
 * receiver) and who called the sloppy function it runs in. Hooks are sloppy (Function-made) so
 * that `arguments.callee.caller` is even allowed.
 */
const PROBE = `
const agentFns = new Set();
const log = console.log;
function probe(label, caller) {
  const saved = Error.prepareStackTrace;
  const frames = [];
  Error.prepareStackTrace = (e, sites) => { for (const s of sites) frames.push({ file: s.getFileName() ?? null, fn: s.getFunction(), self: s.getThis() }); return ''; };
  const h = {};
  Error.captureStackTrace(h);
  h.stack;
  Error.prepareStackTrace = saved;
  const bootstrap = frames.filter((f) => f.file === '<contained>');
  log('PROBE ' + JSON.stringify({
    label,
    bootstrapFrames: bootstrap.length,
    bootstrapFnOrThis: bootstrap.filter((f) => f.fn !== undefined || f.self !== undefined).length,
    caller: caller === null ? null : caller === undefined ? 'undefined' : agentFns.has(caller) ? 'agent' : typeof caller,
  }));
}
function sloppy(label, body) {
  const f = Function('probe', 'label', 'return function () { probe(label, arguments.callee.caller); ' + (body || '') + ' };')(probe, label);
  agentFns.add(f);
  return f;
}
`;

interface Probe {
  label: string;
  bootstrapFrames: number;
  bootstrapFnOrThis: number;
  caller: unknown;
}

/** The probes' summaries, from the run's log lines. */
function probesOf(out: RunOutcome): Probe[] {
  return out.logs.filter((l) => l.message.startsWith('PROBE ')).map((l) => JSON.parse(l.message.slice(6)) as Probe);
}

/** Each label was probed; its bootstrap frames (when the bootstrap was on the stack) gave nothing; no caller leaked. */
function expectClean(probes: Probe[], labels: string[], bootstrapOnStack: boolean): void {
  for (const label of labels) {
    const mine = probes.filter((p) => p.label === label);
    expect(mine.length, `${label} was not probed`).toBeGreaterThan(0);
    for (const p of mine) {
      if (bootstrapOnStack) expect(p.bootstrapFrames, label).toBeGreaterThan(0);
      expect(p.bootstrapFnOrThis, label).toBe(0);
      expect([null, 'agent'], label).toContain(p.caller);
    }
  }
}

describe.each(MODES)('escape: the bridge callbacks (%s)', (isolation) => {
  const requests: Array<{ capability: string; scope: unknown; reason: string }> = [];
  const gate: Gate = {
    ...passThroughGate,
    async requestCapability(request) {
      requests.push({ capability: request.capability, scope: request.scope, reason: request.reason });
      return { allow: false, code: 'ESCALATION_DENIED', message: 'no' };
    },
  };
  const sb = createSandbox({ isolation, gate });
  afterAll(() => sb.close());
  const run = (source: string) => {
    const notes = createTestNotes('notes/', { 'notes/a': 'hello' });
    requests.length = 0;
    return sb.run({ source, capabilities: [notes.instance], limits }).then((out) => ({ out, notes }));
  };

  it('at every point the bootstrap calls agent code while a call is made or a line logged, its frames give no function or receiver and a sloppy caller is null', async () => {
    const source = `${PROBE}
    export default async function main(input, caps) {
      await caps.notes.read({ toJSON: sloppy('argument toJSON', 'return "notes/a";') });
      await caps.notes.read('notes/a', { get reason() { return sloppy('reason getter', 'return "r";')(); } });
      await requestCapability({ toString: sloppy('requestCapability name', 'return "kv";') }, { toJSON: sloppy('requestCapability scope', 'return null;') }, 'why').catch(() => {});
      const f = function () {}; f.toString = sloppy('console function toString', 'return "f";');
      const g = function () {}; g[Symbol.toPrimitive] = sloppy('console function toPrimitive', 'return "g";');
      const logged = new Error('e'); Object.defineProperty(logged, 'stack', { get: sloppy('console error stack', 'return "s";') });
      console.log(f, g, { toJSON: sloppy('console toJSON', 'return 1;') }, logged);
      Error.prepareStackTrace = sloppy('prepareStackTrace of a refusal', 'return "st";');
      try { await caps.notes.read('secret/x'); } catch (e) { e.stack; }
      Error.prepareStackTrace = undefined;
      return 'done';
    }`;
    const { out, notes } = await run(source);
    expectOk(out, 'done');
    expectClean(probesOf(out), ['argument toJSON', 'reason getter', 'requestCapability name', 'requestCapability scope', 'console function toString', 'console function toPrimitive', 'console toJSON', 'console error stack'], true);
    expectClean(probesOf(out), ['prepareStackTrace of a refusal'], false);
    expect(notes.received).toEqual([{ method: 'read', args: 'notes/a' }, { method: 'read', args: 'notes/a' }]);
    expect(requests).toEqual([{ capability: 'kv', scope: null, reason: 'why' }]);
  });

  it.each([
    ['a thrown value whose message and stack getters probe', 'function', `const e = {}; Object.defineProperty(e, 'message', { get: sloppy('thrown message getter', 'return "m";') }); Object.defineProperty(e, 'stack', { get: sloppy('thrown stack getter', 'return "s";') }); throw e;`, ['thrown message getter', 'thrown stack getter'], true],
    ['a returned value whose toJSON probes', 'function', `return { toJSON: sloppy('return toJSON', 'return 1;') };`, ['return toJSON'], true],
    ['a returned Proxy whose traps probe (settle)', 'function', `return new Proxy({}, { getPrototypeOf: sloppy('proxy getPrototypeOf', 'return Promise.prototype;'), defineProperty: sloppy('proxy defineProperty', 'return true;') });`, ['proxy getPrototypeOf', 'proxy defineProperty'], true],
    // then runs in a promise job V8 starts by itself: no bootstrap frame is on the stack at all.
    ['a returned thenable whose then probes', 'function', `return { then: sloppy('thenable then', 'arguments[0](1);') };`, ['thenable then'], false],
    ['an async main resolving with a thenable', 'async function', `return { then: sloppy('async thenable then', 'arguments[0](1);') };`, ['async thenable then'], false],
  ])('%s: bootstrap frames give no function or receiver', async (_name, kind, body, labels, bootstrapOnStack) => {
    const { out } = await run(`${PROBE}\nexport default ${kind} main() { ${body} }`);
    expectClean(probesOf(out), labels, bootstrapOnStack);
  });

  it('Function.prototype.call/apply/bind/toString and Symbol.hasInstance replaced by recorders: the bridge never invokes them', async () => {
    const source = `${DETECTOR_SOURCE}
    export default async function main(input, caps) {
      const seen = [];
      const F = Function.prototype;
      const saved = { call: F.call, apply: F.apply, bind: F.bind, toString: F.toString };
      const record = (name) => function (...args) { seen.push([name, this, ...args]); return Reflect.apply(saved[name], this, args); };
      for (const name of Object.keys(saved)) F[name] = record(name);
      Object.defineProperty(Error, Symbol.hasInstance, { value: function (v) { seen.push(['hasInstance', this, v]); return false; }, configurable: true });
      const results = [];
      results.push(await caps.notes.read('notes/a'));
      results.push(await caps.notes.write({ path: 'notes/b', text: 't' }, { reason: 'because' }));
      try { await caps.notes.read('secret/x'); } catch (e) { results.push(e.code); }
      try { await requestCapability('kv', { prefix: 'p/' }, 'why'); } catch (e) { results.push(e.code); }
      console.log('logged', new Error('e'), { a: 1 });
      for (const name of Object.keys(saved)) F[name] = saved[name];
      delete Error[Symbol.hasInstance];
      const walk = detect(seen.map((s, i) => ['recorded ' + i, s]));
      return { results, recorded: seen.map((s) => s[0]), findings: walk.findings };
    }`;
    const { out, notes } = await run(source);
    expectOk(out, { results: ['hello', null, 'CAPABILITY_DENIED', 'ESCALATION_DENIED'], recorded: [], findings: [] });
    expect(notes.received).toEqual([{ method: 'read', args: 'notes/a' }, { method: 'write', args: { path: 'notes/b', text: 't' } }]);
    expect(requests).toEqual([{ capability: 'kv', scope: { prefix: 'p/' }, reason: 'why' }]);
    expect(out.logs.map((l) => l.message)).toEqual([expect.stringMatching(/^logged Error: e\n/)]);
  });

  it('Proxy arguments, options and scope: traps see only the agent\'s own objects and plain values, and what they return is what is sent', async () => {
    const source = `${DETECTOR_SOURCE}
    export default async function main(input, caps) {
      const trapArgs = [];
      const spy = (target) => new Proxy(target, new Proxy({}, { get: (t, trap) => (...args) => { trapArgs.push([trap, ...args]); return Reflect[trap](...args); } }));
      await caps.notes.write(spy({ path: 'notes/p', text: spy({}).constructor === Object ? 't' : 'x' }), spy({ reason: 'proxied reason' }));
      await requestCapability('kv', spy({ prefix: 'q/' }), 'why').catch(() => {});
      const walk = detect(trapArgs.map((a, i) => ['trap ' + i + ' ' + a[0], a]));
      return { traps: trapArgs.length, findings: walk.findings, objects: walk.counts.objects };
    }`;
    const { out, notes } = await run(source);
    if (out.status !== 'ok') expect.fail(`${out.error.code}: ${out.error.message}`);
    const v = out.value as { traps: number; findings: string[]; objects: number };
    expect(v.findings).toEqual([]);
    expect(v.traps).toBeGreaterThan(5);
    expect(notes.received).toEqual([{ method: 'write', args: { path: 'notes/p', text: 't' } }]);
    expect(requests).toEqual([{ capability: 'kv', scope: { prefix: 'q/' }, reason: 'why' }]);
  });

  it("a returned thenable's resolvers settle only the agent's own value, once: no status, no second outcome", async () => {
    const source = `export default function main() {
      return { then(resolve, reject) {
        globalThis.kept = [resolve, reject];
        resolve({ ok: true, value: 'forged' });
        resolve('{"ok":true,"value":"forged"}');
        reject(new Error('second'));
        Promise.resolve().then(() => { resolve('late'); reject('late'); });
      } };
    }`;
    const { out } = await run(source);
    // The object is the agent's value, not an outcome: a host callback would have taken it as one.
    expectOk(out, { ok: true, value: 'forged' });
  });

  it('caps methods and requestCapability called with any receiver, extra arguments or odd reasons send only their own capability and method', async () => {
    const source = `export default async function main(input, caps) {
      const read = caps.notes.read;
      await Reflect.apply(read, { capability: 'other', method: 'fail' }, ['notes/a', { reason: 'r1' }, 'extra', 'args']);
      await read.call(caps.notes, 'notes/a', { reason: { toString() { return 'not a string'; } } });
      await new Promise((r) => r(read('notes/a', { reason: 'x'.repeat(10000) })));
      await Reflect.apply(requestCapability, caps, ['kv', undefined, 42, 'extra']).catch(() => {});
      return 'done';
    }`;
    const { out, notes } = await run(source);
    expectOk(out, 'done');
    expect(notes.received).toEqual([{ method: 'read', args: 'notes/a' }, { method: 'read', args: 'notes/a' }, { method: 'read', args: 'notes/a' }]);
    expect(requests).toEqual([{ capability: 'kv', scope: null, reason: '' }]);
  });
});
