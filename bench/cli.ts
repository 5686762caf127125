/**
 * The CLI as a user meets it: the whole process of `contained run hello.js` against `node
 * hello.mjs` printing the same JSON — from this checkout (bin/contained.js: the sources through tsx,
 * the CLI and a worker process) and installed (the same tree compiled into a scratch folder with
 * bin/ and package.json, as npm installs it: dist/, with the compile cache); and, as the floor any
 * fresh sandbox process stands on, `node --no-node-snapshot` creating one isolated-vm isolate that
 * builds the same JSON. Wall time from `spawn` to `exit`, interleaved A B C D A B C D so machine
 * noise hits all alike; medians.
 *
 * With a resident sandbox process (`contained sandbox start`, one per launcher, each in a scratch
 * folder of its own): `contained run hello.js` hands the program to it over its socket instead of
 * forking a worker. Those rows are interleaved with the others; the plain rows run with
 * CONTAINED_RESIDENT=0, so a resident of the user running the bench never serves them.
 *
 * Every run's stdout is checked: the agent's value printed by `contained run` is the text `node
 * hello.mjs` prints, so no row times a failure.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BenchRow, pct, round } from './report.js';

/** Timed runs of each command (after one untimed warm-up each). */
const RUNS = 12;

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CONTAINED = path.join(ROOT, 'bin', 'contained.js');
const VALUE = { hello: 'world', n: 42, list: [1, 2, 3] };
const EXPECTED = `${JSON.stringify(VALUE, null, 2)}\n`;

interface Command {
  label: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Whether stdout is what this command should print. */
  check(stdout: string): boolean;
  ms: number[];
}

function once(args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<{ ms: number; stdout: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      if (code !== 0) reject(new Error(`${args.join(' ')} exited ${code}: ${stderr.slice(0, 500)}`));
      else resolve({ ms, stdout, code });
    });
  });
}

/**
 * The package as npm installs it, built from the tree at `source` into `target`: dist/ compiled by
 * tsc (emitted even if another part of the tree does not type-check right now), bin/, package.json
 * and this checkout's node_modules. Returns the installed launcher.
 */
export function scratchInstall(source: string, target: string): string {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  spawnSync(process.execPath, [tsc, '-p', path.join(source, 'tsconfig.build.json'), '--outDir', path.join(target, 'dist')], { cwd: source, stdio: 'ignore' });
  mkdirSync(path.join(target, 'bin'), { recursive: true });
  copyFileSync(path.join(source, 'bin', 'contained.js'), path.join(target, 'bin', 'contained.js'));
  copyFileSync(path.join(source, 'package.json'), path.join(target, 'package.json'));
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(target, 'node_modules'));
  return path.join(target, 'bin', 'contained.js');
}

export async function cliWholeProcess(): Promise<BenchRow[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-bench-cli-'));
  try {
    const installed = scratchInstall(ROOT, path.join(dir, 'installed'));
    writeFileSync(path.join(dir, 'hello.js'), `export default function main() { return ${JSON.stringify(VALUE)}; }\n`);
    writeFileSync(path.join(dir, 'hello.mjs'), `console.log(JSON.stringify(${JSON.stringify(VALUE)}, null, 2));\n`);
    const ivm = import.meta.resolve('isolated-vm');
    writeFileSync(
      path.join(dir, 'isolate-hello.mjs'),
      `import ivm from ${JSON.stringify(ivm)};
const isolate = new ivm.Isolate({ memoryLimit: 64 });
const context = await isolate.createContext();
const json = await context.eval(${JSON.stringify(`JSON.stringify(${JSON.stringify(VALUE)}, null, 2)`)});
isolate.dispose();
console.log(json);
`,
    );
    const fork = { ...process.env, CONTAINED_RESIDENT: '0' };
    const residentEnv = (name: string): NodeJS.ProcessEnv => {
      const residentDir = path.join(dir, `resident-${name}`);
      mkdirSync(residentDir, { mode: 0o700 });
      return { ...process.env, CONTAINED_RESIDENT_DIR: residentDir };
    };
    const checkoutResident = { launcher: CONTAINED, env: residentEnv('checkout') };
    const installedResidentAt = { launcher: installed, env: residentEnv('installed') };
    const residents = [checkoutResident, installedResidentAt];
    const ranHere = (out: string): boolean => out.startsWith('ok (') && out.endsWith(EXPECTED);
    const commands: Command[] = [
      { label: 'contained', args: [CONTAINED, 'run', 'hello.js'], env: fork, check: ranHere, ms: [] },
      { label: 'installed', args: [installed, 'run', 'hello.js'], env: fork, check: ranHere, ms: [] },
      { label: 'node', args: ['hello.mjs'], env: process.env, check: (out) => out === EXPECTED, ms: [] },
      { label: 'floor', args: ['--no-node-snapshot', 'isolate-hello.mjs'], env: process.env, check: (out) => out === EXPECTED, ms: [] },
      { label: 'contained + resident', args: [CONTAINED, 'run', 'hello.js'], env: checkoutResident.env, check: ranHere, ms: [] },
      { label: 'installed + resident', args: [installed, 'run', 'hello.js'], env: installedResidentAt.env, check: ranHere, ms: [] },
    ];
    try {
      for (const r of residents) {
        const started = spawnSync(process.execPath, [r.launcher, 'sandbox', 'start', '--idle-seconds', '600'], { cwd: dir, env: r.env, encoding: 'utf8' });
        if (started.status !== 0) throw new Error(`contained sandbox start exited ${started.status}: ${started.stderr}`);
      }
      for (let i = 0; i <= RUNS; i++) {
        for (const command of commands) {
          const { ms, stdout } = await once(command.args, dir, command.env);
          if (!command.check(stdout)) throw new Error(`${command.label}: unexpected output ${JSON.stringify(stdout.slice(0, 300))}`);
          if (i > 0) command.ms.push(ms);
        }
      }
      // Every resident row really went through its resident: its run counter holds them all.
      for (const r of residents) {
        const status = spawnSync(process.execPath, [r.launcher, 'sandbox', 'status', '--json'], { cwd: dir, env: r.env, encoding: 'utf8' });
        const runs = (JSON.parse(status.stdout) as { runs?: number }).runs;
        if (runs !== RUNS + 1) throw new Error(`the resident sandbox process served ${runs} runs, not ${RUNS + 1}`);
      }
    } finally {
      for (const r of residents) spawnSync(process.execPath, [r.launcher, 'sandbox', 'stop'], { cwd: dir, env: r.env, stdio: 'ignore' });
    }
    const [contained, installedMs, node, floor, containedResident, installedResident] = commands.map((c) => round(pct(c.ms, 50), 1)) as [number, number, number, number, number, number];
    return [
      {
        name: `CLI whole process: contained run hello.js with a resident sandbox process (contained sandbox start), installed package, median of ${RUNS}`,
        value: installedResident,
        unit: 'ms',
        peer: 'node hello.mjs',
        peerValue: node,
        target: '≤ 1.5×',
      },
      {
        name: `CLI whole process: contained run hello.js with a resident sandbox process (contained sandbox start), checkout (tsx), median of ${RUNS}`,
        value: containedResident,
        unit: 'ms',
        peer: 'node hello.mjs',
        peerValue: node,
        target: '≤ 1.5×',
      },
      {
        name: `CLI whole process: contained run hello.js, installed package (dist/, CLI + worker), median of ${RUNS}`,
        value: installedMs,
        unit: 'ms',
        peer: 'node hello.mjs',
        peerValue: node,
        target: '≤ 1.5×',
      },
      {
        name: `CLI whole process: contained run hello.js, checkout (sources through tsx, CLI + worker), median of ${RUNS}`,
        value: contained,
        unit: 'ms',
        peer: 'node hello.mjs',
        peerValue: node,
        target: '≤ 1.5×',
      },
      {
        name: `floor for a fresh sandbox process: node --no-node-snapshot + one isolated-vm isolate, median of ${RUNS}`,
        value: floor,
        unit: 'ms',
        peer: 'node hello.mjs',
        peerValue: node,
      },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
