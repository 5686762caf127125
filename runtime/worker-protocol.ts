/** IPC messages between the host and a worker process (structured-clone serialisation). */
import type { BridgeResult, EngineCall, EngineRunSpec } from './engine.js';
import type { LogLine, RunOutcome } from './outcome.js';

export type HostToWorker =
  | { t: 'run'; spec: EngineRunSpec; streamLogs: boolean }
  | { t: 'result'; runId: string; seq: number; result: BridgeResult }
  | { t: 'pause'; runId: string; token: number }
  | { t: 'resume'; runId: string; token: number }
  | { t: 'cancel'; runId: string; message: string }
  | { t: 'ping'; id: number }
  | { t: 'exit' };

export type WorkerToHost =
  | { t: 'ready' }
  | { t: 'call'; runId: string; call: EngineCall }
  | { t: 'log'; runId: string; line: LogLine }
  | { t: 'done'; runId: string; outcome: RunOutcome }
  | { t: 'catastrophe'; runId: string; message: string }
  | { t: 'pong'; id: number };
