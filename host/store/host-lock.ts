/**
 * One host per data folder. A host that starts recovers the store as if it were the only one:
 * runs still marked live end as crashed and pending requests are offered again as its own. A
 * second host on the same folder (`contained mcp` over stdio beside `contained host`, two
 * `contained host` by mistake) would do that to the first one's live runs, so it must not start.
 *
 * The lock is a file `<dataDir>/host.lock` holding the holder's pid, created atomically with
 * `link` (fails if it exists). A lock whose process is gone (SIGKILL, power loss) or that does not
 * parse is stale and replaced. Limits: a pid reused by an unrelated process after a crash keeps
 * the folder locked until that process ends or the file is removed (the message names the file);
 * two hosts replacing the same stale lock in the same instant can both start. Commands that only
 * read or add grants open the store without this lock, as before.
 */
import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ContainedError } from '../../runtime/errors.js';

export const HOST_LOCK_FILE = 'host.lock';

export interface HostLock {
  readonly file: string;
  /** Remove the lock if it is still ours. Never throws. */
  release(): void;
}

interface LockBody {
  pid: number;
  hostname?: string;
  startedAt?: number;
  token?: string;
}

function readLock(file: string): LockBody | undefined {
  try {
    const body = JSON.parse(readFileSync(file, 'utf8')) as Partial<LockBody>;
    return typeof body.pid === 'number' && Number.isInteger(body.pid) && body.pid > 0 ? (body as LockBody) : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}

/** Take the data folder's host lock, or fail DATA_DIR_IN_USE naming the holder. */
export function acquireHostLock(dataDir: string): HostLock {
  mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, HOST_LOCK_FILE);
  const token = randomBytes(12).toString('hex');
  const mine: LockBody = { pid: process.pid, hostname: os.hostname(), startedAt: Date.now(), token };
  const temp = `${file}.${process.pid}.${token}`;
  writeFileSync(temp, JSON.stringify(mine), { mode: 0o600 });
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        linkSync(temp, file);
        return {
          file,
          release() {
            if (readLock(file)?.token === token) unlinkQuietly(file);
          },
        };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const holder = readLock(file);
      // Another machine's pid cannot be checked from here: treat its lock as held.
      const held = holder !== undefined && (holder.hostname !== undefined && holder.hostname !== os.hostname() ? true : alive(holder.pid));
      if (held) {
        throw new ContainedError(
          'DATA_DIR_IN_USE',
          `another contained host (pid ${holder.pid}${holder.hostname && holder.hostname !== os.hostname() ? ` on ${holder.hostname}` : ''}) is using the data folder ${dataDir}: stop it, or give this host another dataDir (an MCP client can reach the running host at /v1/mcp over HTTP). If no host is running, remove ${file}.`,
          { data: { pid: holder.pid, lockFile: file } },
        );
      }
      unlinkQuietly(file);
    }
    throw new ContainedError('DATA_DIR_IN_USE', `could not take the host lock ${file}: it keeps being re-created by another process`, { data: { lockFile: file } });
  } finally {
    unlinkQuietly(temp);
  }
}
