/**
 * The notification outbox a fleet shares in PostgreSQL (host/store/pg/notify-outbox.ts), with a
 * real server: the SQLite outbox's guarantees (one row per target and event, order per request,
 * retries, pruning, the console's summary) and, for several hosts, claims — two outboxes racing for
 * 200 rows hand each to exactly one of them; a row claimed by a host that died goes to another
 * once its lease ran out; a request's later row waits for its earlier one whichever host queued
 * them. End to end: two notifiers (two hosts) on one database and one real loopback webhook
 * receiver — every event delivered exactly once, in order per request.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RequestEvent } from '../../host/gate/events.js';
import { proposalView } from '../../host/gate/proposal.js';
import { notifyConfigSchema } from '../../host/notify/config.js';
import { createNotifier, type Notifier } from '../../host/notify/notifier.js';
import { resolveTargets } from '../../host/notify/targets.js';
import type { NotifyOutbox, OutboxInput } from '../../host/store/notify-outbox.js';
import { openPgNotifyOutbox } from '../../host/store/pg/notify-outbox.js';
import { openPgStore } from '../../host/store/pg-store.js';
import { pgAvailable, type PgServer, startPostgres } from '../helpers/postgres.js';
import { request } from './store-fixtures.js';
import { startReceiver } from './helpers/webhook-receiver.js';
import { waitUntil } from './helpers/wait.js';

let server: PgServer;
const closers: Array<() => Promise<unknown>> = [];
beforeAll(async () => {
  if (pgAvailable) server = await startPostgres();
});
afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
  await server?.stop();
});

/** A fresh database with the schema (opening the store migrates it). */
async function database(): Promise<string> {
  const url = await server.createDatabase();
  await (await openPgStore(url)).close();
  return url;
}

function outbox(url: string, leaseMs?: number): NotifyOutbox {
  const o = openPgNotifyOutbox(url, leaseMs === undefined ? {} : { leaseMs });
  closers.push(() => o.close());
  return o;
}

const row = (target: string, event: string, orderKey: string, at: number): OutboxInput => ({ target, event, eventKey: `${event}:${orderKey}`, orderKey, payload: { orderKey, event }, at });

describe.skipIf(!pgAvailable)('the notification outbox on PostgreSQL', { timeout: 60_000 }, () => {
  it('one row per target and event; only the head of a request is due; retries, give-ups, summary, list, open requests and pruning', async () => {
    const o = outbox(await database());
    expect(await o.enqueue([row('webhook:ops', 'request.created', 'r1', 1_000), row('email', 'request.created', 'r1', 1_000)])).toBe(2);
    expect(await o.enqueue([row('webhook:ops', 'request.created', 'r1', 1_001)])).toBe(0);
    expect(await o.enqueue([row('webhook:ops', 'request.decided', 'r1', 1_100)])).toBe(1);
    expect(await o.has('webhook:ops', 'request.created:r1')).toBe(true);
    expect(await o.has('webhook:ops', 'request.expired:r1')).toBe(false);
    // The decided row waits for the created one of the same target and request.
    const first = await o.due(2_000, 10);
    expect(first.map((r) => `${r.target} ${r.event}`).sort()).toEqual(['email request.created', 'webhook:ops request.created']);
    const ops = first.find((r) => r.target === 'webhook:ops');
    await o.failed(ops?.id ?? 0, 2_001, 'answered 503', { retryAt: 5_000, status: 503 });
    expect(await o.due(3_000, 10)).toEqual([]);
    const again = await o.due(5_000, 10);
    expect(again.map((r) => r.id)).toEqual([ops?.id]);
    expect(again[0]).toMatchObject({ attempts: 1, lastError: 'answered 503', lastStatus: 503, idempotencyKey: ops?.idempotencyKey });
    await o.delivered(ops?.id ?? 0, 5_001, 200);
    const decided = await o.due(5_002, 10);
    expect(decided.map((r) => r.event)).toEqual(['request.decided']);
    await o.failed(decided[0]?.id ?? 0, 5_003, 'gone', {});
    expect(await o.openRequests(['webhook:ops', 'email'])).toEqual([{ target: 'email', orderKey: 'r1' }]);
    const summary = await o.summary();
    expect(summary.find((s) => s.target === 'webhook:ops')).toMatchObject({ delivered: 1, failed: 1, pending: 0, lastError: 'gone', lastErrorAt: 5_003, lastDeliveredAt: 5_001 });
    expect(summary.find((s) => s.target === 'email')).toMatchObject({ pending: 1 });
    expect((await o.list({ target: 'webhook:ops' })).map((r) => r.status)).toEqual(['failed', 'delivered']);
    expect(await o.prune(6_000)).toBe(2);
    expect((await o.list()).map((r) => r.target)).toEqual(['email']);
    // Only rows of the targets asked for are handed out (a host claims only what it can send).
    expect(await o.due(9_000, 10, undefined, ['webhook:ops'])).toEqual([]);
  });

  it('two hosts racing for 200 rows: each row is handed to exactly one of them', async () => {
    const url = await database();
    const [a, b] = [outbox(url), outbox(url)];
    await a.enqueue(Array.from({ length: 200 }, (_, i) => row('webhook:ops', 'request.created', `r${i}`, 1_000 + i)));
    const seen: number[] = [];
    await Promise.all(
      [a, b].map(async (o) => {
        for (;;) {
          const rows = await o.due(10_000, 7);
          if (rows.length === 0) return;
          seen.push(...rows.map((r) => r.id));
          await Promise.all(rows.map((r) => o.delivered(r.id, 10_001, 200)));
        }
      }),
    );
    expect(seen).toHaveLength(200);
    expect(new Set(seen).size).toBe(200);
    expect((await a.summary())[0]).toMatchObject({ delivered: 200, pending: 0 });
  });

  it('a row claimed by a host that died goes to another once the lease ran out; the dead host\'s late report is ignored; order holds across hosts', async () => {
    const url = await database();
    const [dead, live] = [outbox(url, 1_000), outbox(url, 1_000)];
    await dead.enqueue([row('webhook:ops', 'request.created', 'r1', 1_000)]);
    // Host B queues the decision of the same request after host A queued its creation.
    await live.enqueue([row('webhook:ops', 'request.decided', 'r1', 1_050)]);
    const [claimed] = await dead.due(2_000, 10);
    expect(claimed?.event).toBe('request.created');
    // While the claim is live nothing of r1 is due elsewhere: not the claimed row, not the later one.
    expect(await live.due(2_500, 10)).toEqual([]);
    // The lease ran out: the live host sends it, with the same idempotency key.
    const [taken] = await live.due(3_001, 10);
    expect(taken).toMatchObject({ id: claimed?.id, idempotencyKey: claimed?.idempotencyKey });
    await dead.delivered(claimed?.id ?? 0, 3_002, 200);
    expect((await live.list({ status: 'delivered' })).length).toBe(0);
    await live.delivered(taken?.id ?? 0, 3_003, 200);
    expect((await live.due(3_004, 10)).map((r) => r.event)).toEqual(['request.decided']);
  });

  it('two notifiers (two hosts) on one database, one real webhook receiver: every event delivered exactly once, in order per request', async () => {
    const url = await database();
    const receiver = await startReceiver('a-webhook-secret-of-16+');
    closers.push(() => receiver.close());
    const config = notifyConfigSchema.parse({ webhooks: [{ name: 'ops', url: receiver.url, secret: 'a-webhook-secret-of-16+' }], pollMs: 20, initialDelayMs: 10 });
    const targets = resolveTargets(config, undefined);
    const hosts: Notifier[] = [];
    for (let i = 0; i < 2; i++) {
      const notifier = await createNotifier({ config, targets, outbox: openPgNotifyOutbox(url) });
      closers.push(() => notifier.close());
      notifier.start(() => 'http://127.0.0.1:1/console/');
      hosts.push(notifier);
    }
    const view = (id: string, status: 'pending' | 'approved') => {
      const r = request({ id, status, ...(status === 'approved' ? { resolvedAt: 2_000, resolvedBy: ['alice'] } : {}) });
      return { ...r, proposal: proposalView(r) } as unknown as Extract<RequestEvent, { type: 'created' }>['request'];
    };
    // Each request is created on one host and decided on the other, once its creation was queued
    // (as a decision follows an announcement); the decisions of the first half race their deliveries.
    for (let i = 0; i < 20; i++) hosts[i % 2]?.onEvent({ type: 'created', request: view(`req-${i}`, 'pending') });
    const check = openPgNotifyOutbox(url);
    closers.push(() => check.close());
    await waitUntil(async () => ((await check.list({ limit: 100 })).length >= 20 ? true : undefined), 'the creations queued');
    for (let i = 0; i < 20; i++) hosts[(i + 1) % 2]?.onEvent({ type: 'resolved', request: view(`req-${i}`, 'approved') });
    await waitUntil(() => (receiver.accepted().length >= 40 ? true : undefined), 'forty deliveries');
    await new Promise((r) => setTimeout(r, 200)); // nothing more arrives
    const got = receiver.accepted().map((r) => `${String(r.json.event)} ${String((r.json.request as { id: string }).id)}`);
    expect(got).toHaveLength(40);
    expect(new Set(got).size).toBe(40);
    for (let i = 0; i < 20; i++) expect(got.indexOf(`request.created req-${i}`)).toBeLessThan(got.indexOf(`request.decided req-${i}`));
  });
});
