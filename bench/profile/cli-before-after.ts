/**
 * `contained run hello.js` before and after a change, interleaved in one run (the machine is
 * shared and noisy: only numbers taken side by side compare). Not part of `npm run bench`:
 *
 *   node --no-node-snapshot --import tsx bench/profile/cli-before-after.ts <git rev of "before"> [runs]
 *
 * "Before" is the tree at that revision (git archive into a scratch folder, with this checkout's
 * node_modules); "after" is this working tree. Each is run from its checkout (bin/contained.js
 * with tsx) and installed (compiled into a scratch folder, bench/cli.ts scratchInstall), next to
 * `node hello.mjs` and the fresh-sandbox-process floor; and each installed tree again with a
 * resident sandbox process of its own (`contained sandbox start`, in a scratch folder per tree; the
 * other rows run with CONTAINED_RESIDENT=0). Prints medians and ratios to node.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { scratchInstall } from '../cli.js';
import { pct, round } from '../report.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const rev = process.argv[2];
const RUNS = Number(process.argv[3] ?? 15);
if (!rev) throw new Error('usage: cli-before-after.ts <rev> [runs]');

const work = mkdtempSync(path.join(os.tmpdir(), 'contained-before-after-'));
const VALUE = { hello: 'world', n: 42, list: [1, 2, 3] };
const EXPECTED = `${JSON.stringify(VALUE, null, 2)}\n`;

const FORK = { ...process.env, CONTAINED_RESIDENT: '0' };

function once(args: readonly string[], env: NodeJS.ProcessEnv = FORK): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.on('close', (code) => {
      if (code !== 0 || !stdout.endsWith(EXPECTED)) reject(new Error(`${args.join(' ')}: exit ${code}, ${stdout.slice(0, 200)}`));
      else resolve(performance.now() - t0);
    });
  });
}

try {
  const before = path.join(work, 'before-src');
  mkdirSync(before);
  execFileSync('sh', ['-c', `git -C "${ROOT}" archive "${rev}" | tar -x -C "${before}"`]);
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(before, 'node_modules'));
  const beforeInstalled = scratchInstall(before, path.join(work, 'before-installed'));
  const afterInstalled = scratchInstall(ROOT, path.join(work, 'after-installed'));
  writeFileSync(path.join(work, 'hello.js'), `export default function main() { return ${JSON.stringify(VALUE)}; }\n`);
  writeFileSync(path.join(work, 'hello.mjs'), `console.log(JSON.stringify(${JSON.stringify(VALUE)}, null, 2));\n`);
  writeFileSync(
    path.join(work, 'floor.mjs'),
    `import ivm from ${JSON.stringify(import.meta.resolve('isolated-vm'))};\nconst i = new ivm.Isolate({ memoryLimit: 64 });\nconst c = await i.createContext();\nconsole.log(await c.eval(${JSON.stringify(`JSON.stringify(${JSON.stringify(VALUE)}, null, 2)`)}));\ni.dispose();\n`,
  );
  const residentEnv = (name: string): NodeJS.ProcessEnv => {
    const dir = path.join(work, `resident-${name}`);
    mkdirSync(dir, { mode: 0o700 });
    return { ...process.env, CONTAINED_RESIDENT_DIR: dir };
  };
  const residents: Array<[string, NodeJS.ProcessEnv]> = [
    [beforeInstalled, residentEnv('before')],
    [afterInstalled, residentEnv('after')],
  ];
  for (const [launcher, env] of residents) {
    const started = spawnSync(process.execPath, [launcher, 'sandbox', 'start', '--idle-seconds', '600'], { cwd: work, env, encoding: 'utf8' });
    if (started.status !== 0) throw new Error(`sandbox start exited ${started.status}: ${started.stderr}`);
  }
  const commands: Array<[string, string[], NodeJS.ProcessEnv?]> = [
    [`before (${rev}), installed, resident sandbox process`, [beforeInstalled, 'run', 'hello.js'], residents[0]?.[1]],
    ['after, installed, resident sandbox process', [afterInstalled, 'run', 'hello.js'], residents[1]?.[1]],
    ['node hello.mjs', ['hello.mjs']],
    ['floor: node --no-node-snapshot + one isolate', ['--no-node-snapshot', 'floor.mjs']],
    [`before (${rev}), installed`, [beforeInstalled, 'run', 'hello.js']],
    ['after, installed', [afterInstalled, 'run', 'hello.js']],
    [`before (${rev}), checkout`, [path.join(before, 'bin', 'contained.js'), 'run', 'hello.js']],
    ['after, checkout', [path.join(ROOT, 'bin', 'contained.js'), 'run', 'hello.js']],
  ];
  const ms = commands.map(() => [] as number[]);
  for (let i = 0; i <= RUNS; i++) {
    for (const [k, [, args, env]] of commands.entries()) {
      const t = await once(args, env);
      if (i > 0) ms[k]?.push(t);
    }
  }
  for (const [launcher, env] of residents) {
    const status = spawnSync(process.execPath, [launcher, 'sandbox', 'status', '--json'], { cwd: work, env, encoding: 'utf8' });
    const runs = (JSON.parse(status.stdout) as { runs?: number }).runs;
    if (runs !== RUNS + 1) throw new Error(`a resident sandbox process served ${runs} runs, not ${RUNS + 1}`);
    spawnSync(process.execPath, [launcher, 'sandbox', 'stop'], { cwd: work, env, stdio: 'ignore' });
  }
  const node = pct(ms[2] ?? [], 50);
  process.stdout.write(`load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}, ${os.availableParallelism()} CPUs, medians of ${RUNS}\n\n| command | ms | × node hello.mjs |\n|---|---|---|\n`);
  for (const [k, [label]] of commands.entries()) {
    const m = pct(ms[k] ?? [], 50);
    process.stdout.write(`| ${label} | ${round(m, 1)} | ${round(m / node, 2)} |\n`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
