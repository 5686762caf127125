/**
 * The client side of the resident sandbox process (resident-main.ts): a connection that stands in
 * for a forked worker (`ResidentWorker`: the pool drives it through the same worker protocol, with
 * the same shape checks on what comes back, heartbeats and crash handling), the control requests
 * of `contained sandbox status|stop`, and starting the process. A resident that does not greet
 * within the connect timeout, or greets with another key (other code), is not used: the caller
 * forks a worker. Only `node:` modules: `contained run` loads this before the rest of the CLI.
 */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { lstatSync, openSync, closeSync, unlinkSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { encodeFrame, FrameReader, LOG_NAME, type ResidentStatus, residentEntry, residentKey } from './resident-protocol.js';
import { type WorkerSettings, workerEnv } from './worker-spawn.js';

/** A connection to the resident, shaped like the part of a ChildProcess the worker pool uses. */
export class ResidentWorker extends EventEmitter {
  readonly pid: number;
  readonly stdout = null;
  readonly stderr = null;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  private readonly socket: Socket;
  private killed = false;
  /** The pool said `exit`: the resident ending the connection now is the normal end. */
  private leaving = false;

  constructor(socket: Socket, reader: FrameReader, pid: number) {
    super();
    this.socket = socket;
    this.pid = pid;
    socket.on('data', (chunk: Buffer) => {
      let frames: unknown[];
      try {
        frames = reader.push(chunk);
      } catch {
        // Past the frame bound: as malformed as a bad message. The pool kills the worker.
        frames = [{ t: 'malformed' }];
      }
      for (const frame of frames) this.emit('message', frame);
    });
    socket.on('close', () => {
      // Ended by us (kill), by the resident after our `exit` (0), or by the resident going away (1).
      if (this.killed) this.signalCode = 'SIGKILL';
      else this.exitCode = this.leaving ? 0 : 1;
      this.emit('exit', this.exitCode, this.signalCode);
    });
  }

  get connected(): boolean {
    return !this.socket.destroyed && this.socket.writable;
  }

  send(message: unknown): boolean {
    if (!this.connected) return false;
    if ((message as { t?: unknown }).t === 'exit') {
      // Nothing the pool needs comes after `exit`: end the connection as soon as the frame is
      // written instead of waiting for the resident to close it (it cancels whatever runs of ours
      // it still hosts either way). 'close' then reports exit code 0.
      this.leaving = true;
      return this.socket.write(encodeFrame(message), () => this.socket.destroy());
    }
    return this.socket.write(encodeFrame(message));
  }

  /** Ends the connection (the resident cancels its runs); the resident process lives on. */
  kill(): boolean {
    if (this.socket.destroyed) return false;
    this.killed = true;
    this.socket.destroy();
    return true;
  }

  ref(): void {
    this.socket.ref();
  }

  unref(): void {
    this.socket.unref();
  }
}

export type ConnectResult =
  | { ok: true; worker: ResidentWorker; messages: unknown[] }
  | { ok: false; reason: 'absent' | 'stale' | 'timeout' | 'other-version' | 'refused'; detail?: string };

/**
 * Connect and wait for the greeting (`hello` with the resident's key, then `ready`) at most
 * `timeoutMs`. The socket is unref'd: it holds this process open only once the pool adopts it.
 */
export function connectResident(socketPath: string, timeoutMs: number): Promise<ConnectResult> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    socket.unref();
    const reader = new FrameReader();
    let pid = 0;
    let settled = false;
    const finish = (result: ConnectResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('data', onData);
      if (!result.ok) socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish({ ok: false, reason: 'timeout' }), timeoutMs);
    timer.unref();
    const onData = (chunk: Buffer): void => {
      let frames: unknown[];
      try {
        frames = reader.push(chunk);
      } catch {
        return finish({ ok: false, reason: 'other-version' });
      }
      for (const [i, frame] of frames.entries()) {
        const f = frame as { t?: unknown; pid?: unknown; key?: unknown } | undefined;
        if (pid === 0) {
          if (f?.t !== 'hello' || typeof f.pid !== 'number' || f.key !== residentKey()) return finish({ ok: false, reason: 'other-version' });
          pid = f.pid;
          continue;
        }
        if (f?.t !== 'ready') return finish({ ok: false, reason: 'other-version' });
        const worker = new ResidentWorker(socket, reader, pid);
        // Frames after `ready` in this chunk are the pool's to read (there are none before a run).
        return finish({ ok: true, worker, messages: [frame, ...frames.slice(i + 1)] });
      }
    };
    socket.on('data', onData);
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') finish({ ok: false, reason: 'stale' });
      else if (error.code === 'ENOENT') finish({ ok: false, reason: 'absent' });
      else finish({ ok: false, reason: 'refused', detail: error.message });
    });
    socket.on('close', () => finish({ ok: false, reason: 'refused', detail: 'the resident closed the connection' }));
  });
}

/** Ask the resident a control question; undefined if it does not answer within `timeoutMs`. */
export function residentRequest(socketPath: string, message: { t: 'status' } | { t: 'stop' }, timeoutMs: number): Promise<ResidentStatus | 'stopping' | undefined> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    const reader = new FrameReader();
    const timer = setTimeout(() => done(undefined), timeoutMs);
    let settled = false;
    function done(value: ResidentStatus | 'stopping' | undefined): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    }
    socket.on('connect', () => socket.write(encodeFrame(message)));
    socket.on('data', (chunk: Buffer) => {
      let frames: unknown[];
      try {
        frames = reader.push(chunk);
      } catch {
        return done(undefined);
      }
      for (const frame of frames) {
        const f = frame as { t?: unknown; status?: ResidentStatus } | undefined;
        if (f?.t === 'status' && typeof f.status === 'object' && f.status !== null) return done(f.status);
        if (f?.t === 'stopping') return done('stopping');
      }
    });
    socket.on('error', () => done(undefined));
    socket.on('close', () => done(undefined));
  });
}

/** Remove a socket file nobody listens on, if it is still the one that was found (same inode). */
export function removeStaleSocket(path: string, ino: number): boolean {
  try {
    if (lstatSync(path).ino !== ino) return false;
    unlinkSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Start a resident process for `dir` (checked by the caller), detached from this one, with a
 * worker's environment; its stdout and stderr (V8's crash reports) go to `<dir>/resident.log`.
 */
export function spawnResident(dir: string, settings: WorkerSettings, idleMs: number): number | undefined {
  const entry = residentEntry();
  const env = workerEnv(settings);
  env.CONTAINED_RESIDENT_DIR = dir;
  env.CONTAINED_RESIDENT_IDLE_MS = String(idleMs);
  const log = openSync(join(dir, LOG_NAME), 'w', 0o600);
  try {
    const child = spawn(process.execPath, [...entry.execArgv, entry.file], { detached: true, stdio: ['ignore', log, log], env, cwd: dir });
    child.on('error', () => undefined);
    child.unref();
    return child.pid;
  } finally {
    closeSync(log);
  }
}
