/**
 * The MCP session's limits at the edge: calls that arrive in the same tick (the SDK's in-memory
 * transport delivers them back to back) against a real host's run service — the live-runs cap
 * counts runs from admission, not from when the run service has them.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { findActiveAgent } from '../../host/agents.js';
import { loadHostConfig } from '../../host/config.js';
import { type Host, startHost } from '../../host/host.js';
import { createMcpSession } from '../../host/mcp/server.js';
import { CODE, type McpFixture, mcpFixture } from './mcp-fixture.js';

let fx: McpFixture;
let host: Host;
beforeAll(async () => {
  fx = await mcpFixture();
  host = await startHost({ config: await loadHostConfig(fx.configFile), isolation: 'in-process', listen: false, logger: pino({ level: 'silent' }) });
});
afterAll(async () => {
  await host?.close();
  fx?.close();
});

it('admits at most maxConcurrentRuns of calls that arrive together', async () => {
  const agent = await findActiveAgent(host.store, 'tester');
  const limits = { ...(await loadHostConfig(fx.configFile)).mcp, maxConcurrentRuns: 2 };
  const session = await createMcpSession({ runs: host.runs, grants: host.grants, instances: host.instances }, agent as NonNullable<typeof agent>, limits, 'stdio');
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await session.server.connect(serverSide);
  const client = new Client({ name: 'same-tick', version: '1' });
  await client.connect(clientSide);
  const results = (await Promise.all([0, 1, 2, 3].map(() => client.callTool({ name: 'run', arguments: { code: CODE.read } })))) as CallToolResult[];
  const refused = results.filter((r) => r.isError);
  expect(refused.map((r) => (r.content[0] as { text: string }).text.split(':')[0])).toEqual(['MCP_TOO_MANY_RUNS', 'MCP_TOO_MANY_RUNS']);
  expect(results.filter((r) => !r.isError)).toHaveLength(2);
  await client.close();
  await session.cancelAll('done');
});
