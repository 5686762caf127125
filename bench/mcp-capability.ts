/**
 * One MCP-capability call from agent code against calling the same server directly with the SDK
 * client: the real `@modelcontextprotocol/server-everything` over stdio, its `echo` tool. Ours: a
 * program in an in-process isolate calls `caps.everything.echo(...)` N times in a loop (argument
 * validated by ajv against the tool's schema, scope check, the SDK client, the result validated and
 * copied back into the sandbox). Peer: the official SDK `Client.callTool` N times from the host,
 * on its own connection to a second server process. Both sequential: the ratio is the per-call cost
 * of the sandbox and our checks on top of the MCP round trip.
 */
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { startMcp } from '../capabilities/mcp/index.js';
import { createSandbox } from '../runtime/index.js';
import { type BenchRow, pct, round } from './report.js';

const N = 2000;
const SERVER = { command: path.resolve('node_modules/.bin/mcp-server-everything'), args: ['stdio'] };

export async function mcpCapabilityCall(): Promise<BenchRow[]> {
  const client = new Client({ name: 'bench', version: '1' });
  await client.connect(new StdioClientTransport({ ...SERVER, stderr: 'ignore' }));
  const direct: number[] = [];
  for (let i = 0; i < N + 100; i++) {
    const t0 = performance.now();
    await client.callTool({ name: 'echo', arguments: { message: 'hi' } });
    if (i >= 100) direct.push(performance.now() - t0);
  }
  await client.close();

  const everything = await startMcp('everything', { server: SERVER });
  const sandbox = createSandbox({ isolation: 'in-process' });
  try {
    const out = await sandbox.run({
      source: `export default async function main(n, caps) {
        for (let i = 0; i < 100; i++) await caps.everything.echo({ message: 'hi' });
        const t0 = Date.now(); for (let i = 0; i < n; i++) await caps.everything.echo({ message: 'hi' }); return (Date.now() - t0) * 1000 / n; }`,
      input: N,
      capabilities: [everything.create({}, { methods: ['echo'] })],
      limits: { cpuMs: 60_000, wallMs: 300_000, maxCalls: N + 1000 },
    });
    if (out.status !== 'ok') {
      process.stderr.write(`mcp-capability bench failed: ${JSON.stringify(out.error)}\n`);
      return [];
    }
    const directMean = direct.reduce((a, b) => a + b, 0) / direct.length;
    return [
      {
        name: 'MCP tool call (server-everything echo, stdio) from agent code',
        value: round(out.value as number, 1),
        unit: 'µs/call',
        peer: 'SDK Client.callTool from the host (mean)',
        peerValue: round(directMean * 1000, 1),
        target: `p50 direct ${round(pct(direct, 50) * 1000, 1)} µs`,
      },
    ];
  } finally {
    await sandbox.close();
    await everything.close();
  }
}
