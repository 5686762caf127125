/**
 * `contained run` through the real launcher (bin/contained.js → node --no-node-snapshot → CLI →
 * worker-process sandbox): outcomes, exit codes, and that no agent program can make the command
 * die, hang, or exit with another status.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BIN = path.resolve('bin/contained.js');
let dir: string;

function contained(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function agent(name: string, source: string): Promise<string> {
  const file = path.join(dir, name);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, source);
  return file;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'contained-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('contained run', () => {
  it('runs a multi-module program with JSON input and prints the outcome (exit 0)', async () => {
    await agent('lib/math.js', 'export const double = (n) => n * 2;');
    const entry = await agent('main.js', "import { double } from './lib/math.js';\nexport default async function main(input) { console.log('got', input.n); return { result: double(input.n) }; }");
    const res = await contained(['run', entry, '--input', '{"n":21}', '--json']);
    expect(res.code).toBe(0);
    const outcome = JSON.parse(res.stdout) as { status: string; value: unknown; logs: Array<{ message: string }> };
    expect(outcome.status).toBe('ok');
    expect(outcome.value).toEqual({ result: 42 });
    expect(outcome.logs[0]?.message).toBe('got 21');
  });

  it('reads --input from @file and prints a human-readable outcome by default', async () => {
    const entry = await agent('echo.js', 'export default async function main(input) { return input; }');
    const inputFile = path.join(dir, 'input.json');
    await writeFile(inputFile, '{"hello":"world"}');
    const res = await contained(['run', entry, '--input', `@${inputFile}`]);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^ok \(cpu/);
    expect(res.stdout).toContain('"hello": "world"');
  });

  it('exits 3 when a limit is exceeded (busy loop after await)', async () => {
    const entry = await agent('loop.js', 'export default async function main() { await null; for (;;) {} }');
    const res = await contained(['run', entry, '--cpu-ms', '300', '--json']);
    expect(res.code).toBe(3);
    expect(JSON.parse(res.stdout)).toMatchObject({ status: 'error', error: { code: 'CPU_LIMIT' } });
  });

  it('exits 3 on the wall-clock limit and on the memory limit', async () => {
    const wall = await agent('wall.js', 'export default async function main() { for (;;) { await null; } }');
    const res = await contained(['run', wall, '--wall-ms', '300', '--cpu-ms', '10000', '--json']);
    expect(res.code).toBe(3);
    expect(['WALL_LIMIT', 'CPU_LIMIT']).toContain((JSON.parse(res.stdout) as { error: { code: string } }).error.code);
    const mem = await agent('mem.js', 'export default async function main() { const a = []; for (;;) a.push("x".repeat(1024) + a.length); }');
    const res2 = await contained(['run', mem, '--memory-mb', '16', '--json']);
    expect(res2.code).toBe(3);
    expect(JSON.parse(res2.stdout)).toMatchObject({ error: { code: 'MEMORY_LIMIT' } });
  });

  it('exits 1 for an agent error and for an invalid program', async () => {
    const thrower = await agent('throw.js', "export default async function main() { throw new Error('nope'); }");
    const res = await contained(['run', thrower, '--json']);
    expect(res.code).toBe(1);
    expect(JSON.parse(res.stdout)).toMatchObject({ error: { code: 'AGENT_ERROR', message: 'nope' } });
    const bare = await agent('bare.js', "import fs from 'node:fs';\nexport default async function main() { return 1; }");
    const res2 = await contained(['run', bare, '--json']);
    expect(res2.code).toBe(1);
    expect(JSON.parse(res2.stdout)).toMatchObject({ error: { code: 'INVALID_PROGRAM' } });
    expect(res2.stdout).toContain('only relative imports');
  });

  it('exits 2 on usage errors with a one-line typed message and no stack', async () => {
    const entry = await agent('ok.js', 'export default () => 1;');
    for (const args of [['run'], ['run', entry, '--cpu-ms', 'abc'], ['run', entry, '--input', '{bad'], ['run', entry, '--frob'], ['frob']]) {
      const res = await contained(args);
      expect(res.code, args.join(' ')).toBe(2);
      expect(res.stderr).toMatch(/^USAGE: /);
      expect(res.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
