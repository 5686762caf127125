/**
 * The mcp scope without a server: a definition built from a synthetic tool list (a toolbox and a
 * stub connection), narrowed with the SDK's `attenuate` and `restrict` as grants and capability
 * requests do. Constraints meet (a fixed value inside a set, the common part of two sets) or the
 * scopes do not intersect; lookalike values (a number for a string, a nested copy) are not equal;
 * the check fails closed on an absent field or a non-object argument.
 */
import { describe, expect, it } from 'vitest';
import { buildMcpDefinition, type McpDeps } from '../../capabilities/mcp/definition.js';
import { checkMcpCall, intersectMcpScopes } from '../../capabilities/mcp/scope.js';
import { McpToolbox, memoryApprovals, methodNameFor } from '../../capabilities/mcp/tools.js';
import { riskFromHints } from '../../capabilities/mcp/risk.js';
import { createInstance } from '../../capabilities/sdk/index.js';
import { call, errorOf } from './helpers.js';

const TOOLS = [
  { name: 'create_issue', description: 'Open an issue', inputSchema: { type: 'object', properties: { repo: { type: 'string' }, title: { type: 'string' }, label: { type: 'string', default: 'triage' } }, required: ['repo', 'title'], additionalProperties: false } },
  { name: 'list-issues', description: 'List issues', inputSchema: { type: 'object', properties: { repo: { type: 'string' } } }, annotations: { readOnlyHint: true, openWorldHint: false } },
  { name: 'then', description: 'would make caps.x a thenable', inputSchema: { type: 'object' } },
  { name: '42', description: 'no method name', inputSchema: { type: 'object' } },
  { name: 'broken', description: 'schema ajv cannot compile', inputSchema: { type: 'object', properties: { a: { type: 'no-such-type' } } } },
];

async function tracker() {
  const toolbox = new McpToolbox({ capability: 'tracker', server: 'test', approvals: memoryApprovals(), riskOf: (t) => riskFromHints(t.annotations) });
  const entries = await toolbox.init(TOOLS);
  const calls: unknown[] = [];
  const deps: McpDeps = { toolbox, maxResultBytes: 1024, connection: { callTool: async (tool, args) => (calls.push([tool, args]), { content: [{ type: 'text', text: `ok ${tool}` }] }) } };
  const definition = buildMcpDefinition({ name: 'tracker', description: 'tracker', toolbox, entries });
  return { definition, toolbox, calls, root: createInstance(definition, {}, deps) };
}

describe('tool names and offered tools', () => {
  it('maps names to lower camel case and refuses the ones that cannot be methods', async () => {
    expect(methodNameFor('create_issue')).toBe('createIssue');
    expect(methodNameFor('get-sum')).toBe('getSum');
    expect(methodNameFor('then')).toBeUndefined();
    expect(methodNameFor('42')).toBeUndefined();
    const { definition } = await tracker();
    expect(Object.keys(definition.methods).sort()).toEqual(['createIssue', 'listIssues']);
    expect(definition.methods.createIssue?.riskResolved).toEqual({ readOnly: false, destructive: true, reversible: false, openWorld: true, financial: false });
  });
});

describe('scope', () => {
  it('attenuate: constraints meet; a fixed value outside a set does not intersect', async () => {
    const { root } = await tracker();
    const set = root.attenuate({ args: { createIssue: { repo: { oneOf: ['acme/web', 'acme/api'] } } } });
    const fixed = set.attenuate({ args: { createIssue: { repo: { equals: 'acme/web' } } } });
    expect(fixed.scope).toEqual({ args: { createIssue: { repo: { equals: 'acme/web' } } } });
    expect((await errorOf(() => set.attenuate({ args: { createIssue: { repo: { equals: 'evil/repo' } } } }))).code).toBe('INVALID_SCOPE');
    const common = set.attenuate({ args: { createIssue: { repo: { oneOf: ['acme/api', 'other/x'] } } } });
    expect(common.scope).toEqual({ args: { createIssue: { repo: { oneOf: ['acme/api'] } } } });
  });

  it('restrict: keeps or lowers, never widens; unnamed constraints of the parent stay', async () => {
    const { root } = await tracker();
    const parent = root.restrict({ tools: ['createIssue', 'listIssues'], args: { createIssue: { repo: { equals: 'acme/web' } }, listIssues: { repo: { oneOf: ['acme/web'] } } } });
    const child = parent.restrict({ tools: ['createIssue'] });
    expect(child.scope).toMatchObject({ tools: ['createIssue'], args: { createIssue: { repo: { equals: 'acme/web' } } } });
    expect(await errorOf(() => parent.restrict({ args: { createIssue: { repo: { oneOf: ['acme/web', 'acme/api'] } } } }))).toMatchObject({ code: 'INVALID_SCOPE' });
    expect(await errorOf(() => parent.restrict({ tools: ['createIssue', 'deleteRepo'] }))).toMatchObject({ code: 'INVALID_SCOPE', data: { fields: ['tools'] } });
  });

  it('checks the validated copy: defaults count, lookalikes and absent fields fail closed', async () => {
    const { root, calls } = await tracker();
    const inst = root.restrict({ args: { createIssue: { repo: { equals: 'acme/web' }, label: { oneOf: ['bug', 'triage'] } } } });
    await expect(call(inst, 'createIssue', { repo: 'acme/web', title: 't' })).resolves.toBe('ok create_issue');
    expect(calls.at(-1)).toEqual(['create_issue', { repo: 'acme/web', title: 't', label: 'triage' }]);
    expect((await errorOf(call(inst, 'createIssue', { repo: 'acme/web', title: 't', label: 'feature' }))).code).toBe('OUT_OF_SCOPE');
    expect((await errorOf(call(inst, 'createIssue', { repo: 'ACME/web', title: 't' }))).code).toBe('OUT_OF_SCOPE');
    expect((await errorOf(call(inst, 'createIssue', { repo: ['acme/web'], title: 't' }))).code).toBe('INVALID_ARGUMENT');
    expect((await errorOf(call(inst, 'createIssue', { repo: 'acme/web', title: 't', extra: 1 }))).code).toBe('INVALID_ARGUMENT');
    expect(checkMcpCall({ args: { m: { n: { equals: 1 } } } }, 'm', { n: '1' }).ok).toBe(false);
    expect(checkMcpCall({ args: { m: { n: { equals: { a: [1, 2] } } } } }, 'm', { n: { a: [2, 1] } }).ok).toBe(false);
    expect(checkMcpCall({ args: { m: { n: { equals: { a: 1, b: 2 } } } } }, 'm', { n: { b: 2, a: 1 } }).ok).toBe(true);
    expect(checkMcpCall({ args: { m: { n: { equals: 1 } } } }, 'm', {}).ok).toBe(false);
    expect(checkMcpCall({ args: { m: { n: { equals: 1 } } } }, 'm', null).ok).toBe(false);
  });

  it('intersect answers one canonical form', () => {
    const a = { tools: ['b', 'a'], args: { m: { f: { oneOf: [1, 2] } } } };
    expect(intersectMcpScopes(a, a)).toEqual({ tools: ['a', 'b'], args: { m: { f: { oneOf: [1, 2] } } } });
    expect(intersectMcpScopes({}, {})).toEqual({});
  });
});
