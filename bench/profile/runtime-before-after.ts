/**
 * The runtime rows of the bench (warm start, cold start against the bare isolated-vm floor,
 * trivial and loop runs per second in the worker pool, sequential capability calls) for a
 * revision and for this working tree, in one process, alternating round by round (the machine is
 * shared and noisy: only numbers taken side by side compare). Not part of `npm run bench`:
 *
 *   node --no-node-snapshot --import tsx bench/profile/runtime-before-after.ts <git rev of "before"> [rounds] [cold warm pool calls]
 *
 * "Before" is the tree at that revision (git archive into a scratch folder with this checkout's
 * node_modules), imported through tsx like this tree; each tree's worker pool starts its own
 * workers. Prints the median over rounds of each round's p50 (or runs/s), before and after.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ivm from 'isolated-vm';
import { z } from 'zod';
import { pct, round } from '../report.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const rev = process.argv[2];
const ROUNDS = Number(process.argv[3] ?? 3);
const only = new Set(process.argv.slice(4));
const wanted = (section: string): boolean => only.size === 0 || only.has(section);
if (!rev) throw new Error('usage: runtime-before-after.ts <rev> [rounds]');

type Sandbox = { run(r: Record<string, unknown>): Promise<{ status: string; value?: unknown }>; close(): Promise<void> };
interface Tree {
  label: string;
  createSandbox(o: Record<string, unknown>): Sandbox;
  noop: unknown;
}

async function loadTree(label: string, root: string): Promise<Tree> {
  const runtime = (await import(pathToFileURL(path.join(root, 'runtime', 'index.ts')).href)) as { createSandbox: Tree['createSandbox'] };
  const sdk = (await import(pathToFileURL(path.join(root, 'capabilities', 'sdk', 'index.ts')).href)) as {
    defineCapability(d: unknown): unknown;
    createInstance(d: unknown, scope: unknown, deps: unknown): unknown;
  };
  const def = sdk.defineCapability({
    name: 'bench',
    description: 'benchmark capability',
    scope: z.strictObject({}),
    intersect: (a: unknown) => a,
    describeScope: () => 'anything',
    methods: { noop: { description: 'does nothing', args: z.number().optional(), result: z.null(), risk: { readOnly: true }, run: () => null } },
  });
  return { label, createSandbox: runtime.createSandbox, noop: sdk.createInstance(def, {}, {}) };
}

/**
 * CPU seconds used so far by this process and its live children (Linux /proc; clock ticks of 10 ms):
 * steadier than runs/s on a machine others load, since waiting for a core costs no CPU.
 */
function cpuSeconds(): number {
  const own = process.cpuUsage();
  let ticks = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === process.pid) ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // Gone meanwhile.
    }
  }
  return (own.user + own.system) / 1e6 + ticks / 100;
}

const samples = new Map<string, number[]>();
function record(key: string, value: number): void {
  samples.set(key, [...(samples.get(key) ?? []), value]);
}

async function p50Of(n: number, f: () => Promise<unknown>, gapMs = 0): Promise<number> {
  const out: number[] = [];
  for (let i = 0; i < n + 10; i++) {
    if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
    const t0 = performance.now();
    await f();
    if (i >= 10) out.push(performance.now() - t0);
  }
  return pct(out, 50);
}

async function round1(tree: Tree): Promise<void> {
  const src = { source: 'export default () => 1' };
  if (wanted('cold')) await coldRound(tree, src);
  if (wanted('warm')) {
    const warm = tree.createSandbox({ isolation: 'in-process', warmIsolates: 2 });
    record(`${tree.label}|warm start p50 (ms)`, await p50Of(100, () => warm.run(src), 8));
    await warm.close();
  }
  if (wanted('pool')) await poolRound(tree, src);
  if (wanted('calls')) await callRound(tree);
  if (wanted('worker1')) {
    const one = tree.createSandbox({ isolation: 'worker', workers: 1 });
    await one.run(src);
    record(`${tree.label}|one run through a worker, p50 (ms), warm`, await p50Of(100, () => one.run(src), 8));
    record(`${tree.label}|one run through a worker, p50 (ms), back to back`, await p50Of(100, () => one.run(src)));
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 200 }, () => one.run(src)));
    record(`${tree.label}|runs/s, 1 worker, trivial burst`, 200 / ((performance.now() - t0) / 1000));
    await one.close();
  }
}

async function coldRound(tree: Tree, src: { source: string }): Promise<void> {
  const floor = await p50Of(100, async () => {
    const isolate = new ivm.Isolate({ memoryLimit: 64 });
    const context = await isolate.createContext();
    await context.eval('1');
    isolate.dispose();
  });
  const cold = tree.createSandbox({ isolation: 'in-process', warmIsolates: 0 });
  const coldMs = await p50Of(100, () => cold.run(src));
  await cold.close();
  record(`${tree.label}|cold start p50 (ms)`, coldMs);
  record(`${tree.label}|cold start / bare floor`, coldMs / floor);
}

async function poolRound(tree: Tree, src: { source: string }): Promise<void> {
  const local = tree.createSandbox({ isolation: 'in-process' });
  await local.run(src);
  const t0 = performance.now();
  const c0 = cpuSeconds();
  await Promise.all(Array.from({ length: 400 }, () => local.run(src)));
  record(`${tree.label}|runs/s, in-process, trivial`, 400 / ((performance.now() - t0) / 1000));
  record(`${tree.label}|CPU ms per run, in-process, trivial`, ((cpuSeconds() - c0) * 1000) / 400);
  await local.close();
  for (const [name, source] of [
    ['trivial', 'export default () => 1'],
    ['20k loop', 'export default (n) => { let s = 0; for (let i = 0; i < 20000; i++) s += i % (n + 1); return s; }'],
  ] as const) {
    const pool = tree.createSandbox({ isolation: 'worker', workers: 2 });
    await pool.run(src);
    const t0 = performance.now();
    const c0 = cpuSeconds();
    await Promise.all(Array.from({ length: 400 }, (_, i) => pool.run({ source, input: i })));
    record(`${tree.label}|runs/s, worker pool (2), ${name}`, 400 / ((performance.now() - t0) / 1000));
    record(`${tree.label}|CPU ms per run (host + workers), worker pool (2), ${name}`, ((cpuSeconds() - c0) * 1000) / 400);
    await pool.close();
  }
}

async function callRound(tree: Tree): Promise<void> {
  const sequential = 'export default async function main(n, caps) { const t0 = Date.now(); for (let i = 0; i < n; i++) await caps.bench.noop(); return (Date.now() - t0) * 1000 / n; }';
  for (const isolation of ['in-process', 'worker']) {
    const sb = tree.createSandbox({ isolation, workers: 1 });
    const limits = { maxCalls: 100_000, maxConcurrentCalls: 100_000, cpuMs: 60_000, wallMs: 120_000 };
    await sb.run({ source: sequential, input: 200, capabilities: [tree.noop], limits });
    for (let i = 0; i < 3; i++) {
      const out = await sb.run({ source: sequential, input: 2000, capabilities: [tree.noop], limits });
      if (out.status === 'ok') record(`${tree.label}|sequential call, ${isolation} (µs)`, out.value as number);
    }
    await sb.close();
  }
}

const work = mkdtempSync(path.join(os.tmpdir(), 'contained-runtime-before-after-'));
try {
  const before = path.join(work, 'before');
  mkdirSync(before);
  execFileSync('sh', ['-c', `git -C "${ROOT}" archive "${rev}" | tar -x -C "${before}"`]);
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(before, 'node_modules'));
  const trees = [await loadTree('before', before), await loadTree('after', ROOT)];
  for (let r = 0; r < ROUNDS; r++) for (const tree of r % 2 === 0 ? trees : [...trees].reverse()) await round1(tree);
  const names = [...new Set([...samples.keys()].map((k) => k.split('|')[1] as string))];
  process.stdout.write(`load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}, ${os.availableParallelism()} CPUs; ${ROUNDS} alternating rounds, medians\n\n| measurement | before (${rev}) | after | after / before |\n|---|---|---|---|\n`);
  for (const name of names) {
    const b = pct(samples.get(`before|${name}`) ?? [], 50);
    const a = pct(samples.get(`after|${name}`) ?? [], 50);
    process.stdout.write(`| ${name} | ${round(b, 3)} | ${round(a, 3)} | ${round(a / b, 2)} |\n`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
