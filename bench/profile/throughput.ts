/**
 * Where the worker pool's runs per second go: the same 400 concurrent runs as `npm run bench --
 * throughput` (a trivial program and the bench's 20,000-iteration loop), against the floor of a
 * fresh isolated-vm isolate per run (create, context, evaluate, dispose; nothing of ours) in this
 * process and spread over two processes as the pool does, and the CPU each step of preparing an
 * isolate costs. (`new ivm.Isolate` runs on the calling thread, so one process creates isolates on
 * one core.) Not part of `npm run bench`; run it alone:
 *
 *   node --no-node-snapshot --import tsx bench/profile/throughput.ts
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ivm from 'isolated-vm';
import { prepareIsolate } from '../../runtime/prepared-isolate.js';
import { createSandbox } from '../../runtime/index.js';
import { pct, round } from '../report.js';

const RUNS = 400;
const PROGRAMS = {
  trivial: { source: 'export default () => 1', script: '1' },
  loop: {
    source: 'export default (n) => { let s = 0; for (let i = 0; i < 20000; i++) s += i % (n + 1); return s; }',
    script: '(() => { let s = 0; for (let i = 0; i < 20000; i++) s += i % 4; return s; })()',
  },
} as const;

function cpuMs(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
}

async function bare(script: string): Promise<void> {
  const isolate = new ivm.Isolate({ memoryLimit: 64 });
  const context = await isolate.createContext();
  await context.eval(script);
  isolate.dispose();
}

for (const [name, program] of Object.entries(PROGRAMS)) {
  for (let i = 0; i < 50; i++) await bare(program.script);
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  await Promise.all(Array.from({ length: RUNS }, () => bare(program.script)));
  const wall = performance.now() - t0;
  console.log(JSON.stringify({ section: `floor: fresh bare isolate per run, ${RUNS} at once, this process`, program: name, runsPerSecond: round((RUNS / wall) * 1000, 1), cpuMsPerRun: round(cpuMs(c0) / RUNS, 3) }));

  for (const isolation of ['in-process', 'worker'] as const) {
    const sandbox = createSandbox({ isolation, workers: 2 });
    await sandbox.run({ source: program.source, input: 1 });
    const s0 = performance.now();
    const c1 = process.cpuUsage();
    await Promise.all(Array.from({ length: RUNS }, (_, i) => sandbox.run({ source: program.source, input: i })));
    const swall = performance.now() - s0;
    const hostCpu = cpuMs(c1);
    await sandbox.close();
    console.log(JSON.stringify({ section: `createSandbox, ${RUNS} at once`, program: name, isolation, runsPerSecond: round((RUNS / swall) * 1000, 1), cpuMsPerRunInThisProcess: round(hostCpu / RUNS, 3) }));
  }
}

/** The floor with `procs` processes sharing the runs, as the pool's workers do (trivial program). */
async function bareProcesses(procs: number): Promise<number> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-profile-floor-'));
  const file = path.join(dir, 'floor.mjs');
  writeFileSync(
    file,
    `import ivm from ${JSON.stringify(import.meta.resolve('isolated-vm'))};
async function bare() { const i = new ivm.Isolate({ memoryLimit: 64 }); const c = await i.createContext(); await c.eval('1'); i.dispose(); }
for (let k = 0; k < 30; k++) await bare();
process.on('message', async (n) => { await Promise.all(Array.from({ length: n }, bare)); process.send('done'); });
process.send('ready');
`,
  );
  const kids = Array.from({ length: procs }, () => fork(file, [], { execArgv: ['--no-node-snapshot'] }));
  try {
    await Promise.all(kids.map((k) => new Promise((resolve) => k.once('message', resolve))));
    const t0 = performance.now();
    await Promise.all(kids.map((k) => new Promise((resolve) => (k.once('message', resolve), k.send(RUNS / procs)))));
    return (RUNS / (performance.now() - t0)) * 1000;
  } finally {
    for (const k of kids) k.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}
for (const procs of [1, 2]) {
  console.log(JSON.stringify({ section: `floor: fresh bare isolate per run, ${RUNS} shared by ${procs} process(es)`, program: 'trivial', runsPerSecond: round(await bareProcesses(procs), 1) }));
}

// One isolate's preparation, step by step (sequential, so each is its own cost).
const steps: Record<string, number[]> = { 'new Isolate': [], createContext: [], 'dispose (empty context)': [], 'prepareIsolate (isolate + context + bootstrap)': [], 'dispose (bootstrapped)': [] };
for (let i = 0; i < 320; i++) {
  let t0 = performance.now();
  const isolate = new ivm.Isolate({ memoryLimit: 64 });
  steps['new Isolate']?.push(performance.now() - t0);
  t0 = performance.now();
  await isolate.createContext();
  steps.createContext?.push(performance.now() - t0);
  t0 = performance.now();
  isolate.dispose();
  steps['dispose (empty context)']?.push(performance.now() - t0);
  t0 = performance.now();
  const prepared = await prepareIsolate(64);
  steps['prepareIsolate (isolate + context + bootstrap)']?.push(performance.now() - t0);
  t0 = performance.now();
  prepared.isolate.dispose();
  steps['dispose (bootstrapped)']?.push(performance.now() - t0);
}
console.log(JSON.stringify({ section: 'preparing one isolate, p50 µs (sequential)', steps: Object.fromEntries(Object.entries(steps).map(([k, v]) => [k, round(pct(v.slice(20), 50) * 1000, 0)])) }));
