/**
 * The resident sandbox process (`contained sandbox start`, resident-main.ts): where its socket
 * lives, how frames are cut, and the few messages it answers beside the worker protocol.
 *
 * What it defends: the socket hands whoever connects a process that runs code and asks back for
 * capability calls, so only its user may reach it. It lives in a per-user folder
 * ($XDG_RUNTIME_DIR/ai-contained, else ~/.cache/ai-contained/run) created 0700; a folder owned by
 * someone else, not a real folder (a symbolic link), or writable by group or others is refused
 * (`checkResidentDir`), and so is a socket file owned by someone else. The socket is created 0600.
 * Frames are newline-delimited JSON (JSON.stringify never writes a raw newline), each at most
 * MAX_FRAME_BYTES: a longer one ends the connection. Only `node:` modules here: `contained run`
 * loads this before the rest of the CLI.
 */
import { lstatSync, mkdirSync, statSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Bumped whenever a frame's meaning changes; a client and a resident of different keys never talk. */
export const RESIDENT_PROTOCOL = 1;
/** The longest frame either side accepts, bytes (a run's program travels in one frame). */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;
/**
 * How long `contained run` waits for the resident's greeting before it forks a worker instead, ms.
 * The wait overlaps the CLI loading its own modules; only a resident that accepts but does not
 * answer (wedged) costs it in full. 500 ms was exceeded on a machine at load 16.
 */
export const RESIDENT_CONNECT_TIMEOUT_MS = 2000;
/** A resident with no client for this long stops, ms (`contained sandbox start --idle-seconds`). */
export const DEFAULT_RESIDENT_IDLE_MS = 30 * 60 * 1000;
export const SOCKET_NAME = 'sandbox.sock';
export const LOG_NAME = 'resident.log';

/** What the resident answers beside the worker protocol (its first frame is always `hello`). */
export type ResidentToClient =
  | { t: 'hello'; pid: number; key: string }
  | { t: 'status'; status: ResidentStatus }
  | { t: 'stopping' };
export type ClientToResident = { t: 'status' } | { t: 'stop' };

export interface ResidentStatus {
  pid: number;
  key: string;
  socket: string;
  startedAt: string;
  idleMs: number;
  /** Runs started since the process started, runs in flight, runs cancelled by a client leaving. */
  runs: number;
  running: number;
  cancelled: number;
  clients: number;
}

/** The resident's folder: CONTAINED_RESIDENT_DIR, else $XDG_RUNTIME_DIR/ai-contained, else ~/.cache/ai-contained/run. */
export function residentDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.CONTAINED_RESIDENT_DIR) return env.CONTAINED_RESIDENT_DIR;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'ai-contained');
  return join(env.XDG_CACHE_HOME || join(os.homedir(), '.cache'), 'ai-contained', 'run');
}

export type DirCheck = { ok: true; dir: string } | { ok: false; dir: string; reason: string };

/** Whether `dir` is a folder only this user can write (no symbolic link, owned by us, not group/world-writable). */
export function checkResidentDir(dir: string): DirCheck {
  let info;
  try {
    info = lstatSync(dir);
  } catch {
    return { ok: false, dir, reason: 'does not exist' };
  }
  if (!info.isDirectory()) return { ok: false, dir, reason: 'is not a folder (a symbolic link or a file)' };
  if (process.getuid && info.uid !== process.getuid()) return { ok: false, dir, reason: `is owned by uid ${info.uid}, not by this user` };
  if ((info.mode & 0o022) !== 0) return { ok: false, dir, reason: `is writable by group or others (mode ${(info.mode & 0o777).toString(8)})` };
  return { ok: true, dir };
}

/** Create the folder 0700 if it is missing, then check it. */
export function ensureResidentDir(dir: string): DirCheck {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    return { ok: false, dir, reason: `cannot be created (${(error as Error).message})` };
  }
  return checkResidentDir(dir);
}

/** The socket path if a socket file of this user is there; undefined if none; a reason if refused. */
export function findSocket(dir: string): { path: string; ino: number } | { refused: string } | undefined {
  const path = join(dir, SOCKET_NAME);
  let info;
  try {
    info = lstatSync(path);
  } catch {
    return undefined;
  }
  const folder = checkResidentDir(dir);
  if (!folder.ok) return { refused: `the folder ${dir} ${folder.reason}` };
  if (!info.isSocket()) return { refused: `${path} is not a socket` };
  if (process.getuid && info.uid !== process.getuid()) return { refused: `${path} is owned by uid ${info.uid}, not by this user` };
  return { path, ino: info.ino };
}

/** The resident's entry module (and Node flags), next to this file; .ts sources need the tsx loader. */
export function residentEntry(): { file: string; execArgv: string[] } {
  const here = fileURLToPath(import.meta.url);
  const ts = here.endsWith('.ts');
  const file = here.replace(/resident-protocol\.(ts|js)$/, `resident-main.${ts ? 'ts' : 'js'}`);
  const execArgv = ['--no-node-snapshot'];
  if (ts) execArgv.push('--import', import.meta.resolve('tsx'));
  return { file, execArgv };
}

/**
 * Identifies the code a resident runs: the protocol, its entry module and that file's mtime. A
 * client whose key differs (the package was upgraded under a running resident) forks a worker.
 */
export function residentKey(): string {
  const { file } = residentEntry();
  let mtime = 0;
  try {
    mtime = statSync(file).mtimeMs;
  } catch {
    mtime = -1;
  }
  return `${RESIDENT_PROTOCOL}:${file}:${mtime}`;
}

/** Cuts newline-delimited JSON frames out of a byte stream; a frame past `max` bytes is an error. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;
  private readonly max: number;

  constructor(max = MAX_FRAME_BYTES) {
    this.max = max;
  }

  /** The complete frames in `chunk` (parsed JSON, or `undefined` for text that is not JSON); throws past the bound. */
  push(chunk: Buffer): unknown[] {
    const frames: unknown[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(10, start); nl >= 0; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl);
      if (this.size + piece.length > this.max) throw new RangeError(`a frame is longer than ${this.max} bytes`);
      const text = this.size === 0 ? piece.toString('utf8') : Buffer.concat([...this.chunks, piece]).toString('utf8');
      this.chunks = [];
      this.size = 0;
      frames.push(parseFrame(text));
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.size += rest.length;
      if (this.size > this.max) throw new RangeError(`a frame is longer than ${this.max} bytes`);
      this.chunks.push(rest);
    }
    return frames;
  }
}

function parseFrame(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

export function encodeFrame(message: unknown): string {
  return `${JSON.stringify(message)}\n`;
}
