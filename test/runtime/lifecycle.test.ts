/**
 * The sandbox's own lifecycle: `run` never throws (bad requests are typed outcomes), runs can be
 * cancelled by id or by AbortSignal, `close` ends live runs and leaves no worker process behind.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { createSandbox, type LimitsInput } from '../../runtime/index.js';
import { createTestNotes } from '../helpers/test-capability.js';
import { MODES, TOLERANCE_MS, captureLogger, expectCode, expectHealthy, until } from '../helpers/sandbox.js';

function workerPids(): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes('worker-main'))
      .map((l) => Number.parseInt(l.trim(), 10));
  } catch {
    return [];
  }
}

const waiting = 'export default async function main(input, caps) { await caps.notes.sleep(10000); return "late"; }';

describe.each(MODES)('sandbox lifecycle (%s)', (isolation) => {
  it('bad requests are typed outcomes, never exceptions', async () => {
    const sb = createSandbox({ isolation });
    try {
      expectCode(await sb.run({}), 'INVALID_PROGRAM');
      expectCode(await sb.run({ source: 'export default () => 1', limits: { cpuMs: -1 } }), 'INVALID_ARGUMENT');
      expectCode(await sb.run({ source: 'export default () => 1', limits: { memoryMb: 1 } }), 'INVALID_ARGUMENT');
      expectCode(await sb.run({ source: 'export default () => 1', limits: { nope: 1 } as unknown as LimitsInput }), 'INVALID_ARGUMENT');
      expectCode(await sb.run({ source: 'export default () => 1', input: { n: 1n } }), 'INVALID_ARGUMENT');
      expectCode(await sb.run({ program: { files: { '../x.js': 'export default () => 1' }, entry: '../x.js' } }), 'INVALID_PROGRAM');
      expectCode(await sb.run({ program: { files: { 'main.js': 'export default () => 1' }, entry: 'other.js' } }), 'INVALID_PROGRAM');
      const notes = createTestNotes();
      expectCode(await sb.run({ source: 'export default () => 1', capabilities: [notes.instance, notes.instance] }), 'INVALID_ARGUMENT');
      await expectHealthy(sb);
    } finally {
      await sb.close();
    }
  });

  it('cancel(runId) ends a live run with CANCELLED and aborts its capability call', async () => {
    const sb = createSandbox({ isolation });
    try {
      const notes = createTestNotes();
      const t0 = performance.now();
      const pending = sb.run({ runId: 'to-cancel', source: waiting, capabilities: [notes.instance] });
      await until(() => notes.received.length === 1);
      sb.cancel('to-cancel');
      expectCode(await pending, 'CANCELLED');
      expect(performance.now() - t0).toBeLessThan(TOLERANCE_MS + 2000);
      await until(() => notes.aborted.length === 1);
      await expectHealthy(sb);
    } finally {
      await sb.close();
    }
  });

  it('an AbortSignal ends a live run with CANCELLED', async () => {
    const sb = createSandbox({ isolation });
    try {
      const notes = createTestNotes();
      const controller = new AbortController();
      const pending = sb.run({ source: waiting, capabilities: [notes.instance], signal: controller.signal });
      await until(() => notes.received.length === 1);
      controller.abort();
      expectCode(await pending, 'CANCELLED');
    } finally {
      await sb.close();
    }
  });

  it('close() ends live runs, refuses new ones, and leaves no worker process behind', async () => {
    const before = workerPids();
    const sb = createSandbox({ isolation, workers: 2 });
    const notes = createTestNotes();
    const pending = sb.run({ source: waiting, capabilities: [notes.instance] });
    await until(() => notes.received.length === 1);
    if (isolation === 'worker') expect(workerPids().filter((p) => !before.includes(p))).toHaveLength(2);
    const t0 = performance.now();
    await sb.close();
    expect(performance.now() - t0).toBeLessThan(5000);
    const out = await pending;
    expectCode(out, 'CANCELLED');
    expectCode(await sb.run({ source: 'export default () => 1' }), 'CANCELLED');
    await until(() => workerPids().filter((p) => !before.includes(p)).length === 0, 5000);
  });
});

/**
 * A worker exits at once when closed after quiet runs (no fixed 100 ms sleep on every `contained
 * run`), but exiting right after an isolate was disposed while it ran code has segfaulted in
 * isolated-vm: closing after killed runs (CPU limit, cancel) must still end every worker cleanly.
 * A crash would show as the worker's own stderr (V8's report) in the log, or as a signal.
 */
describe('closing a worker pool', () => {
  const spinning = 'export default function main() { for (;;) {} }';

  async function closeAfter(requests: Array<Parameters<ReturnType<typeof createSandbox>['run']>[0]>, expected: string[]): Promise<Array<Record<string, unknown>>> {
    const { logger, lines } = captureLogger();
    const sb = createSandbox({ workers: 1, logger });
    const outcomes = await Promise.all(requests.map((r) => sb.run(r)));
    expect(outcomes.map((o) => (o.status === 'ok' ? 'ok' : o.error.code))).toEqual(expected);
    await sb.close();
    // The worker's stdio may close just after its exit event.
    await new Promise((r) => setTimeout(r, 150));
    return lines;
  }

  it('after killed runs, every worker still exits cleanly', async () => {
    for (let i = 0; i < 10; i++) {
      const lines = await closeAfter([{ source: spinning, limits: { cpuMs: 30 } }], ['CPU_LIMIT']);
      expect(lines.filter((l) => Number(l.level) >= 40)).toEqual([]);
    }
  });

  it('right after quiet runs, every worker exits cleanly', async () => {
    for (let i = 0; i < 10; i++) {
      const lines = await closeAfter([{ source: 'export default () => 1' }, { source: 'export default () => { throw new Error("no") }' }], ['ok', 'AGENT_ERROR']);
      expect(lines.filter((l) => Number(l.level) >= 40)).toEqual([]);
    }
  });
});
