/**
 * The package entries refuse a Node started without --no-node-snapshot (preflight.ts): the predicate
 * with lookalike flags, then real child processes importing the entries with and without the flag.
 * This test file itself runs in a vitest fork started with the flag, and imports the entry: a fork
 * must not be refused.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkNodeSnapshot, type NodeStartup, splitNodeOptions } from '../../preflight.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const FLAG = '--no-node-snapshot';

const startup = (over: Partial<NodeStartup>): NodeStartup => ({ execArgv: [], nodeOptions: undefined, cachedBuiltins: true, builtWithSnapshot: true, ...over });

describe('checkNodeSnapshot', () => {
  it('believes the probe: the built-in code cache is loaded only from the startup snapshot', () => {
    expect(checkNodeSnapshot(startup({ cachedBuiltins: false }))).toEqual({ ok: true, reason: 'probe' });
    expect(checkNodeSnapshot(startup({ cachedBuiltins: true }))).toMatchObject({ ok: false, code: 'NODE_SNAPSHOT' });
    // A flag-like value of another option, or a flag the probe contradicts, does not outvote it.
    expect(checkNodeSnapshot(startup({ execArgv: ['--title', FLAG] }))).toMatchObject({ ok: false });
    expect(checkNodeSnapshot(startup({ execArgv: [FLAG] }))).toMatchObject({ ok: false });
  });

  it('says when NODE_OPTIONS names the flag but was set after Node started', () => {
    const result = checkNodeSnapshot(startup({ nodeOptions: FLAG }));
    expect(result).toMatchObject({ ok: false, code: 'NODE_SNAPSHOT' });
    expect(result.ok === false && result.message).toMatch(/set after this Node started/);
    const plain = checkNodeSnapshot(startup({}));
    expect(plain.ok === false && plain.message).not.toMatch(/set after/);
  });

  it('lets a Node built without a startup snapshot through', () => {
    expect(checkNodeSnapshot(startup({ builtWithSnapshot: false }))).toEqual({ ok: true, reason: 'no-snapshot-build' });
  });

  it('without the probe, reads the flags as Node does and fails closed on lookalikes', () => {
    const flags = (execArgv: string[], nodeOptions?: string) => checkNodeSnapshot(startup({ cachedBuiltins: undefined, execArgv, nodeOptions })).ok;
    expect(flags([FLAG])).toBe(true);
    expect(flags(['--no_node_snapshot'])).toBe(true);
    expect(flags([], FLAG)).toBe(true);
    expect(flags([], `--max-old-space-size=512   "${FLAG}"`)).toBe(true);
    expect(flags([])).toBe(false);
    expect(flags([FLAG, '--node-snapshot'])).toBe(false); // the last one wins
    expect(flags(['--node-snapshot'], FLAG)).toBe(false); // the command line comes after NODE_OPTIONS
    expect(flags([`${FLAG}s`, `-${FLAG}`, FLAG.slice(1), FLAG.toUpperCase()])).toBe(false);
    expect(flags([], `--require "./${FLAG}.cjs"`)).toBe(false);
    expect(flags([], `--title="a ${FLAG}"`)).toBe(false);
  });

  it('splits NODE_OPTIONS on white space outside double quotes', () => {
    expect(splitNodeOptions('  --a  "b c" --d="e\\"f" ""  ')).toEqual(['--a', 'b c', '--d=e"f', '']);
  });
});

function node(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: undefined, ...env };
  for (const [k, v] of Object.entries(childEnv)) if (v === undefined) delete childEnv[k];
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: ROOT, timeout: 60_000, env: childEnv }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

const importEntry = (entry: string, then = "console.log(Object.keys(m).length > 0 ? 'loaded' : 'empty')") =>
  ['--import', 'tsx', '--input-type=module', '-e', `const m = await import(${JSON.stringify(path.join(ROOT, entry))}); ${then}`];

describe('importing the package entries in a child Node', () => {
  it('without the flag: one error line naming the flag and NODE_OPTIONS, a non-zero exit, no native crash', async () => {
    for (const entry of ['index.ts', 'host-entry.ts']) {
      const { code, stdout, stderr } = await node(importEntry(entry));
      expect(code, stderr).toBe(1);
      expect(stdout).toBe('');
      const lines = stderr.split('\n').filter((l) => l.startsWith('Error: '));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^Error: ai-contained: start Node with --no-node-snapshot /);
      expect(lines[0]).toContain('NODE_OPTIONS=--no-node-snapshot');
      expect(stderr).not.toMatch(/node_modules[/\\]isolated-vm|isolated_vm\.node|SIGSEGV|Segmentation|Check failed/);
    }
  });

  it('with the flag on the command line, or in NODE_OPTIONS: loads', async () => {
    expect(await node([FLAG, ...importEntry('index.ts')])).toMatchObject({ code: 0, stdout: 'loaded\n' });
    expect(await node([FLAG, ...importEntry('host-entry.ts')])).toMatchObject({ code: 0, stdout: 'loaded\n' });
    expect(await node(importEntry('index.ts'), { NODE_OPTIONS: FLAG })).toMatchObject({ code: 0, stdout: 'loaded\n' });
  });

  it('NODE_OPTIONS assigned inside the process is too late, and the message says so', async () => {
    const { code, stderr } = await node(['--input-type=module', '-e', `process.env.NODE_OPTIONS = '${FLAG}'; await import('tsx'); await import(${JSON.stringify(path.join(ROOT, 'index.ts'))});`]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/set after this Node started/);
  });

  it('the worker pool’s processes are not refused: a worker-isolation run through the entry', async () => {
    const run = `const s = m.createSandbox({ isolation: 'worker', workers: 1 });
      const o = await s.run({ source: 'export default async (i) => i.n * 2', input: { n: 21 } });
      await s.close(); console.log(o.status, o.value);`;
    expect(await node([FLAG, ...importEntry('index.ts', run)])).toMatchObject({ code: 0, stdout: 'ok 42\n' });
  });
});
