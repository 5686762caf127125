/**
 * The pool believes nothing a worker process sends beyond the IPC protocol's exact shapes. Should an
 * isolate escape ever take a worker over, the worker could send anything on its IPC channel; a
 * message the host cannot read once threw inside the pool's message handler and took the whole host
 * down. Now a malformed message gets its sender killed (its runs end SANDBOX_CRASHED, typed) and
 * logged; the host and the pool carry on. A well-formed message still only concerns the sender's
 * own runs. The "worker" here is a real child process on the real IPC channel (./fixtures/
 * rogue-worker.mjs), speaking as a compromised worker would.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { EngineRunSpec } from '../../runtime/engine.js';
import { DEFAULT_LIMITS } from '../../runtime/limits.js';
import { WorkerPool } from '../../runtime/worker-pool.js';
import { captureLogger, expectCode, expectOk } from '../helpers/sandbox.js';

const ROGUE = fileURLToPath(new URL('./fixtures/rogue-worker.mjs', import.meta.url));

const spec = (runId: string): EngineRunSpec => ({
  runId,
  program: { files: { 'main.js': 'export default () => 1;' }, entry: 'main.js' },
  input: null,
  limits: { ...DEFAULT_LIMITS },
  capabilities: [{ name: 'notes', methods: ['read'] }],
});

describe('messages from a compromised worker', () => {
  const { logger, lines } = captureLogger();
  const calls: unknown[] = [];
  const pool = new WorkerPool({ workers: 1, maxRunsPerWorker: 4, heartbeatTimeoutMs: 5000, warmIsolates: 0, warmMemoryMb: 64, logger, workerModule: { file: ROGUE, execArgv: [] } });
  afterAll(() => pool.close());
  const hooks = { call: async (call: unknown) => { calls.push(call); return { ok: true as const, value: null }; } };

  it.each([
    'call-without-call', 'call-null', 'call-seq-string', 'log-line-null', 'done-outcome-null', 'done-status-forged', 'done-logs-not-array',
    'unknown-type', 'not-an-object', 'catastrophe-message-object',
  ])('%s: the sender is killed, its run ends SANDBOX_CRASHED, nothing is dispatched, the host carries on', async (variant) => {
    const pidBefore = pool.stats().pids[0];
    const out = await pool.run(spec(`rogue:${variant}`), hooks);
    expectCode(out, 'SANDBOX_CRASHED');
    expect(calls).toEqual([]);
    expect(lines.some((l) => /malformed message from a sandbox worker/.test(String(l.msg)))).toBe(true);
    expect(pool.stats().workers).toBe(1);
    expect(pool.stats().pids[0]).not.toBe(pidBefore);
  });

  it('a message whose run id is not a string is malformed too', async () => {
    const out = await pool.run(spec('rogue:run-id-object'), hooks);
    expectCode(out, 'SANDBOX_CRASHED');
  });

  it('a well-formed outcome is the outcome of the run that worker hosts (what an agent could return anyway)', async () => {
    expectOk(await pool.run(spec('rogue:well-formed'), hooks), 'from a rogue worker');
  });
});
