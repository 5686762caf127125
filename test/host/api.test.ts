/**
 * The platform HTTP API end to end, over real HTTP on 127.0.0.1:0 against a real host (SQLite
 * store, in-process sandboxes, operators over WebSocket): authentication and roles, image upload
 * (stored by digest, atomically; oversize 413; hostile archives 422 with their code), runs by
 * digest and inline, body validation (400 with the path), the event stream (logs, a request, its
 * approval by an operator, the outcome; replay after the end), cancel, and /metrics.
 */
import { existsSync, readdirSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RequestView } from '../../host/operator/backend.js';
import type { OperatorClient } from '../../host/operator/client.js';
import { gz, rawTar, manifestJson, MAIN_JS } from '../sandbox-images/helpers.js';
import { call, openEvents } from './api-client.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

let fx: Fixture;
let base: string;
beforeAll(async () => {
  fx = await startFixture();
  base = fx.host.url as string;
});
afterAll(async () => {
  await fx.close();
});

const MAIL = { capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'mail' };
const NOTES = { capability: 'notes', kind: 'fs', scope: {}, methods: ['read'], why: 'notes' };
const plat = (): string => fx.tokens['plat'] as string;

async function upload(bytes: Uint8Array, token = plat()) {
  return call(base, 'POST', '/v1/images', { token, body: bytes, contentType: 'application/gzip' });
}

async function finished(runId: string): Promise<any> {
  for (;;) {
    const res = await call(base, 'GET', `/v1/runs/${runId}?waitMs=10000`, { token: plat() });
    expect(res.status).toBe(200);
    if (res.body.outcome) return res.body;
  }
}

function nextCreated(op: OperatorClient, filter: (r: RequestView) => boolean): Promise<RequestView> {
  return new Promise((resolve) => {
    const off = op.onEvent((event) => {
      if (event.type === 'created' && filter(event.request as RequestView)) {
        off();
        resolve(event.request as RequestView);
      }
    });
  });
}

/** Send a body with node:http, so the declared length and the bytes sent can differ from fetch's. */
function rawPost(pathname: string, options: { declared?: number; chunks: number; chunkBytes: number }): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const url = new URL(pathname, base);
    const headers: Record<string, string | number> = { authorization: `Bearer ${plat()}`, 'content-type': 'application/octet-stream' };
    if (options.declared !== undefined) headers['content-length'] = options.declared;
    const req = httpRequest({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    let sent = 0;
    const chunk = Buffer.alloc(options.chunkBytes, 1);
    const pump = (): void => {
      while (sent < options.chunks) {
        sent += 1;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      if (options.declared === undefined) req.end();
    };
    req.on('response', () => {
      sent = options.chunks;
    });
    pump();
  });
}

describe('authentication and routing', () => {
  it('refuses a missing or bad token with 401 and a viewer or approver with 403', async () => {
    const none = await call(base, 'GET', '/v1/runs/00000000-0000-4000-8000-000000000000');
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe('UNAUTHENTICATED');
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    const bad = await call(base, 'POST', '/v1/runs', { token: 'ctd_' + 'x'.repeat(43), json: { digest: 'sha256:' + '0'.repeat(64) } });
    expect(bad.status).toBe(401);
    const lookalike = await call(base, 'GET', '/metrics', { token: `${plat()}x` });
    expect(lookalike.status).toBe(401);
    for (const who of ['vic', 'alice']) {
      const res = await call(base, 'POST', '/v1/images', { token: fx.tokens[who] as string, body: Buffer.from('x') });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('FORBIDDEN');
    }
    const admin = await call(base, 'GET', '/v1/runs/00000000-0000-4000-8000-000000000000', { token: fx.tokens['erin'] as string });
    expect(admin.status).toBe(404);
  });

  it('answers unknown paths 404 and wrong methods 405 with Allow, always as JSON errors', async () => {
    const unknown = await call(base, 'GET', '/v1/nothing', { token: plat() });
    expect(unknown).toMatchObject({ status: 404, body: { error: { code: 'NOT_FOUND' } } });
    const wrong = await call(base, 'PUT', '/v1/runs', { token: plat(), json: {} });
    expect(wrong.status).toBe(405);
    expect(wrong.body.error.code).toBe('METHOD_NOT_ALLOWED');
    expect(wrong.headers.get('allow')).toBe('POST');
    expect((await call(base, 'GET', '/healthz')).body).toEqual({ ok: true });
  });
});

describe('POST /v1/images', () => {
  it('validates, stores the archive in the host store by digest, and answers digest and manifest', async () => {
    const image = fx.image('uploaded', 'export default (input) => ({ echoed: input })');
    const res = await upload(image.bytes);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ digest: image.digest, manifest: { name: 'uploaded', entry: 'main.js' } });
    expect((await fx.host.store.getImage(image.digest))?.equals(image.bytes)).toBe(true);
    // The same image again replaces the stored archive.
    expect((await upload(image.bytes)).status).toBe(201);
    expect((await fx.host.store.getImage(image.digest))?.equals(image.bytes)).toBe(true);
  });

  it('refuses hostile archives with 422 and the loader\'s code, storing nothing', async () => {
    const stored = (): number => {
      const db = new Database(path.join(fx.dir, 'contained.db'), { readonly: true });
      try {
        return db.prepare('SELECT COUNT(*) FROM images').pluck().get() as number;
      } finally {
        db.close();
      }
    };
    const before = stored();
    const traversal = gz(rawTar([{ path: 'manifest.json', body: manifestJson() }, { path: 'agent/main.js', body: MAIN_JS }, { path: '../evil.js', body: 'x' }]));
    const res = await upload(traversal);
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe('IMAGE_PATH_TRAVERSAL');
    const link = gz(rawTar([{ path: 'manifest.json', body: manifestJson() }, { path: 'agent/main.js', type: '2', linkpath: '/etc/passwd' }]));
    expect((await upload(link)).body.error.code).toBe('IMAGE_LINK');
    expect((await upload(Buffer.from('not a gzip stream at all'))).body.error.code).toBe('IMAGE_CORRUPT');
    const noManifest = gz(rawTar([{ path: 'agent/main.js', body: MAIN_JS }]));
    expect((await upload(noManifest)).body.error.code).toBe('IMAGE_MANIFEST_MISSING');
    expect(stored()).toBe(before);
    // Nor anything where earlier versions kept images as files.
    expect(existsSync(path.join(fx.dir, 'images')) ? readdirSync(path.join(fx.dir, 'images')) : []).toEqual([]);
  });

  it('refuses other media types with 415', async () => {
    const res = await call(base, 'POST', '/v1/images', { token: plat(), json: { image: 'x' } });
    expect(res.status).toBe(415);
    expect(res.body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
  });

  it('refuses a body over 32 MiB with 413, by its declared length and while streaming', async () => {
    const declared = await rawPost('/v1/images', { declared: 32 * 1024 * 1024 + 1, chunks: 1, chunkBytes: 1024 });
    expect(declared.status).toBe(413);
    expect(declared.body.error).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', data: { limitBytes: 32 * 1024 * 1024 } });
    const streamed = await rawPost('/v1/images', { chunks: 40, chunkBytes: 1024 * 1024 });
    expect(streamed.status).toBe(413);
    expect(streamed.body.error.code).toBe('PAYLOAD_TOO_LARGE');
  });
});

describe('POST /v1/runs and GET /v1/runs/:id', () => {
  it('runs an uploaded image by digest: 202 with the run id, then status and outcome', async () => {
    const image = fx.image('echo', 'export default (input) => ({ echoed: input })');
    await upload(image.bytes);
    const res = await call(base, 'POST', '/v1/runs', { token: plat(), json: { digest: image.digest, input: { n: 1 } } });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ runId: expect.any(String), digest: image.digest, status: expect.stringMatching(/^(running|queued)$/) });
    expect(res.headers.get('location')).toBe(`/v1/runs/${res.body.runId}`);
    const run = await finished(res.body.runId);
    expect(run).toMatchObject({ id: res.body.runId, status: 'ok', subject: image.digest, imageName: 'echo', submittedBy: 'plat', outcome: { status: 'ok', value: { echoed: { n: 1 } } } });
  });

  it('still accepts an inline base64 image (contained submit)', async () => {
    const image = fx.image('inline', 'export default () => 42');
    const res = await call(base, 'POST', '/v1/runs', { token: plat(), json: { image: image.bytes.toString('base64') } });
    expect(res.status).toBe(202);
    expect((await finished(res.body.runId)).outcome).toMatchObject({ status: 'ok', value: 42 });
  });

  it('validates bodies with zod: 400 INVALID_ARGUMENT naming the path', async () => {
    const cases: [unknown, string[]][] = [
      [{}, ['digest']],
      [{ digest: 'sha256:short' }, ['digest']],
      [{ digest: `sha256:${'a'.repeat(64)}`, extra: 1 }, []],
      [{ image: 42 }, ['image']],
      [{ image: 'not base64 !!' }, ['image']],
      [[], []],
    ];
    for (const [json, at] of cases) {
      const res = await call(base, 'POST', '/v1/runs', { token: plat(), json });
      expect(res.status, JSON.stringify(json)).toBe(400);
      expect(res.body.error.code).toBe('INVALID_ARGUMENT');
      expect(res.body.error.data.path).toEqual(at);
    }
    const notJson = await call(base, 'POST', '/v1/runs', { token: plat(), body: '{"digest":', contentType: 'application/json' });
    expect(notJson).toMatchObject({ status: 400, body: { error: { code: 'INVALID_ARGUMENT' } } });
    const wrongType = await call(base, 'POST', '/v1/runs', { token: plat(), body: '{}', contentType: 'text/plain' });
    expect(wrongType.status).toBe(415);
    const badWait = await call(base, 'GET', '/v1/runs/00000000-0000-4000-8000-000000000000?waitMs=-5', { token: plat() });
    expect(badWait.body.error).toMatchObject({ code: 'INVALID_ARGUMENT', data: { path: ['waitMs'] } });
  });

  it('answers 404 for an unknown digest or run id', async () => {
    const missing = await call(base, 'POST', '/v1/runs', { token: plat(), json: { digest: `sha256:${'b'.repeat(64)}` } });
    expect(missing).toMatchObject({ status: 404, body: { error: { code: 'NOT_FOUND' } } });
    for (const id of ['00000000-0000-4000-8000-000000000000', 'not-a-run', '..%2F..%2Fetc']) {
      expect((await call(base, 'GET', `/v1/runs/${id}`, { token: plat() })).status).toBe(404);
    }
  });
});

describe('GET /v1/runs/:id/events', () => {
  it('streams logs, the request, its approval by an operator over ws, and the outcome; replays after the end', async () => {
    const image = fx.image(
      'narrator',
      "export default async (input, caps) => { console.log('before'); const r = await caps.mail.send({ to: 'a@example.com', subject: 'sse', text: 't' }, { reason: 'tell them' }); console.log('after'); return r.accepted; }",
      [MAIL],
    );
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    await upload(image.bytes);
    const alice = await fx.operator('alice');
    const created = nextCreated(alice, (r) => r.subject === image.digest);
    const { body } = await call(base, 'POST', '/v1/runs', { token: plat(), json: { digest: image.digest } });
    const stream = await openEvents(base, `/v1/runs/${body.runId}/events`, plat());
    expect(stream.status).toBe(200);
    const request = await created;
    const seen = await stream.next('request', (m) => m.data.change === 'created');
    expect(seen.data.request).toMatchObject({ id: request.id, kind: 'recommendation', method: 'send', reason: 'tell them' });
    await alice.decide({ requestId: request.id, verdict: 'approve' });
    const messages = await stream.done;
    const kinds = messages.map((m) => (m.event === 'request' ? `request:${m.data.change}` : m.event === 'log' ? `log:${m.data.message}` : m.event));
    expect(kinds[0]).toBe('run');
    expect(kinds).toContain('log:before');
    expect(kinds.indexOf('log:before')).toBeLessThan(kinds.indexOf('request:created'));
    expect(kinds.indexOf('request:created')).toBeLessThan(kinds.indexOf('request:resolved'));
    expect(kinds.indexOf('request:resolved')).toBeLessThan(kinds.indexOf('log:after'));
    expect(kinds.at(-1)).toBe('outcome');
    expect(messages.at(-1)?.data).toMatchObject({ id: body.runId, status: 'ok', outcome: { status: 'ok', value: ['a@example.com'] } });
    expect(messages.map((m) => Number(m.id))).toEqual(messages.map((_, i) => i + 1));
    expect(new Set(messages.map((m) => JSON.stringify(m.data))).size).toBe(messages.length);

    const replay = await openEvents(base, `/v1/runs/${body.runId}/events`, plat());
    const again = await replay.done;
    expect(again.map((m) => m.event)).toEqual(['run', 'request', 'log', 'log', 'outcome']);
    expect(again[1]?.data).toMatchObject({ change: 'resolved', request: { id: request.id, status: 'approved' } });
  });

  it('needs a platform token and a known run', async () => {
    expect((await call(base, 'GET', '/v1/runs/00000000-0000-4000-8000-000000000000/events', { token: plat() })).status).toBe(404);
    expect((await call(base, 'GET', '/v1/runs/00000000-0000-4000-8000-000000000000/events', { token: fx.tokens['vic'] as string })).status).toBe(403);
  });
});

describe('DELETE /v1/runs/:id', () => {
  it('cancels a run waiting for a human; its escalation closes; a second DELETE is 200 with the final run', async () => {
    const image = fx.image('stuck', "export default async (input, caps) => caps.notes.read('a.txt')", [NOTES]);
    await upload(image.bytes);
    const alice = await fx.operator('alice');
    const created = nextCreated(alice, (r) => r.subject === image.digest);
    const { body } = await call(base, 'POST', '/v1/runs', { token: plat(), json: { digest: image.digest } });
    const request = await created;
    const cancelled = await call(base, 'DELETE', `/v1/runs/${body.runId}`, { token: plat() });
    expect(cancelled.status).toBe(202);
    const run = await finished(body.runId);
    expect(run).toMatchObject({ status: 'cancelled', outcome: { status: 'error', error: { code: 'CANCELLED' } } });
    await expect.poll(async () => (await fx.host.store.getRequest(request.id))?.status).toBe('run_gone');
    const again = await call(base, 'DELETE', `/v1/runs/${body.runId}`, { token: plat() });
    expect(again).toMatchObject({ status: 200, body: { status: 'cancelled' } });
    expect((await call(base, 'DELETE', `/v1/runs/${body.runId}`, { token: fx.tokens['vic'] as string })).status).toBe(403);
  });
});

/** `name{labels} value` lines of a Prometheus text exposition. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!match) throw new Error(`not a Prometheus sample line: ${line}`);
    out.set(match[1] as string, Number(match[2]));
  }
  return out;
}

describe('GET /metrics', () => {
  it('needs a platform or admin token and serves the Prometheus text format with the counts', async () => {
    expect((await call(base, 'GET', '/metrics')).status).toBe(401);
    expect((await call(base, 'GET', '/metrics', { token: fx.tokens['vic'] as string })).status).toBe(403);
    const res = await call<string>(base, 'GET', '/metrics', { token: fx.tokens['erin'] as string });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const m = samples(res.body);
    expect(m.get('contained_runs_total{status="ok",code=""}')).toBeGreaterThanOrEqual(3);
    expect(m.get('contained_runs_total{status="cancelled",code="CANCELLED"}')).toBe(1);
    expect(m.get('contained_capability_calls_total{capability="mail",method="send",decision="approved"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('contained_human_decision_seconds_count{kind="recommendation",status="approved"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('contained_run_duration_seconds_count{status="ok"}')).toBe(m.get('contained_runs_total{status="ok",code=""}'));
    expect(m.has('contained_pending_requests{kind="escalation"}')).toBe(true);
    expect(m.get('contained_runs_running')).toBe(0);
    expect(m.get('contained_runs_queued')).toBe(0);
    expect([...m.keys()].some((k) => k.startsWith('contained_http_request_duration_seconds_count{method="POST",route="/v1/runs",status="202"}'))).toBe(true);
    expect(m.has('process_cpu_seconds_total')).toBe(false);
  });

  it('counts pending requests while they wait', async () => {
    const image = fx.image('pending-gauge', "export default async (input, caps) => caps.notes.read('a.txt')", [NOTES]);
    const alice = await fx.operator('alice');
    const created = nextCreated(alice, (r) => r.subject === image.digest);
    const { runId } = await fx.host.submit({ image: image.bytes });
    const request = await created;
    const gauge = async () => samples((await call<string>(base, 'GET', '/metrics', { token: plat() })).body).get('contained_pending_requests{kind="escalation"}');
    const waiting = await gauge();
    expect(waiting).toBeGreaterThanOrEqual(1);
    await alice.decide({ requestId: request.id, verdict: 'deny', reason: 'no' });
    await fx.host.waitForRun(runId);
    expect(await gauge()).toBe((waiting as number) - 1);
  });
});
