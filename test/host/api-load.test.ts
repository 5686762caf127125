/**
 * Load through the platform API: 500 runs of an example image (records-cleanup, dry run: one SQL
 * query through a `contained` grant and a log line) submitted over HTTP by 20 concurrent clients,
 * each following its runs to the end by long-poll (every 10th by the event stream). Every run must
 * reach a final state with its own result, and the store and the metrics must agree: nothing
 * lost, nothing counted twice. Loopback only; in-process isolates for speed.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES_DIR } from '../../sandbox-images/build-examples.js';
import { buildImage } from '../../sandbox-images/build.js';
import { call, openEvents } from './api-client.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

const RUNS = 500;
const CLIENTS = 20;
const days = (i: number): number => 30 + 7 * (i % 50);

let fx: Fixture;
let base: string;
beforeAll(async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-api-load-'));
  const db = new Database(path.join(dir, 'cleanup.db'));
  db.exec(readFileSync(path.join(EXAMPLES_DIR, 'records-cleanup', 'data', 'seed.sql'), 'utf8'));
  db.close();
  fx = await startFixture({ capabilities: { records: { kind: 'sql', scope: { file: path.join(dir, 'cleanup.db'), tables: ['records'] } } } }, dir);
  base = fx.host.url as string;
});
afterAll(async () => {
  await fx.close();
});

describe(`load: ${RUNS} runs through HTTP from ${CLIENTS} clients`, () => {
  it('every run reaches a final state with its own result; the store and the metrics agree', async () => {
    const image = await buildImage(path.join(EXAMPLES_DIR, 'records-cleanup', 'image'));
    const uploaded = await call(base, 'POST', '/v1/images', { token: fx.tokens['plat'] as string, body: image });
    expect(uploaded.status).toBe(201);
    const digest = uploaded.body.digest as string;
    await fx.grant(digest, { capability: 'records', methods: ['query'], mode: 'contained' });

    const started = performance.now();
    let next = 0;
    const results = new Map<string, any>();
    const retries = { count: 0 };
    const client = async (c: number): Promise<void> => {
      const token = fx.tokens['plat'] as string;
      for (let i = next++; i < RUNS; i = next++) {
        // `olderThanDays` varies, so each outcome shows which input it came from (never equal to a seed row's age).
        const input = { olderThanDays: days(i), dryRun: true };
        let res = await call(base, 'POST', '/v1/runs', { token, json: { digest, input } });
        while (res.status === 429) {
          retries.count += 1;
          await new Promise((r) => setTimeout(r, 20));
          res = await call(base, 'POST', '/v1/runs', { token, json: { digest, input } });
        }
        expect(res.status).toBe(202);
        const runId = res.body.runId as string;
        let run: any;
        if (i % 10 === c % 10) {
          const stream = await openEvents(base, `/v1/runs/${runId}/events`, token);
          run = (await stream.done).at(-1)?.data;
        } else {
          do run = (await call(base, 'GET', `/v1/runs/${runId}?waitMs=30000`, { token })).body;
          while (!run.outcome);
        }
        expect(results.has(runId)).toBe(false);
        results.set(runId, { i, run });
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
    const seconds = (performance.now() - started) / 1000;
    console.log(`${RUNS} runs through HTTP with ${CLIENTS} clients: ${seconds.toFixed(2)} s, ${(RUNS / seconds).toFixed(0)} runs/s, ${retries.count} 429 retries`);

    expect(results.size).toBe(RUNS);
    for (const { i, run } of results.values()) {
      expect(run.status, JSON.stringify(run.outcome)).toBe('ok');
      // The seed's rows are 400, 200, 120, 91, 89, 10 and 1 days old.
      const expected = [400, 200, 120, 91, 89, 10, 1].filter((age) => age > days(i)).length;
      expect(run.outcome.value).toMatchObject({ dryRun: true, found: expected, deleted: 0 });
      expect(run.outcome.logs[0].message).toContain(`not updated for ${days(i)} days`);
    }
    const stored = (await fx.host.store.listRuns()).filter((r) => r.subject === digest);
    expect(stored).toHaveLength(RUNS);
    expect(stored.every((r) => r.status === 'ok' && r.outcome !== undefined)).toBe(true);
    const metrics = (await call<string>(base, 'GET', '/metrics', { token: fx.tokens['plat'] as string })).body;
    expect(metrics).toMatch(new RegExp(`^contained_runs_total\\{status="ok",code=""\\} ${RUNS}$`, 'm'));
    expect(metrics).toMatch(new RegExp(`^contained_capability_calls_total\\{capability="records",method="query",decision="allowed"\\} ${RUNS}$`, 'm'));
    expect(fx.host.queue.running + fx.host.queue.queued).toBe(0);
  }, 60_000);
});
