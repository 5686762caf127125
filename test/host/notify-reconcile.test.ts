/**
 * The one window a notification could fall into: a host killed after storing a request and before
 * writing its outbox row. Simulated by deleting the row from the store file while the host is down
 * (raw SQL: the state such a kill leaves); the next start writes the pending request's
 * `request.created` again and delivers it — once, and never for a request that was already notified.
 * And the requests a restart's recovery closes (an escalation whose run is gone) get their
 * `request.decided`, after their `request.created`.
 */
import { rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { type Host, startHost } from '../../host/host.js';
import { defaultStorePath } from '../../host/store/sqlite-store.js';
import { startFixture } from './helpers/host-fixture.js';
import { type Receiver, startReceiver, waitUntil } from './helpers/webhook-receiver.js';

const SECRET = 'whsec_reconcile_0123456789abcdef';
const MAIL = { capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'mail' };

describe('after a restart', () => {
  let hook: Receiver;
  const cleanup: Array<() => Promise<void> | void> = [];
  afterAll(async () => {
    for (const f of cleanup.reverse()) await f();
    await hook?.close();
  });

  it('a pending request whose created row is missing is notified; one already notified is not', async () => {
    hook = await startReceiver(SECRET);
    const notify = { webhooks: [{ name: 'ops', url: hook.url, secret: SECRET, events: ['request.created'] }], pollMs: 20 };
    const first = await startFixture({ notify });
    cleanup.push(() => rmSync(first.dir, { recursive: true, force: true }));
    const source = (subject: string) => `export default async (input, caps) => (await caps.mail.send({ to: 'team@example.com', subject: '${subject}', text: 'x' }, { reason: 'r' })).accepted;`;
    const ids: string[] = [];
    for (const subject of ['lost', 'kept']) {
      const image = first.image(`reconcile-${subject}`, source(subject), [MAIL]);
      await first.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
      const { runId } = await first.host.submit({ image: image.bytes });
      ids.push((await waitUntil(async () => (await first.host.store.listRequests({ runId, status: 'pending' }))[0], subject)).id);
    }
    await waitUntil(() => ids.every((id) => hook.accepted().some((r) => r.json.request?.id === id)), 'both created');
    // Recorded as delivered too (one acknowledged but not yet recorded at close would go again, same key).
    await waitUntil(async () => (await first.host.notify.status()).targets[0]?.pending === 0, 'both recorded');
    const [lost, kept] = ids as [string, string];
    await first.host.close();

    const db = new Database(defaultStorePath(first.dir));
    expect(db.prepare("DELETE FROM notify_outbox WHERE event_key = ?").run(`request.created:${lost}`).changes).toBe(1);
    db.close();

    // The same data folder and config: the restart.
    const second: Host = await startHost({ config: first.config, isolation: 'in-process', logger: pino({ level: 'silent' }) });
    cleanup.push(() => second.close());
    await waitUntil(() => hook.accepted().filter((r) => r.json.request?.id === lost).length >= 2, 'the lost one again');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(hook.accepted().filter((r) => r.json.request?.id === lost)).toHaveLength(2); // the first host's, and the restored row's
    expect(hook.accepted().filter((r) => r.json.request?.id === kept)).toHaveLength(1);
    expect((await second.notify.status()).targets[0]).toMatchObject({ target: 'webhook:ops', delivered: 2, pending: 0 }); // the deleted row is gone; its replacement delivered;
  });

  it('an escalation the restart closes (its run is gone) is notified as decided, after its created', async () => {
    const notify = { webhooks: [{ name: 'ops', url: hook.url, secret: SECRET }], pollMs: 20 };
    const first = await startFixture({ notify });
    cleanup.push(() => rmSync(first.dir, { recursive: true, force: true }));
    // No grant: the call escalates, and waits for a human.
    const image = first.image('reconcile-escalation', "export default async (input, caps) => caps.notes.read('a.txt', { reason: 'read the note' })", [{ capability: 'notes', kind: 'fs', scope: {}, methods: ['read'], why: 'notes' }]);
    const { runId } = await first.host.submit({ image: image.bytes });
    const escalation = await waitUntil(async () => (await first.host.store.listRequests({ runId, status: 'pending' }))[0], 'the escalation');
    expect(escalation.kind).toBe('escalation');
    await waitUntil(() => hook.accepted().some((r) => r.json.request?.id === escalation.id), 'its created');
    await waitUntil(async () => (await first.host.notify.status()).targets[0]?.pending === 0, 'its created recorded');
    await first.host.close(); // the run ends with the host; the escalation is closed at the next start

    const second: Host = await startHost({ config: first.config, isolation: 'in-process', logger: pino({ level: 'silent' }) });
    cleanup.push(() => second.close());
    expect(await second.store.getRequest(escalation.id)).toMatchObject({ status: 'run_gone' });
    const events = await waitUntil(() => {
      const mine = hook.accepted().filter((r) => r.json.request?.id === escalation.id);
      return mine.length >= 2 ? mine : undefined;
    }, 'its decided');
    expect(events.map((r) => [r.json.event, r.json.request.status])).toEqual([
      ['request.created', 'pending'],
      ['request.decided', 'run_gone'],
    ]);
    // A third start adds nothing: the request has its outcome row. (Wait for the host to record the
    // delivery: one acknowledged but not yet recorded when the host closes is sent again, same key.)
    await waitUntil(async () => (await second.notify.status()).targets[0]?.pending === 0, 'the delivery recorded');
    await second.close();
    cleanup.pop();
    const third: Host = await startHost({ config: first.config, isolation: 'in-process', logger: pino({ level: 'silent' }) });
    cleanup.push(() => third.close());
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(hook.accepted().filter((r) => r.json.request?.id === escalation.id)).toHaveLength(2);
  });
});
