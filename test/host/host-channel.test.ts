/**
 * The operator channel of a real host, attacked with bad input while an agent waits: malformed
 * JSON, unknown types, schema mismatches, oversized frames, a viewer deciding, forged and repeated
 * decisions, bad tokens and origins. Each is answered as specified; afterwards the waiting request
 * is still there and a valid decision completes the run — nothing lost.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

let fx: Fixture;
let wsUrl: string;
beforeAll(async () => {
  fx = await startFixture();
  wsUrl = `${fx.host.url?.replace(/^http/, 'ws')}/v1/operator`;
});
afterAll(async () => {
  await fx.close();
});

interface Raw {
  ws: WebSocket;
  messages: Array<Record<string, unknown>>;
  next(match: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
}

function connect(token: string, origin?: string): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, ['contained.operator.v1'], { headers: { authorization: `Bearer ${token}` }, ...(origin ? { origin } : {}) });
    const messages: Array<Record<string, unknown>> = [];
    const waiters: Array<{ match: (m: Record<string, unknown>) => boolean; resolve: (m: Record<string, unknown>) => void }> = [];
    ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as Record<string, unknown>;
      messages.push(m);
      for (const w of [...waiters]) {
        if (w.match(m)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    });
    ws.on('unexpected-response', (_req, res) => reject(Object.assign(new Error('refused'), { status: res.statusCode })));
    ws.on('error', reject);
    ws.on('open', () =>
      resolve({
        ws,
        messages,
        next: (match) => {
          const found = messages.find(match);
          if (found) return Promise.resolve(found);
          return new Promise((r) => waiters.push({ match, resolve: r }));
        },
      }),
    );
  });
}

describe('operator channel of a live host under bad input', () => {
  it('answers every bad input as specified and loses nothing', async () => {
    const image = fx.image('patient', "export default async (input, caps) => (await caps.mail.send({ to: 'a@example.com', subject: 'p', text: 't' })).accepted", [
      { capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'mail' },
    ]);
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const alice = await connect(fx.tokens.alice as string);
    const created = alice.next((m) => m.type === 'created');
    const { runId } = await fx.host.submit({ image: image.bytes, input: null });
    const request = (await created).request as { id: string };

    // Refused before any data flows.
    await expect(connect('ctd_not-a-real-token-at-all-000000000000000')).rejects.toMatchObject({ status: 401 });
    await expect(connect(fx.tokens.alice as string, 'https://evil.example')).rejects.toMatchObject({ status: 403 });

    // Malformed JSON, unknown type, schema mismatch: typed errors, the connection stays open.
    alice.ws.send('{not json');
    expect(await alice.next((m) => m.type === 'error' && m.id === undefined)).toMatchObject({ code: 'INVALID_ARGUMENT' });
    alice.ws.send(JSON.stringify({ type: 'launch.missiles', id: 'u1' }));
    expect(await alice.next((m) => m.id === 'u1')).toMatchObject({ type: 'error', code: 'INVALID_ARGUMENT' });
    alice.ws.send(JSON.stringify({ type: 'decide', id: 'u2', requestId: request.id, verdict: 'maybe' }));
    expect(await alice.next((m) => m.id === 'u2')).toMatchObject({ type: 'error', code: 'INVALID_ARGUMENT' });
    // A forged decision on an id that does not exist.
    alice.ws.send(JSON.stringify({ type: 'decide', id: 'u3', requestId: 'forged-request-id', verdict: 'approve' }));
    expect(await alice.next((m) => m.id === 'u3')).toMatchObject({ type: 'error', code: 'NOT_FOUND' });

    // A viewer cannot decide.
    const vic = await connect(fx.tokens.vic as string);
    vic.ws.send(JSON.stringify({ type: 'decide', id: 'v1', requestId: request.id, verdict: 'approve' }));
    expect(await vic.next((m) => m.id === 'v1')).toMatchObject({ type: 'error', code: 'FORBIDDEN' });

    // An oversized frame closes that connection only.
    const big = await connect(fx.tokens.bob as string);
    const closed = new Promise<number>((r) => big.ws.on('close', (code) => r(code)));
    big.ws.send(JSON.stringify({ type: 'ping', id: 'x'.repeat(70 * 1024) }));
    expect(await closed).toBe(1009);

    // Nothing was lost: the request is still pending, and a valid decision completes the run.
    expect((await fx.host.store.getRequest(request.id))?.status).toBe('pending');
    alice.ws.send(JSON.stringify({ type: 'decide', id: 'ok1', requestId: request.id, verdict: 'approve' }));
    expect(await alice.next((m) => m.id === 'ok1')).toMatchObject({ type: 'result' });
    expect(await fx.host.waitForRun(runId)).toMatchObject({ status: 'ok', value: ['a@example.com'] });
    // A repeated decision is refused and changes nothing.
    alice.ws.send(JSON.stringify({ type: 'decide', id: 'ok2', requestId: request.id, verdict: 'deny', reason: 'too late' }));
    expect(await alice.next((m) => m.id === 'ok2')).toMatchObject({ type: 'error', code: 'ALREADY_RESOLVED' });
    expect((await fx.host.store.getRequest(request.id))?.status).toBe('approved');
    expect(fx.mails().filter((m) => m.includes('Subject: p'))).toHaveLength(1);
    for (const c of [alice, vic]) c.ws.close();
  });

  it('a token revoked while its connection is open can no longer decide', async () => {
    const image = fx.image('revoked', "export default async (input, caps) => caps.mail.send({ to: 'a@example.com', subject: 'r', text: 't' })", [
      { capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'mail' },
    ]);
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const carol = await connect(fx.tokens.carol as string);
    const created = carol.next((m) => m.type === 'created' && (m.request as { subject?: string }).subject === image.digest);
    const { runId } = await fx.host.submit({ image: image.bytes, input: null });
    const request = (await created).request as { id: string };
    const record = (await fx.host.store.listTokens()).find((t) => t.name === 'carol');
    await fx.host.store.revokeToken(record?.id ?? '', Date.now());
    carol.ws.send(JSON.stringify({ type: 'decide', id: 'c1', requestId: request.id, verdict: 'approve' }));
    expect(await carol.next((m) => m.id === 'c1')).toMatchObject({ type: 'error', code: 'UNAUTHENTICATED' });
    expect((await fx.host.store.getRequest(request.id))?.status).toBe('pending');
    await fx.host.cancelRun(runId);
    carol.ws.close();
  });
});
