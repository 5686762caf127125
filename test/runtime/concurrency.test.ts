/**
 * One hostile sandbox does not stall the others: 50 runs at once, one of them busy-looping (or
 * eating memory), the other 49 — each making a capability call — finish OK, and they finish before
 * the hostile run is stopped by its own limit.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox, type RunOutcome } from '../../runtime/index.js';
import { createTestNotes } from '../helpers/test-capability.js';
import { MODES, expectCode, expectHealthy, expectOk } from '../helpers/sandbox.js';

const HOSTILE_CPU_MS = 1500;

const hostileSources = {
  'busy loop': 'export default function main() { for (;;) {} }',
  'busy loop after an await': 'export default async function main() { await null; for (;;) {} }',
};
const friendly = 'export default async function main(input, caps) { const t = await caps.notes.read("notes/a"); let x = 0; for (let i = 0; i < 1e4; i++) x += i; return { n: input.n, t, x }; }';

describe.each(MODES)('50 concurrent runs, one hostile (%s)', (isolation) => {
  // Default pool for worker mode (min(2, CPUs) workers, 32 runs per worker).
  const sb = createSandbox({ isolation });
  afterAll(() => sb.close());

  it('warms up', async () => {
    await expectHealthy(sb);
  });

  it.each(Object.entries(hostileSources))('%s: the 49 others complete OK, before the hostile one is stopped', async (_name, hostileSource) => {
    const notes = createTestNotes('notes/', { 'notes/a': 'hello' });
    const finishedAt: number[] = [];
    const track = (p: Promise<RunOutcome>, i: number): Promise<RunOutcome> =>
      p.then((out) => {
        finishedAt[i] = performance.now();
        return out;
      });
    const hostileIndex = 17;
    const runs = Array.from({ length: 50 }, (_, i) =>
      track(
        i === hostileIndex
          ? sb.run({ source: hostileSource, limits: { cpuMs: HOSTILE_CPU_MS, wallMs: 30_000 } })
          : sb.run({ source: friendly, input: { n: i }, capabilities: [notes.instance], limits: { cpuMs: 1000, wallMs: 30_000, memoryMb: 32 } }),
        i,
      ),
    );
    const outs = await Promise.all(runs);
    expectCode(outs[hostileIndex] as RunOutcome, 'CPU_LIMIT');
    outs.forEach((out, i) => {
      if (i !== hostileIndex) expectOk(out, { n: i, t: 'hello', x: 49995000 });
    });
    const lastFriendly = Math.max(...finishedAt.filter((_, i) => i !== hostileIndex));
    expect(lastFriendly).toBeLessThan(finishedAt[hostileIndex] as number);
    await expectHealthy(sb);
  });
});

describe('50 concurrent runs, one eating memory (worker)', () => {
  const sb = createSandbox({ isolation: 'worker' });
  afterAll(() => sb.close());

  it('the memory bomb ends MEMORY_LIMIT, the 49 others complete OK', async () => {
    const notes = createTestNotes('notes/', { 'notes/a': 'hello' });
    const bomb = 'export default function main() { const k = []; for (;;) k.push(new Array(1e5).fill(1)); }';
    const outs = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        i === 3
          ? sb.run({ source: bomb, limits: { memoryMb: 32, cpuMs: 5000, wallMs: 30_000 } })
          : sb.run({ source: friendly, input: { n: i }, capabilities: [notes.instance], limits: { cpuMs: 1000, wallMs: 30_000, memoryMb: 32 } }),
      ),
    );
    expectCode(outs[3] as RunOutcome, 'MEMORY_LIMIT');
    outs.forEach((out, i) => {
      if (i !== 3) expectOk(out, { n: i, t: 'hello', x: 49995000 });
    });
    await expectHealthy(sb);
  });
});
