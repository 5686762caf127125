/**
 * How far the resident sandbox process can take `contained run`: the installed CLI through the
 * resident, against the least a client of the resident can do — connect, send a run spec built by
 * hand (the limits' defaults written out), print the value; no zod, no runtime entry, no CLI — and
 * `node hello.mjs`, interleaved, medians. Not part of `npm run bench` (the bare client is a
 * measuring stick, not a command):
 *
 *   node --no-node-snapshot --import tsx bench/profile/cli-resident-floor.ts [runs]
 *
 * The difference between the first two rows is what the CLI's own loading costs per run.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_LIMITS } from '../../runtime/limits.js';
import { scratchInstall } from '../cli.js';
import { pct, round } from '../report.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RUNS = Number(process.argv[2] ?? 15);
const VALUE = { hello: 'world', n: 42, list: [1, 2, 3] };
const EXPECTED = `${JSON.stringify(VALUE, null, 2)}\n`;

const work = mkdtempSync(path.join(os.tmpdir(), 'contained-resident-floor-'));
const installRoot = path.join(work, 'installed');
const launcher = scratchInstall(ROOT, installRoot);
const residentDir = path.join(work, 'resident');
mkdirSync(residentDir, { mode: 0o700 });
const env = { ...process.env, CONTAINED_RESIDENT_DIR: residentDir };
writeFileSync(path.join(work, 'hello.js'), `export default function main() { return ${JSON.stringify(VALUE)}; }\n`);
writeFileSync(path.join(work, 'hello.mjs'), `console.log(JSON.stringify(${JSON.stringify(VALUE)}, null, 2));\n`);
writeFileSync(
  path.join(installRoot, 'bare-client.mjs'),
  `import { readFileSync } from 'node:fs';
import { connectResident } from './dist/runtime/resident-client.js';
const hold = setInterval(() => {}, 1e6);
const r = await connectResident(process.env.CONTAINED_RESIDENT_DIR + '/sandbox.sock', 2000);
clearInterval(hold);
if (!r.ok) process.exit(9);
const w = r.worker;
w.ref();
const spec = { runId: 'bare-' + process.pid, program: { entry: 'hello.js', files: { 'hello.js': readFileSync('hello.js', 'utf8') } }, input: null, limits: ${JSON.stringify(DEFAULT_LIMITS)}, capabilities: [] };
w.on('message', (m) => { if (m.t === 'done') { process.stdout.write(JSON.stringify(m.outcome.value, null, 2) + '\\n'); w.send({ t: 'exit' }); } });
w.on('exit', () => process.exit(0));
w.send({ t: 'run', spec, streamLogs: false });
`,
);

function once(args: readonly string[]): Promise<{ ms: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { cwd: work, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve({ ms: performance.now() - t0, stdout }) : reject(new Error(`${args.join(' ')} exited ${code}`))));
  });
}

const rows = [
  { label: 'contained run hello.js (installed, resident)', args: [launcher, 'run', 'hello.js'], ms: [] as number[] },
  { label: 'bare resident client (no CLI)', args: [path.join(installRoot, 'bare-client.mjs')], ms: [] as number[] },
  { label: 'node hello.mjs', args: ['hello.mjs'], ms: [] as number[] },
];
try {
  const started = spawnSync(process.execPath, [launcher, 'sandbox', 'start'], { cwd: work, env, encoding: 'utf8' });
  if (started.status !== 0) throw new Error(started.stderr);
  for (let i = 0; i <= RUNS; i++) {
    for (const row of rows) {
      const { ms, stdout } = await once(row.args);
      if (!stdout.endsWith(EXPECTED)) throw new Error(`${row.label}: ${stdout.slice(0, 200)}`);
      if (i > 0) row.ms.push(ms);
    }
  }
} finally {
  spawnSync(process.execPath, [launcher, 'sandbox', 'stop'], { cwd: work, env, stdio: 'ignore' });
}
const node = pct(rows[2]?.ms ?? [], 50);
for (const row of rows) {
  const p50 = pct(row.ms, 50);
  console.log(`${row.label}: ${round(p50, 1)} ms (${round(p50 / node, 2)}x node), median of ${RUNS}`);
}
rmSync(work, { recursive: true, force: true });
