/**
 * CPU limit (`cpuMs`) from every code path that can burn CPU: synchronous code, code resumed after
 * an `await` (isolated-vm's own `timeout` misses it), microtask floods, regex backtracking,
 * module top-level code, and getters/`toString` run while a thrown value or the result is read.
 * Each case: exactly CPU_LIMIT, stopped within the limit plus a tolerance, sandbox healthy after.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox } from '../../runtime/index.js';
import { MODES, TOLERANCE_MS, expectCode, expectHealthy, timed } from '../helpers/sandbox.js';

const CPU_MS = 200;
const limits = { cpuMs: CPU_MS, wallMs: 20_000, memoryMb: 64 };

const cases: Array<[string, string, 'both'?]> = [
  ['infinite loop, synchronous', 'export default function main() { for (;;) {} }', 'both'],
  ['infinite loop after an await (not covered by isolated-vm timeout)', 'export default async function main() { await null; for (;;) {} }', 'both'],
  ['infinite loop after several awaits of resolved promises', 'export default async function main() { for (let i = 0; i < 10; i++) await Promise.resolve(i); while (true) {} }'],
  ['microtask flood: await in a loop', 'export default async function main() { for (;;) await null; }', 'both'],
  [
    'microtask flood: self-rescheduling then-callbacks (constant memory), main never settles',
    'export default async function main() { const f = () => { Promise.resolve().then(f); }; f(); await new Promise(() => {}); }',
  ],
  ['catastrophic-backtracking regex', 'export default function main() { return /^(a+)+$/.test("a".repeat(40) + "b"); }'],
  ['infinite loop in module top-level code', 'for (;;) {}\nexport default function main() { return 1; }'],
  ['top-level await followed by a loop', 'await null;\nfor (;;) {}\nexport default function main() { return 1; }'],
  ['thrown object whose message getter loops (spins past isolated-vm timeout)', 'export default function main() { throw { get message() { for (;;) {} } }; }', 'both'],
  ['thrown object whose toString loops (message undefined)', 'export default function main() { throw { message: undefined, toString() { for (;;) {} } }; }'],
  ['thrown object whose stack getter loops', 'export default function main() { throw { message: "m", get stack() { for (;;) {} } }; }'],
  ['rejection with a looping message getter after an await', 'export default async function main() { await null; return Promise.reject({ get message() { for (;;) {} } }); }'],
  ['returned object whose getter loops while the result is copied out', 'export default function main() { return { get x() { for (;;) {} } }; }', 'both'],
  ['returned value whose toJSON loops', 'export default function main() { return { toJSON() { for (;;) {} } }; }'],
  ['Array.prototype.toJSON replaced by a loop before returning an array', 'export default function main() { Array.prototype.toJSON = function () { for (;;) {} }; return [1, 2]; }'],
  ['Error.prepareStackTrace that loops when the host-side outcome reads the stack', 'export default function main() { Error.prepareStackTrace = () => { for (;;) {} }; throw new Error("x"); }'],
  ['thenable returned from main whose then loops', 'export default function main() { return { then() { for (;;) {} } }; }'],
];

describe.each(MODES)('CPU limit (%s)', (isolation) => {
  const sb = createSandbox({ isolation });
  afterAll(() => sb.close());

  // The engine is the same in both modes; worker mode re-runs a representative subset through IPC.
  const mine = isolation === 'in-process' ? cases : cases.filter((c) => c[2] === 'both');
  it.each(mine)('%s → CPU_LIMIT', async (_name, source) => {
    const { out, ms } = await timed(sb, { source, limits });
    expectCode(out, 'CPU_LIMIT');
    // Worker mode: the first run also waits for the worker to start; allow for it.
    expect(ms).toBeLessThan(CPU_MS + TOLERANCE_MS + (isolation === 'worker' ? 2000 : 0));
    expect(out.usage.cpuMs).toBeGreaterThanOrEqual(CPU_MS);
    await expectHealthy(sb);
  });

  it('a CPU-heavy run just under its limit completes', async () => {
    const source = 'export default function main() { let x = 0; for (let i = 0; i < 1e6; i++) x += i; return x; }';
    const { out } = await timed(sb, { source, limits: { ...limits, cpuMs: 2000 } });
    expect(out.status).toBe('ok');
  });
});
