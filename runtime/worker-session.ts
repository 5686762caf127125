/**
 * The sandbox side of the worker protocol, whatever carries it: a pool worker's IPC channel
 * (worker-main.ts) or one client connection of the resident sandbox process (resident-main.ts).
 * A session runs the sandboxes one host (or one `contained run` client) asks for — a fresh isolate
 * per run, never reused across runs — and forwards each capability call back to that host, which
 * holds the gate and the capability instances. Sessions of one process share only its warm
 * isolates (prepared, never run). What a session is told to do was sent by the same user's host
 * (IPC from the parent, or a 0600 socket in a 0700 folder), so messages are shape-checked
 * (parseHostMessage) for robustness, not trusted as a boundary; what goes back is parsed by the
 * host (worker-protocol.ts parseWorkerMessage), where the boundary is.
 */
import { type BridgeResult, type EngineRun, startRun } from './engine.js';
import type { IsolatePool } from './prepared-isolate.js';
import type { HostToWorker, WorkerToHost } from './worker-protocol.js';

export interface WorkerSessionOptions {
  send(message: WorkerToHost): void;
  warm: IsolatePool;
  /** An isolate failed catastrophically: isolated-vm's advice is to end the process. */
  catastrophe(detail: string): void;
  /** A run ended other than quietly (EngineRun.endedQuietly): exiting soon after may segfault. */
  noisyEnd?(): void;
  /** A run ended (for counters). */
  ended?(): void;
}

export class WorkerSession {
  private readonly runs = new Map<string, { run: EngineRun; resumes: Map<number, () => void> }>();
  private readonly pendingCalls = new Map<string, (result: BridgeResult) => void>();
  private readonly options: WorkerSessionOptions;

  constructor(options: WorkerSessionOptions) {
    this.options = options;
  }

  get running(): number {
    return this.runs.size;
  }

  /** Every message but `exit`, which the carrier handles (end the process, or the connection). */
  handle(message: Exclude<HostToWorker, { t: 'exit' }>): void {
    const { send } = this.options;
    switch (message.t) {
      case 'run': {
        const { runId } = message.spec;
        const run = startRun(
          message.spec,
          {
            call: (call) =>
              new Promise<BridgeResult>((resolve) => {
                this.pendingCalls.set(`${runId}\u0000${call.seq}`, resolve);
                send({ t: 'call', runId, call });
              }),
            log: message.streamLogs ? (line) => send({ t: 'log', runId, line }) : undefined,
            catastrophe: (detail) => {
              send({ t: 'catastrophe', runId, message: detail });
              this.options.catastrophe(detail);
            },
          },
          this.options.warm,
        );
        this.runs.set(runId, { run, resumes: new Map() });
        void run.outcome.then((outcome) => {
          if (!run.endedQuietly()) this.options.noisyEnd?.();
          this.runs.delete(runId);
          for (const key of this.pendingCalls.keys()) if (key.startsWith(`${runId}\u0000`)) this.pendingCalls.delete(key);
          this.options.ended?.();
          send({ t: 'done', runId, outcome });
        });
        break;
      }
      case 'result': {
        const key = `${message.runId}\u0000${message.seq}`;
        const resolve = this.pendingCalls.get(key);
        this.pendingCalls.delete(key);
        resolve?.(message.result);
        break;
      }
      case 'pause': {
        const entry = this.runs.get(message.runId);
        entry?.resumes.set(message.token, entry.run.pauseWallClock());
        break;
      }
      case 'resume': {
        const entry = this.runs.get(message.runId);
        entry?.resumes.get(message.token)?.();
        entry?.resumes.delete(message.token);
        break;
      }
      case 'cancel':
        this.runs.get(message.runId)?.run.cancel(message.message);
        break;
      case 'ping':
        send({ t: 'pong', id: message.id });
        break;
    }
  }

  /** Cancel every run of this session (its host went away); returns how many were running. */
  cancelAll(message: string): number {
    const n = this.runs.size;
    for (const { run } of this.runs.values()) run.cancel(message);
    return n;
  }
}

const HOST_MESSAGE_TYPES = new Set(['run', 'result', 'pause', 'resume', 'cancel', 'ping', 'exit']);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isRunId(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= 1024;
}

/**
 * The message if it has the shape of a host-to-worker message; undefined otherwise. Hand-written
 * (no zod in the sandbox process: it loads in every worker's start-up).
 */
export function parseHostMessage(value: unknown): HostToWorker | undefined {
  if (!isObject(value) || typeof value.t !== 'string' || !HOST_MESSAGE_TYPES.has(value.t)) return undefined;
  switch (value.t) {
    case 'run': {
      const spec = value.spec;
      if (!isObject(spec) || !isRunId(spec.runId) || !isObject(spec.program) || !isObject(spec.limits) || !Array.isArray(spec.capabilities)) return undefined;
      if (typeof value.streamLogs !== 'boolean') return undefined;
      break;
    }
    case 'result':
      if (!isRunId(value.runId) || !Number.isInteger(value.seq) || !isObject(value.result) || typeof value.result.ok !== 'boolean') return undefined;
      break;
    case 'pause':
    case 'resume':
      if (!isRunId(value.runId) || !Number.isInteger(value.token)) return undefined;
      break;
    case 'cancel':
      if (!isRunId(value.runId) || typeof value.message !== 'string') return undefined;
      break;
    case 'ping':
      if (typeof value.id !== 'number') return undefined;
      break;
  }
  return value as unknown as HostToWorker;
}
