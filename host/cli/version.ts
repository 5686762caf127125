/**
 * `contained version [--json]`: the versions a bug report needs — this package, the Node running it, and
 * the isolated-vm it loads (the sandbox's security rests on it: 7.0.1 fixes GHSA-864f-rcv7-6rh4).
 * Reads package.json files only; never loads isolated-vm (only runtime/ does). A version it cannot find
 * prints as `unknown` rather than failing.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ContainedError } from '../../runtime/errors.js';
import type { CliIo } from './args.js';

export interface Versions {
  'ai-contained': string;
  node: string;
  'isolated-vm': string;
}

export function versions(): Versions {
  return { 'ai-contained': packageVersion(), node: process.versions.node, 'isolated-vm': isolatedVmVersion() };
}

export async function versionCommand(argv: string[], io: CliIo): Promise<number> {
  const json = argv[0] === '--json';
  if (argv.length > (json ? 1 : 0)) throw new ContainedError('USAGE', 'usage: contained version [--json]');
  const v = versions();
  io.stdout(json ? `${JSON.stringify(v)}\n` : `ai-contained ${v['ai-contained']}\nnode ${v.node}\nisolated-vm ${v['isolated-vm']}\n`);
  return 0;
}

/** package.json is two folders up from the sources, three from dist/. */
function packageVersion(): string {
  for (const rel of ['../../package.json', '../../../package.json']) {
    const pkg = readJson(new URL(rel, import.meta.url));
    if (pkg?.name === 'ai-contained' && typeof pkg.version === 'string') return pkg.version;
  }
  return 'unknown';
}

/** The isolated-vm that `runtime/` resolves from here (its package.json has no `exports`, so this path is public). */
function isolatedVmVersion(): string {
  try {
    const pkg = readJson(createRequire(import.meta.url).resolve('isolated-vm/package.json'));
    return typeof pkg?.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

function readJson(file: URL | string): { name?: unknown; version?: unknown } | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
  } catch {
    return undefined;
  }
}
