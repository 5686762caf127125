/**
 * IPC messages between the host and a worker process (JSON serialisation). A worker hosts
 * untrusted code, so what it sends is parsed against these exact shapes (`parseWorkerMessage`)
 * before the pool acts on it: a worker taken over by an isolate escape can send anything, and a
 * message the host could not read once threw in the pool's handler and took the host down.
 */
import type { BridgeResult, EngineCall, EngineRunSpec } from './engine.js';
import { isErrorCode } from './errors.js';
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

const RUN_ID_MAX = 1024;
const LOG_LEVELS: ReadonlySet<unknown> = new Set(['log', 'info', 'warn', 'error', 'debug']);

type Obj = Record<string, unknown>;

/** A non-null, non-array object whose own keys are all in `allowed` (a strict object's rule). */
function strict(value: unknown, allowed: readonly string[]): value is Obj {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  for (const key of Object.keys(value)) if (!allowed.includes(key)) return false;
  return true;
}
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isCount = (v: unknown): boolean => isNumber(v) && v >= 0;
const isRunId = (v: unknown): boolean => typeof v === 'string' && v.length >= 1 && v.length <= RUN_ID_MAX;
const isLogLine = (v: unknown): boolean =>
  strict(v, ['level', 'message', 'atMs']) && LOG_LEVELS.has(v.level) && typeof v.message === 'string' && isCount(v.atMs);
const isUsage = (v: unknown): boolean =>
  strict(v, ['cpuMs', 'wallMs', 'heapBytes', 'calls']) && isCount(v.cpuMs) && isCount(v.wallMs) && isCount(v.heapBytes) && isCount(v.calls);
const isLogs = (v: unknown): boolean => Array.isArray(v) && v.every(isLogLine);
/** An optional string field: absent, undefined, or a string. */
const optionalString = (o: Obj, key: string): boolean => o[key] === undefined || typeof o[key] === 'string';

function isOutcome(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const status = (v as Obj).status;
  if (status === 'ok') {
    // An ok outcome always carries its value (the engine makes undefined null).
    return strict(v, ['status', 'value', 'logs', 'usage']) && Object.hasOwn(v, 'value') && isLogs(v.logs) && isUsage(v.usage);
  }
  if (status !== 'error' || !strict(v, ['status', 'error', 'logs', 'usage'])) return false;
  const error = v.error;
  return (
    strict(error, ['code', 'message', 'stack']) &&
    isErrorCode(error.code) &&
    typeof error.message === 'string' &&
    optionalString(error, 'stack') &&
    isLogs(v.logs) &&
    isUsage(v.usage)
  );
}

function isCall(v: unknown): boolean {
  return (
    strict(v, ['seq', 'capability', 'method', 'argJson', 'reason']) &&
    Number.isSafeInteger(v.seq) &&
    (v.seq as number) > 0 &&
    typeof v.capability === 'string' &&
    typeof v.method === 'string' &&
    typeof v.argJson === 'string' &&
    optionalString(v, 'reason')
  );
}

/**
 * The message if it has exactly one of the protocol's shapes; undefined otherwise. Hand-written
 * (no zod: `contained run` loads this module and never needs zod otherwise), and the one definition
 * of the rule: test/runtime/worker-protocol.test.ts holds it to an equivalent zod schema on many
 * valid and invalid messages. Strict like zod's strictObject: no key beyond the shape's, numbers
 * finite, counts non-negative, sequence numbers positive safe integers, run ids 1–1024 characters,
 * error codes from the catalogue (errors.ts).
 */
export function parseWorkerMessage(message: unknown): WorkerToHost | undefined {
  if (typeof message !== 'object' || message === null || Array.isArray(message)) return undefined;
  const m = message as Obj;
  let ok: boolean;
  switch (m.t) {
    case 'ready':
      ok = strict(m, ['t']);
      break;
    case 'call':
      ok = strict(m, ['t', 'runId', 'call']) && isRunId(m.runId) && isCall(m.call);
      break;
    case 'log':
      ok = strict(m, ['t', 'runId', 'line']) && isRunId(m.runId) && isLogLine(m.line);
      break;
    case 'done':
      ok = strict(m, ['t', 'runId', 'outcome']) && isRunId(m.runId) && isOutcome(m.outcome);
      break;
    case 'catastrophe':
      ok = strict(m, ['t', 'runId', 'message']) && isRunId(m.runId) && typeof m.message === 'string';
      break;
    case 'pong':
      ok = strict(m, ['t', 'id']) && isNumber(m.id);
      break;
    default:
      ok = false;
  }
  return ok ? (m as unknown as WorkerToHost) : undefined;
}
