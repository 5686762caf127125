/**
 * `contained mcp` over Streamable HTTP (`/v1/mcp` on the host's port) with the official SDK client
 * against a real host: agent tokens checked before anything is listed or run, tools listed with
 * the agent's caps.d.ts, code run under the agent's grants, an assisted call that waits for two
 * operators deciding over the real operator WebSocket (with MCP progress notifications), a denial
 * with its reason, cancellation, the per-session limits, and the metrics of the route and the runs.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult, Progress } from '@modelcontextprotocol/sdk/types.js';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadHostConfig } from '../../host/config.js';
import { type Host, startHost } from '../../host/host.js';
import { newGrantId } from '../../host/grants.js';
import { packImage } from '../../sandbox-images/pack.js';
import { AGENT_SUBJECT, CODE, type McpFixture, mcpFixture, nextCreated, operator } from './mcp-fixture.js';

let fx: McpFixture;
let host: Host;
const clients: Client[] = [];

async function connect(token: string | null = fx.agentToken): Promise<Client> {
  const transport = new StreamableHTTPClientTransport(new URL(`${host.url}/v1/mcp`), token === null ? {} : { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
  const client = new Client({ name: 'mcp-http-test', version: '1.0.0' });
  await client.connect(transport);
  clients.push(client);
  return client;
}

const text = (result: CallToolResult): string => (result.content[0] as { text: string }).text;

beforeAll(async () => {
  fx = await mcpFixture({ maxSourceBytes: 4096, maxConcurrentRuns: 2, runsPerMinute: 1000, progressIntervalMs: 200 });
  host = await startHost({ config: await loadHostConfig(fx.configFile), isolation: 'in-process', logger: pino({ level: 'silent' }) });
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  await host?.close();
  fx?.close();
});

describe('MCP over Streamable HTTP: who may connect', () => {
  it('refuses no token, a wrong token, an operator token and a revoked agent with 401 before anything is listed', async () => {
    const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } };
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    for (const auth of [undefined, 'Bearer cta_wrongwrongwrongwrongwrongwrongwrongwrongwro', `Bearer ${fx.operators.alice}`, 'Basic abc']) {
      const res = await fetch(`${host.url}/v1/mcp`, { method: 'POST', headers: { ...headers, ...(auth ? { authorization: auth } : {}) }, body: JSON.stringify(initialize) });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(await res.json()).toMatchObject({ error: { code: 'UNAUTHENTICATED' } });
    }
    const list = await fetch(`${host.url}/v1/mcp`, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }) });
    expect(list.status).toBe(401);
    await expect(connect(null)).rejects.toThrow();

    // A session opened with a token stops working when the agent is revoked.
    const { createAgent } = await import('../../host/agents.js');
    const other = await createAgent({ name: 'short-lived', subject: `sha256:${'b8'.repeat(32)}`, createdBy: 'test' }, host.store);
    const client = await connect(other.token);
    expect((await client.listTools()).tools.map((t) => t.name)).toContain('run');
    await host.store.revokeAgent(other.record.id, Date.now());
    await expect(client.listTools()).rejects.toThrow(/401|UNAUTHENTICATED/);
    await expect(connect(other.token)).rejects.toThrow();
  });
});

describe('MCP over Streamable HTTP: tools', () => {
  it('lists run and run_image; run carries the caps.d.ts of the agent\'s grants', async () => {
    const client = await connect();
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['run', 'run_image']);
    const run = tools.find((t) => t.name === 'run');
    expect(run?.description).toContain('interface Caps');
    expect(run?.description).toMatch(/notes: \{/);
    expect(run?.description).toMatch(/read\(/);
    expect(run?.description).toMatch(/write\(/);
    expect(run?.description).not.toMatch(/remove\(/); // not granted
    expect(run?.description).toContain('- notes.write: assisted, an operator approves each call first (the tool call waits) (2 approvals');
    expect(run?.description).toContain('- notes.read, notes.list: contained, runs at once');
    expect(run?.inputSchema.required).toEqual(['code']);
    expect(run?.outputSchema?.properties).toHaveProperty('usage');
  });

  it('runs code under the agent\'s grants: value, logs and usage as structuredContent', async () => {
    const client = await connect();
    const result = (await client.callTool({ name: 'run', arguments: { code: CODE.read, input: { q: 1 } } })) as CallToolResult;
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toMatchObject({ value: { text: 'hello from notes', input: { q: 1 } }, logs: [], usage: { calls: 1 } });
    const logged = (await client.callTool({ name: 'run', arguments: { code: CODE.logs, input: { n: 21 } } })) as CallToolResult;
    expect(logged.structuredContent).toMatchObject({ value: 42, logs: [{ level: 'log', message: 'hi 21' }] });
    const runs = await host.store.listRuns({ limit: 5 });
    expect(runs.find((r) => r.submittedBy === 'agent:tester')).toMatchObject({ subject: expect.stringMatching(/^sha256:a7/) });
  });

  it('a failed run is a tool error whose text starts with its code', async () => {
    const client = await connect();
    const failed = (await client.callTool({ name: 'run', arguments: { code: CODE.fail } })) as CallToolResult;
    expect(failed.isError).toBe(true);
    expect(text(failed)).toMatch(/^[A-Z_]+: .*boom/);
    const absent = (await client.callTool({ name: 'run', arguments: { code: "export default (i, caps) => caps.mail.send({})" } })) as CallToolResult;
    expect(absent.isError).toBe(true);
    expect(text(absent)).toMatch(/^[A-Z_]+: /);
    const bad = (await client.callTool({ name: 'run', arguments: { code: 'export default (' } })) as CallToolResult;
    expect(bad.isError).toBe(true);
    expect(text(bad)).toMatch(/^[A-Z_]+: /);
    const missing = (await client.callTool({ name: 'run_image', arguments: { digest: `sha256:${'00'.repeat(32)}` } })) as CallToolResult;
    expect(missing).toMatchObject({ isError: true });
    expect(text(missing)).toMatch(/^NOT_FOUND: /);
  });
});

describe('MCP over Streamable HTTP: run_image', () => {
  it('runs a stored image under the agent\'s grants, never the image\'s own (an agent cannot borrow what an image was given)', async () => {
    const manifest = { format: 1, name: 'lister', version: '1.0.0', description: 'lists what it holds', entry: 'main.js', requests: [] };
    const files = new Map<string, Uint8Array>([
      ['manifest.json', Buffer.from(JSON.stringify(manifest))],
      ['main.js', Buffer.from('export default async (input, caps) => ({ held: Object.keys(caps).sort(), text: await caps.notes.read("a.txt") })')],
    ]);
    const { digest } = await host.runs.addImage(packImage(files));
    // The image itself is given `notes.remove` and `notes.write` contained; the agent holds neither.
    await host.store.insertGrant({ id: newGrantId(), subject: { digest }, capability: 'notes', methods: ['read', 'remove', 'write'], mode: 'contained', approvals: 1, createdBy: 'test', reason: 'image grant', createdAt: Date.now() });
    const client = await connect();
    const result = (await client.callTool({ name: 'run_image', arguments: { digest } })) as CallToolResult;
    expect(result.isError ? text(result) : '').toBe('');
    expect(result.structuredContent).toMatchObject({ value: { held: ['notes'], text: 'hello from notes' } });
    const remover = new Map(files);
    remover.set('main.js', Buffer.from('export default async (input, caps) => caps.notes.remove("a.txt")'));
    const removeDigest = (await host.runs.addImage(packImage(remover))).digest;
    await host.store.insertGrant({ id: newGrantId(), subject: { digest: removeDigest }, capability: 'notes', methods: ['remove'], mode: 'contained', approvals: 1, createdBy: 'test', reason: 'image grant', createdAt: Date.now() });
    // Outside the agent's grants, the call escalates as the agent's: the operator sees the agent's subject.
    const alice = await operator(`${host.url?.replace(/^http/, 'ws')}/v1/operator`, fx.operators.alice as string);
    try {
      const seen = nextCreated(alice, (r) => r.method === 'remove');
      const call = client.callTool({ name: 'run_image', arguments: { digest: removeDigest } });
      const request = await seen;
      expect(JSON.stringify(request)).toContain(AGENT_SUBJECT);
      await alice.decide({ requestId: request.id, verdict: 'deny', reason: 'not for agents' });
      const removed = (await call) as CallToolResult;
      expect(removed.isError).toBe(true);
      expect(text(removed)).toMatch(/^ESCALATION_DENIED: .*not for agents/);
    } finally {
      await alice.close();
    }
    const runs = await host.store.listRuns({ limit: 10 });
    expect(runs.filter((r) => r.submittedBy === 'agent:tester' && r.imageName === 'lister')[0]).toMatchObject({ subject: expect.stringMatching(/^sha256:a7/) });
  });
});

describe('MCP over Streamable HTTP: waiting for a human', () => {
  it('keeps an assisted call open with progress notifications until two operators approve', async () => {
    const client = await connect();
    const wsUrl = `${host.url?.replace(/^http/, 'ws')}/v1/operator`;
    const [alice, bob] = await Promise.all([operator(wsUrl, fx.operators.alice as string), operator(wsUrl, fx.operators.bob as string)]);
    try {
      const seen = nextCreated(alice, (r) => r.method === 'write');
      const progress: Progress[] = [];
      const call = client.callTool({ name: 'run', arguments: { code: CODE.write } }, undefined, { onprogress: (p) => progress.push(p), resetTimeoutOnProgress: true });
      const request = await seen;
      expect(request.approvalsRequired).toBe(2);
      await expect.poll(() => progress.length).toBeGreaterThan(0);
      expect(progress[0]?.message).toBe(`waiting for an operator: notes.write, request ${request.id.slice(0, 8)}…, 0 of 2 approvals`);
      await alice.decide({ requestId: request.id, verdict: 'approve' });
      await expect.poll(() => progress.some((p) => p.message?.includes('1 of 2 approvals'))).toBe(true);
      await bob.decide({ requestId: request.id, verdict: 'approve' });
      const result = (await call) as CallToolResult;
      expect(result.isError).toBeFalsy();
      expect(result.structuredContent).toMatchObject({ value: 'written' });
      expect(progress.map((p) => p.progress)).toEqual([...progress.map((p) => p.progress)].sort((a, b) => a - b));
    } finally {
      await Promise.all([alice.close(), bob.close()]);
    }
  });

  it('a denial is ESCALATION_DENIED carrying the operator\'s reason', async () => {
    const client = await connect();
    const alice = await operator(`${host.url?.replace(/^http/, 'ws')}/v1/operator`, fx.operators.alice as string);
    try {
      const seen = nextCreated(alice, (r) => r.method === 'append');
      const call = client.callTool({ name: 'run', arguments: { code: CODE.append } });
      await alice.decide({ requestId: (await seen).id, verdict: 'deny', reason: 'no logs on Fridays' });
      const result = (await call) as CallToolResult;
      expect(result.isError).toBe(true);
      expect(text(result)).toMatch(/^ESCALATION_DENIED: .*no logs on Fridays/);
    } finally {
      await alice.close();
    }
  });

  it('cancelling the MCP request (notifications/cancelled) cancels the run and withdraws its request', async () => {
    const client = await connect();
    const alice = await operator(`${host.url?.replace(/^http/, 'ws')}/v1/operator`, fx.operators.alice as string);
    try {
      const seen = nextCreated(alice, (r) => r.method === 'append');
      const abort = new AbortController();
      const call = client.callTool({ name: 'run', arguments: { code: CODE.append } }, undefined, { signal: abort.signal });
      const request = await seen;
      abort.abort('changed my mind');
      await expect(call).rejects.toThrow();
      await expect.poll(async () => (await host.store.getRun(request.runId))?.status).toBe('cancelled');
      await expect.poll(async () => (await host.store.getRequest(request.id))?.status).toBe('cancelled');
    } finally {
      await alice.close();
    }
  });
});

describe('MCP over Streamable HTTP: sessions', () => {
  it('closing the session (DELETE) cancels its live runs; another agent\'s token cannot use it', async () => {
    const transport = new StreamableHTTPClientTransport(new URL(`${host.url}/v1/mcp`), { requestInit: { headers: { Authorization: `Bearer ${fx.agentToken}` } } });
    const client = new Client({ name: 'closer', version: '1' });
    await client.connect(transport);
    const sessionId = transport.sessionId as string;
    const { createAgent } = await import('../../host/agents.js');
    const intruder = await createAgent({ name: 'intruder', subject: `sha256:${'c9'.repeat(32)}`, createdBy: 'test' }, host.store);
    const foreign = await fetch(`${host.url}/v1/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${intruder.token}`, 'mcp-session-id': sessionId, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }),
    });
    expect(foreign.status).toBe(404);

    const alice = await operator(`${host.url?.replace(/^http/, 'ws')}/v1/operator`, fx.operators.alice as string);
    try {
      const seen = nextCreated(alice, (r) => r.method === 'append');
      void client.callTool({ name: 'run', arguments: { code: CODE.append } }).catch(() => undefined);
      const request = await seen;
      await transport.terminateSession();
      await expect.poll(async () => (await host.store.getRun(request.runId))?.status).toBe('cancelled');
      expect((await host.store.getRequest(request.id))?.status).toBe('cancelled');
    } finally {
      await alice.close();
      await client.close().catch(() => undefined);
    }
  });
});

describe('MCP over Streamable HTTP: per-session limits and metrics', () => {
  it('refuses code over maxSourceBytes and runs over maxConcurrentRuns, each with its code', async () => {
    const client = await connect();
    const big = (await client.callTool({ name: 'run', arguments: { code: `export default () => '${'x'.repeat(5000)}'` } })) as CallToolResult;
    expect(big.isError).toBe(true);
    expect(text(big)).toMatch(/^MCP_SOURCE_TOO_LARGE: /);

    const alice = await operator(`${host.url?.replace(/^http/, 'ws')}/v1/operator`, fx.operators.alice as string);
    try {
      // Three at once over HTTP: one is refused (same-tick arrivals: mcp-session.test.ts).
      const calls = [0, 1, 2].map(() => client.callTool({ name: 'run', arguments: { code: CODE.append } }) as Promise<CallToolResult>);
      const refusedFirst = await Promise.race(calls.map((c, i) => c.then(() => i)));
      expect(text(await (calls[refusedFirst] as Promise<CallToolResult>))).toMatch(/^MCP_TOO_MANY_RUNS: /);
      const pending = calls.filter((_, i) => i !== refusedFirst);
      await expect.poll(async () => (await host.requests.pending()).length).toBe(2);
      const third = (await client.callTool({ name: 'run', arguments: { code: CODE.read } })) as CallToolResult;
      expect(text(third)).toMatch(/^MCP_TOO_MANY_RUNS: /);
      // Another session has its own allowance.
      const other = await connect();
      expect(((await other.callTool({ name: 'run', arguments: { code: CODE.read } })) as CallToolResult).isError).toBeFalsy();
      for (const r of await host.requests.pending()) await alice.decide({ requestId: r.id, verdict: 'deny', reason: 'cleanup' });
      await Promise.all(pending);
    } finally {
      await alice.close();
    }
  });

  it('counts the route and the tool calls in /metrics', async () => {
    const body = (await host.metrics.render()).body;
    expect(body).toMatch(/contained_mcp_tool_calls_total\{transport="http",tool="run",code=""\} [1-9]/);
    expect(body).toMatch(/contained_mcp_tool_calls_total\{transport="http",tool="run",code="MCP_SOURCE_TOO_LARGE"\} 1/);
    expect(body).toMatch(/contained_http_request_duration_seconds_count\{method="POST",route="\/v1\/mcp",status="200"\}/);
    expect(body).toMatch(/contained_mcp_sessions\{transport="http"\} [1-9]/);
  });
});

describe('MCP over Streamable HTTP: runs per minute', () => {
  it('refuses the run over runsPerMinute with MCP_RATE_LIMITED', async () => {
    const limited = await mcpFixture({ runsPerMinute: 2 });
    const h = await startHost({ config: await loadHostConfig(limited.configFile), isolation: 'in-process', logger: pino({ level: 'silent' }) });
    try {
      const transport = new StreamableHTTPClientTransport(new URL(`${h.url}/v1/mcp`), { requestInit: { headers: { Authorization: `Bearer ${limited.agentToken}` } } });
      const client = new Client({ name: 'rate', version: '1' });
      await client.connect(transport);
      for (let i = 0; i < 2; i++) expect(((await client.callTool({ name: 'run', arguments: { code: CODE.read } })) as CallToolResult).isError).toBeFalsy();
      const third = (await client.callTool({ name: 'run', arguments: { code: CODE.read } })) as CallToolResult;
      expect(text(third)).toMatch(/^MCP_RATE_LIMITED: .*retry in \d+ s/);
      await client.close();
    } finally {
      await h.close();
      limited.close();
    }
  });
});
