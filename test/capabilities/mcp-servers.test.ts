/**
 * Real third-party MCP servers as capabilities (issue 13 B): `@modelcontextprotocol/server-everything`
 * and `@modelcontextprotocol/server-filesystem`, started over stdio from their npm bins, their tools
 * turned into methods, arguments validated by ajv against each tool's own JSON Schema, called from
 * agent code in a real isolate. Scope: tool allowlist, a field fixed to a value or limited to a set,
 * narrowed with `restrict` as grants do, checked on the validated copy.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateCapsDts } from '../../capabilities/docs.js';
import { type McpCapability, startMcp } from '../../capabilities/mcp/index.js';
import { createSandbox, type Sandbox } from '../../runtime/index.js';
import { call, errorOf, tempDir } from './helpers.js';

const BIN = path.resolve('node_modules/.bin');
export const EVERYTHING = { command: path.join(BIN, 'mcp-server-everything'), args: ['stdio'] };

let everything: McpCapability;
let files: McpCapability;
let sb: Sandbox;
let dir: string;
let cleanup: () => void;

beforeAll(async () => {
  ({ dir, cleanup } = tempDir('mcp-fs-'));
  mkdirSync(path.join(dir, 'docs'));
  mkdirSync(path.join(dir, 'private'));
  writeFileSync(path.join(dir, 'docs', 'a.txt'), 'alpha\nbeta\n');
  writeFileSync(path.join(dir, 'private', 'secret.txt'), 'SECRET');
  [everything, files] = await Promise.all([
    startMcp('everything', { server: EVERYTHING }),
    startMcp('files', { server: { command: path.join(BIN, 'mcp-server-filesystem'), args: [dir] } }),
  ]);
  sb = createSandbox({ isolation: 'in-process' });
});
afterAll(async () => {
  await sb?.close();
  await Promise.all([everything?.close(), files?.close()]);
  cleanup();
});

async function agent(body: string, instances: Parameters<Sandbox['run']>[0]['capabilities']) {
  return sb.run({ source: `export default async function main(input, caps) {\n${body}\n}`, input: {}, capabilities: instances });
}
const attempt = (expr: string) => `try { return { value: await ${expr} }; } catch (e) { return { code: e.code, message: e.message, data: e.data }; }`;

describe('server-everything', () => {
  it('turns each tool into a method (names in lower camel case) with risk from its annotations', () => {
    const methods = Object.keys(everything.definition.methods);
    expect(methods).toEqual(expect.arrayContaining(['echo', 'getSum', 'getStructuredContent', 'getTinyImage', 'toggleSimulatedLogging']));
    // readOnlyHint true, openWorldHint false → read-only; toggle… declares readOnlyHint false, destructiveHint false.
    expect(everything.definition.methods.getSum?.riskResolved).toEqual({ readOnly: true, destructive: false, reversible: true, openWorld: false, financial: false });
    expect(everything.definition.methods.toggleSimulatedLogging?.riskResolved).toMatchObject({ readOnly: false, destructive: false, reversible: false });
  });

  it('calls tools from agent code: text results as strings, structured results as objects', async () => {
    const inst = everything.create({});
    const out = await agent(
      `return { echo: await caps.everything.echo({ message: 'hi' }), sum: await caps.everything.getSum({ a: 2, b: 3 }), weather: await caps.everything.getStructuredContent({ location: 'Chicago' }) };`,
      [inst],
    );
    expect(out.status).toBe('ok');
    const v = (out as { value: { echo: string; sum: string; weather: Record<string, unknown> } }).value;
    expect(v.echo).toBe('Echo: hi');
    expect(v.sum).toMatch(/5/);
    expect(v.weather).toMatchObject({ temperature: expect.any(Number), conditions: expect.any(String) });
  });

  it('validates arguments against the tool JSON Schema with ajv before anything reaches the server', async () => {
    const inst = everything.create({});
    const wrongType = await errorOf(call(inst, 'getSum', { a: 'two', b: 3 }));
    expect(wrongType).toMatchObject({ code: 'INVALID_ARGUMENT', data: { path: ['a'] } });
    const missing = await errorOf(call(inst, 'echo', {}));
    expect(missing).toMatchObject({ code: 'INVALID_ARGUMENT', data: { path: ['message'] } });
    const notEnum = await errorOf(call(inst, 'getStructuredContent', { location: 'Paris' }));
    expect(notEnum.code).toBe('INVALID_ARGUMENT');
    const out = await agent(attempt(`caps.everything.getSum({ a: 1 })`), [inst]);
    expect((out as { value: unknown }).value).toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('a tool answering isError rejects with MCP_TOOL_ERROR and its text', async () => {
    const inst = everything.create({});
    // server-everything's echo refuses nothing; the filesystem server refuses paths outside its roots.
    const fsInst = files.create({});
    const err = await errorOf(call(fsInst, 'readTextFile', { path: '/etc/passwd' }));
    expect(err.code).toBe('MCP_TOOL_ERROR');
    expect(err.message).toMatch(/denied|outside|not allowed/i);
    expect(inst).toBeDefined();
  });

  it('scope: a field fixed to a value, narrowed by restrict as a grant does; extra fields fail the schema', async () => {
    const inst = everything.create({});
    const narrowed = inst.restrict({ args: { echo: { message: { equals: 'approved text' } } } });
    await expect(call(narrowed, 'echo', { message: 'approved text' })).resolves.toBe('Echo: approved text');
    expect((await errorOf(call(narrowed, 'echo', { message: 'other' }))).code).toBe('OUT_OF_SCOPE');
    // A set: getSum.a limited to 1 or 2.
    const set = inst.restrict({ args: { getSum: { a: { oneOf: [1, 2] } } } });
    await expect(call(set, 'getSum', { a: 2, b: 2 })).resolves.toMatch(/4/);
    expect((await errorOf(call(set, 'getSum', { a: 3, b: 2 }))).code).toBe('OUT_OF_SCOPE');
    // Narrowing further works; widening a fixed field is refused INVALID_SCOPE with the field named.
    expect(set.restrict({ args: { getSum: { a: { equals: 1 } } } }).scope).toMatchObject({ args: { getSum: { a: { equals: 1 } } } });
    const wider = await errorOf(() => narrowed.restrict({ args: { echo: { message: { oneOf: ['approved text', 'x'] } } } }));
    expect(wider).toMatchObject({ code: 'INVALID_SCOPE', data: { fields: ['args'] } });
    // From agent code the refusal is a denial by the pass-through gate.
    const out = await agent(attempt(`caps.everything.echo({ message: 'other' })`), [narrowed]);
    expect((out as { value: { code: string } }).value.code).toBe('CAPABILITY_DENIED');
  });

  it('scope: a tool allowlist; methodUsable follows it', async () => {
    const inst = everything.create({ tools: ['echo'] });
    expect((await errorOf(call(inst, 'getSum', { a: 1, b: 1 }))).code).toBe('OUT_OF_SCOPE');
    expect(inst.usableMethods()).toEqual(['echo']);
    expect((await errorOf(() => inst.restrict({ tools: ['echo', 'getSum'] }))).code).toBe('INVALID_SCOPE');
  });

  it('scope checks run on the validated copy: a constrained field left to its schema default is checked as the default', async () => {
    // get-resource-links: count defaults to 3. Fixed to 2, omitting it means 3, which is out of scope.
    const inst = everything.create({ args: { getResourceLinks: { count: { equals: 2 } } } });
    expect((await errorOf(call(inst, 'getResourceLinks', {}))).code).toBe('OUT_OF_SCOPE');
    const parsed = inst.parseArgs('getResourceLinks', { count: 2 });
    expect(parsed).toEqual({ count: 2 });
    expect(inst.parseArgs('getResourceLinks', {})).toEqual({ count: 3 });
  });

  it('contained caps docs: TypeScript types generated from the tools JSON Schemas', () => {
    const dts = generateCapsDts([everything.create({}, { methods: ['echo', 'getSum', 'getStructuredContent'] })]);
    expect(dts).toContain('echo(args: { /** Message to echo */ message: string }, options?: CallOptions): Promise<string>;');
    expect(dts).toMatch(/getSum\(args: \{ \/\*\* First number \*\/ a: number; \/\*\* Second number \*\/ b: number \}/);
    expect(dts).toMatch(/getStructuredContent\(args: \{ [^}]*location: "New York" \| "Chicago" \| "Los Angeles" \}, options\?: CallOptions\): Promise<\{ [^}]*temperature: number/);
    expect(dts).toContain('[MCP tool \\"get-sum\\"]'.replace(/\\/g, ''));
  });
});

describe('generated types', () => {
  it('resolve draft-07 definitions as well as 2020-12 $defs; keys that would steer the printer are dropped', async () => {
    const { schemaToTs } = await import('../../capabilities/docs.js');
    const { schemaForDocs } = await import('../../capabilities/mcp/schema.js');
    const { z } = await import('zod');
    const draft07 = { type: 'object', properties: { owner: { $ref: '#/definitions/user' } }, required: ['owner'], definitions: { user: { type: 'object', properties: { login: { type: 'string' } } } } };
    expect(schemaToTs(z.unknown().meta(schemaForDocs(draft07) as Record<string, unknown>), 'input')).toBe('{ owner: { login?: string } }');
    const sneaky = { type: 'object', properties: { a: { type: 'string', tsType: 'any; evil: true' } } };
    expect(schemaToTs(z.unknown().meta(schemaForDocs(sneaky) as Record<string, unknown>), 'input')).toBe('{ a?: string }');
  });
});

describe('server-filesystem', () => {
  it('reads (structured content: read_text_file declares an output schema) and writes through the server, with a grant fixing the path to a set', async () => {
    const inst = files.create({ tools: ['readTextFile', 'writeFile', 'listAllowedDirectories'] });
    const a = path.join(dir, 'docs', 'a.txt');
    const b = path.join(dir, 'docs', 'b.txt');
    const narrowed = inst.restrict({ args: { readTextFile: { path: { oneOf: [a] } }, writeFile: { path: { equals: b } } } });
    const out = await agent(
      `const text = await caps.files.readTextFile({ path: ${JSON.stringify(a)} });
       await caps.files.writeFile({ path: ${JSON.stringify(b)}, content: 'written by the agent' });
       let denied;
       try { await caps.files.readTextFile({ path: ${JSON.stringify(path.join(dir, 'private', 'secret.txt'))} }); } catch (e) { denied = e.code; }
       return { text, denied };`,
      [narrowed],
    );
    expect(out).toMatchObject({ status: 'ok', value: { text: { content: 'alpha\nbeta\n' }, denied: 'CAPABILITY_DENIED' } });
    expect(readFileSync(b, 'utf8')).toBe('written by the agent');
  });

  it('risk: a tool without a readOnlyHint is worst case; read tools are read-only', () => {
    const m = files.definition.methods;
    expect(m.readTextFile?.riskResolved.readOnly).toBe(true);
    expect(m.writeFile?.riskResolved).toMatchObject({ readOnly: false });
  });
});
