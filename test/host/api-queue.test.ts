/**
 * The run queue at its boundary, through the API: with one slot and one queue place, a run
 * waiting for a human holds the slot, the next run is queued, the one after is refused 429
 * QUEUE_FULL with Retry-After and nothing stored; a queued run can be cancelled; freeing the slot
 * starts the next queued run. Also `metricsPublic` and the queue gauges.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RequestView } from '../../host/operator/backend.js';
import { RunQueue } from '../../host/runs/run-queue.js';
import { call, openEvents } from './api-client.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

let fx: Fixture;
let base: string;
beforeAll(async () => {
  fx = await startFixture({ maxConcurrentRuns: 1, maxQueuedRuns: 1, metricsPublic: true });
  base = fx.host.url as string;
});
afterAll(async () => {
  await fx.close();
});

const NOTES = { capability: 'notes', kind: 'fs', scope: {}, methods: ['read'], why: 'notes' };
const plat = (): string => fx.tokens['plat'] as string;

describe('run queue', () => {
  it('queues, refuses with 429 + Retry-After when full, cancels queued runs, and starts the next when a slot frees', async () => {
    const waiting = fx.image('holder', "export default async (input, caps) => caps.notes.read('a.txt')", [NOTES]);
    const quick = fx.image('quick', 'export default (input) => input');
    for (const image of [waiting, quick]) expect((await call(base, 'POST', '/v1/images', { token: plat(), body: image.bytes })).status).toBe(201);
    const alice = await fx.operator('alice');
    const created = new Promise<RequestView>((resolve) => {
      const off = alice.onEvent((e) => {
        if (e.type === 'created' && e.request.subject === waiting.digest) {
          off();
          resolve(e.request as RequestView);
        }
      });
    });

    const a = await call(base, 'POST', '/v1/runs', { token: plat(), json: { digest: waiting.digest } });
    expect(a.body.status).toBe('running');
    const escalation = await created; // A now holds the only slot while it waits for a human.

    const b = await call(base, 'POST', '/v1/runs', { token: plat(), json: { digest: quick.digest, input: 'b' } });
    expect(b).toMatchObject({ status: 202, body: { status: 'queued' } });
    expect((await call(base, 'GET', `/v1/runs/${b.body.runId}`, { token: plat() })).body.status).toBe('queued');

    const runsBefore = (await fx.host.store.listRuns()).length;
    const full = await call(base, 'POST', '/v1/runs', { token: plat(), json: { digest: quick.digest, input: 'c' } });
    expect(full.status).toBe(429);
    expect(full.body.error).toMatchObject({ code: 'QUEUE_FULL', data: { running: 1, queued: 1 } });
    expect(Number(full.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await fx.host.store.listRuns()).length).toBe(runsBefore);
    await expect(fx.host.submit({ image: quick.bytes })).rejects.toMatchObject({ code: 'QUEUE_FULL' });

    // Cancelling the queued run frees its place without ever starting it.
    const cancelled = await call(base, 'DELETE', `/v1/runs/${b.body.runId}`, { token: plat() });
    expect(cancelled.status).toBe(202);
    const bRun = (await call(base, 'GET', `/v1/runs/${b.body.runId}?waitMs=5000`, { token: plat() })).body;
    expect(bRun).toMatchObject({ status: 'cancelled', outcome: { status: 'error', error: { code: 'CANCELLED' }, usage: { cpuMs: 0 } } });

    const c = await call(base, 'POST', '/v1/runs', { token: plat(), json: { digest: quick.digest, input: 'c' } });
    expect(c.body.status).toBe('queued');
    const stream = await openEvents(base, `/v1/runs/${c.body.runId}/events`, plat());
    await stream.next('run', (m) => m.data.status === 'queued');

    const metrics = await call<string>(base, 'GET', '/metrics');
    expect(metrics.status).toBe(200); // metricsPublic: no token needed
    expect(metrics.body).toMatch(/^contained_runs_queued 1$/m);
    expect(metrics.body).toMatch(/^contained_runs_running 1$/m);
    expect(metrics.body).toMatch(/^contained_queue_rejections_total 2$/m);

    await alice.decide({ requestId: escalation.id, verdict: 'approve' });
    const events = await stream.done;
    expect(events.filter((m) => m.event === 'run').map((m) => m.data.status)).toEqual(['queued', 'running']);
    expect(events.at(-1)?.data).toMatchObject({ status: 'ok', outcome: { value: 'c' } });
    expect((await call(base, 'GET', `/v1/runs/${a.body.runId}?waitMs=5000`, { token: plat() })).body).toMatchObject({ status: 'ok', outcome: { value: 'hello' } });
    expect(fx.host.queue.running + fx.host.queue.queued).toBe(0);
  });
});

describe('RunQueue', () => {
  it('hands slots over in order, never exceeds its bounds, and counts releases exactly once', async () => {
    const q = new RunQueue({ maxConcurrentRuns: 2, maxQueuedRuns: 2 });
    const s1 = q.reserve();
    const s2 = q.reserve();
    const s3 = q.reserve();
    const s4 = q.reserve();
    expect([s1.queued, s2.queued, s3.queued, s4.queued]).toEqual([false, false, true, true]);
    expect(() => q.reserve()).toThrow(expect.objectContaining({ code: 'QUEUE_FULL' }));
    expect(s3.cancel()).toBe(true);
    expect(await s3.started).toBe(false);
    s3.release(); // a withdrawn place gives nothing back
    expect([q.running, q.queued]).toEqual([2, 1]);
    s1.release();
    s1.release();
    expect(await s4.started).toBe(true);
    expect(s4.cancel()).toBe(false);
    expect([q.running, q.queued]).toEqual([2, 0]);
    s2.release();
    s4.release();
    expect([q.running, q.queued]).toEqual([0, 0]);
    q.observe(30_000);
    expect(q.retryAfterSeconds()).toBeGreaterThanOrEqual(4);
    expect(() => new RunQueue({ maxConcurrentRuns: 0, maxQueuedRuns: 1 })).toThrow(RangeError);
  });
});
