/**
 * IPC messages between the host and a worker process (JSON serialisation). A worker hosts
 * untrusted code, so what it sends is parsed against these exact shapes (`parseWorkerMessage`)
 * before the pool acts on it: a worker taken over by an isolate escape can send anything, and a
 * message the host could not read once threw in the pool's handler and took the host down.
 */
import { z } from 'zod';
import type { BridgeResult, EngineCall, EngineRunSpec } from './engine.js';
import { type ErrorCode, isErrorCode } from './errors.js';
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

const runId = z.string().min(1).max(1024);
const count = z.number().finite().nonnegative();
const logLine = z.strictObject({ level: z.enum(['log', 'info', 'warn', 'error', 'debug']), message: z.string(), atMs: count });
const usage = z.strictObject({ cpuMs: count, wallMs: count, heapBytes: count, calls: count });
const errorCode = z.string().refine(isErrorCode).transform((c) => c as ErrorCode);
const outcome = z.discriminatedUnion('status', [
  z.strictObject({ status: z.literal('ok'), value: z.unknown(), logs: z.array(logLine), usage }),
  z.strictObject({
    status: z.literal('error'),
    error: z.strictObject({ code: errorCode, message: z.string(), stack: z.string().optional() }),
    logs: z.array(logLine),
    usage,
  }),
]);
const workerToHost = z.discriminatedUnion('t', [
  z.strictObject({ t: z.literal('ready') }),
  z.strictObject({
    t: z.literal('call'),
    runId,
    call: z.strictObject({
      seq: z.number().int().positive(),
      capability: z.string(),
      method: z.string(),
      argJson: z.string(),
      reason: z.string().optional(),
    }),
  }),
  z.strictObject({ t: z.literal('log'), runId, line: logLine }),
  z.strictObject({ t: z.literal('done'), runId, outcome }),
  z.strictObject({ t: z.literal('catastrophe'), runId, message: z.string() }),
  z.strictObject({ t: z.literal('pong'), id: z.number() }),
]);

/** The message if it has exactly one of the protocol's shapes; undefined otherwise. */
export function parseWorkerMessage(message: unknown): WorkerToHost | undefined {
  const parsed = workerToHost.safeParse(message);
  if (!parsed.success) return undefined;
  const m = parsed.data;
  // An ok outcome always carries its value (the engine makes undefined null).
  if (m.t === 'done' && m.outcome.status === 'ok' && !Object.hasOwn(m.outcome, 'value')) return undefined;
  return m as WorkerToHost;
}
