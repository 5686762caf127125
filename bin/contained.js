#!/usr/bin/env node
// The `contained` command. A process that creates isolated-vm isolates must run Node without its
// startup snapshot (--no-node-snapshot: isolated-vm's README; isolates of one process started from
// different snapshots crash it, laverdet/isolated-vm#420). So this launcher re-starts Node with
// that flag for every command that may create isolates in its own process (the host, the demo,
// `run --in-process`, …), and a user typing `npx contained …` never needs to know.
// `contained run` in its default worker mode creates no isolate here (they live in the worker
// process, which is always started with the flag), nor do `version` and help: those run in this
// process, with Node's snapshot, which saves a whole Node start (~100 ms) on every `contained run`.
// A development checkout (sources and tsx present) runs the TypeScript sources through tsx;
// an installed package runs the compiled CLI from dist/, with Node's compile cache in a per-user
// folder (only our own modules are cached there, never agent code).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import module from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// isolated-vm 7.0.1 (the release that fixes GHSA-864f-rcv7-6rh4) needs Node 24 or newer. Say so in
// one line, before anything loads a native module that would fail with a stack trace.
const MIN_NODE_MAJOR = 24;
const nodeMajor = Number.parseInt(process.versions.node.split('.')[0], 10);
if (!(nodeMajor >= MIN_NODE_MAJOR)) {
  process.stderr.write(`contained: Node ${MIN_NODE_MAJOR} or newer is required; this is Node ${process.versions.node} (${process.execPath}). In a checkout, \`. scripts/node-env.sh\` installs Node ${MIN_NODE_MAJOR}.\n`);
  process.exit(2);
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const compiled = join(root, 'dist', 'host', 'cli', 'main.js');
const source = join(root, 'host', 'cli', 'main.ts');
const argv = process.argv.slice(2);
// A development checkout runs its sources (never a stale dist/); an installed package runs dist/.
let tsx;
try {
  tsx = existsSync(source) ? import.meta.resolve('tsx') : undefined;
} catch {
  tsx = undefined;
}

/**
 * Whether these arguments make the CLI create no isolate in its own process. Decided on the raw
 * arguments, failing towards the re-start: any `--in-process` token (even one that is the value of
 * another flag) means the isolates may be created here.
 */
function createsNoIsolate(args) {
  const [name, ...rest] = args;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h' || name === 'version' || name === '--version') return true;
  // `sandbox start` starts the resident sandbox process as a process of its own (with the flag).
  if (name === 'sandbox') return true;
  return name === 'run' && !rest.includes('--in-process');
}

/**
 * A compile-cache folder only this user can write (V8 trusts what it reads there), or undefined.
 * CONTAINED_COMPILE_CACHE=0 (or Node's NODE_DISABLE_COMPILE_CACHE=1) turns it off.
 */
function compileCacheDir() {
  if (process.env.CONTAINED_COMPILE_CACHE === '0') return undefined;
  try {
    const base = process.env.XDG_CACHE_HOME || join(os.homedir(), '.cache');
    const dir = join(base, 'ai-contained', 'compile-cache');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const info = statSync(dir);
    if (!info.isDirectory() || (process.getuid && info.uid !== process.getuid()) || (info.mode & 0o022) !== 0) return undefined;
    return dir;
  } catch {
    return undefined;
  }
}

const cacheDir = tsx ? undefined : compileCacheDir();

if (createsNoIsolate(argv)) {
  if (cacheDir) module.enableCompileCache?.(cacheDir);
  if (tsx) await import(tsx);
  // `run` forks its sandbox worker first, before the CLI itself loads (host/cli/run-early.ts: two
  // small modules; main() finds the worker started and the pool adopts it).
  if (argv[0] === 'run') {
    const early = tsx ? join(root, 'host', 'cli', 'run-early.ts') : join(root, 'dist', 'host', 'cli', 'run-early.js');
    (await import(pathToFileURL(early).href)).startRunWorkerEarly(argv.slice(1));
  }
  const { main } = await import(pathToFileURL(tsx ? source : compiled).href);
  process.exitCode = await main(argv);
} else {
  const args = ['--no-node-snapshot'];
  if (tsx) args.push('--import', tsx, source);
  else args.push(compiled);
  const env = cacheDir ? { ...process.env, NODE_COMPILE_CACHE: cacheDir } : process.env;
  const child = spawn(process.execPath, [...args, ...argv], { stdio: 'inherit', cwd: process.cwd(), env });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
}
