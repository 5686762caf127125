/**
 * `contained mcp --agent NAME` over stdio: the real CLI spawned by the official SDK client's
 * StdioClientTransport. The process is a host; operators decide its assisted calls over the real
 * operator WebSocket at the URL it prints on stderr (stdout carries MCP only). Lists tools, runs
 * code, waits on an assisted call with progress, gets a denial with its reason, cancels, and
 * refuses an unknown agent.
 */
import path from 'node:path';
import type { Readable } from 'node:stream';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult, Progress } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OperatorClient } from '../../host/operator/client.js';
import { defaultStorePath, openSqliteStore } from '../../host/store/sqlite-store.js';
import { CODE, type McpFixture, mcpFixture, nextCreated, operator } from './mcp-fixture.js';

const MAIN = path.resolve('host/cli/main.ts');

export function stdioTransport(configFile: string, agent: string): { transport: StdioClientTransport; stderr: () => string; wsUrl: Promise<string> } {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: ['--no-node-snapshot', '--import', 'tsx', MAIN, 'mcp', '--config', configFile, '--agent', agent, '--in-process'],
    cwd: process.cwd(),
    env: { ...(process.env as Record<string, string>), CONTAINED_LOG_LEVEL: 'warn' },
    stderr: 'pipe',
  });
  let err = '';
  const wsUrl = new Promise<string>((resolve) => {
    (transport.stderr as Readable).on('data', (chunk: Buffer) => {
      err += chunk.toString();
      const match = /operators decide at (ws:\/\/\S+\/v1\/operator)/.exec(err);
      if (match) resolve(match[1] as string);
    });
  });
  return { transport, stderr: () => err, wsUrl };
}

let fx: McpFixture;
let client: Client;
let wsUrl: string;
let alice: OperatorClient;
let bob: OperatorClient;
const text = (result: CallToolResult): string => (result.content[0] as { text: string }).text;

beforeAll(async () => {
  fx = await mcpFixture({ progressIntervalMs: 200 });
  const { transport, wsUrl: url } = stdioTransport(fx.configFile, 'tester');
  client = new Client({ name: 'mcp-stdio-test', version: '1.0.0' });
  await client.connect(transport);
  wsUrl = await url;
  [alice, bob] = await Promise.all([operator(wsUrl, fx.operators.alice as string), operator(wsUrl, fx.operators.bob as string)]);
}, 60_000);
afterAll(async () => {
  await Promise.all([alice?.close(), bob?.close()].map((p) => p?.catch(() => undefined)));
  await client?.close();
  fx?.close();
});

describe('contained mcp over stdio', () => {
  it('lists run and run_image, with the agent\'s caps.d.ts', async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['run', 'run_image']);
    expect(tools.find((t) => t.name === 'run')?.description).toMatch(/interface Caps \{[\s\S]*notes: \{[\s\S]*read\(/);
    expect(client.getServerVersion()).toMatchObject({ name: 'ai-contained' });
  });

  it('runs code as the agent and returns value, logs and usage', async () => {
    const result = (await client.callTool({ name: 'run', arguments: { code: CODE.read, input: 'x' } })) as CallToolResult;
    expect(result.structuredContent).toMatchObject({ value: { text: 'hello from notes', input: 'x' }, logs: [], usage: { calls: 1 } });
    const failed = (await client.callTool({ name: 'run', arguments: { code: CODE.fail } })) as CallToolResult;
    expect(failed.isError).toBe(true);
    expect(text(failed)).toMatch(/^[A-Z_]+: .*boom/);
  });

  it('waits on an assisted call decided by two operators over the WebSocket, with progress', async () => {
    const seen = nextCreated(alice, (r) => r.method === 'write');
    const progress: Progress[] = [];
    const call = client.callTool({ name: 'run', arguments: { code: CODE.write } }, undefined, { onprogress: (p) => progress.push(p) });
    const request = await seen;
    await expect.poll(() => progress[0]?.message).toBe(`waiting for an operator: notes.write, request ${request.id.slice(0, 8)}…, 0 of 2 approvals`);
    await alice.decide({ requestId: request.id, verdict: 'approve' });
    await bob.decide({ requestId: request.id, verdict: 'approve' });
    const result = (await call) as CallToolResult;
    expect(result.structuredContent).toMatchObject({ value: 'written' });
  });

  it('a denial comes back as ESCALATION_DENIED with the reason', async () => {
    const seen = nextCreated(bob, (r) => r.method === 'append');
    const call = client.callTool({ name: 'run', arguments: { code: CODE.append } });
    await bob.decide({ requestId: (await seen).id, verdict: 'deny', reason: 'not in this sprint' });
    const result = (await call) as CallToolResult;
    expect(result.isError).toBe(true);
    expect(text(result)).toMatch(/^ESCALATION_DENIED: .*not in this sprint/);
  });

  it('cancelling the call cancels the run: its request is withdrawn', async () => {
    const seen = nextCreated(alice, (r) => r.method === 'append');
    const abort = new AbortController();
    const call = client.callTool({ name: 'run', arguments: { code: CODE.append } }, undefined, { signal: abort.signal });
    const request = await seen;
    const resolved = new Promise<string>((resolve) => {
      const off = alice.onEvent((e) => {
        if (e.type === 'resolved' && e.request.id === request.id) {
          off();
          resolve(e.request.status);
        }
      });
    });
    abort.abort();
    await expect(call).rejects.toThrow();
    expect(await resolved).toBe('cancelled');
  });

  it('closing the client cancels its live runs; a revoked agent runs nothing more', async () => {
    // A second server process: its own host on its own data folder (one host per folder), with its own operator channel.
    const fx2 = await mcpFixture({ progressIntervalMs: 200 });
    const { transport, wsUrl: url } = stdioTransport(fx2.configFile, 'tester');
    const other = new Client({ name: 'leaver', version: '1' });
    await other.connect(transport);
    const carol = await operator(await url, fx2.operators.alice as string);
    const seen = nextCreated(carol, (r) => r.method === 'append');
    void other.callTool({ name: 'run', arguments: { code: CODE.append } }).catch(() => undefined);
    const request = await seen;
    await carol.close();
    await other.close();
    const stored = await openSqliteStore(defaultStorePath(path.join(fx2.dir, 'data')));
    try {
      await expect.poll(async () => (await stored.getRun(request.runId))?.status, { timeout: 15_000 }).toBe('cancelled');
      expect((await stored.getRequest(request.id))?.status).toBe('cancelled');
    } finally {
      await stored.close();
      fx2.close();
    }

    const store = await openSqliteStore(defaultStorePath(path.join(fx.dir, 'data')));
    try {
      const agent = (await store.listAgents()).find((a) => a.name === 'tester');
      await store.revokeAgent(agent?.id as string, Date.now());
    } finally {
      await store.close();
    }
    const refused = (await client.callTool({ name: 'run', arguments: { code: CODE.read } })) as CallToolResult;
    expect(refused.isError).toBe(true);
    expect(text(refused)).toMatch(/^UNAUTHENTICATED: agent "tester" has been revoked/);
  });

  it('refuses an agent that does not exist: the process exits with UNAUTHENTICATED on stderr', async () => {
    const { transport, stderr } = stdioTransport(fx.configFile, 'nobody');
    const other = new Client({ name: 'x', version: '1' });
    await expect(other.connect(transport)).rejects.toThrow();
    await expect.poll(() => stderr(), { timeout: 20_000 }).toMatch(/UNAUTHENTICATED: no active agent named "nobody"/);
    await other.close().catch(() => undefined);
  });
});
