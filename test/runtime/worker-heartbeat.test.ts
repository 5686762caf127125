/**
 * Worker heartbeats after a host stall (hardening finding 2, the pool part). When the host's event
 * loop is blocked for longer than the heartbeat timeout, the workers' replies wait unread in their
 * pipes; a heartbeat check that ran before reading them declared every worker dead and killed them
 * all, taking every in-flight run down with SANDBOX_CRASHED. A stalled host must never kill healthy
 * workers: its own lag does not count against them, and it reads what they sent before judging.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox } from '../../runtime/index.js';
import { DEFAULT_LIMITS } from '../../runtime/limits.js';
import { WorkerPool } from '../../runtime/worker-pool.js';
import { createTestNotes } from '../helpers/test-capability.js';
import { captureLogger, expectHealthy, expectOk, until, workerPids } from '../helpers/sandbox.js';

const HEARTBEAT_TIMEOUT_MS = 1000;

/**
 * Block this thread (the host's event loop) for `ms`, as a slow synchronous host task would. It runs
 * in a setImmediate callback, like work done in an I/O or immediate callback: the event loop's next
 * phase after it is the timers phase (the heartbeat check), before the poll phase that reads the
 * workers' pipes.
 */
function stallHost(ms: number): Promise<void> {
  return new Promise((resolve) =>
    setImmediate(() => {
      const end = performance.now() + ms;
      while (performance.now() < end) {
        // busy
      }
      resolve();
    }),
  );
}

describe('worker heartbeat after a host stall', () => {
  const { logger, lines } = captureLogger();
  const sb = createSandbox({ workers: 2, heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, logger });
  afterAll(() => sb.close());

  it('a host blocked 4 s (heartbeat timeout 1 s) with runs in flight: no run dies, no worker is replaced', async () => {
    await Promise.all([1, 2].map(() => expectHealthy(sb)));
    await until(() => workerPids().length === 2);
    const before = workerPids().sort();
    const notes = createTestNotes();
    const limits = { cpuMs: 10_000, wallMs: 30_000 };
    // Runs waiting on the host (a capability call) and runs busy inside their isolates.
    const waiting = [1, 2].map((n) =>
      sb.run({ source: 'export default async function main(input, caps) { await caps.notes.sleep(200); return input; }', input: n, capabilities: [notes.instance], limits }),
    );
    const busy = [3, 4].map((n) =>
      sb.run({ source: 'export default async function main(input) { const end = Date.now() + 1500; while (Date.now() < end) {} return input; }', input: n, limits }),
    );
    await until(() => notes.received.length === 2);
    await stallHost(4 * HEARTBEAT_TIMEOUT_MS);
    const outs = await Promise.all([...waiting, ...busy]);
    outs.forEach((out, i) => expectOk(out, i + 1));
    // Give a wrong judgement time to show: several heartbeat periods after the stall.
    await new Promise((r) => setTimeout(r, 3 * HEARTBEAT_TIMEOUT_MS));
    expect(workerPids().sort()).toEqual(before);
    expect(lines.filter((l) => /stopped answering|worker died/.test(String(l.msg)))).toEqual([]);
    expect(lines.some((l) => /event loop was blocked/.test(String(l.msg)) && Number(l.hostLagMs) > 3 * HEARTBEAT_TIMEOUT_MS)).toBe(true);
    await Promise.all([1, 2].map(() => expectHealthy(sb)));
  });

  it('a host blocked 4 s while its workers had nothing to say (runs waiting on the host): no run dies, no worker is replaced', async () => {
    await until(() => workerPids().length === 2);
    const before = workerPids().sort();
    const notes = createTestNotes();
    const runs = [1, 2, 3, 4].map((n) =>
      sb.run({ source: 'export default async function main(input, caps) { await caps.notes.sleep(300); return input; }', input: n, capabilities: [notes.instance], limits: { wallMs: 30_000 } }),
    );
    await until(() => notes.received.length === 4);
    await stallHost(4 * HEARTBEAT_TIMEOUT_MS);
    const outs = await Promise.all(runs);
    outs.forEach((out, i) => expectOk(out, i + 1));
    await new Promise((r) => setTimeout(r, 3 * HEARTBEAT_TIMEOUT_MS));
    expect(workerPids().sort()).toEqual(before);
    expect(lines.filter((l) => /stopped answering|worker died/.test(String(l.msg)))).toEqual([]);
  });

  it('a worker that really stops answering is still killed and replaced after a stall', async () => {
    await until(() => workerPids().length === 2);
    const before = workerPids();
    const victim = before[0] as number;
    await stallHost(2 * HEARTBEAT_TIMEOUT_MS);
    process.kill(victim, 'SIGSTOP');
    try {
      await until(() => !workerPids().includes(victim) && workerPids().length === 2, 10_000);
    } finally {
      try {
        process.kill(victim, 'SIGCONT');
      } catch {
        // already gone
      }
    }
    expect(lines.some((l) => /stopped answering/.test(String(l.msg)))).toBe(true);
    await Promise.all([1, 2].map(() => expectHealthy(sb)));
  });
});

describe('worker heartbeat while a worker starts', () => {
  // Observed on a loaded machine: a worker still compiling its modules cannot answer pings, and
  // with a 1 s heartbeat timeout it was killed before it ever said "ready" — with a run queued on it.
  const { logger, lines } = captureLogger();
  const pool = new WorkerPool({
    workers: 1, maxRunsPerWorker: 4, heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, warmIsolates: 0, warmMemoryMb: 64, logger,
    workerModule: { file: fileURLToPath(new URL('./fixtures/slow-start-worker.mjs', import.meta.url)), execArgv: [] },
  });
  afterAll(() => pool.close());

  it('a worker that takes 2.5 s to start (heartbeat timeout 1 s) is not killed, and the run queued on it completes', async () => {
    const pid = pool.stats().pids[0];
    const out = await pool.run(
      { runId: 'slow-start', program: { files: { 'main.js': '' }, entry: 'main.js' }, input: null, limits: { ...DEFAULT_LIMITS }, capabilities: [] },
      { call: async () => ({ ok: true, value: null }) },
    );
    expectOk(out, 'started');
    expect(pool.stats().pids).toEqual([pid]);
    expect(lines.filter((l) => /stopped answering|did not start/.test(String(l.msg)))).toEqual([]);
  });
});
