/**
 * Where `contained run hello.js` spends its time. Not part of `npm run bench`; run it alone:
 *
 *   node --no-node-snapshot --import tsx bench/profile/cli.ts [timeline] [steps] [imports]
 *
 * - timeline: one `contained run hello.js` (bin/contained.js of this checkout) with
 *   bench/profile/timeline-preload.mjs preloaded into every process (launcher, CLI, worker) through
 *   NODE_OPTIONS; prints each process's events in ms from the launcher's start. With a built
 *   `dist/` (npm run build), also the compiled CLI as an installed package runs it.
 * - steps: medians of whole processes that each add one step (Node without its startup snapshot,
 *   tsx, the CLI without the launcher, in-process instead of a worker…), interleaved.
 * - imports: the import time each big dependency adds, in the order the CLI loads them, in a fresh
 *   `node --no-node-snapshot` (compiled dist/ when present, else the sources through tsx).
 *
 * For a CPU profile of each process instead: NODE_OPTIONS="--cpu-prof --cpu-prof-dir=/tmp/prof"
 * node bin/contained.js run hello.js, then open the .cpuprofile files in Chrome DevTools.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { pct, round } from '../report.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CONTAINED = path.join(ROOT, 'bin', 'contained.js');
const DIST_CLI = path.join(ROOT, 'dist', 'host', 'cli', 'main.js');
const SOURCE_CLI = path.join(ROOT, 'host', 'cli', 'main.ts');
const PRELOAD = fileURLToPath(new URL('./timeline-preload.mjs', import.meta.url));
const TSX = import.meta.resolve('tsx');
const IVM = import.meta.resolve('isolated-vm');
const hasDist = existsSync(DIST_CLI);

const work = mkdtempSync(path.join(os.tmpdir(), 'contained-profile-cli-'));
writeFileSync(path.join(work, 'hello.js'), 'export default function main() { return { hello: "world" }; }\n');
writeFileSync(path.join(work, 'hello.mjs'), 'console.log(JSON.stringify({ hello: "world" }, null, 2));\n');
writeFileSync(
  path.join(work, 'isolate-hello.mjs'),
  `import ivm from ${JSON.stringify(IVM)};\nconst i = new ivm.Isolate({ memoryLimit: 64 });\nconst c = await i.createContext();\nconsole.log(await c.eval('JSON.stringify({ hello: "world" }, null, 2)'));\ni.dispose();\n`,
);

function run(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { cwd: work, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${args.join(' ')}: exit ${code} ${stderr.slice(0, 300)}`))));
  });
}

async function timeline(): Promise<void> {
  const variants: Array<[string, string[]]> = [['checkout: node bin/contained.js run hello.js', [CONTAINED, 'run', 'hello.js']]];
  if (hasDist) variants.push(['installed (dist/, no launcher): node --no-node-snapshot dist/host/cli/main.js run hello.js', ['--no-node-snapshot', DIST_CLI, 'run', 'hello.js']]);
  for (const [label, args] of variants) {
    const dir = path.join(work, `timeline-${variants.findIndex(([l]) => l === label)}`);
    for (let i = 0; i < 2; i++) await run(args);
    mkdirSync(dir);
    await run(args, { ...process.env, NODE_OPTIONS: `--import ${pathToFileURL(PRELOAD).href}?dir=${encodeURIComponent(dir)}` });
    const procs = readdirSync(dir)
      .map((f) => JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as { argv: string[]; events: Array<[string, number]> })
      .sort((a, b) => (a.events[0]?.[1] ?? 0) - (b.events[0]?.[1] ?? 0));
    const t0 = procs[0]?.events[0]?.[1] ?? 0;
    console.log(`\n${label}`);
    for (const p of procs) {
      console.log(`  ${path.relative(ROOT, p.argv[0] ?? '')}`);
      console.log(`    ${p.events.map(([name, at]) => `${name} ${round(at - t0, 1)}`).join(' | ')}`);
    }
  }
}

async function steps(): Promise<void> {
  const ROUNDS = 9;
  const commands: Array<[string, string[]]> = [
    ['node hello.mjs', ['hello.mjs']],
    ['node --no-node-snapshot hello.mjs', ['--no-node-snapshot', 'hello.mjs']],
    ['node --no-node-snapshot + one isolated-vm isolate (floor)', ['--no-node-snapshot', 'isolate-hello.mjs']],
    ['node --no-node-snapshot --import tsx hello.mjs (tsx registered)', ['--no-node-snapshot', '--import', TSX, 'hello.mjs']],
    ['CLI from sources, no launcher: --import tsx host/cli/main.ts run', ['--no-node-snapshot', '--import', TSX, SOURCE_CLI, 'run', 'hello.js']],
    ['CLI from sources, no launcher, --in-process', ['--no-node-snapshot', '--import', TSX, SOURCE_CLI, 'run', 'hello.js', '--in-process']],
    ['bin/contained.js run hello.js (checkout)', [CONTAINED, 'run', 'hello.js']],
  ];
  if (hasDist) {
    commands.push(['dist CLI, no launcher: --no-node-snapshot dist/host/cli/main.js run', ['--no-node-snapshot', DIST_CLI, 'run', 'hello.js']]);
    commands.push(['dist CLI, no launcher, --in-process', ['--no-node-snapshot', DIST_CLI, 'run', 'hello.js', '--in-process']]);
  }
  const times = commands.map(() => [] as number[]);
  for (let r = 0; r <= ROUNDS; r++) {
    for (const [i, [, args]] of commands.entries()) {
      const ms = await run(args);
      if (r > 0) times[i]?.push(ms);
    }
  }
  console.log(`\nwhole processes, median of ${ROUNDS} (ms, interleaved):`);
  for (const [i, [label]] of commands.entries()) console.log(`  ${String(round(pct(times[i] ?? [], 50), 1)).padStart(8)}  ${label}`);
}

function imports(): void {
  const base = hasDist ? pathToFileURL(path.join(ROOT, 'dist')).href : pathToFileURL(ROOT).href.replace(/\/$/, '');
  const ext = hasDist ? 'js' : 'ts';
  const specs = [
    'isolated-vm',
    'zod',
    `${base}/runtime/limits.${ext}`,
    `${base}/runtime/index.${ext}`,
    `${base}/host/cli/run.${ext}`,
    'pino',
    'better-sqlite3',
    'ws',
    'prom-client',
    'nodemailer',
    'tar',
    `${base}/capabilities/index.${ext}`,
    `${base}/host/console/index.${ext}`,
    `${base}/host/host.${ext}`,
    `${base}/host/cli/main.${ext}`,
  ];
  const script = `const out = []; for (const s of ${JSON.stringify(specs)}) { const t = performance.now(); await import(s); out.push(performance.now() - t); } console.log(JSON.stringify(out));`;
  const flags = ['--no-node-snapshot', ...(hasDist ? [] : ['--import', TSX])];
  const samples = specs.map(() => [] as number[]);
  for (let r = 0; r < 9; r++) {
    const res = spawnSync(process.execPath, [...flags, '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    if (res.status !== 0) throw new Error(res.stderr);
    (JSON.parse(res.stdout.trim().split('\n').pop() ?? '[]') as number[]).forEach((ms, i) => samples[i]?.push(ms));
  }
  console.log(`\nimport time each module adds, in order, fresh node ${flags.join(' ')} (${hasDist ? 'dist/' : 'sources via tsx'}), median of 9:`);
  let sum = 0;
  for (const [i, spec] of specs.entries()) {
    const ms = pct(samples[i] ?? [], 50);
    sum += ms;
    console.log(`  ${String(round(ms, 1)).padStart(7)} ms  (total ${String(Math.round(sum)).padStart(4)})  ${spec.replace(base, '')}`);
  }
}

const only = process.argv.slice(2);
try {
  if (only.length === 0 || only.includes('timeline')) await timeline();
  if (only.length === 0 || only.includes('steps')) await steps();
  if (only.length === 0 || only.includes('imports')) imports();
} finally {
  rmSync(work, { recursive: true, force: true });
}
