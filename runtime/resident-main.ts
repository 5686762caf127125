/**
 * Entry of the resident sandbox process (`contained sandbox start`): a pool worker that takes its
 * runs over a Unix socket instead of IPC, so `contained run` pays no Node start for its sandbox.
 * Each connection is one worker-protocol session (worker-session.ts: a fresh isolate per run, the
 * same limits, pings answered); the client — `contained run` — holds the gate and the capability
 * instances, and judges this process by heartbeats as the pool judges a worker. A client that
 * disconnects cancels its runs. A catastrophic isolate error ends this process, as it ends a
 * worker: the socket is removed first, so later clients fork a worker instead; runs of other
 * clients in flight end SANDBOX_CRASHED (one user's runs share this process, as runs share a
 * worker up to maxRunsPerWorker). With no client for CONTAINED_RESIDENT_IDLE_MS it stops.
 * It is started with a worker's environment (worker-spawn.ts workerEnv: no secrets) plus
 * CONTAINED_RESIDENT_DIR, a folder checked again here (resident-protocol.ts).
 */
import { unlinkSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { IsolatePool } from './prepared-isolate.js';
import {
  checkResidentDir,
  DEFAULT_RESIDENT_IDLE_MS,
  encodeFrame,
  FrameReader,
  residentDir,
  residentKey,
  type ResidentStatus,
  SOCKET_NAME,
} from './resident-protocol.js';
import type { WorkerToHost } from './worker-protocol.js';
import { parseHostMessage, WorkerSession } from './worker-session.js';

/** See worker-main.ts: exiting within ~20 ms of disposing a busy isolate has segfaulted. */
const EXIT_GRACE_MS = 100;
/** How long `stop` waits for cancelled runs to report before the process exits, ms. */
const STOP_DRAIN_MS = 2000;
const dir = residentDir();
const socketPath = join(dir, SOCKET_NAME);
const idleMs = Number(process.env.CONTAINED_RESIDENT_IDLE_MS) > 0 ? Number(process.env.CONTAINED_RESIDENT_IDLE_MS) : DEFAULT_RESIDENT_IDLE_MS;
const key = residentKey();
const startedAt = new Date().toISOString();
const warm = new IsolatePool({
  size: Number(process.env.CONTAINED_WARM_ISOLATES ?? 0) || 0,
  memoryMb: Number(process.env.CONTAINED_WARM_MEMORY_MB ?? 64) || 64,
});
const sessions = new Set<WorkerSession>();
const counts = { runs: 0, cancelled: 0 };
let lastNoisyEnd = Number.NEGATIVE_INFINITY;
let idleTimer: NodeJS.Timeout | undefined;
let stopping = false;

const folder = checkResidentDir(dir);
if (!folder.ok) {
  process.stderr.write(`contained resident: refusing ${dir}: it ${folder.reason}\n`);
  process.exit(1);
}

function running(): number {
  let n = 0;
  for (const s of sessions) n += s.running;
  return n;
}

/** The status, as told to a client asking over its own connection (not counted as a client). */
function status(): ResidentStatus {
  return { pid: process.pid, key, socket: socketPath, startedAt, idleMs, runs: counts.runs, running: running(), cancelled: counts.cancelled, clients: sessions.size - 1 };
}

function removeSocket(): void {
  try {
    unlinkSync(socketPath);
  } catch {
    // already gone
  }
}

/** Stop taking clients, cancel what runs, exit when isolated-vm allows (see worker-main.ts). */
function stop(reason: string): void {
  if (stopping) return;
  stopping = true;
  removeSocket();
  server.close();
  for (const s of sessions) s.cancelAll(`the resident sandbox process is stopping (${reason})`);
  void warm.close().then(async () => {
    // Let the cancelled runs' outcomes (CANCELLED) reach their clients, for at most STOP_DRAIN_MS.
    const until = performance.now() + STOP_DRAIN_MS;
    while (running() > 0 && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
    const wait = running() > 0 ? EXIT_GRACE_MS : lastNoisyEnd + EXIT_GRACE_MS - performance.now();
    if (wait > 0) setTimeout(() => process.exit(0), wait);
    else process.exit(0);
  });
}

function armIdle(): void {
  if (idleTimer) clearTimeout(idleTimer);
  idleTimer = sessions.size === 0 ? setTimeout(() => stop('idle'), idleMs) : undefined;
}

function serve(socket: Socket): void {
  if (stopping) return void socket.destroy();
  const write = (message: unknown): void => {
    if (!socket.destroyed && socket.writable) socket.write(encodeFrame(message));
  };
  const session = new WorkerSession({
    send: (message: WorkerToHost) => write(message),
    warm,
    catastrophe: () => {
      // isolated-vm's advice: end the process. New clients must not reach it meanwhile.
      removeSocket();
      server.close();
      stopping = true;
      setTimeout(() => process.abort(), 50);
    },
    noisyEnd: () => {
      lastNoisyEnd = performance.now();
    },
  });
  sessions.add(session);
  armIdle();
  const reader = new FrameReader();
  socket.on('data', (chunk: Buffer) => {
    let frames: unknown[];
    try {
      frames = reader.push(chunk);
    } catch {
      socket.destroy();
      return;
    }
    for (const frame of frames) {
      if (typeof frame === 'object' && frame !== null && (frame as { t?: unknown }).t === 'status') {
        write({ t: 'status', status: status() });
        continue;
      }
      if (typeof frame === 'object' && frame !== null && (frame as { t?: unknown }).t === 'stop') {
        write({ t: 'stopping' });
        stop('asked to stop');
        continue;
      }
      const message = parseHostMessage(frame);
      if (!message) {
        socket.destroy();
        return;
      }
      if (message.t === 'exit') socket.end();
      else {
        if (message.t === 'run') counts.runs++;
        session.handle(message);
      }
    }
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    counts.cancelled += session.cancelAll('the client disconnected');
    sessions.delete(session);
    armIdle();
  });
  write({ t: 'hello', pid: process.pid, key });
  write({ t: 'ready' });
}

const server = createServer({ allowHalfOpen: false }, serve);
server.on('error', (error) => {
  process.stderr.write(`contained resident: cannot listen on ${socketPath}: ${error.message}\n`);
  process.exit(1);
});
// The socket is created 0600 (umask while it is bound), inside a folder that is 0700.
const umask = process.umask(0o177);
server.listen(socketPath, () => {
  process.umask(umask);
  armIdle();
});
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => stop(signal));
