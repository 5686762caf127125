/** `contained version`: this package's, Node's and isolated-vm's versions, in process and through the launcher. */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../host/cli/main.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const own = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const ivm = (createRequire(import.meta.url)('isolated-vm/package.json') as { version: string }).version;

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t) });
  return { code, out, err };
}

describe('contained version', () => {
  it('prints ai-contained, Node and isolated-vm, one per line', async () => {
    expect(ivm).toBe('7.0.1');
    expect(await cli(['version'])).toEqual({ code: 0, out: `ai-contained ${own}\nnode ${process.versions.node}\nisolated-vm ${ivm}\n`, err: '' });
    expect((await cli(['--version'])).out).toBe((await cli(['version'])).out);
  });

  it('--json prints one object', async () => {
    const { code, out } = await cli(['version', '--json']);
    expect(code).toBe(0);
    expect(JSON.parse(out)).toEqual({ 'ai-contained': own, node: process.versions.node, 'isolated-vm': ivm });
  });

  it('refuses anything else as a usage error', async () => {
    expect(await cli(['version', '--jsn'])).toMatchObject({ code: 2, out: '' });
    expect(await cli(['version', '--json', 'x'])).toMatchObject({ code: 2, out: '' });
  });

  it('through the launcher', async () => {
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [path.join(ROOT, 'bin/contained.js'), 'version'], { cwd: ROOT, timeout: 60_000 }, (error, out) => (error ? reject(error) : resolve(out)));
    });
    expect(stdout).toBe(`ai-contained ${own}\nnode ${process.versions.node}\nisolated-vm ${ivm}\n`);
  });
});
