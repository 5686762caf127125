#!/usr/bin/env node
// The `contained` command. isolated-vm on Node 20+ (its README) must run with --no-node-snapshot, so this
// launcher starts Node with that flag (a user typing `npx contained …` never needs to know).
// A development checkout (sources and tsx present) runs the TypeScript sources through tsx;
// an installed package runs the compiled CLI from dist/.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
const args = ['--no-node-snapshot'];
// A development checkout runs its sources (never a stale dist/); an installed package runs dist/.
let tsx;
try {
  tsx = existsSync(source) ? import.meta.resolve('tsx') : undefined;
} catch {
  tsx = undefined;
}
if (tsx) args.push('--import', tsx, source);
else args.push(compiled);

const child = spawn(process.execPath, [...args, ...process.argv.slice(2)], { stdio: 'inherit', cwd: process.cwd() });
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => {
  if (signal) process.kill(process.pid, signal);
  else process.exit(code ?? 1);
});
