/**
 * `npm run bench`: measures the runtime against floors and peers in the same run on the same
 * machine, prints one JSON line per measurement and a table at the end. Not a test: nothing here
 * fails a build; the README's performance table is refreshed from this output.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import vm from 'node:vm';
import ivm from 'isolated-vm';
import { getQuickJS } from 'quickjs-emscripten';
import { z } from 'zod';
import { createInstance, defineCapability } from '../capabilities/sdk/index.js';
import { startRun } from '../runtime/engine.js';
import { DEFAULT_LIMITS } from '../runtime/limits.js';
import { createSandbox } from '../runtime/index.js';
import { programFromSource } from '../runtime/program.js';
import { escalationRoundTrip, operatorSnapshot } from './host.js';
import { type BenchRow, pct, round } from './report.js';

const rows: BenchRow[] = [];
function report(row: BenchRow): void {
  if (row.peerValue !== undefined) row.ratio = round(row.value / row.peerValue);
  rows.push(row);
  process.stdout.write(`${JSON.stringify(row)}\n`);
}

async function timeEach(n: number, f: () => Promise<unknown> | unknown): Promise<number[]> {
  for (let i = 0; i < Math.min(20, n); i++) await f();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await f();
    out.push(performance.now() - t0);
  }
  return out;
}

const noop = defineCapability({
  name: 'bench',
  description: 'benchmark capability',
  scope: z.strictObject({}),
  intersect: (a) => a,
  describeScope: () => 'anything',
  methods: {
    noop: { description: 'does nothing', args: z.number().optional(), result: z.null(), risk: { readOnly: true }, run: () => null },
  },
});

async function coldStart(): Promise<void> {
  const N = 200;
  const floor = await timeEach(N, async () => {
    const isolate = new ivm.Isolate({ memoryLimit: 64 });
    const context = await isolate.createContext();
    await context.eval('1');
    isolate.dispose();
  });
  const sandbox = createSandbox({ isolation: 'in-process', warmIsolates: 0 });
  const ours = await timeEach(N, () => sandbox.run({ source: 'export default () => 1' }));
  await sandbox.close();
  // Warm: an isolate with its context and bootstrap prepared ahead; the pool refills between runs.
  const warmSandbox = createSandbox({ isolation: 'in-process', warmIsolates: 2 });
  const warm: number[] = [];
  for (let i = 0; i < N + 20; i++) {
    await new Promise((r) => setTimeout(r, 8));
    const t0 = performance.now();
    await warmSandbox.run({ source: 'export default () => 1' });
    if (i >= 20) warm.push(performance.now() - t0);
  }
  await warmSandbox.close();
  const QuickJS = await getQuickJS();
  const quick = await timeEach(N, () => {
    const rt = QuickJS.newRuntime();
    const ctx = rt.newContext();
    ctx.unwrapResult(ctx.evalCode('1')).dispose();
    ctx.dispose();
    rt.dispose();
  });
  const nodeVm = await timeEach(N, () => vm.runInNewContext('1'));
  for (const p of [50, 90]) {
    report({ name: `cold start p${p} (create + run; back to back, so each dispose lands in the next run)`, value: round(pct(ours, p)), unit: 'ms', peer: 'bare isolated-vm floor', peerValue: round(pct(floor, p)), target: p === 50 ? '≤ 1.3× floor' : undefined });
  }
  report({ name: 'warm start p50 (isolate prepared ahead + run to its outcome; disposed just after)', value: round(pct(warm, 50)), unit: 'ms', target: '≤ 0.25 ms' });
  report({ name: 'cold start p50 vs quickjs-emscripten', value: round(pct(ours, 50)), unit: 'ms', peer: 'quickjs-emscripten', peerValue: round(pct(quick, 50)) });
  report({ name: 'cold start p50 vs node:vm', value: round(pct(ours, 50)), unit: 'ms', peer: 'node:vm runInNewContext', peerValue: round(pct(nodeVm, 50)) });
}

/**
 * A no-op capability call awaited in a loop (sequential) and many in flight (parallel), in-process
 * and through a worker. One untimed round first (JIT, the worker's first run), then the median of
 * ROUNDS runs, so one disturbed run does not make the row. Each sequential call is two thread
 * hand-offs; on a VM whose other vCPU is idle a hand-off costs several times more than on a busy
 * one (docs/performance.md), so this row moves with the machine's load.
 */
async function callOverhead(): Promise<void> {
  const instance = createInstance(noop, {}, {});
  const N = 2000;
  const ROUNDS = 5;
  const limits = { maxCalls: 100_000, maxConcurrentCalls: 100_000, cpuMs: 60_000, wallMs: 120_000 };
  const sequential = `export default async function main(n, caps) { const t0 = Date.now(); for (let i = 0; i < n; i++) await caps.bench.noop(); return (Date.now() - t0) * 1000 / n; }`;
  const parallel = `export default async function main(n, caps) { const t0 = Date.now(); const ps = []; for (let i = 0; i < n; i++) ps.push(caps.bench.noop()); await Promise.all(ps); return (Date.now() - t0) * 1000 / n; }`;
  for (const isolation of ['in-process', 'worker'] as const) {
    const sandbox = createSandbox({ isolation, workers: 1 });
    const seq: number[] = [];
    const par: number[] = [];
    for (let round = 0; round <= ROUNDS; round++) {
      const s = await sandbox.run({ source: sequential, input: N, capabilities: [instance], limits });
      const p = await sandbox.run({ source: parallel, input: N, capabilities: [instance], limits });
      if (round === 0) continue;
      if (s.status === 'ok') seq.push(s.value as number);
      if (p.status === 'ok') par.push(p.value as number);
    }
    await sandbox.close();
    const target = isolation === 'in-process' ? '≤ 30 µs' : '≤ 100 µs';
    if (seq.length > 0) report({ name: `sequential async call (${isolation}), median of ${ROUNDS} runs`, value: round(pct(seq, 50), 1), unit: 'µs/call', target });
    if (par.length > 0) report({ name: `parallel async calls (${isolation}), median of ${ROUNDS} runs`, value: round(pct(par, 50), 1), unit: 'µs/call' });
  }
  report({ name: 'sync capability call', value: Number.NaN, unit: 'µs/call', target: '≤ 3 µs (not offered: every capability method is async)' });
}

/**
 * A validated no-op capability through the dispatcher (schema, scope check, gate, budgets, result
 * schema) vs the raw bridge (a host function that answers at once). Alternating rounds, median of
 * each, so thread-pool warm-up and machine noise hit both sides alike.
 */
async function validatedVsRaw(): Promise<void> {
  const N = 3000;
  const source = `export default async function main(n, caps) { const t0 = Date.now(); for (let i = 0; i < n; i++) await caps.bench.noop(1); return (Date.now() - t0) * 1000 / n; }`;
  const limits = { ...DEFAULT_LIMITS, maxCalls: 100_000, cpuMs: 60_000, wallMs: 120_000 };
  const sandbox = createSandbox({ isolation: 'in-process' });
  const instance = createInstance(noop, {}, {});
  const raw: number[] = [];
  const validated: number[] = [];
  for (let round = 0; round < 7; round++) {
    const r = await startRun(
      { runId: `raw-${round}`, program: programFromSource(source), input: N, limits, capabilities: [{ name: 'bench', methods: ['noop'] }] },
      { call: async () => ({ ok: true, value: null }) },
    ).outcome;
    const v = await sandbox.run({ source, input: N, limits, capabilities: [instance] });
    if (r.status === 'ok' && v.status === 'ok') {
      raw.push(r.value as number);
      validated.push(v.value as number);
    }
  }
  await sandbox.close();
  if (raw.length > 0) {
    report({ name: 'validated no-op capability call', value: round(pct(validated, 50)), unit: 'µs/call', peer: 'raw bridge', peerValue: round(pct(raw, 50)), target: '≤ 1.2×' });
  }
}

async function idleDensity(): Promise<void> {
  const COUNT = 500;
  const instance = createInstance(noop, {}, {});
  // Each sandbox waits on a call the host holds until the measurement is taken.
  let release!: () => void;
  const gateOpen = new Promise<void>((r) => (release = r));
  const waiting = defineCapability({
    name: 'hold',
    description: 'waits',
    scope: z.strictObject({}),
    intersect: (a) => a,
    describeScope: () => 'anything',
    methods: { wait: { description: 'waits', args: z.undefined(), result: z.null(), risk: { readOnly: true }, run: async () => (await gateOpen, null) } },
  });
  const hold = createInstance(waiting, {}, {});
  global.gc?.();
  const before = process.memoryUsage().rss;
  const sandbox = createSandbox({ isolation: 'in-process' });
  const runs: Promise<unknown>[] = [];
  for (let i = 0; i < COUNT; i++) {
    runs.push(sandbox.run({ source: 'export default async function main(_, caps) { await caps.hold.wait(); return 1; }', capabilities: [hold, instance], limits: { memoryMb: 16, wallMs: 120_000 } }));
  }
  await new Promise((r) => setTimeout(r, 3000));
  const during = process.memoryUsage().rss;
  release();
  await Promise.all(runs);
  await sandbox.close();
  report({ name: `idle density (${COUNT} sandboxes alive, in-process)`, value: round((during - before) / COUNT / 1048576), unit: 'MiB RSS/sandbox', target: '≤ 1.5 MB' });
}

async function computeHeavy(): Promise<void> {
  const body = `const a = []; for (let i = 0; i < 200000; i++) a.push({ id: i, k: (i * 7919) % 100003, s: 'x' + (i % 97) });
    a.sort((x, y) => x.k - y.k || x.id - y.id); const j = JSON.stringify(a); return JSON.parse(j).length;`;
  const sandbox = createSandbox({ isolation: 'in-process' });
  const ours = await timeEach(5, () => sandbox.run({ source: `export default function main() { ${body} }`, limits: { memoryMb: 512, cpuMs: 60_000, wallMs: 60_000 } }));
  await sandbox.close();
  const QuickJS = await getQuickJS();
  const quick = await timeEach(5, () => {
    const rt = QuickJS.newRuntime();
    rt.setMemoryLimit(1024 * 1024 * 1024);
    const ctx = rt.newContext();
    ctx.unwrapResult(ctx.evalCode(`(function () { ${body} })()`)).dispose();
    ctx.dispose();
    rt.dispose();
  });
  report({ name: 'compute: sort + JSON of 200k objects', value: round(pct(ours, 50)), unit: 'ms', peer: 'quickjs-emscripten', peerValue: round(pct(quick, 50)) });
}

async function throughput(): Promise<void> {
  const RUNS = 400;
  const programs = {
    trivial: 'export default () => 1',
    loop: `export default (n) => { let s = 0; for (let i = 0; i < 20000; i++) s += i % (n + 1); return s; }`,
  };
  for (const [name, source] of Object.entries(programs)) {
    const results: Record<string, number> = {};
    for (const isolation of ['in-process', 'worker'] as const) {
      const sandbox = createSandbox({ isolation, workers: 2 });
      await sandbox.run({ source: 'export default () => 1' });
      const t0 = performance.now();
      await Promise.all(Array.from({ length: RUNS }, (_, i) => sandbox.run({ source, input: i })));
      results[isolation] = RUNS / ((performance.now() - t0) / 1000);
      await sandbox.close();
    }
    report({
      name: `runs per second, worker pool (2 workers), ${name === 'trivial' ? 'trivial program' : '20,000-iteration loop'}`,
      value: round(results.worker ?? 0, 1),
      unit: 'runs/s',
      peer: 'in-process',
      peerValue: round(results['in-process'] ?? 0, 1),
      target: name === 'trivial' ? '≥ 1000 runs/s' : undefined,
    });
  }
}

async function fsRead(): Promise<void> {
  let createFs: ((scope: unknown, deps?: unknown) => ReturnType<typeof createInstance>) | undefined;
  try {
    ({ createFs } = (await import('../capabilities/fs/index.js')) as unknown as { createFs: typeof createFs });
  } catch {
    return;
  }
  if (!createFs) return;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'contained-bench-'));
  await writeFile(path.join(dir, 'a.txt'), 'x'.repeat(4096));
  const N = 2000;
  const direct = await timeEach(N, () => readFile(path.join(dir, 'a.txt'), 'utf8'));
  const sandbox = createSandbox({ isolation: 'in-process' });
  const out = await sandbox.run({
    source: `export default async function main(n, caps) { const t0 = Date.now(); for (let i = 0; i < n; i++) await caps.files.read('a.txt'); return (Date.now() - t0) * 1000 / n; }`,
    input: N,
    capabilities: [createFs({ root: dir }, {}).attenuate({ root: dir }, { name: 'files' })],
    limits: { cpuMs: 60_000, wallMs: 120_000 },
  });
  await sandbox.close();
  await rm(dir, { recursive: true, force: true });
  if (out.status === 'ok') {
    report({ name: 'fs.read 4 KiB through the sandbox', value: out.value as number, unit: 'µs/read', peer: 'fs.promises.readFile in the host', peerValue: round(pct(direct, 50) * 1000) });
  } else {
    process.stderr.write(`fs bench failed: ${JSON.stringify(out.error)}\n`);
  }
}

function printTable(): void {
  const header = '| measurement | value | peer / floor | ratio | target |';
  const lines = [header, '|---|---|---|---|---|'];
  for (const r of rows) {
    const value = Number.isNaN(r.value) ? 'n/a' : `${r.value} ${r.unit}`;
    lines.push(`| ${r.name} | ${value} | ${r.peer ? `${r.peer}: ${r.peerValue} ${r.unit}` : ''} | ${r.ratio !== undefined ? `${r.ratio}×` : ''} | ${r.target ?? ''} |`);
  }
  process.stdout.write(`\nMachine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.availableParallelism()} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}\n\n${lines.join('\n')}\n`);
}

async function hostSuite(rows: () => Promise<BenchRow[]>): Promise<void> {
  for (const row of await rows()) report(row);
}

const only = process.argv.slice(2);
const suites: Record<string, () => Promise<void>> = {
  coldStart,
  callOverhead,
  validatedVsRaw,
  fsRead,
  idleDensity,
  computeHeavy,
  throughput,
  escalation: () => hostSuite(escalationRoundTrip),
  snapshot: () => hostSuite(operatorSnapshot),
  api: async () => hostSuite((await import('./api.js')).apiThroughput),
  auditThroughput: async () => hostSuite((await import('./audit.js')).auditThroughput), auditVerify: async () => hostSuite((await import('./audit.js')).auditVerify),
  policyGate: async () => hostSuite((await import('./gate.js')).policyGateDecision),
  cliPair: async () => hostSuite((await import('./cli.js')).cliWholeProcess),
  mcpCapability: async () => hostSuite((await import('./mcp-capability.js')).mcpCapabilityCall),
  mcpStdio: async () => hostSuite((await import('./mcp-stdio.js')).mcpStdioRun),
  fleet: async () => hostSuite((await import('./fleet.js')).fleetBench),
};
for (const [name, suite] of Object.entries(suites)) {
  if (only.length > 0 && !only.includes(name)) continue;
  process.stderr.write(`bench: ${name}…\n`);
  await suite();
}
printTable();
