/**
 * Email notifications through a real SMTP server on loopback (smtp-server, as the outbox tests use):
 * the host's `notify.email` relay gets one message per event it listens to, addressed to the
 * configured recipients, with the request's console link (which still asks for a login). A relay
 * that refuses is retried and shown as failing with its SMTP code.
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fixture, startFixture } from './helpers/host-fixture.js';
import { waitUntil } from './helpers/webhook-receiver.js';

interface Mail {
  from: string;
  rcpt: string[];
  raw: string;
}

async function smtp(refuse = false): Promise<{ server: SMTPServer; port: number; mails: Mail[] }> {
  const mails: Mail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onRcptTo(_address, _session, callback) {
      if (refuse) return callback(new Error('550 mailbox unavailable'));
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push({ from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', rcpt: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString('utf8') });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { server, port: (server.server.address() as AddressInfo).port, mails };
}

/** The text part of a raw message, quoted-printable soft breaks undone. */
function text(raw: string): string {
  return raw.replace(/=\r?\n/g, '').replace(/=3D/g, '=');
}

describe('email notifications', () => {
  let fx: Fixture;
  let bad: Fixture;
  let relay: Awaited<ReturnType<typeof smtp>>;
  let refusing: Awaited<ReturnType<typeof smtp>>;

  beforeAll(async () => {
    [relay, refusing] = await Promise.all([smtp(), smtp(true)]);
    const notify = (port: number) => ({
      email: { smtp: { host: '127.0.0.1', port, timeoutMs: 5000 }, from: 'contained@example.com', to: ['ops@example.com', 'oncall@example.com'], events: ['request.created', 'request.expired'] },
      initialDelayMs: 30,
      maxDelayMs: 60,
      maxAttempts: 2,
      pollMs: 20,
    });
    [fx, bad] = await Promise.all([startFixture({ notify: notify(relay.port) }), startFixture({ notify: notify(refusing.port) })]);
  });
  afterAll(async () => {
    await fx?.close();
    await bad?.close();
    await new Promise<void>((resolve) => relay?.server.close(() => resolve()));
    await new Promise<void>((resolve) => refusing?.server.close(() => resolve()));
  });

  async function pending(f: Fixture, subject: string): Promise<string> {
    const source = `export default async (input, caps) => (await caps.mail.send({ to: 'team@example.com', subject: ${JSON.stringify(subject)}, text: 'x' }, { reason: 'weekly report' })).accepted;`;
    const image = f.image(`mail-${subject.replace(/\W/g, '-')}`, source, [{ capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'mail' }]);
    await f.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const { runId } = await f.host.submit({ image: image.bytes });
    return (await waitUntil(async () => (await f.host.store.listRequests({ runId, status: 'pending' }))[0], 'the request')).id;
  }

  it('mails the configured recipients with a link that opens the request in the console', async () => {
    const id = await pending(fx, 'email me');
    const mail = await waitUntil(() => relay.mails.find((m) => text(m.raw).includes(id)), 'the email');
    expect(mail.from).toBe('contained@example.com');
    expect(mail.rcpt).toEqual(['ops@example.com', 'oncall@example.com']);
    const body = text(mail.raw);
    expect(body).toMatch(/^Subject: \[contained\] Approval needed: mail\.send$/m);
    const link = `${fx.host.url}/console/#/pending/${id}`;
    expect(body).toContain(link);
    expect(body).toContain('weekly report');
    expect(body).toContain('(written by the agent)');
    // The link opens the console page; the page itself asks for a login (no session: 401 on the API).
    const page = await fetch(link.split('#')[0] as string);
    expect(page.status).toBe(200);
    expect((await fetch(`${fx.host.url}/console/api/session`)).status).toBe(401);
    // Decided is not among this target's events: no second email for it.
    const alice = await fx.operator('alice');
    await alice.decide({ requestId: id, verdict: 'deny', reason: 'no' });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(relay.mails.filter((m) => text(m.raw).includes(id))).toHaveLength(1);
    expect((await fx.host.notify.status()).targets).toEqual([expect.objectContaining({ target: 'email', kind: 'email', to: 'ops@example.com, oncall@example.com' })]);
  });

  it('a relay that refuses: retried, then given up with its SMTP code shown', async () => {
    const id = await pending(bad, 'refused');
    const row = await waitUntil(async () => (await bad.host.notify.status()).deliveries.find((d) => d.requestId === id && d.status === 'failed'), 'the given-up email');
    expect(row).toMatchObject({ target: 'email', attempts: 2 });
    expect(row.lastError).toMatch(/^email: the mail relay failed \(EENVELOPE/);
    expect(refusing.mails).toHaveLength(0);
    const alice = await bad.operator('alice');
    await alice.decide({ requestId: id, verdict: 'deny', reason: 'no' });
  });
});
