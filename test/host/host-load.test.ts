/**
 * 200 sandboxes escalating at once, 5 operators deciding over real WebSocket connections, all
 * racing for every request: each request is decided exactly once, every run finishes, nothing is
 * lost. Loopback only; bounded in count and time.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OperatorClient } from '../../host/operator/client.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

const RUNS = 200;
let fx: Fixture;
beforeAll(async () => {
  fx = await startFixture();
});
afterAll(async () => {
  await fx.close();
});

describe('load: 200 escalations, 5 operators', () => {
  it('every request is decided exactly once and every run completes', async () => {
    const operators: OperatorClient[] = await Promise.all(['alice', 'bob', 'carol', 'dave', 'erin'].map((n) => fx.operator(n)));
    const image = fx.image('crowd', "export default async (input, caps) => (await caps.notes.read('a.txt')) + ':' + input.i", [
      { capability: 'notes', kind: 'fs', scope: {}, methods: ['read'], why: 'read a note' },
    ]);
    const wins = new Map<string, string>();
    const refusals: string[] = [];
    const decisions: Promise<void>[] = [];
    // Each operator takes its share (the channel rate-limits every connection to 20 messages/s,
    // burst 40 — a person does not click faster); a few requests are raced by all five.
    let raced = 0;
    const racedIds = new Set<string>();
    operators.forEach((op, k) => {
      op.onEvent((event) => {
        if (event.type !== 'created' || event.request.subject !== image.digest) return;
        const id = event.request.id;
        if (!racedIds.has(id) && raced < 5 && k === 0) {
          racedIds.add(id);
          raced += 1;
        }
        const mine = Number.parseInt(id.slice(0, 8), 16) % operators.length === k;
        if (!mine && !racedIds.has(id)) return;
        decisions.push(
          op.decide({ requestId: event.request.id, verdict: 'approve', span: 'once' }).then(
            () => {
              if (wins.has(event.request.id)) throw new Error(`request ${event.request.id} approved twice`);
              wins.set(event.request.id, op.operator.name);
            },
            (error: { code?: string }) => {
              refusals.push(error.code ?? 'unknown');
            },
          ),
        );
      });
    });
    const submitted = await Promise.all(Array.from({ length: RUNS }, (_, i) => fx.host.submit({ image: image.bytes, input: { i } })));
    const outcomes = await Promise.all(submitted.map((s) => fx.host.waitForRun(s.runId)));
    await Promise.all(decisions);
    expect(outcomes.filter((o) => o.status === 'ok')).toHaveLength(RUNS);
    expect(new Set(outcomes.map((o) => (o.status === 'ok' ? o.value : null)))).toHaveLength(RUNS);
    expect(wins.size).toBe(RUNS);
    // Every losing attempt was refused with a typed code, never applied.
    for (const code of refusals) expect(code).toBe('ALREADY_RESOLVED');
    const stored = (await fx.host.store.listRequests({ status: 'approved', limit: 10_000 })).filter((r) => r.subject === image.digest);
    expect(stored).toHaveLength(RUNS);
    expect(stored.every((r) => r.approvals.length === 1)).toBe(true);
    expect(new Set([...wins.values()]).size).toBeGreaterThan(1);
  }, 120_000);
});
