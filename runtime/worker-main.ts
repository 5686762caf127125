/**
 * Entry of a worker process: runs sandboxes for the host and forwards every capability call to the
 * host over IPC (the gate, the store and the capability instances stay in the host). If anything
 * here dies — a catastrophic isolate OOM, a segfault — only this process's runs are lost; the pool
 * replaces it.
 */
import { type BridgeResult, type EngineRun, startRun } from './engine.js';
import { IsolatePool } from './prepared-isolate.js';
import type { HostToWorker, WorkerToHost } from './worker-protocol.js';

const warm = new IsolatePool({
  size: Number(process.env.CONTAINED_WARM_ISOLATES ?? 0) || 0,
  memoryMb: Number(process.env.CONTAINED_WARM_MEMORY_MB ?? 64) || 64,
});
const runs = new Map<string, { run: EngineRun; resumes: Map<number, () => void> }>();
const pendingCalls = new Map<string, (result: BridgeResult) => void>();
/** performance.now() when a run last ended other than quietly (EngineRun.endedQuietly). */
let lastNoisyEnd = Number.NEGATIVE_INFINITY;
/**
 * How long after an isolate was disposed while it may have been running code the process waits
 * before exiting: exiting within ~20 ms of that has segfaulted in isolated-vm 7.0.1 (5 of 60 at 2
 * ms, 0 of 60 at 20 ms; exiting with idle isolates, disposed or not, never did).
 */
const EXIT_GRACE_MS = 100;
let exiting = false;

/**
 * Exit as soon as that is safe: at once when every isolate is idle (runs that ended quietly, no
 * isolate being prepared), else EXIT_GRACE_MS after the last run that did not.
 */
async function exitWhenSafe(): Promise<void> {
  if (exiting) return;
  exiting = true;
  await warm.close();
  const wait = runs.size > 0 ? EXIT_GRACE_MS : lastNoisyEnd + EXIT_GRACE_MS - performance.now();
  if (wait > 0) setTimeout(() => process.exit(0), wait);
  else process.exit(0);
}

function send(message: WorkerToHost): void {
  if (process.connected) process.send?.(message);
}

process.on('message', (message: HostToWorker) => {
  switch (message.t) {
    case 'run': {
      const { runId } = message.spec;
      const run = startRun(message.spec, {
        call: (call) =>
          new Promise<BridgeResult>((resolve) => {
            pendingCalls.set(`${runId}\u0000${call.seq}`, resolve);
            send({ t: 'call', runId, call });
          }),
        log: message.streamLogs ? (line) => send({ t: 'log', runId, line }) : undefined,
        catastrophe: (detail) => {
          send({ t: 'catastrophe', runId, message: detail });
          // isolated-vm's advice after a catastrophic error: end the process. Let the messages out first.
          setTimeout(() => process.abort(), 50);
        },
      }, warm);
      runs.set(runId, { run, resumes: new Map() });
      void run.outcome.then((outcome) => {
        if (!run.endedQuietly()) lastNoisyEnd = performance.now();
        runs.delete(runId);
        for (const key of pendingCalls.keys()) if (key.startsWith(`${runId}\u0000`)) pendingCalls.delete(key);
        send({ t: 'done', runId, outcome });
      });
      break;
    }
    case 'result': {
      const key = `${message.runId}\u0000${message.seq}`;
      const resolve = pendingCalls.get(key);
      pendingCalls.delete(key);
      resolve?.(message.result);
      break;
    }
    case 'pause': {
      const entry = runs.get(message.runId);
      entry?.resumes.set(message.token, entry.run.pauseWallClock());
      break;
    }
    case 'resume': {
      const entry = runs.get(message.runId);
      entry?.resumes.get(message.token)?.();
      entry?.resumes.delete(message.token);
      break;
    }
    case 'cancel':
      runs.get(message.runId)?.run.cancel(message.message);
      break;
    case 'ping':
      send({ t: 'pong', id: message.id });
      break;
    case 'exit':
      void exitWhenSafe();
      break;
  }
});

process.on('disconnect', () => void exitWhenSafe());
send({ t: 'ready' });
