/**
 * A crash between intent and outcome leaves a visible dangling intent. A real `contained host`
 * process runs an agent whose `http.get` goes to a loopback server that accepts the request and
 * never answers; the moment the request arrives (so the gate has returned, so the intent is on
 * disk), the host is killed with SIGKILL. `contained audit dangling` then shows the intent — `open`
 * while no host has started since, `interrupted` after a restart — and `audit verify` still passes:
 * the kill loses no committed record and breaks no link.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { main } from '../../host/cli/main.js';
import { loadHostConfig } from '../../host/config.js';
import { newGrantId } from '../../host/grants.js';
import { startHost } from '../../host/host.js';
import { defaultStorePath, openSqliteStore } from '../../host/store/sqlite-store.js';
import { createToken } from '../../host/tokens.js';
import { computeDigest } from '../../sandbox-images/digest.js';
import { packImage } from '../../sandbox-images/pack.js';
import { exited, type HostProcess, startHostProcess } from './helpers/host-process.js';

const cleanup: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  return main(argv, { stdout: (t) => (out += t), stderr: (t) => (err += t) }).then((code) => ({ code, out, err }));
}

/** A loopback HTTP peer that reads the request and never answers; resolves `arrived` on the first request line. */
async function silentServer(): Promise<{ port: number; arrived: Promise<string> }> {
  let hit!: (line: string) => void;
  const arrived = new Promise<string>((resolve) => (hit = resolve));
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('data', (chunk) => hit(chunk.toString('latin1').split('\r\n')[0] ?? ''));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  return { port: (server.address() as net.AddressInfo).port, arrived };
}

function spawnHost(configFile: string): Promise<HostProcess> {
  return startHostProcess(configFile, (child) => cleanup.push(() => void child.kill('SIGKILL')));
}

describe('crash between intent and outcome', () => {
  it('SIGKILL while an http call is in flight leaves a dangling intent that `audit dangling` shows', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-audit-crash-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const peer = await silentServer();
    const configFile = path.join(dir, 'contained.config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        dataDir: dir,
        listen: { host: '127.0.0.1', port: 0 },
        capabilities: { web: { kind: 'http', scope: { origins: [`http://127.0.0.1:${peer.port}`], allowedCidrs: ['127.0.0.1/32'], timeoutMs: 120_000 } } },
      }),
    );
    const manifest = { format: 1, name: 'fetcher', version: '1.0.0', description: 'fetches one page', entry: 'main.js', requests: [{ capability: 'web', kind: 'http', scope: {}, methods: ['get'], why: 'the page' }] };
    const files = new Map<string, Uint8Array>([
      ['manifest.json', Buffer.from(JSON.stringify(manifest))],
      ['main.js', Buffer.from(`export default async (input, caps) => caps.web.get({ url: 'http://127.0.0.1:${peer.port}/report' }, { reason: 'read the report' })`)],
    ]);
    const digest = computeDigest(files).digest;
    const store = await openSqliteStore(defaultStorePath(dir));
    const plat = (await createToken({ name: 'plat', role: 'platform', createdBy: 'test' }, store)).token;
    await store.insertGrant({ id: newGrantId(), subject: { digest }, capability: 'web', methods: ['get'], mode: 'contained', approvals: 1, createdBy: 'test', reason: 'test', createdAt: Date.now() });
    await store.close();

    const host = await spawnHost(configFile);
    const res = await fetch(`${host.url}/v1/runs`, { method: 'POST', headers: { authorization: `Bearer ${plat}`, 'content-type': 'application/json' }, body: JSON.stringify({ image: packImage(files).toString('base64'), input: null }) });
    expect(res.status).toBe(202);
    const { runId } = (await res.json()) as { runId: string };
    // The request reached the outside world: the action is under way, its intent already durable.
    expect(await peer.arrived).toBe('GET /report HTTP/1.1');
    host.child.kill('SIGKILL');
    await exited(host.child);

    const dangling = await run(['audit', 'dangling', '--data-dir', dir, '--json']);
    expect(dangling.code).toBe(0);
    const list = JSON.parse(dangling.out) as Array<{ state: string; record: { type: string; runId: string; capability: string; method: string; callId: string; data: Record<string, unknown> } }>;
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ state: 'open', record: { type: 'intent', runId, subject: digest, capability: 'web', method: 'get', data: { args: { url: `http://127.0.0.1:${peer.port}/report` } } } });
    const human = await run(['audit', 'dangling', '--data-dir', dir]);
    expect(human.out).toMatch(/^1 intent without an outcome:\nopen +#\d+ .* intent +run=/);

    // The chain survived the kill intact (the tail after the last checkpoint is merely unsigned).
    const verified = await run(['audit', 'verify', '--data-dir', dir]);
    expect(verified.code).toBe(0);
    expect(verified.out).toMatch(/OK: the chain and every checkpoint verify/);

    // After a restart, the intent can never get its outcome: it is reported as interrupted.
    const again = await startHost({ config: await loadHostConfig(configFile), isolation: 'in-process', listen: false, logger: pino({ level: 'silent' }) });
    await again.close();
    const after = JSON.parse((await run(['audit', 'dangling', '--data-dir', dir, '--json'])).out) as Array<{ state: string; record: { callId: string } }>;
    expect(after).toEqual([expect.objectContaining({ state: 'interrupted', record: expect.objectContaining({ callId: list[0]?.record.callId }) })]);
  }, 60_000);
});
