/**
 * Where a warm start and a capability call spend their time, counted in isolated-vm thread hops.
 * Not part of `npm run bench`; run it alone:
 *
 *   node --no-node-snapshot --import tsx bench/profile/hops.ts
 *
 * - Warm start: the engine runs `export default () => 1` in an isolate prepared ahead (as the warm
 *   pool does), through the `IsolateSource` seam of `startRun`; the prepared isolate is wrapped so
 *   every call that crosses to the isolate thread (configure, compile, instantiate, evaluate,
 *   start, the outcome callback, heap statistics) is counted and timed from call to settlement.
 * - An empty hop (`context.eval('0')`): the price of one crossing with no work.
 * - Sequential calls in-process through the raw bridge (no dispatcher): per call, the host side
 *   (the call arrives → its result is handed to `deliver`) and the isolate side (`deliver` → the
 *   next call arrives: the hop in, the agent's await, the hop out).
 * - The worker path adds a JSON IPC round trip per call (call out, result back): timed here with a
 *   forked echo process using the same `fork` options as the worker pool.
 *
 * Prints a JSON object per section; docs/performance.md quotes them.
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ivm from 'isolated-vm';
import { startRun } from '../../runtime/engine.js';
import { DEFAULT_LIMITS } from '../../runtime/limits.js';
import { type IsolateListener, type IsolateSource, type PreparedIsolate, prepareIsolate } from '../../runtime/prepared-isolate.js';
import { programFromSource } from '../../runtime/program.js';
import { pct, round } from '../report.js';

type Marks = Array<[string, number]>;

function median(samples: readonly number[]): number {
  return round(pct(samples, 50), 1);
}

/** The prepared isolate with every crossing recorded in `marks` as [name, µs from call to settlement]. */
function instrumented(p: PreparedIsolate, marks: Marks, events: Marks): PreparedIsolate {
  const t = (): number => performance.now();
  const timed = <A extends unknown[], R>(name: string, f: (...a: A) => Promise<R>) => async (...a: A): Promise<R> => {
    const t0 = t();
    try {
      return await f(...a);
    } finally {
      marks.push([name, (t() - t0) * 1000]);
    }
  };
  /** Same-thread calls (`*Sync`): timed, but no crossing; their names end in "(sync)". */
  const timedSync = <A extends unknown[], R>(name: string, f: (...a: A) => R) => (...a: A): R => {
    const t0 = t();
    try {
      return f(...a);
    } finally {
      marks.push([`${name} (sync)`, (t() - t0) * 1000]);
    }
  };
  const real = p.isolate;
  const wrapModule = (m: ivm.Module): ivm.Module =>
    ({
      get dependencySpecifiers() {
        return m.dependencySpecifiers;
      },
      get namespace() {
        return m.namespace;
      },
      instantiate: timed('instantiate', (context: ivm.Context, resolve: (s: string, r: ivm.Module) => ivm.Module) => m.instantiate(context, resolve)),
      instantiateSync: timedSync('instantiate', (context: ivm.Context, resolve: (s: string, r: ivm.Module) => ivm.Module) => m.instantiateSync(context, resolve)),
      evaluate: timed('evaluate', () => m.evaluate()),
    }) as unknown as ivm.Module;
  const isolate = {
    get cpuTime() {
      return real.cpuTime;
    },
    get isDisposed() {
      return real.isDisposed;
    },
    dispose: () => {
      const t0 = t();
      real.dispose();
      marks.push(['dispose (sync)', (t() - t0) * 1000]);
    },
    getHeapStatistics: timed('heap statistics', () => real.getHeapStatistics()),
    compileModule: timed('compile', async (code: string, options?: ivm.CompileModuleOptions) => wrapModule(await real.compileModule(code, options))),
    compileModuleSync: timedSync('compile', (code: string, options?: ivm.CompileModuleOptions) => wrapModule(real.compileModuleSync(code, options))),
  } as unknown as ivm.Isolate;
  const ref = (name: string, r: ivm.Reference): ivm.Reference =>
    ({
      // The engine passes only plain values (strings, numbers, booleans, a dereferenced namespace).
      apply: timed(name, (recv: undefined, args: Array<string | number | boolean>) => r.apply(recv, args)),
      applySync: timedSync(name, (recv: undefined, args: Array<string | number | boolean>) => r.applySync(recv, args)),
      applyIgnored: (recv: undefined, args: Array<string | number | boolean>) => {
        events.push([`${name} sent`, t()]);
        return r.applyIgnored(recv, args);
      },
    }) as unknown as ivm.Reference;
  return {
    ...p,
    isolate,
    configure: ref('configure', p.configure),
    start: ref('start', p.start),
    deliver: ref('deliver', p.deliver),
    attach(listener: IsolateListener) {
      p.attach({
        ...listener,
        onSubmit: (...a) => {
          events.push(['submit arrived', t()]);
          listener.onSubmit(...a);
        },
        onReport: (outcome) => {
          events.push(['report arrived', t()]);
          listener.onReport(outcome);
        },
      });
    },
  };
}

async function warmStart(): Promise<void> {
  const RUNS = 300;
  const program = programFromSource('export default () => 1');
  const perHop = new Map<string, number[]>();
  const totals: number[] = [];
  const startToReport: number[] = [];
  let hopsPerRun = 0;
  for (let i = 0; i < RUNS + 20; i++) {
    const prepared = await prepareIsolate(DEFAULT_LIMITS.memoryMb);
    await new Promise((r) => setTimeout(r, 2));
    const marks: Marks = [];
    const events: Marks = [];
    const source: IsolateSource = { take: () => instrumented(prepared, marks, events), refill: () => {} };
    const t0 = performance.now();
    const outcome = await startRun({ runId: `warm-${i}`, program, input: null, limits: DEFAULT_LIMITS, capabilities: [] }, { call: async () => ({ ok: true, value: null }) }, source).outcome;
    const total = (performance.now() - t0) * 1000;
    if (outcome.status !== 'ok') throw new Error(JSON.stringify(outcome.error));
    if (i < 20) continue;
    totals.push(total);
    const report = events.find(([n]) => n === 'report arrived');
    if (report) startToReport.push((report[1] - t0) * 1000);
    // Crossings: every timed call but the (synchronous, same-thread) dispose, plus the outcome callback.
    hopsPerRun = marks.filter(([n]) => !n.endsWith('(sync)')).length + events.length;
    for (const [name, us] of marks) perHop.set(name, [...(perHop.get(name) ?? []), us]);
  }
  const hops = Object.fromEntries([...perHop].map(([name, us]) => [name, median(us)]));
  const hopSum = round(Object.values(hops).reduce((a, b) => a + b, 0), 1);
  console.log(
    JSON.stringify({
      section: 'warm start (engine, isolate prepared ahead)',
      runs: RUNS,
      p50TotalUs: median(totals),
      crossingsPerRun: hopsPerRun,
      p50UsEach: hops,
      sumOfTimedStepsUs: hopSum,
      p50OutcomeCallbackArrivesAtUs: median(startToReport),
    }),
  );
}

async function emptyHop(): Promise<void> {
  const isolate = new ivm.Isolate({ memoryLimit: 16 });
  const context = await isolate.createContext();
  const fn = (await context.eval('(function () { return 0; })', { reference: true })) as ivm.Reference;
  const evals: number[] = [];
  const applies: number[] = [];
  for (let i = 0; i < 3000; i++) {
    let t0 = performance.now();
    await context.eval('0');
    evals.push((performance.now() - t0) * 1000);
    t0 = performance.now();
    await fn.apply(undefined, []);
    applies.push((performance.now() - t0) * 1000);
  }
  const sync: number[] = [];
  for (let i = 0; i < 3000; i++) {
    const t0 = performance.now();
    fn.applySync(undefined, []);
    sync.push((performance.now() - t0) * 1000);
  }
  isolate.dispose();
  console.log(JSON.stringify({ section: 'one crossing with no work', p50EvalUs: median(evals), p50ApplyUs: median(applies), p50ApplySyncUs: median(sync) }));
}

async function sequentialCalls(): Promise<void> {
  const N = 5000;
  const source = 'export default async function main(n, caps) { for (let i = 0; i < n; i++) await caps.bench.noop(); return n; }';
  const prepared = await prepareIsolate(DEFAULT_LIMITS.memoryMb);
  const marks: Marks = [];
  const events: Marks = [];
  const t0 = performance.now();
  const outcome = await startRun(
    { runId: 'calls', program: programFromSource(source), input: N, limits: { ...DEFAULT_LIMITS, maxCalls: 100_000, cpuMs: 60_000, wallMs: 120_000 }, capabilities: [{ name: 'bench', methods: ['noop'] }] },
    { call: async () => ({ ok: true, value: null }) },
    { take: () => instrumented(prepared, marks, events), refill: () => {} },
  ).outcome;
  const wall = (performance.now() - t0) * 1000;
  if (outcome.status !== 'ok') throw new Error(JSON.stringify(outcome.error));
  const host: number[] = [];
  const isolateSide: number[] = [];
  for (let i = 1; i < events.length; i++) {
    const [name, at] = events[i] as [string, number];
    const [prev, before] = events[i - 1] as [string, number];
    if (name === 'deliver sent' && prev === 'submit arrived') host.push((at - before) * 1000);
    if (name === 'submit arrived' && prev === 'deliver sent') isolateSide.push((at - before) * 1000);
  }
  console.log(JSON.stringify({ section: 'sequential capability call, in-process, raw bridge', calls: N, meanUsPerCall: round(wall / N, 1), p50HostSideUs: median(host), p50IsolateSideUs: median(isolateSide), crossingsPerCall: 2 }));
}

async function ipcRoundTrip(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-profile-ipc-'));
  const file = path.join(dir, 'echo.mjs');
  writeFileSync(file, "process.on('message', (m) => process.send({ t: 'result', runId: m.runId, seq: m.call.seq, result: { ok: true, value: null } }));\nprocess.send({ t: 'ready' });\n");
  const child = fork(file, [], { execArgv: ['--no-node-snapshot'], serialization: 'json', stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  await new Promise<void>((resolve) => child.once('message', () => resolve()));
  const times: number[] = [];
  for (let i = 0; i < 5000; i++) {
    const t0 = performance.now();
    const back = new Promise<void>((resolve) => child.once('message', () => resolve()));
    child.send({ t: 'call', runId: 'bench-run-0000-0000-0000-000000000000', call: { seq: i, capability: 'bench', method: 'noop', argJson: '', reason: undefined } });
    await back;
    if (i >= 200) times.push((performance.now() - t0) * 1000);
  }
  child.kill();
  rmSync(dir, { recursive: true, force: true });
  console.log(JSON.stringify({ section: 'IPC round trip (fork, serialization json), one message each way', p50Us: median(times) }));
}

const only = process.argv.slice(2);
const sections: Record<string, () => Promise<void>> = { warmStart, emptyHop, sequentialCalls, ipcRoundTrip };
for (const [name, section] of Object.entries(sections)) {
  if (only.length > 0 && !only.includes(name)) continue;
  await section();
}
