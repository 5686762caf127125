/**
 * The HTTP server's connection limits at their boundaries (finding 5), each on a real host on
 * 127.0.0.1 with small limits from the `http` config section, and each refusal typed:
 * - a request whose headers never end is answered 408 and closed after `headersTimeoutMs`
 *   (slowloris); a body sent a byte at a time after `requestTimeoutMs`; an idle keep-alive
 *   socket is closed after `keepAliveTimeoutMs`;
 * - `maxConnections` sockets are served; one more (request or WebSocket upgrade) is answered
 *   `503 SERVER_BUSY` with `Retry-After` and closed, and is served again once a socket frees;
 * - `maxEventStreamsPerClient` event streams per platform client: one more is `429
 *   TOO_MANY_CONNECTIONS` with `Retry-After`; other clients are not affected;
 * - `maxOperatorConnectionsPerToken` WebSockets per operator token: one more is refused 429 at
 *   the upgrade, with the same JSON error body;
 * - `GET /v1/runs/:id/events` resumes after `Last-Event-ID`.
 * Every attack here is bounded (a handful of sockets, a few seconds) and aimed at loopback only.
 */
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { parseHostConfig } from '../../host/config.js';
import type { RequestView } from '../../host/operator/backend.js';
import type { OperatorClient } from '../../host/operator/client.js';
import { call, openEvents } from './api-client.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

const NOTES = { capability: 'notes', kind: 'fs', scope: {}, methods: ['read'], why: 'notes' };
const fixtures: Fixture[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const fx of fixtures.splice(0)) await fx.close();
});

async function host(http: Record<string, unknown>): Promise<{ fx: Fixture; base: string; port: number }> {
  const fx = await startFixture({ http });
  fixtures.push(fx);
  const base = fx.host.url as string;
  return { fx, base, port: Number(new URL(base).port) };
}

/** A raw socket that has sent `text`; resolves with everything the server sent once it closes. */
function raw(port: number, text: string): { socket: Socket; closed: Promise<{ data: string; afterMs: number }> } {
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  const started = Date.now();
  let data = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => (data += d));
  socket.on('error', () => undefined);
  socket.write(text);
  return { socket, closed: new Promise((resolve) => socket.once('close', () => resolve({ data, afterMs: Date.now() - started }))) };
}

const connected = (socket: Socket): Promise<void> => new Promise((resolve) => (socket.connecting ? socket.once('connect', () => resolve()) : resolve()));

function nextCreated(op: OperatorClient, digest: string): Promise<RequestView> {
  return new Promise((resolve) => {
    const off = op.onEvent((event) => {
      if (event.type === 'created' && (event.request as RequestView).subject === digest) {
        off();
        resolve(event.request as RequestView);
      }
    });
  });
}

/** Open a WebSocket to the operator channel; resolves with the socket or the refusal (status, headers, body). */
function openOperator(base: string, token: string): Promise<{ ws?: WebSocket; status?: number; headers?: Record<string, unknown>; body?: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/v1/operator`, ['contained.operator.v1'], { headers: { authorization: `Bearer ${token}` } });
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    ws.once('error', () => undefined);
  });
}

describe('the http config section', () => {
  it('has safe defaults, and refuses unknown keys, out-of-range values and a header deadline past the request deadline', () => {
    expect(parseHostConfig({}, '/tmp').http).toMatchObject({ headersTimeoutMs: 10_000, requestTimeoutMs: 120_000, keepAliveTimeoutMs: 5_000, maxConnections: 512, maxEventStreamsPerClient: 64, maxOperatorConnectionsPerToken: 16, crossClientReaders: [] });
    for (const [http, at] of [
      [{ maxConection: 5 }, []],
      [{ maxConnections: 0 }, ['maxConnections']],
      [{ maxEventStreamsPerClient: 1.5 }, ['maxEventStreamsPerClient']],
      [{ headersTimeoutMs: 5_000, requestTimeoutMs: 1_000 }, ['headersTimeoutMs']],
    ] as const) {
      expect(() => parseHostConfig({ http }, '/tmp'), JSON.stringify(http)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', data: expect.objectContaining({ path: ['http', ...at] }) }));
    }
  });
});

describe('timeouts (slowloris)', () => {
  it('answers a request whose headers never end 408 and closes it after headersTimeoutMs', async () => {
    const { port } = await host({ headersTimeoutMs: 400, requestTimeoutMs: 5_000 });
    const slow = raw(port, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ');
    const timer = setInterval(() => slow.socket.write('a'), 100); // still trickling: only the deadline stops it
    const { data, afterMs } = await slow.closed;
    clearInterval(timer);
    expect(data).toMatch(/^HTTP\/1\.1 408/);
    expect(afterMs).toBeGreaterThanOrEqual(350);
    expect(afterMs).toBeLessThan(3_000);
  });

  it('answers a body sent a byte at a time 408 after requestTimeoutMs', async () => {
    const { port, fx } = await host({ headersTimeoutMs: 400, requestTimeoutMs: 1_200 });
    const slow = raw(port, `POST /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${fx.tokens['plat']}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`);
    const timer = setInterval(() => slow.socket.write(' '), 100);
    const { data, afterMs } = await slow.closed;
    clearInterval(timer);
    expect(data).toMatch(/^HTTP\/1\.1 408/);
    expect(afterMs).toBeGreaterThanOrEqual(1_100);
    expect(afterMs).toBeLessThan(4_000);
  });

  it('closes an idle keep-alive socket after keepAliveTimeoutMs', async () => {
    const { port } = await host({ keepAliveTimeoutMs: 300 });
    const idle = raw(port, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n');
    const { data, afterMs } = await idle.closed;
    expect(data).toMatch(/^HTTP\/1\.1 200/);
    expect(afterMs).toBeGreaterThanOrEqual(250);
    expect(afterMs).toBeLessThan(3_000);
  });
});

describe('maxConnections', () => {
  it('serves maxConnections sockets; one more (request or WebSocket) is 503 SERVER_BUSY with Retry-After; served again once one frees', async () => {
    const { base, port, fx } = await host({ maxConnections: 4, headersTimeoutMs: 30_000, requestTimeoutMs: 60_000 });
    // Four half-open requests hold every place (the slowloris of the finding, in miniature).
    const held = Array.from({ length: 4 }, () => raw(port, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n'));
    await Promise.all(held.map((h) => connected(h.socket)));
    await new Promise((r) => setTimeout(r, 100));

    const busy = await call(base, 'GET', '/healthz');
    expect(busy.status).toBe(503);
    expect(busy.headers.get('retry-after')).toBe('5');
    expect(busy.body.error).toMatchObject({ code: 'SERVER_BUSY', data: { limit: 4 } });
    const fifth = raw(port, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    const refused = await fifth.closed; // closed at once, not held like the others
    expect(refused.data).toMatch(/^HTTP\/1\.1 503/);
    expect(refused.afterMs).toBeLessThan(2_500);
    const ws = await openOperator(base, fx.tokens['alice'] as string);
    expect(ws.status).toBe(503);
    expect(JSON.parse(ws.body as string).error.code).toBe('SERVER_BUSY');

    held[0]?.socket.destroy();
    await expect.poll(async () => (await call(base, 'GET', '/healthz')).status).toBe(200);
  });
});

describe('maxEventStreamsPerClient', () => {
  it('lets a client hold that many event streams; one more is 429 TOO_MANY_CONNECTIONS; other clients are not affected', async () => {
    const { base, fx } = await host({ maxEventStreamsPerClient: 2 });
    const plat = fx.tokens['plat'] as string;
    const image = fx.image('followed', "export default async (input, caps) => caps.notes.read('a.txt')", [NOTES]);
    expect((await call(base, 'POST', '/v1/images', { token: plat, body: image.bytes })).status).toBe(201);
    const alice = await fx.operator('alice');
    const created = nextCreated(alice, image.digest);
    const { body } = await call(base, 'POST', '/v1/runs', { token: plat, json: { digest: image.digest } });
    const request = await created;
    const path = `/v1/runs/${body.runId}/events`;

    const first = await openEvents(base, path, plat);
    const second = await openEvents(base, path, plat);
    expect([first.status, second.status]).toEqual([200, 200]);
    const third = await call(base, 'GET', path, { token: plat });
    expect(third.status).toBe(429);
    expect(third.headers.get('retry-after')).toBe('5');
    expect(third.body.error).toMatchObject({ code: 'TOO_MANY_CONNECTIONS', data: { limit: 2 } });
    const admin = await openEvents(base, path, fx.tokens['erin'] as string);
    expect(admin.status).toBe(200);

    first.close();
    await expect.poll(async () => {
      const again = await openEvents(base, path, plat);
      again.close();
      return again.status;
    }).toBe(200);
    await alice.decide({ requestId: request.id, verdict: 'deny', reason: 'test over' });
    await Promise.all([second.done, admin.done]);
  });
});

describe('maxOperatorConnectionsPerToken', () => {
  it('lets a token hold that many WebSockets; one more is refused 429 at the upgrade; other tokens are not affected', async () => {
    const { base, fx } = await host({ maxOperatorConnectionsPerToken: 2 });
    const alice = fx.tokens['alice'] as string;
    const a1 = await openOperator(base, alice);
    const a2 = await openOperator(base, alice);
    expect(a1.ws && a2.ws).toBeTruthy();
    const a3 = await openOperator(base, alice);
    expect(a3.status).toBe(429);
    expect(a3.headers?.['retry-after']).toBe('5');
    expect(JSON.parse(a3.body as string).error).toMatchObject({ code: 'TOO_MANY_CONNECTIONS', data: { limit: 2 } });
    const bob = await openOperator(base, fx.tokens['bob'] as string);
    expect(bob.ws).toBeDefined();

    a1.ws?.close();
    await expect.poll(async () => {
      const again = await openOperator(base, alice);
      again.ws?.close();
      return again.status ?? 101;
    }).toBe(101);
    for (const c of [a2, bob]) c.ws?.close();
  });
});

describe('Last-Event-ID', () => {
  it('resumes a run\'s event stream after the last id seen, live and after the end; 204 when nothing is left; 400 for a bad id', async () => {
    const { base, fx } = await host({});
    const plat = fx.tokens['plat'] as string;
    const source = "export default async (input, caps) => { console.log('one'); console.log('two'); const text = await caps.notes.read('a.txt').catch(() => 'denied'); console.log('three'); return text; }";
    const image = fx.image('resumable', source, [NOTES]);
    expect((await call(base, 'POST', '/v1/images', { token: plat, body: image.bytes })).status).toBe(201);
    const alice = await fx.operator('alice');
    const created = nextCreated(alice, image.digest);
    const { body } = await call(base, 'POST', '/v1/runs', { token: plat, json: { digest: image.digest } });
    const path = `/v1/runs/${body.runId}/events`;
    const request = await created;

    // Read up to the first log line, then drop the connection.
    const first = await openEvents(base, path, plat);
    const one = await first.next('log', (m) => m.data.message === 'one');
    first.close();
    const seen = Number(one.id);
    expect(seen).toBeGreaterThan(0);

    // Reconnect with Last-Event-ID while the run still waits: only later events, in order, no duplicate.
    const resumed = await openEvents(base, path, plat, { 'last-event-id': String(seen) });
    expect(resumed.status).toBe(200);
    const future = await openEvents(base, path, plat, { 'last-event-id': '1000000' }); // an id the run never reached
    expect(future.status).toBe(200);
    await resumed.next('request');
    await alice.decide({ requestId: request.id, verdict: 'approve' });
    const rest = await resumed.done;
    expect(await future.done).toEqual([]); // ends with the run instead of hanging
    const ids = rest.map((m) => Number(m.id));
    expect(ids[0]).toBe(seen + 1);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    expect(new Set(ids).size).toBe(ids.length);
    expect(rest.map((m) => (m.event === 'log' ? m.data.message : m.event))).toEqual(['two', 'request', 'request', 'three', 'outcome']);

    // After the end: the same resume gives the same events; after the outcome, 204 (EventSource stops).
    const again = await openEvents(base, path, plat, { 'last-event-id': String(seen) });
    expect((await again.done).map((m) => [m.id, m.event])).toEqual(rest.map((m) => [m.id, m.event]));
    const last = rest.at(-1)?.id as string;
    const nothing = await call(base, 'GET', path, { token: plat, headers: { 'last-event-id': last } });
    expect(nothing.status).toBe(204);
    const fresh = await openEvents(base, path, plat);
    expect((await fresh.done).at(-1)).toMatchObject({ id: last, event: 'outcome' });

    for (const bad of ['x', '-1', '1.5', '9'.repeat(20)]) {
      const res = await call(base, 'GET', path, { token: plat, headers: { 'last-event-id': bad } });
      expect(res.status, bad).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'INVALID_ARGUMENT', data: { path: ['Last-Event-ID'] } });
    }
  });
});

describe('the finding, replayed at the default limits', () => {
  it('800 half-open requests, 300 event streams of one client, 200 WebSockets of one token: the excess is refused with its code, nothing piles up', async () => {
    const { base, port, fx } = await host({});
    const defaults = fx.config.http;

    // 800 half-open requests: maxConnections are held (until headersTimeoutMs), the rest answered 503 at once.
    const attempts = Array.from({ length: 800 }, () => raw(port, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n'));
    const refusedAtOnce = await Promise.all(attempts.map((a) => Promise.race([a.closed, new Promise<undefined>((r) => setTimeout(() => r(undefined), 2_000))])));
    const refused = refusedAtOnce.filter((r) => r !== undefined);
    expect(refused.length).toBe(800 - defaults.maxConnections);
    for (const r of refused) expect(r?.data).toMatch(/^HTTP\/1\.1 503[^]*"code":"SERVER_BUSY"/);
    for (const a of attempts) a.socket.destroy();
    await expect.poll(async () => (await call(base, 'GET', '/healthz')).status).toBe(200);

    // 300 event streams of one platform client on one run: maxEventStreamsPerClient, then 429.
    const plat = fx.tokens['plat'] as string;
    const image = fx.image('watched', "export default async (input, caps) => caps.notes.read('a.txt')", [NOTES]);
    expect((await call(base, 'POST', '/v1/images', { token: plat, body: image.bytes })).status).toBe(201);
    const alice = await fx.operator('alice');
    const created = nextCreated(alice, image.digest);
    const { body } = await call(base, 'POST', '/v1/runs', { token: plat, json: { digest: image.digest } });
    const request = await created;
    const streams = await Promise.all(Array.from({ length: 300 }, () => openEvents(base, `/v1/runs/${body.runId}/events`, plat)));
    const statuses = streams.map((s) => s.status);
    expect(statuses.filter((s) => s === 200).length).toBe(defaults.maxEventStreamsPerClient);
    expect(statuses.filter((s) => s === 429).length).toBe(300 - defaults.maxEventStreamsPerClient);
    await alice.decide({ requestId: request.id, verdict: 'deny', reason: 'enough' });
    await Promise.all(streams.map((s) => s.done));

    // 200 viewer WebSockets with one token: maxOperatorConnectionsPerToken, then 429 at the upgrade.
    const sockets = await Promise.all(Array.from({ length: 200 }, () => openOperator(base, fx.tokens['vic'] as string)));
    expect(sockets.filter((s) => s.ws).length).toBe(defaults.maxOperatorConnectionsPerToken);
    const refusedWs = sockets.filter((s) => s.status !== undefined);
    expect(refusedWs.length).toBe(200 - defaults.maxOperatorConnectionsPerToken);
    for (const r of refusedWs) expect(r).toMatchObject({ status: 429, headers: { 'retry-after': '5' } });
    for (const s of sockets) s.ws?.close();
  }, 60_000);
});
