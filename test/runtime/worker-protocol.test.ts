/**
 * parseWorkerMessage is hand-written (the `contained run` process loads no zod). This holds it to
 * the zod schema it replaced — kept here, as the reference — on many valid and invalid messages:
 * both must accept exactly the same ones.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { isErrorCode } from '../../runtime/errors.js';
import { parseWorkerMessage } from '../../runtime/worker-protocol.js';

const runId = z.string().min(1).max(1024);
const count = z.number().finite().nonnegative();
const logLine = z.strictObject({ level: z.enum(['log', 'info', 'warn', 'error', 'debug']), message: z.string(), atMs: count });
const usage = z.strictObject({ cpuMs: count, wallMs: count, heapBytes: count, calls: count });
const outcome = z.discriminatedUnion('status', [
  z.strictObject({ status: z.literal('ok'), value: z.unknown(), logs: z.array(logLine), usage }),
  z.strictObject({
    status: z.literal('error'),
    error: z.strictObject({ code: z.string().refine(isErrorCode), message: z.string(), stack: z.string().optional() }),
    logs: z.array(logLine),
    usage,
  }),
]);
const workerToHost = z.discriminatedUnion('t', [
  z.strictObject({ t: z.literal('ready') }),
  z.strictObject({
    t: z.literal('call'),
    runId,
    call: z.strictObject({ seq: z.number().int().positive(), capability: z.string(), method: z.string(), argJson: z.string(), reason: z.string().optional() }),
  }),
  z.strictObject({ t: z.literal('log'), runId, line: logLine }),
  z.strictObject({ t: z.literal('done'), runId, outcome }),
  z.strictObject({ t: z.literal('catastrophe'), runId, message: z.string() }),
  z.strictObject({ t: z.literal('pong'), id: z.number() }),
]);

/** What the old parseWorkerMessage accepted. */
function reference(message: unknown): boolean {
  const parsed = workerToHost.safeParse(message);
  if (!parsed.success) return false;
  const m = parsed.data;
  if (m.t === 'done' && m.outcome.status === 'ok' && !Object.hasOwn(m.outcome, 'value')) return false;
  return true;
}

const u = { cpuMs: 1.5, wallMs: 2, heapBytes: 1000, calls: 0 };
const line = { level: 'info', message: 'hi', atMs: 3 };
const VALID: unknown[] = [
  { t: 'ready' },
  { t: 'pong', id: 7 },
  { t: 'pong', id: -1.5 },
  { t: 'call', runId: 'r', call: { seq: 1, capability: 'fs', method: 'read', argJson: '{}' } },
  { t: 'call', runId: 'r'.repeat(1024), call: { seq: 2 ** 53 - 1, capability: '', method: '', argJson: '', reason: 'why' } },
  { t: 'log', runId: 'r', line },
  { t: 'log', runId: 'r', line: { level: 'debug', message: '', atMs: 0 } },
  { t: 'done', runId: 'r', outcome: { status: 'ok', value: null, logs: [], usage: u } },
  { t: 'done', runId: 'r', outcome: { status: 'ok', value: { deep: [1, { x: 2 }] }, logs: [line, line], usage: u } },
  { t: 'done', runId: 'r', outcome: { status: 'error', error: { code: 'CPU_LIMIT', message: 'm' }, logs: [], usage: u } },
  { t: 'done', runId: 'r', outcome: { status: 'error', error: { code: 'AGENT_ERROR', message: 'm', stack: 's' }, logs: [line], usage: u } },
  { t: 'catastrophe', runId: 'r', message: 'oom' },
];

const ODD_VALUES: unknown[] = [
  undefined, null, true, 0, -0, -1, 0.5, 1, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY,
  '', 'x', 'r'.repeat(1025), 'CPU_LIMIT', 'NOT_A_CODE', 'toString', '__proto__', 'ok', 'error', 'info', 'trace',
  [], [line], [{}], {}, { t: 'ready' }, JSON.parse('{"__proto__": 1}'),
];

/** Every message reachable from `base` by changing, removing or adding one field at any depth. */
function* mutations(base: unknown): Generator<unknown> {
  if (typeof base !== 'object' || base === null) return;
  if (Array.isArray(base)) {
    for (let i = 0; i < base.length; i++) {
      for (const v of ODD_VALUES) yield base.map((x, j) => (j === i ? v : x));
      for (const m of mutations(base[i])) yield base.map((x, j) => (j === i ? m : x));
    }
    for (const v of ODD_VALUES) yield [...base, v];
    return;
  }
  const o = base as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    const { [key]: _removed, ...rest } = o;
    yield rest;
    yield { ...o, [key]: undefined };
    for (const v of ODD_VALUES) yield { ...o, [key]: v };
    for (const m of mutations(o[key])) yield { ...o, [key]: m };
  }
  for (const extra of ['extra', 'value', 'stack', 'reason', 't', '__proto__']) {
    if (Object.hasOwn(o, extra)) continue;
    // An own key, as JSON.parse makes one (a "__proto__" key included).
    const copy: Record<string, unknown> = { ...o };
    Object.defineProperty(copy, extra, { value: extra === '__proto__' ? { x: 1 } : 'x', enumerable: true, configurable: true, writable: true });
    yield copy;
  }
}

describe('parseWorkerMessage (hand-written) against the zod reference', () => {
  it('accepts every valid message, returning it as is', () => {
    for (const m of VALID) {
      expect(reference(m), JSON.stringify(m)).toBe(true);
      expect(parseWorkerMessage(m), JSON.stringify(m)).toBe(m);
    }
  });

  it('agrees with the reference on every one-field mutation of the valid messages (and of mutations of them)', () => {
    let total = 0;
    let accepted = 0;
    const check = (m: unknown): void => {
      total++;
      const expected = reference(m);
      if (expected) accepted++;
      const label = (() => {
        try {
          return JSON.stringify(m);
        } catch {
          return String(m);
        }
      })();
      expect(parseWorkerMessage(m) !== undefined, label).toBe(expected);
    };
    for (const v of ODD_VALUES) check(v);
    for (const base of VALID) {
      for (const m of mutations(base)) {
        check(m);
        // A second mutation, for the top-level fields of small messages.
        if (typeof m === 'object' && m !== null && JSON.stringify(m ?? null).length < 120) for (const m2 of mutations(m)) check(m2);
      }
    }
    expect(total).toBeGreaterThan(10_000);
    expect(accepted).toBeGreaterThan(100);
  });
});
