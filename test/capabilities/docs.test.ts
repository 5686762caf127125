/**
 * Generated agent-facing docs: exact signatures for exactly the granted methods, risk/scope/budget
 * in words, no host paths; the declaration type-checks against a sample agent program; and the
 * `contained caps docs` command with its exit codes.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { capsCommand } from '../../capabilities/cli.js';
import { generateCapsDts, generateCapsMarkdown, riskInWords, schemaToTs } from '../../capabilities/docs.js';
import { parseGrantSpec } from '../../capabilities/grant-spec.js';
import { jsonValueSchema, WORST_CASE_RISK, type CapabilityInstance } from '../../capabilities/sdk/index.js';
import { tempDir } from './helpers.js';

let dir: string;
let cleanup: () => void;
let grants: string[];
let instances: CapabilityInstance[];

beforeAll(async () => {
  ({ dir, cleanup } = tempDir('docs-'));
  mkdirSync(path.join(dir, 'reports'));
  const db = new Database(path.join(dir, 'shop.db'));
  db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)');
  db.close();
  grants = [
    `reports=fs:${JSON.stringify({ root: path.join(dir, 'reports'), readOnly: true, extensions: ['md'] })};methods=read,list;budget.read=maxCalls:20`,
    `memory=kv:${JSON.stringify({ file: path.join(dir, 'kv.db'), namespace: 'a1', prefix: 'notes/' })}`,
    `shop=sql:${JSON.stringify({ file: path.join(dir, 'shop.db'), tables: ['orders'], readOnly: true })};methods=query;expires=2030-01-01T00:00:00Z`,
    'clock=clock',
  ];
  instances = await Promise.all(grants.map((g) => parseGrantSpec(g)));
});
afterAll(() => cleanup());

describe('schemaToTs', () => {
  it('prints zod schemas as compact TypeScript', () => {
    expect(schemaToTs(z.string(), 'input')).toBe('string');
    expect(schemaToTs(z.strictObject({ a: z.number().int(), 'b-c': z.boolean().optional() }), 'input')).toBe('{ a: number; "b-c"?: boolean }');
    expect(schemaToTs(z.array(z.union([z.string(), z.null()])), 'output')).toBe('(string | null)[]');
    expect(schemaToTs(z.enum(['a', 'b']), 'input')).toBe('"a" | "b"');
    expect(schemaToTs(z.literal(3), 'input')).toBe('3');
    expect(schemaToTs(z.record(z.string(), z.number()), 'input')).toBe('Record<string, number>');
    expect(schemaToTs(z.tuple([z.string(), z.number()]), 'input')).toBe('[string, number]');
    expect(schemaToTs(jsonValueSchema.nullable(), 'output')).toBe('JsonValue | null');
    expect(schemaToTs(z.strictObject({ k: z.string().describe('the key') }), 'input')).toBe('{ /** the key */ k: string }');
    expect(schemaToTs(z.unknown(), 'input')).toBe('unknown');
    expect(schemaToTs(z.bigint(), 'input')).toBe('unknown'); // unrepresentable: never something wider-looking
  });

  it('puts risk in words', () => {
    expect(riskInWords(WORST_CASE_RISK)).toBe('writes, destructive, irreversible, reaches the outside world');
    expect(riskInWords({ ...WORST_CASE_RISK, financial: true })).toContain('moves money');
    expect(riskInWords({ readOnly: true, destructive: false, reversible: true, openWorld: false, financial: false })).toBe('read-only');
  });
});

describe('generateCapsDts', () => {
  it('declares exactly the granted methods, with risk, scope, budget and expiry in words, and no host path', () => {
    const dts = generateCapsDts(instances);
    expect(dts).toContain('interface Caps {');
    expect(dts).toContain('  reports: {');
    expect(dts).toContain('    read(path: string, options?: CallOptions): Promise<string>;');
    expect(dts).toContain('    list(path?: string, options?: CallOptions): Promise<{ name: string; type: "file" | "dir"; size: number }[]>;');
    expect(dts).toContain('Risk: read-only. Budget: at most 20 calls.');
    expect(dts).toContain('Scope: read-only; files up to 8 MiB; only files ending .md;');
    expect(dts).not.toMatch(/\bwrite\(path/);
    expect(dts).toContain('    set(args: { key: string; value: JsonValue }, options?: CallOptions): Promise<null>;');
    expect(dts).toContain('Risk: writes, destructive, irreversible.');
    expect(dts).toContain('Scope: tables orders; read-only;');
    expect(dts).toContain('Expires 2030-01-01T00:00:00.000Z.');
    expect(dts).not.toContain('execute(');
    expect(dts).toContain('    now(arg?: undefined, options?: CallOptions): Promise<{ iso: string; epochMs: number }>;');
    expect(dts).toContain('declare function requestCapability(name: string, scope: object, reason: string): Promise<void>;');
    expect(dts).not.toContain(dir);
  });

  it('type-checks, and rejects misuse, in a sample agent program', () => {
    const dts = generateCapsDts(instances);
    const good = `const main: Main = async (input, caps) => {
      const text: string = await caps.reports.read('q1.md', { reason: 'summarise' });
      const files = await caps.reports.list();
      await caps.memory.set({ key: 'notes/1', value: { n: files.length, text } });
      const rows = await caps.shop.query({ sql: 'SELECT * FROM orders WHERE id = ?', params: [1] });
      const t = await caps.clock.now();
      await requestCapability('mailer', { to: ['ops@example.com'] }, 'send the summary');
      return { rows: rows.rows.length, at: t.iso };
    };
    export default main;`;
    const bad = `const main: Main = async (_input, caps) => { await caps.reports.write({ path: 'x', content: '' }); await caps.reports.read(42); return null; };
    export default main;`;
    const check = (program: string): string[] => {
      const files: Record<string, string> = { '/caps.d.ts': dts, '/agent.ts': program };
      const options: ts.CompilerOptions = { strict: true, noEmit: true, target: ts.ScriptTarget.ES2022, lib: ['lib.es2022.d.ts'], types: [] };
      const host = ts.createCompilerHost(options);
      const original = { getSourceFile: host.getSourceFile.bind(host), fileExists: host.fileExists.bind(host), readFile: host.readFile.bind(host) };
      host.getSourceFile = (name, lang) =>
        files[name] !== undefined ? ts.createSourceFile(name, files[name], lang) : original.getSourceFile(name, lang);
      host.fileExists = (name) => files[name] !== undefined || original.fileExists(name);
      host.readFile = (name) => files[name] ?? original.readFile(name);
      const program2 = ts.createProgram(['/caps.d.ts', '/agent.ts'], options, host);
      return ts.getPreEmitDiagnostics(program2).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    };
    expect(check(good)).toEqual([]);
    const errors = check(bad);
    expect(errors.some((m) => m.includes("Property 'write' does not exist"))).toBe(true);
    expect(errors.some((m) => m.includes("'number' is not assignable to parameter of type 'string'"))).toBe(true);
  });
});

describe('generateCapsMarkdown', () => {
  it('is a compact reference of the same surface', () => {
    const md = generateCapsMarkdown(instances);
    expect(md).toContain('## caps.reports (fs)');
    expect(md).toContain('- `read(path: string)` → `string` — Read a UTF-8 text file and return its content. Risk: read-only. Budget: at most 20 calls.');
    expect(md).toContain('## caps.shop (sql)');
    expect(md).toContain('- `now()` → `{ iso: string; epochMs: number }`');
    expect(md).toContain('requestCapability(name, scope, reason)');
    expect(md).not.toContain('execute');
    expect(md).not.toContain(dir);
  });
});

describe('contained caps docs', () => {
  function io() {
    const out = { stdout: '', stderr: '' };
    return { out, io: { stdout: (s: string) => void (out.stdout += s), stderr: (s: string) => void (out.stderr += s) } };
  }

  it('prints the declarations (default ts) or Markdown, exit 0', async () => {
    const a = io();
    expect(await capsCommand(['docs', '--grant', grants[0] ?? '', `--grant=${grants[3] ?? ''}`], a.io)).toBe(0);
    expect(a.out.stdout).toContain('interface Caps {');
    expect(a.out.stdout).toContain('  clock: {');
    const b = io();
    expect(await capsCommand(['docs', '--format', 'md', '--grant', grants[2] ?? ''], b.io)).toBe(0);
    expect(b.out.stdout).toContain('## caps.shop (sql)');
    const c = io();
    expect(await capsCommand(['docs', '--data-dir', dir, '--grant', 'mem=kv:{"file":"kv.db","namespace":"x"}'], c.io)).toBe(0);
    const h = io();
    expect(await capsCommand(['docs', '--help'], h.io)).toBe(0);
    expect(h.out.stdout).toContain('Usage: contained caps docs');
  });

  it('usage errors exit 2 with one line CODE: message', async () => {
    const cases: [string[], string][] = [
      [[], 'Usage'],
      [['docs'], 'USAGE: give at least one --grant'],
      [['docs', '--grant'], 'USAGE: --grant needs a value'],
      [['docs', '--grant', 'c=clock', '--format', 'html'], 'USAGE: --format must be ts or md'],
      [['docs', '--grant', 'c=clock', '--verbose'], 'USAGE: unknown argument'],
      [['docs', '--grant', 'c=clock', '--grant', 'c=random'], 'USAGE: two grants are named "c"'],
      [['publish'], 'USAGE: unknown caps command'],
      [['docs', '--grant', 'c=teleport'], 'INVALID_ARGUMENT: grant "c=teleport"'],
      [['docs', '--grant', 'r=random:{"seed":"x"}'], 'INVALID_SCOPE: grant "r"'],
    ];
    for (const [argv, message] of cases) {
      const x = io();
      expect(await capsCommand(argv, x.io), argv.join(' ')).toBe(2);
      expect(x.out.stderr, argv.join(' ')).toContain(message);
      expect(x.out.stdout).toBe('');
    }
  });
});
