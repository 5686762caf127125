/**
 * How `contained` starts (bin/contained.js, host/cli/run-early.ts, runtime/worker-spawn.ts):
 * `contained run` in worker mode runs in the launcher's own process, with Node's startup snapshot
 * (it creates no isolate: they live in the worker, which always runs with --no-node-snapshot);
 * every command that may create isolates in its own process is re-started without the snapshot.
 * The run's worker is forked before the CLI loads the run command, and the pool adopts that very
 * process: one fork per `contained run`. A worker nobody adopts (a usage error) never holds the
 * CLI open. Each process is watched through bench/profile/timeline-preload.mjs (NODE_OPTIONS),
 * which records its forks and spawns.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { RUN_WORKER_SETTINGS } from '../../host/cli/run-early.js';
import { DEFAULT_LIMITS } from '../../runtime/limits.js';
import { SANDBOX_DEFAULTS } from '../../runtime/sandbox-config.js';

const BIN = path.resolve('bin/contained.js');
const PRELOAD = pathToFileURL(path.resolve('bench/profile/timeline-preload.mjs')).href;

interface ProcessRecord {
  argv: string[];
  execArgv?: string[];
  events: Array<[string, number]>;
}

function contained(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string; processes: ProcessRecord[]; ms: number }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-launch-'));
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd, timeout: 60_000, env: { ...process.env, NODE_OPTIONS: `--import ${PRELOAD}?dir=${encodeURIComponent(dir)}` } },
      (error, stdout, stderr) => {
        const ms = performance.now() - t0;
        const processes = readdirSync(dir).flatMap((f) =>
          readFileSync(path.join(dir, f), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as ProcessRecord),
        );
        resolve({ code: error ? Number((error as { code?: unknown }).code ?? 1) : 0, stdout, stderr, processes, ms });
      },
    );
  });
}

function events(p: ProcessRecord | undefined, name: string): number {
  return p?.events.filter(([n]) => n === name).length ?? 0;
}

describe('contained: how the CLI starts', () => {
  const work = mkdtempSync(path.join(os.tmpdir(), 'contained-launch-work-'));
  writeFileSync(path.join(work, 'hello.js'), 'export default function main(input) { return { hello: input }; }\n');

  it("run's early worker has the settings run's sandbox asks for (else the pool would start a second one)", () => {
    expect(RUN_WORKER_SETTINGS).toEqual({ warmIsolates: SANDBOX_DEFAULTS.warmIsolates, warmMemoryMb: DEFAULT_LIMITS.memoryMb });
  });

  it('run (worker mode): one process for the CLI with the snapshot, one worker forked once and adopted', async () => {
    const out = await contained(['run', 'hello.js', '--input', '"w"', '--json'], work);
    expect(out.code, out.stderr).toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject({ status: 'ok', value: { hello: 'w' } });
    const launcher = out.processes.find((p) => p.argv[0] === BIN);
    const workers = out.processes.filter((p) => p.argv.some((a) => /worker-main\.(ts|js)$/.test(a)));
    expect(out.processes).toHaveLength(2);
    expect(events(launcher, 'spawn child')).toBe(0);
    expect(events(launcher, 'fork worker')).toBe(1);
    expect(workers).toHaveLength(1);
    // The worker ran the program and was told to exit (it was adopted, not left to die with us).
    expect(events(workers[0], 'receives run')).toBe(1);
    expect(events(workers[0], 'receives exit')).toBe(1);
  });

  it('run --in-process: re-started without the snapshot (its isolate lives in the CLI process)', async () => {
    const out = await contained(['run', 'hello.js', '--input', '"p"', '--json', '--in-process'], work);
    expect(out.code, out.stderr).toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject({ status: 'ok', value: { hello: 'p' } });
    const cli = out.processes.find((p) => p.argv[0] !== BIN);
    expect(cli?.execArgv).toContain('--no-node-snapshot');
    expect(out.processes.filter((p) => p.argv.some((a) => /worker-main/.test(a)))).toHaveLength(0);
  });

  it('a usage error exits at once: the early worker does not hold the CLI open', async () => {
    const out = await contained(['run', 'missing.js'], work);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(/^USAGE: no such file: missing\.js/);
    expect(out.ms).toBeLessThan(15_000);
  });
});
