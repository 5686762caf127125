/**
 * Wall-clock limit (`wallMs`): time in host callbacks counts (isolated-vm's `timeout` does not
 * count it), a run waiting forever is stopped, and time paused with `sandbox.pauseWallClock`
 * (a human deciding) does not count.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox } from '../../runtime/index.js';
import { createTestNotes } from '../helpers/test-capability.js';
import { MODES, TOLERANCE_MS, expectCode, expectHealthy, expectOk, timed, until } from '../helpers/sandbox.js';

describe.each(MODES)('wall-clock limit (%s)', (isolation) => {
  const sb = createSandbox({ isolation });
  afterAll(() => sb.close());

  it('warms up', async () => {
    await expectHealthy(sb);
  });

  it('a capability call that holds past wallMs → WALL_LIMIT, and the call is aborted', async () => {
    const notes = createTestNotes();
    const source = 'export default async function main(input, caps) { await caps.notes.sleep(10000); return "late"; }';
    const { out, ms } = await timed(sb, { source, capabilities: [notes.instance], limits: { wallMs: 400, cpuMs: 1000 } });
    expectCode(out, 'WALL_LIMIT');
    expect(ms).toBeLessThan(400 + TOLERANCE_MS);
    // The run's abort signal reached the capability: the host does not keep working for a dead run.
    await until(() => notes.aborted.length === 1, 2000);
    await expectHealthy(sb);
  });

  it('200 calls to a 20 ms host method under wallMs 1000 → WALL_LIMIT (host callback time counts)', async () => {
    const notes = createTestNotes();
    const source = 'export default async function main(input, caps) { for (let i = 0; i < 200; i++) await caps.notes.sleep(20); return "done"; }';
    const { out, ms } = await timed(sb, { source, capabilities: [notes.instance], limits: { wallMs: 1000, cpuMs: 1000 } });
    expectCode(out, 'WALL_LIMIT');
    expect(ms).toBeLessThan(1000 + TOLERANCE_MS);
    expect(out.usage.calls).toBeLessThan(200);
    expect(out.usage.cpuMs).toBeLessThan(1000);
    await expectHealthy(sb);
  });

  it('a run awaiting a promise that never settles → WALL_LIMIT', async () => {
    const source = 'export default async function main() { await new Promise(() => {}); }';
    const { out, ms } = await timed(sb, { source, limits: { wallMs: 300 } });
    expectCode(out, 'WALL_LIMIT');
    expect(ms).toBeLessThan(300 + TOLERANCE_MS);
    await expectHealthy(sb);
  });

  it('time paused with pauseWallClock(runId) does not count against wallMs', async () => {
    const notes = createTestNotes();
    const runId = `pause-${isolation}`;
    const source = 'export default async function main(input, caps) { await caps.notes.sleep(1200); return "done"; }';
    const started = performance.now();
    const pending = sb.run({ runId, source, capabilities: [notes.instance], limits: { wallMs: 700, cpuMs: 1000 } });
    await until(() => notes.received.length === 1);
    // Pause for most of the 1200 ms call (as a gate waiting for a human would), then resume.
    const resume = sb.pauseWallClock(runId);
    await new Promise((r) => setTimeout(r, 1000));
    resume();
    const out = await pending;
    expectOk(out, 'done');
    expect(performance.now() - started).toBeGreaterThan(1200);
    expect(out.usage.wallMs).toBeLessThan(700);
  });

  it('the same run without a pause → WALL_LIMIT (control for the test above)', async () => {
    const notes = createTestNotes();
    const source = 'export default async function main(input, caps) { await caps.notes.sleep(1200); return "done"; }';
    const { out } = await timed(sb, { source, capabilities: [notes.instance], limits: { wallMs: 700, cpuMs: 1000 } });
    expectCode(out, 'WALL_LIMIT');
  });
});

describe('wall-clock limit with nothing else on the event loop', () => {
  // Regression: the engine's watchdog interval was unref'd, so an in-process host whose only work
  // was `await sandbox.run(...)` of an agent awaiting a never-settling promise exited (code 13,
  // "unsettled top-level await") instead of receiving WALL_LIMIT. Needs a fresh process: vitest's
  // own timers keep this one alive.
  it('an in-process host that only awaits run() still gets WALL_LIMIT', async () => {
    const runtime = fileURLToPath(new URL('../../runtime/index.ts', import.meta.url));
    const script = [
      `import { createSandbox } from ${JSON.stringify(runtime)};`,
      `const sb = createSandbox({ isolation: 'in-process' });`,
      `const out = await sb.run({ source: 'export default async function main() { await new Promise(() => {}); }', limits: { wallMs: 300 } });`,
      `console.log(JSON.stringify(out.status === 'error' ? out.error.code : out.status));`,
      `await sb.close();`,
    ].join('\n');
    const result = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      execFile(
        process.execPath,
        ['--no-node-snapshot', '--import', import.meta.resolve('tsx'), '--input-type=module', '-e', script],
        { timeout: 20_000 },
        (error, stdout) => resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout }),
      );
    });
    expect(result.stdout.trim()).toBe('"WALL_LIMIT"');
    expect(result.code).toBe(0);
  });
});
