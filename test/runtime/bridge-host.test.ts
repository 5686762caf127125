/**
 * The host side of the call bridge: what the isolate's three host callbacks (`submit`, `log`,
 * `report`, kept in the bootstrap closure) may hand the engine. The agent cannot reach them (see
 * test/escape/bridge-callbacks.test.ts); this file assumes the worst — a guest that could call
 * them with anything — and checks that the engine believes nothing but well-formed calls and the
 * exact outcome shape: malformed arguments end the run with a typed INTERNAL (never a host crash,
 * never a capability call), and a forged but well-formed outcome cannot claim a code the guest may
 * not report. It drives the real engine with a real prepared isolate whose listener the test also
 * holds, so it can call the host callbacks' targets exactly as isolated-vm would.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type EngineRun, startRun } from '../../runtime/engine.js';
import { Dispatcher } from '../../runtime/dispatcher.js';
import { passThroughGate } from '../../runtime/gate.js';
import { DEFAULT_LIMITS } from '../../runtime/limits.js';
import type { RunOutcome } from '../../runtime/outcome.js';
import { type IsolateListener, type PreparedIsolate, prepareIsolate } from '../../runtime/prepared-isolate.js';
import { createTestNotes } from '../helpers/test-capability.js';
import { expectCode, expectOk, until } from '../helpers/sandbox.js';

interface Harness {
  run: EngineRun;
  listener(): IsolateListener;
  prepared: PreparedIsolate;
  notes: ReturnType<typeof createTestNotes>;
}

const running: EngineRun[] = [];
afterEach(() => {
  for (const r of running.splice(0)) r.cancel('test over');
});

/** Start a real run of `source`; the agent waits on a host call, so the test can act meanwhile. */
async function harness(source: string, limits: Partial<typeof DEFAULT_LIMITS> = {}): Promise<Harness> {
  const prepared = await prepareIsolate(64);
  let listener: IsolateListener | undefined;
  const wrapped: PreparedIsolate = { ...prepared, attach: (l) => { listener = l; prepared.attach(l); } };
  const notes = createTestNotes('notes/', { 'notes/a': 'hello' });
  const dispatcher = new Dispatcher(passThroughGate, undefined);
  const controller = new AbortController();
  const dispatchRun = { runId: 'bridge-run', subject: undefined, capabilities: new Map([['notes', notes.instance]]), signal: controller.signal, pauseWallClock: () => () => {} };
  const run = startRun(
    { runId: 'bridge-run', program: { files: { 'main.js': source }, entry: 'main.js' }, input: null, limits: { ...DEFAULT_LIMITS, cpuMs: 2000, wallMs: 10_000, ...limits }, capabilities: [{ name: 'notes', methods: notes.instance.methodNames() }] },
    { call: (call) => dispatcher.dispatch(dispatchRun, call) },
    { take: () => wrapped, refill: () => {} },
  );
  running.push(run);
  void run.outcome.then(() => controller.abort());
  await until(() => listener !== undefined);
  return { run, listener: () => listener as IsolateListener, prepared, notes };
}

const WAITING = 'export default async function main(input, caps) { await caps.notes.sleep(3000); return "waited"; }';

describe('malformed calls into the host are refused, typed, and reach no capability', () => {
  it.each([
    ['a string seq', ['1', 'notes', 'read', '"notes/a"', '']],
    ['a NaN seq', [Number.NaN, 'notes', 'read', '"notes/a"', '']],
    ['a negative seq', [-1, 'notes', 'read', '"notes/a"', '']],
    ['a fractional seq', [1.5, 'notes', 'read', '"notes/a"', '']],
    ['a seq already used', [1, 'notes', 'read', '"notes/a"', '']],
    ['a non-string capability', [7, { name: 'notes' }, 'read', '"notes/a"', '']],
    ['a non-string method', [7, 'notes', ['read'], '"notes/a"', '']],
    ['an object argument instead of JSON text', [7, 'notes', 'read', { path: 'notes/a' }, '']],
    ['a numeric reason', [7, 'notes', 'read', '"notes/a"', 42]],
    ['an empty capability name', [7, '', 'read', '"notes/a"', '']],
  ])('submit with %s → INTERNAL, the capability never runs', async (_name, args) => {
    const h = await harness(WAITING);
    await until(() => h.notes.received.length === 1);
    (h.listener().onSubmit as (...a: unknown[]) => void)(...args);
    const out = await h.run.outcome;
    expect(expectCode(out, 'INTERNAL').message).toBe('malformed call from the sandbox');
    expect(h.notes.received).toEqual([{ method: 'sleep', args: 3000 }]);
  });

  it.each([
    ['a non-string line', ['log', { toString: () => 'x' }]],
    ['a non-string level', [1, 'line']],
  ])('log with %s → INTERNAL', async (_name, args) => {
    const h = await harness(WAITING);
    await until(() => h.notes.received.length === 1);
    (h.listener().onLog as (...a: unknown[]) => void)(...args);
    expect(expectCode(await h.run.outcome, 'INTERNAL').message).toBe('malformed log line from the sandbox');
  });

  it('a log line announcing overflow is OUTPUT_LIMIT (the guest-side cap)', async () => {
    const h = await harness(WAITING);
    await until(() => h.notes.received.length === 1);
    h.listener().onLog('overflow', '');
    expectCode(await h.run.outcome, 'OUTPUT_LIMIT');
  });
});

describe('the outcome must have the exact fixed shape', () => {
  it.each([
    ['not JSON', 'not json'],
    ['JSON null', 'null'],
    ['an array', '[true, 1]'],
    ['ok as a string', '{"ok":"true","value":1}'],
    ['an extra key beside ok', '{"ok":true,"value":1,"status":"ok"}'],
    ['ok without a value', '{"ok":true}'],
    ['an error without a message', '{"ok":false,"error":{"code":"AGENT_ERROR"}}'],
    ['an error with a numeric stack', '{"ok":false,"error":{"code":"AGENT_ERROR","message":"m","stack":1}}'],
    ['an error with an extra key', '{"ok":false,"error":{"code":"AGENT_ERROR","message":"m","data":{}}}'],
    ['an error that is a string', '{"ok":false,"error":"AGENT_ERROR"}'],
  ])('%s → INTERNAL "unreadable outcome"', async (_name, text) => {
    const h = await harness(WAITING);
    await until(() => h.notes.received.length === 1);
    h.listener().onReport(text);
    expect(expectCode(await h.run.outcome, 'INTERNAL').message).toBe('the sandbox reported an unreadable outcome');
  });

  it('a non-string outcome → INTERNAL', async () => {
    const h = await harness(WAITING);
    await until(() => h.notes.received.length === 1);
    h.listener().onReport({ ok: true, value: 'forged' });
    expect(expectCode(await h.run.outcome, 'INTERNAL').message).toBe('malformed outcome from the sandbox');
  });

  it.each([['CPU_LIMIT'], ['MEMORY_LIMIT'], ['SANDBOX_CRASHED'], ['INTERNAL'], ['NOT_A_CODE']])(
    'a well-formed outcome claiming %s (not the guest\'s to report) → AGENT_ERROR',
    async (code) => {
      const h = await harness(WAITING);
      await until(() => h.notes.received.length === 1);
      h.listener().onReport(`{"ok":false,"error":{"code":"${code}","message":"forged"}}`);
      expectCode(await h.run.outcome, 'AGENT_ERROR');
    },
  );

  it('a second outcome after the first is not believed', async () => {
    const h = await harness('export default function main() { return "first"; }');
    const out = await h.run.outcome;
    expectOk(out, 'first');
    h.listener().onReport('{"ok":true,"value":"second"}');
    expect((out as Extract<RunOutcome, { status: 'ok' }>).value).toBe('first');
  });
});

describe('an isolate disposed under a waiting run', () => {
  it('the run ends promptly with a typed outcome (it once waited forever for a report that could not come)', async () => {
    const h = await harness('export default async function main() { await new Promise(() => {}); }', { wallMs: 60_000 });
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    h.prepared.isolate.dispose();
    const out = await h.run.outcome;
    expect(out.status).toBe('error');
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});
