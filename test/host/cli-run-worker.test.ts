/**
 * `contained run` without grants or limits runs through host/cli/run-worker.ts, which loads neither
 * zod nor the runtime's entry module. Its written-out defaults must be the runtime's, and the run
 * spec it sends the one createSandbox sends for the same run; and the process must really load no
 * zod (a module-resolution hook records every module of one `contained run hello.js`).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RUN_DEFAULT_LIMITS, RUN_POOL_OPTIONS, runSpec } from '../../host/cli/run-worker.js';
import type { EngineRunSpec } from '../../runtime/engine.js';
import { createSandbox } from '../../runtime/index.js';
import { DEFAULT_LIMITS } from '../../runtime/limits.js';
import { programFromSource } from '../../runtime/program.js';
import { SANDBOX_DEFAULTS } from '../../runtime/sandbox-config.js';
import { POOL_DEFAULTS, WorkerPool } from '../../runtime/worker-pool.js';

const BIN = path.resolve('bin/contained.js');

describe('contained run without zod (run-worker.ts)', () => {
  afterEach(() => vi.restoreAllMocks());

  it('its written-out defaults are the runtime’s', () => {
    expect(RUN_DEFAULT_LIMITS).toEqual(DEFAULT_LIMITS);
    expect(RUN_POOL_OPTIONS).toEqual({
      workers: 1,
      maxRunsPerWorker: SANDBOX_DEFAULTS.maxRunsPerWorker,
      heartbeatTimeoutMs: SANDBOX_DEFAULTS.heartbeatTimeoutMs,
      warmIsolates: SANDBOX_DEFAULTS.warmIsolates,
      warmMemoryMb: DEFAULT_LIMITS.memoryMb,
    });
    expect(POOL_DEFAULTS).toEqual({ maxWorkerOutputBytes: SANDBOX_DEFAULTS.maxWorkerOutputBytes, workerStartTimeoutMs: SANDBOX_DEFAULTS.workerStartTimeoutMs });
  });

  it('sends the run spec createSandbox sends for a run with no capabilities and no limits', async () => {
    const sent: EngineRunSpec[] = [];
    vi.spyOn(WorkerPool.prototype, 'run').mockImplementation(async (spec) => {
      sent.push(spec);
      return { status: 'ok', value: null, logs: [], usage: { cpuMs: 0, wallMs: 0, heapBytes: 0, calls: 0 } };
    });
    vi.spyOn(WorkerPool.prototype, 'close').mockResolvedValue(undefined);
    const program = { entry: 'main.js', files: { 'main.js': 'import x from "./x.js"; export default () => x;', 'x.js': 'export default 1;' } };
    for (const input of [null, undefined, 1, 'text', { a: [1, { b: null }], c: undefined }]) {
      const sandbox = createSandbox({ isolation: 'worker', workers: 1 });
      await sandbox.run({ program, input, runId: 'r1' });
      await sandbox.close();
      expect(runSpec('r1', program, input)).toEqual(sent.at(-1));
    }
    const inline = programFromSource('export default () => 2;');
    const sandbox = createSandbox({ isolation: 'worker', workers: 1 });
    await sandbox.run({ program: inline, runId: 'r2' });
    await sandbox.close();
    expect(runSpec('r2', inline, null)).toEqual(sent.at(-1));
  });

  it('refuses what createSandbox refuses, with the same errors', async () => {
    vi.spyOn(WorkerPool.prototype, 'close').mockResolvedValue(undefined);
    const bad = [{ entry: 'main.js', files: {} }, { entry: '../x.js', files: { '../x.js': '' } }] as never[];
    for (const program of bad) {
      const sandbox = createSandbox({ isolation: 'worker', workers: 1 });
      const outcome = await sandbox.run({ program });
      await sandbox.close();
      expect(outcome.status).toBe('error');
      let thrown: unknown;
      try {
        runSpec('r', program, null);
      } catch (error) {
        thrown = error;
      }
      expect(outcome.status === 'error' && outcome.error).toMatchObject({ code: (thrown as { code: string }).code, message: (thrown as Error).message });
    }
  });

  it('`contained run hello.js` loads no zod and not the runtime’s entry module; with a limit flag it does, and both print the same', async () => {
    const work = mkdtempSync(path.join(os.tmpdir(), 'contained-run-worker-'));
    writeFileSync(path.join(work, 'hello.js'), 'export default function main(input) { return { hello: input }; }\n');
    writeFileSync(
      path.join(work, 'hook.mjs'),
      `import module from 'node:module';\nimport { appendFileSync } from 'node:fs';\nmodule.registerHooks({ resolve(s, c, next) { const r = next(s, c); if (process.env.MODULE_LOG) appendFileSync(process.env.MODULE_LOG, r.url + '\\n'); return r; } });\n`,
    );
    const run = (args: string[], log: string): Promise<{ code: number; stdout: string; stderr: string; modules: string[] }> =>
      new Promise((resolve) => {
        const env = { ...process.env, CONTAINED_RESIDENT: '0', MODULE_LOG: path.join(work, log), NODE_OPTIONS: `--import ${pathToFileURL(path.join(work, 'hook.mjs')).href}` };
        execFile(process.execPath, [BIN, 'run', 'hello.js', ...args], { cwd: work, env, timeout: 60_000 }, (error, stdout, stderr) => {
          let modules: string[] = [];
          try {
            modules = readFileSync(path.join(work, log), 'utf8').trim().split('\n');
          } catch {
            modules = [];
          }
          resolve({ code: error ? Number((error as { code?: unknown }).code ?? 1) : 0, stdout, stderr, modules });
        });
      });
    // A worker process gets no MODULE_LOG (its environment is allowlisted); were it logged, it would not count.
    const cli = (modules: string[]): string[] => modules.filter((m) => !/worker-main|engine|isolated-vm|prepared-isolate|link\.|worker-session/.test(m));
    const plain = await run(['--input', '"w"', '--json'], 'plain.log');
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.modules.some((m) => m.includes('/host/cli/run-worker.'))).toBe(true);
    expect(cli(plain.modules).filter((m) => /\/node_modules\/zod\/|\/runtime\/(index|sandbox|limits|sandbox-config)\./.test(m))).toEqual([]);
    const limited = await run(['--input', '"w"', '--json', '--cpu-ms', '5000'], 'limited.log');
    expect(limited.code, limited.stderr).toBe(0);
    expect(limited.modules.some((m) => m.includes('/node_modules/zod/'))).toBe(true);
    const strip = (s: string): unknown => {
      const o = JSON.parse(s) as { usage: unknown };
      return { ...o, usage: Object.keys(o.usage as object) };
    };
    expect(strip(plain.stdout)).toEqual(strip(limited.stdout));
  });
});
