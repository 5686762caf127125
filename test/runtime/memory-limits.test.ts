/**
 * Memory limit (`memoryMb`): bombs made of arrays, strings, typed arrays and ArrayBuffers end with
 * MEMORY_LIMIT and the sandbox keeps serving. Run in worker mode only: isolated-vm's memoryLimit is
 * a guideline and a bomb that turns catastrophic would take down the process it runs in — in
 * in-process mode that would be this test runner (see crash.test.ts for the catastrophic case).
 * cpuMs is generous so that the memory wall, not the CPU limit, is what stops each bomb.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox } from '../../runtime/index.js';
import { TOLERANCE_MS, expectCode, expectHealthy, expectOk, timed } from '../helpers/sandbox.js';

const limits = { memoryMb: 32, cpuMs: 4000, wallMs: 20_000 };

describe('memory limit (worker)', () => {
  const sb = createSandbox({ isolation: 'worker', workers: 1 });
  afterAll(() => sb.close());

  it('warms up', async () => {
    await expectHealthy(sb);
  });

  it.each([
    ['array of objects growing forever', 'export default function main() { const a = []; for (;;) a.push({ i: a.length }); }'],
    ['array of arrays', 'export default function main() { const k = []; for (let i = 0; ; i++) k.push(new Array(1e5).fill(i)); }'],
    ['strings: 1 MB distinct strings kept alive', 'export default function main() { const k = []; for (let i = 0; ; i++) k.push("x".repeat(1e6) + i); }'],
    ['strings: flattened by split/join', 'export default function main() { const k = []; for (let i = 0; ; i++) k.push(("y".repeat(1e5) + i).split("").join("")); }'],
    ['typed arrays: 1 MiB Uint8Arrays kept alive', 'export default function main() { const k = []; for (;;) k.push(new Uint8Array(1 << 20)); }'],
    ['ArrayBuffers: 16 MiB each kept alive', 'export default function main() { const k = []; for (;;) k.push(new ArrayBuffer(16 << 20)); }'],
    ['memory bomb after an await', 'export default async function main() { await null; const k = []; for (;;) k.push(new Float64Array(1 << 17)); }'],
  ])('%s → MEMORY_LIMIT', async (_name, source) => {
    const { out, ms } = await timed(sb, { source, limits });
    expectCode(out, 'MEMORY_LIMIT');
    expect(ms).toBeLessThan(limits.cpuMs + TOLERANCE_MS);
    await expectHealthy(sb);
  });

  it('one ArrayBuffer larger than the limit is refused inside the isolate (a catchable RangeError → AGENT_ERROR)', async () => {
    const { out } = await timed(sb, { source: 'export default function main() { return new ArrayBuffer(1 << 30).byteLength; }', limits });
    const error = expectCode(out, 'AGENT_ERROR');
    expect(error.message).toMatch(/Array buffer allocation failed/);
    await expectHealthy(sb);
  });

  it('a program using memory under its limit completes', async () => {
    const source = 'export default function main() { const k = []; for (let i = 0; i < 8; i++) k.push(new Uint8Array(1 << 20)); return k.length; }';
    expectOk((await timed(sb, { source, limits })).out, 8);
  });

  it('WebAssembly (its memory is not counted by memoryMb) is absent by default', async () => {
    const source = 'export default function main() { return typeof WebAssembly; }';
    expectOk((await timed(sb, { source, limits })).out, 'undefined');
  });
});
