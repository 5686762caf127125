/**
 * A run that kills its worker process fails alone: the other runs on other workers finish OK, the
 * dead worker is replaced, and the pool serves new runs. Each case verifies the worker PID really
 * died (one of the four is gone, a new one took its place).
 *
 * Payloads, with the codes observed on this machine (isolated-vm 7.0.1, Node 24):
 * - `("x".repeat(2 ** 27) + "y").split("")` asks V8 for an array past its maximum length: a V8
 *   fatal error ("invalid size error", crbug.com/1201626) aborts the whole process (SIGTRAP), with
 *   no chance for the engine to report → SANDBOX_CRASHED.
 * - `Array.from({ length: 5e7 }, (_, i) => i)` under memoryMb 64: V8 runs out of heap in a way it
 *   cannot recover from ("Last few GCs … last resort; GC in old space requested"), so it calls
 *   isolated-vm's OOM handler, which calls `onCatastrophicError` and parks the isolate's thread
 *   forever (10 of 10 tries; under memoryMb 32 the engine's own heap check won the race in about 1
 *   of 5 tries, stopping the run with an ordinary MEMORY_LIMIT first). The engine reports
 *   MEMORY_LIMIT ("the sandbox failed catastrophically") and the worker then aborts itself on
 *   purpose → MEMORY_LIMIT (SANDBOX_CRASHED if the process died before the outcome got out; both
 *   are accepted). The message proves the catastrophic path really ran.
 *   (On isolated-vm 5.0.4 `new Array(1e8).fill(0)` did this; on 7.0.1 it no longer does: isolated-vm
 *   lends V8 up to 1 GiB past the limit near the heap limit, then disposes the isolate cleanly with
 *   MEMORY_LIMIT and the worker survives — the last case below keeps that behaviour tested.)
 * - A worker SIGKILLed by the test mid-run (an outside kill, e.g. the kernel OOM killer) →
 *   SANDBOX_CRASHED for its run alone.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox, type RunOutcome } from '../../runtime/index.js';
import { createTestNotes } from '../helpers/test-capability.js';
import { expectCode, expectHealthy, expectOk, until, workerPids } from '../helpers/sandbox.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleeper = 'export default async function main(input, caps) { await caps.notes.sleep(input.ms); return input.n; }';
const limits = { cpuMs: 3000, wallMs: 20_000, memoryMb: 32 };

describe('worker crash (workers: 4, maxRunsPerWorker: 1)', () => {
  const sb = createSandbox({ workers: 4, maxRunsPerWorker: 1 });
  afterAll(() => sb.close());

  it('starts four workers', async () => {
    await Promise.all([1, 2, 3, 4].map(() => expectHealthy(sb)));
    await until(() => workerPids().length === 4);
  });

  it('a V8 fatal error kills its worker; that run alone ends SANDBOX_CRASHED, the 3 others finish OK, the pool serves new runs', async () => {
    await until(() => workerPids().length === 4);
    const before = workerPids();
    const notes = createTestNotes();
    const others = [1, 2, 3].map((n) => sb.run({ source: sleeper, input: { n, ms: 1500 }, capabilities: [notes.instance], limits }));
    await until(() => notes.received.length === 3);
    const fatal = await sb.run({ source: 'export default function main() { return ("x".repeat(2 ** 27) + "y").split("").length; }', limits });
    expect(fatal.status === 'error' && fatal.error.code).toBe('SANDBOX_CRASHED');
    await until(() => before.filter(alive).length === 3);
    await until(() => workerPids().length === 4);
    expect(workerPids().filter((pid) => !before.includes(pid))).toHaveLength(1);
    const outs = await Promise.all(others);
    outs.forEach((out, i) => expectOk(out, i + 1));
    await Promise.all([1, 2, 3, 4].map(() => expectHealthy(sb)));
  });

  it('a catastrophic OOM kills its worker; that run fails alone, the 3 others finish OK, the pool serves new runs', async () => {
    await until(() => workerPids().length === 4);
    const before = workerPids();
    const notes = createTestNotes();
    const others = [1, 2, 3].map((n) => sb.run({ source: sleeper, input: { n, ms: 1500 }, capabilities: [notes.instance], limits }));
    await until(() => notes.received.length === 3);
    const bomb = await sb.run({ source: 'export default function main() { return Array.from({ length: 5e7 }, (_, i) => i).length; }', limits: { ...limits, memoryMb: 64 } });
    expect(bomb.status).toBe('error');
    const error = (bomb as Extract<RunOutcome, { status: 'error' }>).error;
    expect(['MEMORY_LIMIT', 'SANDBOX_CRASHED']).toContain(error.code);
    if (error.code === 'MEMORY_LIMIT' && !/failed catastrophically/.test(error.message)) {
      // Our own heap check stopped the run before V8 lost control of the isolate (on Node 26's V8 it
      // wins this race every time; on Node 24 about 1 in 10 at 64 MiB): contained without losing the
      // worker. The property still holds: that run failed alone, the others finish, the pool serves.
      expect(error.message).toMatch(/heap grew past 64 MiB/);
      const outs = await Promise.all(others);
      outs.forEach((out, i) => expectOk(out, i + 1));
      await Promise.all([1, 2, 3, 4].map(() => expectHealthy(sb)));
      return;
    }
    // The worker process really died: exactly one of the four is gone, and a replacement started.
    await until(() => before.filter(alive).length === 3);
    await until(() => workerPids().length === 4);
    expect(workerPids().filter((pid) => !before.includes(pid))).toHaveLength(1);
    const outs = await Promise.all(others);
    outs.forEach((out, i) => expectOk(out, i + 1));
    await Promise.all([1, 2, 3, 4].map(() => expectHealthy(sb)));
  });

  it('an OOM that isolated-vm contains (new Array(1e8).fill(0)): MEMORY_LIMIT for that run alone, no worker replaced', async () => {
    await until(() => workerPids().length === 4);
    const before = workerPids();
    const notes = createTestNotes();
    const others = [1, 2, 3].map((n) => sb.run({ source: sleeper, input: { n, ms: 1500 }, capabilities: [notes.instance], limits }));
    await until(() => notes.received.length === 3);
    const bomb = await sb.run({ source: 'export default function main() { return new Array(1e8).fill(0).length; }', limits });
    const error = expectCode(bomb, 'MEMORY_LIMIT');
    expect(error.message).not.toMatch(/catastrophic/);
    const outs = await Promise.all(others);
    outs.forEach((out, i) => expectOk(out, i + 1));
    await Promise.all([1, 2, 3, 4].map(() => expectHealthy(sb)));
    expect(workerPids().sort()).toEqual([...before].sort());
  });

  it('a worker SIGKILLed mid-run: its run alone ends SANDBOX_CRASHED, the others finish OK, the pool serves new runs', async () => {
    await until(() => workerPids().length === 4);
    const notes = createTestNotes();
    const runs = [0, 1, 2, 3].map((n) => sb.run({ source: sleeper, input: { n, ms: 1500 }, capabilities: [notes.instance], limits }));
    await until(() => notes.received.length === 4);
    const victim = workerPids()[0] as number;
    process.kill(victim, 'SIGKILL');
    const outs = await Promise.all(runs);
    const crashed = outs.filter((o) => o.status === 'error');
    expect(crashed).toHaveLength(1);
    expect((crashed[0] as Extract<RunOutcome, { status: 'error' }>).error.code).toBe('SANDBOX_CRASHED');
    expect(outs.filter((o) => o.status === 'ok')).toHaveLength(3);
    await until(() => workerPids().length === 4 && !workerPids().includes(victim));
    await Promise.all([1, 2, 3, 4].map(() => expectHealthy(sb)));
  });
});

describe('crash containment in in-process mode', () => {
  // Not enforceable, by design: in-process mode runs the isolate inside the host process. Observed
  // with a standalone host (not in this runner, which it would kill):
  // - the V8 fatal payload above aborts the host process (SIGTRAP);
  // - a catastrophic OOM (on isolated-vm 5.0.4 `new Array(1e8).fill(0)`; on 7.0.1
  //   `Array.from({ length: 5e7 }, (_, i) => i)`) returns MEMORY_LIMIT ("failed catastrophically") and
  //   the host keeps serving, but isolated-vm parks the isolate's thread forever, so the process can
  //   no longer exit: it hangs at the end until killed.
  // Only worker mode contains these; the README's security model says in-process is for embedding
  // trusted workloads and for measurement.
  it.todo('an agent payload that triggers a V8 fatal error does not take down an in-process host');
  it.todo('an in-process host can still exit normally after a catastrophic isolate OOM');
});
