/**
 * `contained demo` (what `npm start` runs), through the real launcher: it sets up its data folder,
 * builds the example images there, starts the host and stops on Ctrl-C. It writes nothing into the
 * package's own folder — for an installed package that is node_modules/ai-contained/, which may be
 * read-only and is shared by every project on the machine.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES_DIR, exampleNames } from '../../sandbox-images/build-examples.js';

const BIN = path.resolve('bin/contained.js');
let dir: string;
let child: ChildProcess | undefined;

/** Every file and folder under `root` with its size and mtime, to tell whether anything was written. */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (folder: string): void => {
    for (const name of readdirSync(folder)) {
      const full = path.join(folder, name);
      const s = statSync(full);
      out[path.relative(root, full)] = s.isDirectory() ? 'dir' : `${s.size} ${s.mtimeMs}`;
      if (s.isDirectory()) walk(full);
    }
  };
  walk(root);
  return out;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'contained-demo-'));
});
afterAll(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

describe('contained demo', () => {
  it('builds the example images into its data folder and leaves the package folder untouched', async () => {
    const before = snapshot(EXAMPLES_DIR);
    const data = path.join(dir, 'data');
    const port = await freePort();
    const proc = spawn(process.execPath, [BIN, 'demo', '--data-dir', data, '--port', String(port)], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    let stdout = '';
    let stderr = '';
    proc.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    // Up and waiting for operators, or gone early with an error.
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (stdout.includes('Press Ctrl-C to stop.')) {
          clearInterval(timer);
          resolve();
        } else if (proc.exitCode !== null) {
          clearInterval(timer);
          reject(new Error(`demo exited ${proc.exitCode}\n${stdout}\n${stderr}`));
        }
      }, 50);
    });
    proc.kill('SIGINT');
    expect(await exited, stderr).toBe(0);
    expect(stdout).toContain('Stopped.');

    const names = await exampleNames();
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) expect(existsSync(path.join(data, 'images', `${name}.tgz`)), name).toBe(true);
    expect(stdout).toContain(`built the example images     into ${path.join('data', 'images')}/:`);
    expect(snapshot(EXAMPLES_DIR)).toEqual(before);
  }, 120_000);
});
