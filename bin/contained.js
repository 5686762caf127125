#!/usr/bin/env node
// The `contained` command. isolated-vm on Node 20+ must run with --no-node-snapshot, so this
// launcher starts Node with that flag (a user typing `npx contained …` never needs to know).
// It runs the compiled CLI from dist/ when present, else the TypeScript sources through tsx
// (a development checkout).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const compiled = join(root, 'dist', 'host', 'cli', 'main.js');
const args = ['--no-node-snapshot'];
if (existsSync(compiled)) args.push(compiled);
// tsx is resolved from this package, not from the caller's folder.
else args.push('--import', import.meta.resolve('tsx'), join(root, 'host', 'cli', 'main.ts'));

const child = spawn(process.execPath, [...args, ...process.argv.slice(2)], { stdio: 'inherit', cwd: process.cwd() });
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => {
  if (signal) process.kill(process.pid, signal);
  else process.exit(code ?? 1);
});
