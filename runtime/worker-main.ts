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
      warm.close();
      // Give disposed isolates a moment: dispose immediately followed by exit has segfaulted.
      setTimeout(() => process.exit(0), 100);
      break;
  }
});

process.on('disconnect', () => setTimeout(() => process.exit(0), 100));
send({ t: 'ready' });
