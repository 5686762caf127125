/**
 * What an agent program may be and what it may return or throw: module loading (syntax errors,
 * bare and escaping imports, relative imports across modules), return values that are not JSON,
 * thrown values that are not Errors, deep recursion. Every failure is a typed outcome with an
 * exact code; the sandbox serves the next run.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ContainedError, createSandbox, loadProgramFromFile, validateProgram } from '../../runtime/index.js';
import { MODES, expectCode, expectHealthy, expectNoHostDetail, expectOk, timed } from '../helpers/sandbox.js';

const limits = { cpuMs: 1000, wallMs: 10_000, memoryMb: 64 };

describe.each(MODES)('agent programs (%s)', (isolation) => {
  const sb = createSandbox({ isolation });
  afterAll(() => sb.close());

  describe('loading', () => {
    it('syntax error → INVALID_PROGRAM naming the module', async () => {
      const { out } = await timed(sb, { source: 'export default function main({ return 1 }', limits });
      const error = expectCode(out, 'INVALID_PROGRAM');
      expect(error.message).toMatch(/main\.js/);
      expectNoHostDetail(out);
      await expectHealthy(sb);
    });

    it('syntax error in an imported module → INVALID_PROGRAM naming that module', async () => {
      const program = { files: { 'main.js': 'import { x } from "./lib/bad.js"; export default () => x;', 'lib/bad.js': 'export const x = ;' }, entry: 'main.js' };
      const error = expectCode((await timed(sb, { program, limits })).out, 'INVALID_PROGRAM');
      expect(error.message).toMatch(/lib\/bad\.js/);
    });

    it.each([
      ['import fs from "node:fs"', 'import fs from "node:fs"; export default function main() { return typeof fs; }', 'node:fs'],
      ['import from a bare package name', 'import _ from "lodash"; export default function main() { return 1; }', 'lodash'],
      ['export-from a Node built-in', 'export { readFile } from "fs/promises"; export default function main() { return 1; }', 'fs/promises'],
      ['import of an absolute path', 'import x from "/etc/passwd"; export default function main() { return 1; }', '/etc/passwd'],
      ['import of a URL', 'import x from "file:///work/main/runtime/engine.ts"; export default function main() { return 1; }', 'file:'],
    ])('bare import: %s → INVALID_PROGRAM with a clear message', async (_name, source, specifier) => {
      const error = expectCode((await timed(sb, { source, limits })).out, 'INVALID_PROGRAM');
      expect(error.message).toContain(specifier);
      expect(error.message).toMatch(/only relative imports/);
      await expectHealthy(sb);
    });

    it('dynamic import() of a built-in fails inside the sandbox', async () => {
      const source = 'export default async function main() { try { await import("node:fs"); return "imported"; } catch (e) { return "refused"; } }';
      expectOk((await timed(sb, { source, limits })).out, 'refused');
    });

    it('relative import that leaves the program → INVALID_PROGRAM', async () => {
      const program = { files: { 'main.js': 'import x from "../outside.js"; export default () => x;' }, entry: 'main.js' };
      const error = expectCode((await timed(sb, { program, limits })).out, 'INVALID_PROGRAM');
      expect(error.message).toMatch(/leaves the program/);
    });

    it('relative import of a missing module → INVALID_PROGRAM', async () => {
      const program = { files: { 'main.js': 'import x from "./missing.js"; export default () => x;' }, entry: 'main.js' };
      const error = expectCode((await timed(sb, { program, limits })).out, 'INVALID_PROGRAM');
      expect(error.message).toMatch(/missing\.js/);
    });

    it('relative imports across modules, folders, cycles and data modules work', async () => {
      const program = {
        files: {
          'main.js': 'import { twice } from "./lib/math.js"; import { name } from "./lib/deep/name.js"; import data from "./data.json"; import text from "./notes.txt";\nexport default function main(input) { return { v: twice(input.n), name, data, text }; }',
          'lib/math.js': 'import { one } from "./deep/name.js"; export function twice(n) { return 2 * n * one; }',
          'lib/deep/name.js': 'import { twice } from "../math.js"; export const name = "deep"; export const one = 1; export const cyclic = typeof twice;',
          'data.json': '{ "k": [1, 2] }',
          'notes.txt': 'plain text',
        },
        entry: 'main.js',
      };
      expectOk((await timed(sb, { program, input: { n: 21 }, limits })).out, { v: 42, name: 'deep', data: { k: [1, 2] }, text: 'plain text' });
    });

    it('entry without a default export → INVALID_PROGRAM', async () => {
      expectCode((await timed(sb, { source: 'export const main = () => 1;', limits })).out, 'INVALID_PROGRAM');
    });

    it('module top-level throw → AGENT_ERROR', async () => {
      const error = expectCode((await timed(sb, { source: 'throw new Error("at load");\nexport default () => 1;', limits })).out, 'AGENT_ERROR');
      expect(error.message).toMatch(/at load/);
    });
  });

  describe('return values', () => {
    it.each([
      ['BigInt', 'export default function main() { return 1n; }'],
      ['BigInt nested in an object', 'export default function main() { return { a: [1, 2n] }; }'],
      ['a cycle', 'export default function main() { const a = {}; a.self = a; return a; }'],
      ['a function', 'export default function main() { return () => 1; }'],
      ['a symbol', 'export default function main() { return Symbol("s"); }'],
      ['toJSON that throws', 'export default function main() { return { toJSON() { throw new Error("nope"); } }; }'],
    ])('returning %s → INVALID_OUTPUT', async (_name, source) => {
      const { out } = await timed(sb, { source, limits });
      expectCode(out, 'INVALID_OUTPUT');
      expectNoHostDetail(out);
      await expectHealthy(sb);
    });

    it('returning undefined → ok with null; nested functions are dropped as JSON drops them', async () => {
      expectOk((await timed(sb, { source: 'export default function main() {}', limits })).out, null);
      expectOk((await timed(sb, { source: 'export default function main() { return { a: 1, f() {} }; }', limits })).out, { a: 1 });
    });

    it('returned __proto__ key stays data and never pollutes the host', async () => {
      const source = 'export default function main() { return JSON.parse(\'{"__proto__": {"polluted": "yes"}, "a": 1}\'); }';
      const { out } = await timed(sb, { source, limits });
      expect(out.status).toBe('ok');
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted')).toBe(false);
    });
  });

  describe('thrown values', () => {
    it.each([
      ['null', 'throw null;', /null/],
      ['undefined', 'throw undefined;', /undefined/],
      ['a string', 'throw "boom";', /boom/],
      ['a number', 'throw 42;', /42/],
      ['a symbol', 'throw Symbol("s");', /symbol/],
      ['a plain object with a message', 'throw { message: "plain" };', /plain/],
      ['an object with a non-string message', 'throw { message: 7 };', /7/],
      ['an object whose message getter throws', 'throw { get message() { throw new Error("inner"); } };', /could not be described/],
      ['a Proxy that throws on every trap', 'throw new Proxy({}, { get() { throw 1; }, getPrototypeOf() { throw 1; }, has() { throw 1; } });', /could not be described/],
      ['a rejection with null after an await', 'await null; return Promise.reject(null);', /null/],
    ])('throwing %s → AGENT_ERROR', async (_name, body, message) => {
      const { out } = await timed(sb, { source: `export default async function main() { ${body} }`, limits });
      const error = expectCode(out, 'AGENT_ERROR');
      expect(error.message).toMatch(message);
      expectNoHostDetail(out);
      await expectHealthy(sb);
    });

    it('a thrown Error keeps its message and a stack of sandbox frames only', async () => {
      const { out } = await timed(sb, { source: 'export default function main() { throw new TypeError("bad"); }', limits });
      const error = expectCode(out, 'AGENT_ERROR');
      expect(error.message).toBe('bad');
      expect(error.stack).toMatch(/^TypeError: bad\n\s+at main \(main\.js:1:\d+\)$/);
    });

    it('an agent-thrown error cannot claim a limit code it did not hit', async () => {
      const source = 'export default function main() { const e = new Error("fake"); e.name = "CapabilityError"; e.code = "CPU_LIMIT"; throw e; }';
      expectCode((await timed(sb, { source, limits })).out, 'AGENT_ERROR');
    });
  });

  describe('deep recursion', () => {
    // Observed: V8 throws a catchable RangeError inside the isolate long before any limit, so the
    // outcome is the agent's own error, AGENT_ERROR with the RangeError message.
    it('unbounded recursion → AGENT_ERROR "Maximum call stack size exceeded"', async () => {
      const { out } = await timed(sb, { source: 'export default function main() { const f = (n) => f(n + 1) + 1; return f(0); }', limits });
      const error = expectCode(out, 'AGENT_ERROR');
      expect(error.message).toBe('Maximum call stack size exceeded');
      expectNoHostDetail(out);
      await expectHealthy(sb);
    });

    it('unbounded recursion after an await and through a getter → AGENT_ERROR', async () => {
      const source = 'export default async function main() { await null; const o = { get x() { return this.x; } }; return o.x; }';
      expect(expectCode((await timed(sb, { source, limits })).out, 'AGENT_ERROR').message).toBe('Maximum call stack size exceeded');
    });

    it('recursion caught and retried in a loop is stopped by the CPU limit', async () => {
      const source = 'export default function main() { const f = (n) => f(n + 1); for (;;) { try { f(0); } catch {} } }';
      expectCode((await timed(sb, { source, limits: { ...limits, cpuMs: 300 } })).out, 'CPU_LIMIT');
    });
  });
});

/**
 * Module names. A program's module paths are keys of its own file map, never host paths, so they may
 * hold any character a file name may (`my+agent.js`, spaces, accents, a leading dot); a path is
 * refused only for a stated rule: empty, absolute, an empty / "." / ".." segment, a segment longer
 * than a file name may be (255 bytes) or a path past 4096 bytes, a NUL or other control character
 * (they would rewrite the terminal that shows an error or a stack). Every refusal says which rule.
 */
describe('module names', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'contained-names-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const write = async (rel: string, text: string): Promise<string> => {
    const file = path.join(dir, rel);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, text);
    return file;
  };

  it('an entry and imports with +, spaces, accents, #, a leading dot load and run (both modes)', async () => {
    await write('names/lib/with space+plus (1).js', 'export const a = "space+plus";');
    await write('names/données/ünï.mjs', 'export const b = "unicode";');
    await write('names/.hidden.js', 'export const c = "hidden";');
    await write('names/data #1.json', '{ "d": "hash" }');
    const entry = await write(
      'names/my+agent.js',
      'import { a } from "./lib/with space+plus (1).js"; import { b } from "./données/ünï.mjs"; import { c } from "./.hidden.js"; import data from "./data #1.json";\nexport default function main() { return [a, b, c, data.d]; }',
    );
    const program = await loadProgramFromFile(entry);
    expect(program.entry).toBe('my+agent.js');
    expect(Object.keys(program.files).sort()).toEqual(['.hidden.js', 'data #1.json', 'données/ünï.mjs', 'lib/with space+plus (1).js', 'my+agent.js']);
    for (const isolation of MODES) {
      const sb = createSandbox({ isolation, workers: 1, warmIsolates: 0 });
      try {
        expectOk(await sb.run({ program, limits }), ['space+plus', 'unicode', 'hidden', 'hash']);
      } finally {
        await sb.close();
      }
    }
  });

  it("contained run 'my+agent.js' runs (the reported failure: INVALID_PROGRAM cannot load module, no reason)", async () => {
    const entry = await write('cli/my+agent.js', 'export default function main(input) { return { got: input }; }');
    const res = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [path.resolve('bin/contained.js'), 'run', entry, '--input', '7', '--json'], { timeout: 60_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr }),
      );
    });
    expect(res.stderr).toBe('');
    expect(JSON.parse(res.stdout)).toMatchObject({ status: 'ok', value: { got: 7 } });
    expect(res.code).toBe(0);
  });

  it.each([
    ['an empty path', '', /empty/],
    ['an absolute path', '/abs.js', /absolute/],
    ['an empty segment', 'a//b.js', /empty segment/],
    ['a trailing slash', 'a/', /empty segment/],
    ['a "." segment', './a.js', /"\." or "\.\." segment/],
    ['a ".." segment', 'a/../b.js', /"\." or "\.\." segment/],
    ['a NUL character', 'a\u0000.js', /control character \(U\+0000\)/],
    ['an escape sequence', 'a\u001b[31m.js', /control character \(U\+001B\)/],
    ['a C1 control (CSI)', 'a\u009b31m.js', /control character \(U\+009B\)/],
    ['a segment longer than a file name may be', `${'x'.repeat(256)}.js`, /longer than 255 bytes/],
    ['a path longer than 4096 bytes', `${'abcdefgh/'.repeat(460)}a.js`, /longer than 4096 bytes/],
  ])('a module path with %s is refused, naming the rule', async (_name, bad, rule) => {
    const files: Record<string, string> = { 'main.js': 'export default () => 1;', [bad]: 'export default 1;' };
    const error = (() => {
      try {
        validateProgram({ files, entry: 'main.js' });
      } catch (e) {
        return e as ContainedError;
      }
      return undefined;
    })();
    expect(error?.code).toBe('INVALID_PROGRAM');
    expect(error?.message).toMatch(rule);
    expect(error?.message).toMatch(/^module path ".*" (\(\d+ bytes\) )?is refused: /s);
    expect(error?.message).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
  });

  it('an import that resolves to a refused name says which rule it broke', async () => {
    const sb = createSandbox({ isolation: 'in-process', warmIsolates: 0 });
    try {
      const program = { files: { 'main.js': 'import x from "./a\\u001b.js"; export default () => x;' }, entry: 'main.js' };
      const error = expectCode(await sb.run({ program, limits }), 'INVALID_PROGRAM');
      expect(error.message).toMatch(/control character \(U\+001B\)/);
    } finally {
      await sb.close();
    }
  });

  it.each([
    ['an import of a .ts file', 'ts/main.js', 'import x from "./x.ts"; export default () => x;', 'ts/x.ts', /cannot load module "x\.ts" imported by main\.js: only \.js, \.mjs, \.json and \.txt files are modules/],
    ['an import of a missing file', 'missing/main.js', 'import x from "./nope.js"; export default () => x;', undefined, /cannot read module "nope\.js" imported by main\.js: no such file/],
    ['an entry that is not .js or .mjs', 'entry/agent.ts', 'export default () => 1;', undefined, /the entry "agent\.ts" must be a \.js or \.mjs file/],
  ])('loading from files: %s → INVALID_PROGRAM naming the rule', async (_name, entryRel, source, other, message) => {
    if (other) await write(other, 'export default 1;');
    const entry = await write(entryRel, source);
    await expect(loadProgramFromFile(entry)).rejects.toMatchObject({ code: 'INVALID_PROGRAM', message: expect.stringMatching(message) });
  });
});
