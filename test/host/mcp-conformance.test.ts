/**
 * The official MCP conformance suite (`@modelcontextprotocol/conformance`, run offline from
 * node_modules) against `contained mcp` over Streamable HTTP, for the scenarios that apply to a
 * server whose only tools are `run` and `run_image`:
 *
 * - server-initialize, ping, logging-set-level, tools-list: the protocol basics.
 * - server-sse-multiple-streams: several concurrent POST streams on one session.
 * - dns-rebinding-protection: a foreign Host/Origin is refused, this server's own accepted.
 *
 * The others test the suite's own reference server's fixtures (tools named test_image_content,
 * test_sampling…, prompts, resources, completions) that a code-running server does not have;
 * they are not run here (docs/mcp.md lists them). The suite cannot send an Authorization header,
 * so it talks to a loopback relay that adds the agent token and maps its own Host/Origin to the
 * host's (any other Host/Origin passes unchanged, so the rebinding check stays real).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadHostConfig } from '../../host/config.js';
import { type Host, startHost } from '../../host/host.js';
import { type McpFixture, mcpFixture } from './mcp-fixture.js';

const SCENARIOS = ['server-initialize', 'ping', 'logging-set-level', 'tools-list', 'server-sse-multiple-streams', 'dns-rebinding-protection'];
const CLI = path.resolve('node_modules/@modelcontextprotocol/conformance/dist/index.js');

let fx: McpFixture;
let host: Host;
let relay: http.Server;
let relayUrl: string;
let out: string;

beforeAll(async () => {
  fx = await mcpFixture();
  host = await startHost({ config: await loadHostConfig(fx.configFile), isolation: 'in-process', logger: pino({ level: 'silent' }) });
  const target = new URL(`${host.url}/v1/mcp`);
  relay = http.createServer((req, res) => {
    const own = req.headers.host ?? '';
    const headers = { ...req.headers, authorization: `Bearer ${fx.agentToken}` };
    if (headers.host === own && own === new URL(relayUrl).host) headers.host = target.host;
    if (headers.origin === `http://${own}`) headers.origin = target.origin;
    const up = http.request({ hostname: target.hostname, port: target.port, path: target.pathname, method: req.method, headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  relayUrl = `http://127.0.0.1:${(relay.address() as AddressInfo).port}/mcp`;
  out = mkdtempSync(path.join(os.tmpdir(), 'contained-conformance-'));
});
afterAll(async () => {
  relay?.closeAllConnections();
  await new Promise<void>((resolve) => (relay ? relay.close(() => resolve()) : resolve()));
  await host?.close();
  fx?.close();
  if (out) rmSync(out, { recursive: true, force: true });
});

describe('MCP conformance suite against contained mcp (Streamable HTTP)', () => {
  it.each(SCENARIOS)('%s passes', async (scenario) => {
    const dir = path.join(out, scenario);
    // Not spawnSync: the relay and the host live in this process's event loop and must keep serving.
    const result = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn(process.execPath, [CLI, 'server', '--url', relayUrl, '--scenario', scenario, '-o', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (c: Buffer) => (output += c.toString()));
      child.stderr.on('data', (c: Buffer) => (output += c.toString()));
      child.on('close', (code) => resolve({ code, output }));
    });
    const runs = readdirSync(dir);
    expect(runs, result.output).toHaveLength(1);
    const checks = JSON.parse(readFileSync(path.join(dir, runs[0] as string, 'checks.json'), 'utf8')) as Array<{ id: string; status: string; errorMessage?: string }>;
    expect(checks.length).toBeGreaterThan(0);
    expect(checks.filter((c) => c.status !== 'SUCCESS'), result.output).toEqual([]);
  }, 60_000);
});
