/**
 * One host per data folder: a second host on the same folder would mark the first one's live runs
 * as crashed and offer its pending requests again as its own (requests.recover, runs.recover).
 * The second start fails DATA_DIR_IN_USE and leaves the first untouched; a lock left by a host
 * that died (SIGKILL) does not stop the next start.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHostConfig } from '../../host/config.js';
import { type Host, startHost } from '../../host/host.js';
import { HOST_LOCK_FILE } from '../../host/store/host-lock.js';

const dirs: string[] = [];
const hosts: Host[] = [];
afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.close().catch(() => undefined)));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function folder(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-lock-'));
  dirs.push(dir);
  return dir;
}

async function start(dataDir: string): Promise<Host> {
  const host = await startHost({ config: parseHostConfig({ dataDir }, dataDir), isolation: 'in-process', listen: false, logger: pino({ level: 'silent' }) });
  hosts.push(host);
  return host;
}

describe('one host per data folder', () => {
  it('refuses a second host on the same folder with DATA_DIR_IN_USE, and lets one start after the first closed', async () => {
    const dir = folder();
    const first = await start(dir);
    await expect(start(dir)).rejects.toMatchObject({ code: 'DATA_DIR_IN_USE', message: expect.stringContaining(`pid ${process.pid}`) });
    // The first host still works.
    expect(await first.store.listRuns({ limit: 1 })).toEqual([]);
    await first.close();
    hosts.splice(hosts.indexOf(first), 1);
    const second = await start(dir);
    expect(second).toBeDefined();
  });

  it('a lock left by a host that died does not stop the next start', async () => {
    const dir = folder();
    // The pid of a process that has exited: nothing holds the lock any more.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    writeFileSync(path.join(dir, HOST_LOCK_FILE), JSON.stringify({ pid: Number(dead.stdout), startedAt: Date.now() - 1000 }));
    const host = await start(dir);
    expect(host).toBeDefined();
  });

  it('a lock file that does not parse is treated as stale, not as a crash', async () => {
    const dir = folder();
    writeFileSync(path.join(dir, HOST_LOCK_FILE), 'garbage');
    expect(await start(dir)).toBeDefined();
  });
});
