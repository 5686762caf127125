/**
 * A restart loses no notification and sends none twice under another key: a real `contained host`
 * process is SIGKILLed while deliveries are queued (a receiver failing) and while one is in flight
 * (a receiver hanging); after the restart every queued delivery arrives, in order per request, with
 * the idempotency key it had before the kill, and a delivery that had succeeded is not sent again.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { newGrantId } from '../../host/grants.js';
import { OperatorClient } from '../../host/operator/client.js';
import { openNotifyOutbox } from '../../host/store/notify-outbox.js';
import { defaultStorePath, openSqliteStore } from '../../host/store/sqlite-store.js';
import { createToken } from '../../host/tokens.js';
import { computeDigest } from '../../sandbox-images/digest.js';
import { packImage } from '../../sandbox-images/pack.js';
import { exited, startHostProcess } from './helpers/host-process.js';
import { type Receiver, startReceiver, waitUntil } from './helpers/webhook-receiver.js';

const SECRET = 'whsec_restart_0123456789abcdef';
const children: ChildProcess[] = [];
const cleanup: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  for (const f of cleanup.splice(0)) await f();
});

async function setup(receiver: Receiver): Promise<{ dir: string; configFile: string; alice: string; plat: string; image: (n: number) => Buffer }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-notify-restart-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const configFile = path.join(dir, 'contained.config.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      dataDir: dir,
      listen: { host: '127.0.0.1', port: 0 },
      capabilities: { mail: { kind: 'outbox', scope: { from: 'agent@example.com', allowedRecipients: ['@example.com'] }, host: { folder: path.join(dir, 'mail') } } },
      notify: { webhooks: [{ name: 'ops', url: receiver.url, secret: SECRET, timeoutMs: 60_000 }], initialDelayMs: 50, maxDelayMs: 200, maxAttempts: 100, pollMs: 20 },
    }),
  );
  const manifest = { format: 1, name: 'mailer', version: '1.0.0', description: 'sends one email', entry: 'main.js', requests: [{ capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'the email' }] };
  const filesFor = (n: number) =>
    new Map<string, Uint8Array>([
      ['manifest.json', Buffer.from(JSON.stringify(manifest))],
      ['main.js', Buffer.from(`export default async (input, caps) => caps.mail.send({ to: 'team@example.com', subject: 'n${n}', text: 'note ${n}' }, { reason: 'test' })`)],
    ]);
  const store = await openSqliteStore(defaultStorePath(dir));
  const alice = (await createToken({ name: 'alice', role: 'approver', createdBy: 'test' }, store)).token;
  const plat = (await createToken({ name: 'plat', role: 'platform', createdBy: 'test' }, store)).token;
  for (const n of [1, 2, 3]) {
    await store.insertGrant({ id: newGrantId(), subject: { digest: computeDigest(filesFor(n)).digest }, capability: 'mail', methods: ['send'], mode: 'assisted', approvals: 1, createdBy: 'test', reason: 'test', createdAt: Date.now() });
  }
  await store.close();
  return { dir, configFile, alice, plat, image: (n) => packImage(filesFor(n)) };
}

async function submit(url: string, token: string, image: Buffer): Promise<string> {
  const res = await fetch(`${url}/v1/runs`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ image: image.toString('base64'), input: null }) });
  expect(res.status).toBe(202);
  return ((await res.json()) as { runId: string }).runId;
}

describe('notifications across SIGKILL', () => {
  it('queued and in-flight deliveries are sent after the restart with their keys; delivered ones are not sent again', async () => {
    const receiver = await startReceiver(SECRET);
    cleanup.push(() => receiver.close());
    const s = await setup(receiver);
    const first = await startHostProcess(s.configFile, (c) => children.push(c));
    const op = await OperatorClient.connect({ url: `${first.url.replace(/^http/, 'ws')}/v1/operator`, token: s.alice });
    const byRequest = (id: string, list = receiver.received) => list.filter((r) => r.json.request?.id === id);

    // Request 1: created is delivered while all is well.
    await submit(first.url, s.plat, s.image(1));
    const r1 = await waitUntil(() => [...op.pending.values()].find((r) => (r.args as { subject?: string }).subject === 'n1'), 'request 1');
    const delivered = await waitUntil(() => byRequest(r1.id, receiver.accepted())[0], 'created of request 1');
    expect(delivered.json.event).toBe('request.created');
    // …and recorded as delivered by the host (the store file is shared: read it as the host wrote it).
    await waitUntil(async () => {
      const o = openNotifyOutbox(defaultStorePath(s.dir));
      try {
        return (await o.list({ status: 'delivered' })).some((r) => r.idempotencyKey === delivered.headers['idempotency-key']);
      } finally {
        await o.close();
      }
    }, 'created(1) recorded as delivered');

    // Then the receiver fails: decided(1) and created(2) queue up; created(3) hangs in flight.
    const hangFor = new Set<string>();
    receiver.mode = (r) => (hangFor.has(String(r.json.request?.id)) ? 'hang' : 'fail');
    await op.decide({ requestId: r1.id, verdict: 'approve' });
    await submit(first.url, s.plat, s.image(2));
    const r2 = await waitUntil(() => [...op.pending.values()].find((r) => (r.args as { subject?: string }).subject === 'n2'), 'request 2');
    await waitUntil(() => byRequest(r1.id).length >= 2 && byRequest(r2.id).length >= 1, 'failed attempts of decided(1) and created(2)');
    await submit(first.url, s.plat, s.image(3));
    const r3 = await waitUntil(() => [...op.pending.values()].find((r) => (r.args as { subject?: string }).subject === 'n3'), 'request 3');
    hangFor.add(r3.id);
    await waitUntil(() => byRequest(r3.id).some((r) => r.answered === 'hang'), 'created(3) in flight');
    await op.close().catch(() => undefined);

    first.child.kill('SIGKILL');
    await exited(first.child);

    // What the outbox holds after the kill: three pending rows, each with its key.
    const outbox = openNotifyOutbox(defaultStorePath(s.dir));
    const queued = await outbox.list({ status: 'pending' });
    await outbox.close();
    const keyOf = (id: string, event: string) => queued.find((q) => (q.payload.request as { id: string }).id === id && q.event === event)?.idempotencyKey;
    expect(queued.map((q) => `${q.event}:${(q.payload.request as { id: string }).id}`).sort()).toEqual([`request.created:${r2.id}`, `request.created:${r3.id}`, `request.decided:${r1.id}`].sort());
    const keys = { decided1: keyOf(r1.id, 'request.decided'), created2: keyOf(r2.id, 'request.created'), created3: keyOf(r3.id, 'request.created') };
    // The attempts before the kill carried those same keys.
    expect(byRequest(r1.id).filter((r) => r.json.event === 'request.decided').every((r) => r.headers['idempotency-key'] === keys.decided1)).toBe(true);
    expect(new Set(byRequest(r3.id).map((r) => r.headers['idempotency-key']))).toEqual(new Set([keys.created3]));

    receiver.mode = 'ok';
    const second = await startHostProcess(s.configFile, (c) => children.push(c));
    await waitUntil(() => {
      const ok = receiver.accepted();
      return [r1.id, r2.id, r3.id].every((id) => byRequest(id, ok).length >= (id === r1.id ? 2 : 1)) ? true : undefined;
    }, 'every queued delivery after the restart', 20_000);
    await new Promise((resolve) => setTimeout(resolve, 300)); // anything sent twice would arrive meanwhile
    second.child.kill('SIGTERM');
    await exited(second.child);

    const ok = receiver.accepted();
    // Each key accepted once; the kept keys are the ones sent after the restart.
    const acceptedKeys = ok.map((r) => r.headers['idempotency-key']);
    expect(new Set(acceptedKeys).size).toBe(acceptedKeys.length);
    expect(acceptedKeys).toEqual(expect.arrayContaining([delivered.headers['idempotency-key'], keys.decided1, keys.created2, keys.created3]));
    expect(acceptedKeys).toHaveLength(4);
    // created(1), delivered before the kill, was never sent again.
    expect(receiver.received.filter((r) => r.headers['idempotency-key'] === delivered.headers['idempotency-key'])).toHaveLength(1);
    // The in-flight created(3) arrived again under the same key: a receiver deduplicating by key sees it once.
    expect(new Set(byRequest(r3.id).map((r) => r.headers['idempotency-key']))).toEqual(new Set([keys.created3]));
    // Order per request: created before decided.
    expect(byRequest(r1.id, ok).map((r) => r.json.event)).toEqual(['request.created', 'request.decided']);
    for (const r of ok) expect(r.signature).toMatchObject({ ok: true });
  }, 120_000);
});
