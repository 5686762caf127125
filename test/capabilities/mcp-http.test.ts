/**
 * An `mcp` capability over Streamable HTTP: the real server-everything in its `streamableHttp`
 * mode, behind a small recording proxy. The host attaches an `Authorization` header from a host
 * secret; the agent's scope and docs never contain it. A response body larger than
 * `maxMessageBytes` is cut off: MCP_SERVER_FAILED (too-large), and the next call works.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateCapsDts } from '../../capabilities/docs.js';
import { type McpCapability, startMcp } from '../../capabilities/mcp/index.js';
import { call, errorOf } from './helpers.js';

const SECRET = 'Bearer s3cr3t-token-the-agent-never-sees';
let server: ChildProcess;
let proxy: http.Server;
let mcp: McpCapability;
const seenAuth: (string | undefined)[] = [];

async function freePort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

beforeAll(async () => {
  const port = await freePort();
  server = spawn(process.execPath, [path.resolve('node_modules/@modelcontextprotocol/server-everything/dist/index.js'), 'streamableHttp'], { env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('server-everything did not start')), 15_000);
    server.stderr?.on('data', (c: Buffer) => {
      if (c.toString().includes('listening')) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  proxy = http.createServer((req, res) => {
    seenAuth.push(req.headers.authorization);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (body.includes('DOWN')) {
        res.writeHead(503, { 'content-type': 'text/plain' });
        res.end('maintenance');
        return;
      }
      if (body.includes('HUGE')) {
        const id = (JSON.parse(body.toString()) as { id: number }).id;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: 'x'.repeat(3 * 1024 * 1024) }] } }));
        return;
      }
      const up = http.request({ host: '127.0.0.1', port, path: req.url, method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/mcp`;
  mcp = await startMcp(
    'remote',
    { server: { url, headers: { Authorization: { secret: 'REMOTE_TOKEN' } } }, limits: { maxMessageBytes: 1024 * 1024, callTimeoutMs: 5000 } },
    { secrets: { get: (name) => (name === 'REMOTE_TOKEN' ? SECRET : undefined) } },
  );
});
afterAll(async () => {
  await mcp?.close();
  proxy?.closeAllConnections();
  await new Promise((r) => proxy?.close(r));
  server?.kill('SIGKILL');
});

describe('Streamable HTTP', () => {
  it('lists tools and calls them with the host-side header; the agent sees no secret', async () => {
    const inst = mcp.create({});
    await expect(call(inst, 'getSum', { a: 20, b: 22 })).resolves.toMatch(/42/);
    expect(seenAuth.length).toBeGreaterThan(0);
    expect(seenAuth.every((h) => h === SECRET)).toBe(true);
    const docs = generateCapsDts([inst]);
    expect(docs).not.toContain('s3cr3t');
    expect(JSON.stringify(inst.describe().scope)).not.toContain('s3cr3t');
  });

  it('a missing secret fails at start, naming the secret, not a value', async () => {
    const err = await errorOf(startMcp('remote2', { server: { url: 'http://127.0.0.1:1/mcp', headers: { Authorization: { secret: 'NOPE' } } } }, { secrets: { get: () => undefined } }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toContain('NOPE');
  });

  it('a response body over maxMessageBytes: MCP_SERVER_FAILED (too-large); the next call works', async () => {
    const inst = mcp.create({});
    expect(await errorOf(call(inst, 'echo', { message: 'HUGE' }))).toMatchObject({ code: 'MCP_SERVER_FAILED', data: { reason: 'too-large' } });
    await expect(call(inst, 'echo', { message: 'small' })).resolves.toBe('Echo: small');
  });

  it('an endpoint that answers an HTTP error: MCP_SERVER_FAILED (unavailable); the next call goes through', async () => {
    const inst = mcp.create({});
    expect(await errorOf(call(inst, 'echo', { message: 'DOWN' }))).toMatchObject({ code: 'MCP_SERVER_FAILED', data: { reason: 'unavailable' } });
    await expect(call(inst, 'echo', { message: 'up again' })).resolves.toBe('Echo: up again');
  });
});
