/**
 * Safe resolution of root-relative paths on the host disk. Defends against what the pure checks in
 * paths.ts cannot see: symbolic links (anywhere in the path), hard-linked files, devices, FIFOs and
 * sockets, and a link swapped in between the check and the use.
 *
 * Two strategies, same guarantees where the platform allows:
 * - `procfd` (Linux): walk the path one folder at a time, opening each with
 *   `O_DIRECTORY | O_NOFOLLOW` relative to the previous folder's descriptor through
 *   `/proc/self/fd/<n>/<name>` — in effect `openat(2)`. Every later operation (open, rename,
 *   unlink, mkdir) is addressed relative to the final folder descriptor, so swapping a folder for a
 *   link after the walk changes nothing: the descriptor still names the folder that was checked.
 * - `paths` (elsewhere): `lstat` each component, then after opening verify with `fstat` + `realpath`
 *   of the parent that the descriptor is the file that was checked. A narrow race remains for
 *   rename/unlink (Node has no `renameat`), documented in docs/capabilities.md.
 *
 * Fails with typed errors whose messages name only the agent's root-relative path: `FS_LINK`,
 * `FS_SPECIAL_FILE`, or `CAPABILITY_FAILED` with `data.reason` set to the errno code.
 */
import { constants as C, type Stats } from 'node:fs';
import fsp, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { ContainedError } from '../../runtime/errors.js';

export type FsStrategy = 'procfd' | 'paths';

export interface FsRoot {
  /** `realpath` of the top root folder, resolved once when the instance was created. */
  real: string;
  strategy: FsStrategy;
}

/** A checked folder. `at(name)` addresses an entry in it without re-resolving the folder's path. */
export interface DirHandle {
  at(name: string): string;
  /** Re-verify (paths strategy only) that the folder is still where it was checked. */
  verify(): Promise<void>;
  close(): Promise<void>;
}

// Opening a FIFO for reading would block until a writer comes; a tty could become our terminal.
const OPEN_GUARD = C.O_NOFOLLOW | C.O_NONBLOCK | C.O_NOCTTY;
const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;

const REASONS: Record<string, string> = {
  ENOENT: 'does not exist',
  EEXIST: 'already exists',
  ENOTDIR: 'is not a folder (or a parent of it is not)',
  EISDIR: 'is a folder',
  ENOTEMPTY: 'is a folder that is not empty',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'no space left on the device',
  EXDEV: 'cannot move across devices',
  EINVAL: 'invalid operation (moving a folder into itself?)',
  EBUSY: 'is busy',
  ENAMETOOLONG: 'name too long',
};

/** An fs failure as the agent may see it: errno code in `data.reason`, never a host path. */
export function fsFailure(reason: string, display: string, cause?: unknown): ContainedError {
  const words = REASONS[reason] ?? 'failed';
  return new ContainedError('CAPABILITY_FAILED', `fs: "${display}" ${words}`, {
    data: { reason, path: display },
    ...(cause === undefined ? {} : { cause }),
  });
}

export function linkRefused(display: string, what = 'is or passes through a symbolic link'): ContainedError {
  return new ContainedError('FS_LINK', `fs: "${display}" ${what}; links are never followed`, { data: { path: display } });
}

export function specialRefused(display: string): ContainedError {
  return new ContainedError('FS_SPECIAL_FILE', `fs: "${display}" is a device, FIFO or socket`, { data: { path: display } });
}

function errno(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'EIO';
}

/** Map a thrown Node error to a typed one; ContainedErrors pass through. */
export function mapFsError(e: unknown, display: string): ContainedError {
  if (e instanceof ContainedError) return e;
  const code = errno(e);
  if (code === 'ELOOP' || code === 'EMLINK' || code === 'EFTYPE') return linkRefused(display);
  if (code === 'ENXIO') return specialRefused(display);
  return fsFailure(code, display, e);
}

export async function lstatOrNull(p: string): Promise<Stats | null> {
  try {
    return await fsp.lstat(p);
  } catch (e) {
    if (errno(e) === 'ENOENT') return null;
    throw e;
  }
}

/**
 * Classify an entry: a regular file with one link, or a folder. Links, hard-linked files and
 * special files throw. `nlink > 1` on a file means the same bytes may be reachable from outside.
 */
export function classify(st: Stats, display: string): 'file' | 'dir' {
  if (st.isSymbolicLink()) throw linkRefused(display);
  if (st.isDirectory()) return 'dir';
  if (!st.isFile()) throw specialRefused(display);
  if (st.nlink > 1) throw linkRefused(display, 'has several hard links');
  return 'file';
}

/** Open the folder named by `segments` under the root, refusing any link on the way. */
export async function openDir(root: FsRoot, segments: readonly string[], display: string, create = false): Promise<DirHandle> {
  return root.strategy === 'procfd' ? openDirProc(root, segments, display, create) : openDirPaths(root, segments, display, create);
}

async function openDirProc(root: FsRoot, segments: readonly string[], display: string, create: boolean): Promise<DirHandle> {
  let fh: FileHandle;
  try {
    fh = await fsp.open(root.real, DIR_FLAGS);
  } catch (e) {
    throw fsFailure(errno(e) === 'ENOENT' ? 'ENOENT' : errno(e), '.', e);
  }
  try {
    for (const seg of segments) {
      const at = `/proc/self/fd/${fh.fd}/${seg}`;
      let next: FileHandle;
      try {
        next = await fsp.open(at, DIR_FLAGS);
      } catch (e) {
        if (!(create && errno(e) === 'ENOENT')) throw await explainDirFailure(at, e, display);
        await fsp.mkdir(at).catch((m: unknown) => {
          if (errno(m) !== 'EEXIST') throw mapFsError(m, display);
        });
        next = await fsp.open(at, DIR_FLAGS).catch(async (e2: unknown) => {
          throw await explainDirFailure(at, e2, display);
        });
      }
      await fh.close();
      fh = next;
    }
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e;
  }
  const base = `/proc/self/fd/${fh.fd}`;
  const handle = fh;
  return { at: (name) => `${base}/${name}`, verify: async () => undefined, close: () => handle.close() };
}

async function openDirPaths(root: FsRoot, segments: readonly string[], display: string, create: boolean): Promise<DirHandle> {
  let cur = root.real;
  const rootSt = await fsp.lstat(cur).catch((e: unknown) => {
    throw fsFailure(errno(e), '.', e);
  });
  if (!rootSt.isDirectory()) throw linkRefused('.');
  for (const seg of segments) {
    cur = path.join(cur, seg);
    let st = await lstatOrNull(cur).catch((e: unknown) => {
      throw mapFsError(e, display);
    });
    if (st === null && create) {
      await fsp.mkdir(cur).catch((m: unknown) => {
        if (errno(m) !== 'EEXIST') throw mapFsError(m, display);
      });
      st = await lstatOrNull(cur);
    }
    if (st === null) throw fsFailure('ENOENT', display);
    if (st.isSymbolicLink()) throw linkRefused(display);
    if (!st.isDirectory()) throw fsFailure('ENOTDIR', display);
  }
  const dir = cur;
  return {
    at: (name) => path.join(dir, name),
    verify: async () => {
      // realpath resolves every link: equality means no component was swapped for one.
      const real = await fsp.realpath(dir).catch(() => null);
      if (real !== dir) throw linkRefused(display, 'changed while in use (a link was swapped in)');
    },
    close: async () => undefined,
  };
}

async function explainDirFailure(at: string, e: unknown, display: string): Promise<ContainedError> {
  const code = errno(e);
  if (code === 'ENOTDIR' || code === 'ELOOP') {
    const st = await lstatOrNull(at).catch(() => null);
    if (st?.isSymbolicLink()) return linkRefused(display);
    return fsFailure('ENOTDIR', display, e);
  }
  return mapFsError(e, display);
}

export interface OpenedFile {
  fh: FileHandle;
  st: Stats;
}

/**
 * Open `name` in a checked folder as a regular file with one link. `flags` are the access flags
 * (`O_RDONLY`, `O_WRONLY | O_APPEND | O_CREAT`…); link and special-file guards are added here.
 * After opening, `fstat` re-checks the descriptor, so a swap between `lstat` and `open` is caught.
 */
export async function openFile(dir: DirHandle, name: string, display: string, flags: number): Promise<OpenedFile> {
  const full = dir.at(name);
  const pre = await lstatOrNull(full).catch((e: unknown) => {
    throw mapFsError(e, display);
  });
  // Refuse before opening: opening some devices has side effects of its own.
  if (pre !== null && classify(pre, display) === 'dir') throw fsFailure('EISDIR', display);
  if (pre === null && (flags & C.O_CREAT) === 0) throw fsFailure('ENOENT', display);
  let fh: FileHandle;
  try {
    fh = await fsp.open(full, flags | OPEN_GUARD, 0o666);
  } catch (e) {
    throw mapFsError(e, display);
  }
  try {
    const st = await fh.stat();
    if (classify(st, display) === 'dir') throw fsFailure('EISDIR', display);
    await dir.verify();
    const again = await fsp.lstat(full);
    if (again.ino !== st.ino || again.dev !== st.dev) throw linkRefused(display, 'changed while in use (a link was swapped in)');
    return { fh, st };
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw mapFsError(e, display);
  }
}
