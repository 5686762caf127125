/**
 * Entry of a worker process: runs sandboxes for the host and forwards every capability call to the
 * host over IPC (the gate, the store and the capability instances stay in the host). If anything
 * here dies — a catastrophic isolate OOM, a segfault — only this process's runs are lost; the pool
 * replaces it. The protocol's sandbox side is worker-session.ts (the resident sandbox process,
 * resident-main.ts, serves it over a Unix socket instead).
 */
import { IsolatePool } from './prepared-isolate.js';
import { WorkerSession } from './worker-session.js';
import type { HostToWorker, WorkerToHost } from './worker-protocol.js';

const warm = new IsolatePool({
  size: Number(process.env.CONTAINED_WARM_ISOLATES ?? 0) || 0,
  memoryMb: Number(process.env.CONTAINED_WARM_MEMORY_MB ?? 64) || 64,
});
/** performance.now() when a run last ended other than quietly (EngineRun.endedQuietly). */
let lastNoisyEnd = Number.NEGATIVE_INFINITY;
/**
 * How long after an isolate was disposed while it may have been running code the process waits
 * before exiting: exiting within ~20 ms of that has segfaulted in isolated-vm 7.0.1 (5 of 60 at 2
 * ms, 0 of 60 at 20 ms; exiting with idle isolates, disposed or not, never did).
 */
const EXIT_GRACE_MS = 100;
let exiting = false;

function send(message: WorkerToHost): void {
  if (process.connected) process.send?.(message);
}

const session = new WorkerSession({
  send,
  warm,
  // isolated-vm's advice after a catastrophic error: end the process. Let the messages out first.
  catastrophe: () => void setTimeout(() => process.abort(), 50),
  noisyEnd: () => {
    lastNoisyEnd = performance.now();
  },
});

/**
 * Exit as soon as that is safe: at once when every isolate is idle (runs that ended quietly, no
 * isolate being prepared), else EXIT_GRACE_MS after the last run that did not.
 */
async function exitWhenSafe(): Promise<void> {
  if (exiting) return;
  exiting = true;
  await warm.close();
  const wait = session.running > 0 ? EXIT_GRACE_MS : lastNoisyEnd + EXIT_GRACE_MS - performance.now();
  if (wait > 0) setTimeout(() => process.exit(0), wait);
  else process.exit(0);
}

process.on('message', (message: HostToWorker) => {
  if (message.t === 'exit') void exitWhenSafe();
  else session.handle(message);
});

process.on('disconnect', () => void exitWhenSafe());
send({ t: 'ready' });
