/**
 * `contained host` on a port another process holds: a real host process, with its default worker
 * isolation (the sandbox workers start before the port is bound), must exit non-zero with one
 * clear line naming the port, and leave no worker process behind. Workers inherit the host's
 * environment, so a marker variable finds every process the host started, and only those.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const MAIN = path.resolve('host/cli/main.ts');
const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const undo of cleanup.splice(0)) undo();
});

/** Pids of live processes whose environment holds `marker` (Linux /proc). */
function processesWith(marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`, 'latin1').includes(marker)) found.push(Number(entry));
    } catch {
      // gone, or not ours
    }
  }
  return found;
}

describe('contained host on a port that is taken', () => {
  it('exits non-zero with "port N is in use" and leaves no worker process behind', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => blocker.close());
    const port = (blocker.address() as AddressInfo).port;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-listen-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const configFile = path.join(dir, 'contained.config.json');
    writeFileSync(configFile, JSON.stringify({ dataDir: dir, listen: { host: '127.0.0.1', port } }));

    const marker = `CONTAINED_LISTEN_TEST=${randomUUID()}`;
    const [key, value] = marker.split('=') as [string, string];
    const child = spawn(process.execPath, ['--no-node-snapshot', '--import', 'tsx', MAIN, 'host', '--config', configFile], {
      env: { ...process.env, [key]: value },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cleanup.push(() => {
      for (const pid of processesWith(marker)) process.kill(pid, 'SIGKILL');
    });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exit = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), 25_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });
    expect(exit, `host did not exit: ${stderr}`).not.toBeNull();
    expect(exit).not.toBe(0);
    expect(stderr).toMatch(new RegExp(`^ADDRESS_IN_USE: port ${port} is in use`, 'm'));
    expect(stderr).not.toContain('INTERNAL');
    expect(stdout).not.toContain('listening on');
    // The workers were the host's children: none may outlive it.
    await expect.poll(() => processesWith(marker), { timeout: 5_000 }).toEqual([]);
  }, 40_000);
});
