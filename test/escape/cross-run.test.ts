/**
 * A hostile run can never affect a later (or a concurrent) one: each run gets a fresh isolate, so
 * globals, replaced built-ins and prototype pollution from one run are invisible to the next, and
 * nothing an agent does to its own prototypes reaches the host's.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox } from '../../runtime/index.js';
import { createTestNotes } from '../helpers/test-capability.js';
import { MODES, expectCode, expectOk, timed, until } from '../helpers/sandbox.js';

const limits = { cpuMs: 500, wallMs: 5000, memoryMb: 64 };

const POLLUTE = `
  globalThis.leak = 'from run 1';
  Object.prototype.polluted = 'yes';
  Object.defineProperty(Object.prototype, 'getterPolluted', { get() { return 'yes'; }, configurable: true });
  Array.prototype.push = function () { return 'hijacked'; };
  Array.prototype[Symbol.iterator] = function* () { yield 'hijacked'; };
  JSON.stringify = () => '"hijacked"';
  JSON.parse = () => 'hijacked';
  Promise.prototype.then = function () {};
  Function.prototype.call = function () { return 'hijacked'; };
  Error.prepareStackTrace = () => 'hijacked';
  String.prototype.slice = () => 'hijacked';
  Object.freeze(Object.prototype);
`;

const INSPECT = `export default function main() {
  const native = (f) => /\\[native code\\]/.test(Function.prototype.toString.apply(f));
  return {
    leak: typeof globalThis.leak,
    polluted: ({}).polluted === undefined && ({}).getterPolluted === undefined,
    push: native(Array.prototype.push) && native(Array.prototype[Symbol.iterator]),
    json: native(JSON.stringify) && native(JSON.parse),
    then: native(Promise.prototype.then),
    call: native(Function.prototype.call),
    pst: Error.prepareStackTrace === undefined,
    slice: 'abc'.slice(1) === 'bc',
    frozen: Object.isFrozen(Object.prototype),
  };
}`;

const PRISTINE = { leak: 'undefined', polluted: true, push: true, json: true, then: true, call: true, pst: true, slice: true, frozen: false };

describe.each(MODES)('escape: one run cannot affect another (%s)', (isolation) => {
  // One worker in worker mode, so run 2 lands in the very process run 1 used.
  const sb = createSandbox({ isolation, workers: 1 });
  afterAll(() => sb.close());

  it('globals and prototype pollution from a run that returns normally are invisible to the next run', async () => {
    const first = await timed(sb, { source: `export default function main() { ${POLLUTE} return 'polluted'; }`, limits });
    expect(first.out.status).toBe('ok');
    expectOk((await timed(sb, { source: INSPECT, limits })).out, PRISTINE);
  });

  it('pollution from a run killed by a limit is invisible to the next run', async () => {
    const first = await timed(sb, { source: `export default function main() { ${POLLUTE} for (;;) {} }`, limits });
    expectCode(first.out, 'CPU_LIMIT');
    expectOk((await timed(sb, { source: INSPECT, limits })).out, PRISTINE);
  });

  it('pollution from a run that fails to load is invisible to the next run', async () => {
    const program = { files: { 'main.js': `import "./lib.js";\n${POLLUTE}\nexport default function main() {}`, 'lib.js': 'export const x = ;' }, entry: 'main.js' };
    expectCode((await timed(sb, { program, limits })).out, 'INVALID_PROGRAM');
    const topLevel = `${POLLUTE}\nthrow new Error('after polluting');\nexport default function main() {}`;
    expectCode((await timed(sb, { source: topLevel, limits })).out, 'AGENT_ERROR');
    expectOk((await timed(sb, { source: INSPECT, limits })).out, PRISTINE);
  });

  it('a concurrent run does not see the globals of a live one', async () => {
    const notes = createTestNotes();
    const holder = sb.run({
      source: `export default async function main(input, caps) { globalThis.shared = 'secret'; Object.prototype.concurrent = 1; await caps.notes.sleep(500); return typeof globalThis.shared; }`,
      capabilities: [notes.instance],
      limits,
    });
    await until(() => notes.received.length === 1);
    const probe = await timed(sb, { source: 'export default function main() { return [typeof globalThis.shared, ({}).concurrent]; }', limits });
    expectOk(probe.out, ['undefined', null]);
    expectOk(await holder, 'string');
  });

  it("nothing an agent does to its prototypes reaches the host's", async () => {
    await timed(sb, { source: `export default function main() { ${POLLUTE} return { a: 1 }; }`, limits });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).getterPolluted).toBeUndefined();
    expect(Object.isFrozen(Object.prototype)).toBe(false);
    expect(JSON.stringify({ a: 1 })).toBe('{"a":1}');
    expect([1, 2].map((x) => x * 2)).toEqual([2, 4]);
  });
});
