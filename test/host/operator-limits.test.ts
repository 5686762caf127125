/**
 * Operator channel limits at their boundaries, over real sockets: the per-connection rate limit
 * (RATE_LIMITED, then 1008 for sustained abuse), the heartbeat that drops a peer that stopped
 * answering pings, backpressure against a client that stopped reading (the server's send buffer
 * for it stays bounded and it is closed 1013), and shutdown.
 */
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { RequestView } from '../../host/operator/backend.js';
import { connect, connectReady, type Harness, sleep, startHarness, TOKENS } from './operator-harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('rate limit', () => {
  it('a burst over 40 is answered RATE_LIMITED (echoing ids), the connection stays open and recovers', async () => {
    let now = 1_000_000; // a clock that only moves when the test says so: exact counts
    h = await startHarness({ now: () => now });
    const c = await connectReady(h.url, TOKENS.viewer);
    for (let i = 0; i < 60; i++) c.send({ type: 'ping', id: `p${i}` });
    await c.waitFor((m) => (m.type === 'result' || m.type === 'error') && m.id === 'p59');
    await sleep(20);
    const results = c.messages.filter((m) => m.type === 'result');
    const limited = c.messages.filter((m) => m.type === 'error');
    expect(results).toHaveLength(40);
    expect(limited).toHaveLength(20);
    for (const e of limited) expect(e).toMatchObject({ type: 'error', code: 'RATE_LIMITED', id: expect.stringMatching(/^p\d+$/) });
    // The first 40 went through: the bucket starts full.
    expect(results.slice(0, 40).map((m) => m.type === 'result' && m.id)).toEqual(Array.from({ length: 40 }, (_, i) => `p${i}`));
    expect(c.open).toBe(true);
    expect(await c.request({ type: 'ping' })).toMatchObject({ type: 'error', code: 'RATE_LIMITED' });
    now += 50; // 20/s: one token back
    expect(await c.request({ type: 'ping' })).toMatchObject({ type: 'result' });
    expect(await c.request({ type: 'ping' })).toMatchObject({ type: 'error', code: 'RATE_LIMITED' });
    now += 2_000; // refilled to the burst, not beyond
    for (let i = 0; i < 40; i++) expect(await c.request({ type: 'ping' })).toMatchObject({ type: 'result' });
    expect(await c.request({ type: 'ping' })).toMatchObject({ type: 'error', code: 'RATE_LIMITED' });
  });

  it('sustained abuse closes the connection 1008', async () => {
    h = await startHarness({ messagesPerSecond: 20, messageBurst: 10, abuseWindowMs: 10_000, now: () => 5_000 });
    const c = await connectReady(h.url, TOKENS.viewer);
    // 10 allowed, then 10 refused with RATE_LIMITED, then closed.
    for (let i = 0; i < 100; i++) c.send({ type: 'ping', id: `p${i}` });
    const closed = await c.closed;
    expect(closed.code).toBe(1008);
    const limited = c.messages.filter((m) => m.type === 'error' && m.code === 'RATE_LIMITED');
    expect(limited).toHaveLength(10);
    expect(c.messages.filter((m) => m.type === 'result')).toHaveLength(10);
  });
});

describe('heartbeat', () => {
  it('terminates a peer that stopped answering pings, keeps one that answers', async () => {
    h = await startHarness({ heartbeatMs: 100 });
    const dead = await connectReady(h.url, TOKENS.alice, { autoPong: false });
    const live = await connectReady(h.url, TOKENS.bob);
    let pings = 0;
    dead.ws.on('ping', () => pings++);
    const closed = await dead.closed;
    expect(closed.code).toBe(1006); // terminated: no closing handshake with a dead peer
    expect(pings).toBeGreaterThanOrEqual(1);
    await sleep(250);
    expect(live.open).toBe(true);
    expect(h.channel.clients().map((c) => c.operator.name)).toEqual(['bob']);
  });
});

describe('backpressure', () => {
  it('a client that stops reading costs at most maxBufferedBytes + one message, then is closed 1013', async () => {
    const maxBufferedBytes = 256 * 1024;
    h = await startHarness({ maxBufferedBytes, closeTimeoutMs: 5_000 });
    const stalled = await connectReady(h.url, TOKENS.viewer);
    const healthy = await connectReady(h.url, TOKENS.alice);
    const socket = (stalled.ws as unknown as { _socket: Socket })._socket;
    socket.pause(); // stop reading: the kernel buffers fill, then the server's user-space buffer

    const big = 'x'.repeat(16 * 1024);
    const request = h.backend.add({ id: 'seed', args: { body: big } });
    const frameBytes = Buffer.byteLength(JSON.stringify({ type: 'updated', request }));
    let maxSeen = 0;
    let sent = 0;
    for (let batch = 0; batch < 200 && h.channel.clients().some((c) => c.operator.name === 'vera'); batch++) {
      for (let i = 0; i < 10; i++) {
        h.backend.emit({ type: 'updated', request: { ...request, id: `r${sent++}` } as RequestView });
      }
      const mine = h.channel.clients().find((c) => c.operator.name === 'vera');
      maxSeen = Math.max(maxSeen, mine?.bufferedAmount ?? 0);
      await new Promise((resolve) => setImmediate(resolve));
    }
    // Far more was offered than any buffer could hold; what the server kept for it stayed bounded.
    expect(sent * frameBytes).toBeGreaterThan(8 * maxBufferedBytes);
    expect(maxSeen).toBeGreaterThan(0);
    expect(maxSeen).toBeLessThanOrEqual(maxBufferedBytes + frameBytes);

    // When it reads again it finds the close frame: 1013, after fewer events than were sent.
    socket.resume();
    const closed = await stalled.closed;
    expect(closed.code).toBe(1013);
    const received = stalled.messages.filter((m) => m.type === 'updated').length;
    expect(received).toBeLessThan(sent);
    await sleep(20);
    expect(h.channel.clients().map((c) => c.operator.name)).toEqual(['alice']);

    // The healthy reader was not affected and got everything.
    await healthy.waitFor((m) => m.type === 'updated' && m.request.id === `r${sent - 1}`, 10_000);
    expect(healthy.open).toBe(true);
  });

  it('a stalled client is eventually destroyed even if it never reads again (close timeout)', async () => {
    h = await startHarness({ maxBufferedBytes: 64 * 1024, closeTimeoutMs: 200 });
    const stalled = await connectReady(h.url, TOKENS.viewer);
    (stalled.ws as unknown as { _socket: Socket })._socket.pause();
    const request = h.backend.add({ id: 'seed', args: { body: 'y'.repeat(32 * 1024) } });
    for (let i = 0; i < 2000 && h.channel.clients().length > 0; i++) {
      h.backend.emit({ type: 'updated', request });
      if (i % 20 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    const deadline = Date.now() + 3000;
    while (h.channel.clients().length > 0 && Date.now() < deadline) await sleep(20);
    expect(h.channel.clients()).toHaveLength(0);
  });
});

describe('lifecycle', () => {
  it('close() closes every connection 1001, refuses new ones, and unsubscribes from the backend', async () => {
    h = await startHarness();
    const a = await connectReady(h.url, TOKENS.viewer);
    const b = await connectReady(h.url, TOKENS.admin);
    expect(h.backend.subscribers).toBe(1);
    await h.channel.close();
    expect((await a.closed).code).toBe(1001);
    expect((await b.closed).code).toBe(1001);
    expect(h.backend.subscribers).toBe(0);
    await expect(connect(h.url, { token: TOKENS.alice })).rejects.toThrow();
  });

  it('disconnect() closes the connections of a revoked token with 1008', async () => {
    h = await startHarness();
    const alice = await connectReady(h.url, TOKENS.alice);
    const bob = await connectReady(h.url, TOKENS.bob);
    expect(h.channel.disconnect((op) => op.tokenId === 'tok-alice')).toBe(1);
    expect((await alice.closed).code).toBe(1008);
    expect(bob.open).toBe(true);
  });

  it('rejects nonsense limits at start-up', async () => {
    h = await startHarness();
    const { attachOperatorChannel } = await import('../../host/operator/server.js');
    expect(() => attachOperatorChannel(h!.server, { backend: h!.backend, verifier: h!.verifier, maxPayloadBytes: 0 })).toThrow(RangeError);
    expect(() => attachOperatorChannel(h!.server, { backend: h!.backend, verifier: h!.verifier, allowedOrigins: ['*'] })).toThrow(TypeError);
  });
});
