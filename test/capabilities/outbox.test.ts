// The outbox capability against a real SMTP server (smtp-server) on loopback, and the folder
// transport against a real temp folder.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type OutboxScope, createOutbox } from '../../capabilities/outbox/index.js';
import type { CapabilityInstance } from '../../capabilities/sdk/index.js';

interface Received {
  from: string;
  rcpt: string[];
  raw: string;
}

const received: Received[] = [];
let server: SMTPServer;
let port = 0;
let folder = '';

beforeAll(async () => {
  server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onRcptTo(address, _session, callback) {
      if (address.address.startsWith('bounce@')) return callback(new Error('550 no such user'));
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        received.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          rcpt: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString('utf8'),
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  port = (server.server.address() as AddressInfo).port;
  folder = await mkdtemp(path.join(tmpdir(), 'outbox-test-'));
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(folder, { recursive: true, force: true });
});

/** Minimal RFC 5322 reader: unfolded headers (lower-case names) and body. */
function parseMessage(raw: string): { headers: Record<string, string>; body: string } {
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
  const headers: Record<string, string> = {};
  for (const line of head.split('\r\n')) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { headers, body: raw.slice(split + 4) };
}

const baseScope = (extra: Partial<OutboxScope> = {}): OutboxScope => ({
  from: 'agent@ops.example',
  allowedRecipients: ['boss@partner.example', '@example.com'],
  ...extra,
});

const smtp = (scope: OutboxScope = baseScope()) => createOutbox(scope, { transport: { smtp: { host: '127.0.0.1', port } } });

async function send(inst: CapabilityInstance, raw: unknown, runId = 'run-1'): Promise<any> {
  return inst.invoke('send', inst.parseArgs('send', raw), { runId, signal: new AbortController().signal });
}

async function refusal(p: Promise<unknown> | (() => unknown)): Promise<{ code: string; message: string; data?: Record<string, unknown> }> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (error) {
    return error as { code: string; message: string };
  }
  throw new Error('expected a refusal');
}

describe('outbox over SMTP', () => {
  it('delivers to the relay with exactly the checked recipients, sender, subject and text', async () => {
    const before = received.length;
    const out = await send(smtp(), { to: ['alice@example.com', 'Boss@Partner.Example'], cc: 'bob@example.com', subject: 'Weekly report', text: 'All green.\nSee you.' });
    // nodemailer lower-cases domains (they are case-insensitive); local parts are kept as given.
    expect(out.accepted).toEqual(['alice@example.com', 'Boss@partner.example', 'bob@example.com']);
    expect(out.messageId).toMatch(/^<.+@.+>$/);
    expect(received.length).toBe(before + 1);
    const got = received.at(-1)!;
    expect(got.from).toBe('agent@ops.example');
    expect(got.rcpt).toEqual(['alice@example.com', 'Boss@partner.example', 'bob@example.com']);
    const msg = parseMessage(got.raw);
    expect(msg.headers.subject).toBe('Weekly report');
    expect(msg.headers.from).toBe('agent@ops.example');
    expect(msg.headers.to).toBe('alice@example.com, Boss@partner.example');
    expect(msg.headers.cc).toBe('bob@example.com');
    expect(msg.headers['message-id']).toBe(out.messageId);
    expect(msg.body.replace(/\r\n/g, '\n').trim()).toBe('All green.\nSee you.');
  });

  it('reports only the recipients the relay accepted', async () => {
    const out = await send(smtp(), { to: ['bounce@example.com', 'carol@example.com'], subject: 's', text: 't' });
    expect(out.accepted).toEqual(['carol@example.com']);
  });

  it('refuses a recipient outside the scope with OUT_OF_SCOPE and sends nothing', async () => {
    const before = received.length;
    for (const to of ['mallory@evil.org', 'a@example.com.evil.org', 'a@sub.example.com', 'someone@partner.example', 'boss@partner.example.evil.org']) {
      const inst = smtp();
      expect(inst.checkScope('send', inst.parseArgs('send', { to, subject: 's', text: 't' })).ok, to).toBe(false);
      expect((await refusal(send(inst, { to, subject: 's', text: 't' }))).code, to).toBe('OUT_OF_SCOPE');
      // Hidden in cc, too.
      expect((await refusal(send(inst, { to: 'alice@example.com', cc: [to], subject: 's', text: 't' }))).code, to).toBe('OUT_OF_SCOPE');
    }
    expect(received.length).toBe(before);
  });

  it('matches case-insensitively', async () => {
    const out = await send(smtp(), { to: 'ALICE@EXAMPLE.COM', subject: 's', text: 't' });
    expect(out.accepted).toEqual(['ALICE@example.com']);
  });

  it.each([
    ['two @ with a query', 'a@evil.org?@example.com'],
    ['display name', '"Boss" <a@evil.org>'],
    ['angle brackets', '<alice@example.com>'],
    ['display name of an allowed address', 'Alice <alice@example.com>'],
    ['comma list', 'alice@example.com,mallory@evil.org'],
    ['CRLF in address', 'alice@example.com\r\nBcc: mallory@evil.org'],
    ['percent routing', 'mallory%evil.org@example.com'],
    ['bang path', 'evil.org!mallory@example.com'],
    ['quoted local part', '"a@evil.org"@example.com'],
    ['comment', 'alice@example.com(comment)'],
    ['unicode lookalike domain', 'alice@exаmple.com'],
    ['trailing dot', 'alice@example.com.'],
    ['space', 'alice @example.com'],
  ])('refuses a %s with INVALID_ARGUMENT', async (_what, to) => {
    const before = received.length;
    expect((await refusal(() => send(smtp(), { to, subject: 's', text: 't' }))).code).toBe('INVALID_ARGUMENT');
    expect(received.length).toBe(before);
  });

  it.each(['Hello\r\nBcc: mallory@evil.org', 'Hello\nBcc: x@evil.org', 'Hello\rX: y', 'a\u2028b', 'tab\tcontrol'])('refuses header injection in the subject %j', async (subject) => {
    const before = received.length;
    expect((await refusal(() => send(smtp(), { to: 'alice@example.com', subject, text: 't' }))).code).toBe('INVALID_ARGUMENT');
    expect(received.length).toBe(before);
  });

  it('refuses unknown keys (no from, bcc or headers from the agent)', async () => {
    for (const extra of [{ from: 'ceo@ops.example' }, { bcc: 'mallory@evil.org' }, { headers: { 'X-A': '1' } }]) {
      expect((await refusal(() => send(smtp(), { to: 'alice@example.com', subject: 's', text: 't', ...extra }))).code).toBe('INVALID_ARGUMENT');
    }
  });

  it('enforces maxPerRun per run id', async () => {
    const inst = smtp(baseScope({ maxPerRun: 2 }));
    const msg = { to: 'alice@example.com', subject: 's', text: 't' };
    await send(inst, msg, 'run-a');
    await send(inst, msg, 'run-a');
    const e = await refusal(send(inst, msg, 'run-a'));
    expect(e).toMatchObject({ code: 'BUDGET_EXCEEDED', data: { budget: 'maxPerRun', limit: 2 } });
    // Another run has its own count; another instance has its own counter.
    await send(inst, msg, 'run-b');
    await send(smtp(baseScope({ maxPerRun: 2 })), msg, 'run-a');
  });

  it('maxPerRun holds under concurrent calls and across attenuation', async () => {
    const parent = smtp(baseScope({ maxPerRun: 3 }));
    const child = parent.attenuate(baseScope({ allowedRecipients: ['@example.com'] }));
    const msg = { to: 'alice@example.com', subject: 's', text: 't' };
    const results = await Promise.allSettled([send(parent, msg, 'run-c'), send(child, msg, 'run-c'), send(child, msg, 'run-c'), send(parent, msg, 'run-c')]);
    expect(results.filter((r) => r.status === 'fulfilled').length).toBe(3);
    expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason.code)).toEqual(['BUDGET_EXCEEDED']);
  });

  it('enforces maxBodyBytes and maxRecipients', async () => {
    const inst = smtp(baseScope({ maxBodyBytes: 10, maxRecipients: 2 }));
    expect((await refusal(send(inst, { to: 'alice@example.com', subject: 's', text: 'é'.repeat(6) }))).code).toBe('OUT_OF_SCOPE');
    expect((await refusal(send(inst, { to: ['a@example.com', 'b@example.com'], cc: 'c@example.com', subject: 's', text: 't' }))).code).toBe('OUT_OF_SCOPE');
    await send(inst, { to: 'alice@example.com', subject: 's', text: '0123456789' });
  });

  it('attenuation narrows recipients and never changes the sender', async () => {
    const parent = smtp();
    const child = parent.attenuate(baseScope({ allowedRecipients: ['alice@example.com', '@evil.org', '@partner.example'] }));
    expect(child.scope.allowedRecipients).toEqual(['boss@partner.example', 'alice@example.com']);
    expect((await refusal(send(child, { to: 'bob@example.com', subject: 's', text: 't' }))).code).toBe('OUT_OF_SCOPE');
    expect(() => parent.attenuate(baseScope({ from: 'ceo@ops.example' }))).toThrow(expect.objectContaining({ code: 'INVALID_SCOPE' }));
    expect(() => parent.attenuate(baseScope({ allowedRecipients: ['@evil.org'] }))).toThrow(expect.objectContaining({ code: 'INVALID_SCOPE' }));
  });

  it('revocation stops sending', async () => {
    const inst = smtp();
    inst.revoke('operator said stop');
    expect((await refusal(send(inst, { to: 'alice@example.com', subject: 's', text: 't' }))).code).toBe('CAPABILITY_REVOKED');
  });

  it('a relay that is down fails with CAPABILITY_FAILED', async () => {
    const probe = new SMTPServer({ logger: false });
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', () => resolve()));
    const deadPort = (probe.server.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const inst = createOutbox(baseScope(), { transport: { smtp: { host: '127.0.0.1', port: deadPort, timeoutMs: 2000 } } });
    expect(await refusal(send(inst, { to: 'alice@example.com', subject: 's', text: 't' }))).toMatchObject({ code: 'CAPABILITY_FAILED', data: { reason: 'smtp' } });
  });

  it('bad scopes and deps fail at creation', () => {
    const t = { transport: { smtp: { host: '127.0.0.1', port } } };
    for (const scope of [
      baseScope({ from: 'Agent <agent@ops.example>' }),
      baseScope({ allowedRecipients: ['example.com'] }),
      baseScope({ allowedRecipients: ['@*.example.com'] }),
      baseScope({ allowedRecipients: [] }),
      { ...baseScope(), replyTo: 'x@example.com' } as OutboxScope,
    ]) {
      expect(() => createOutbox(scope, t)).toThrow(expect.objectContaining({ code: 'INVALID_SCOPE' }));
    }
    expect(() => createOutbox(baseScope(), { transport: { folder: 'relative/dir' } })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('describes itself with risk annotations', () => {
    const inst = smtp();
    expect(inst.risk('send')).toEqual({ readOnly: false, destructive: false, reversible: false, openWorld: true, financial: false });
    expect(inst.describe().scope).toContain('agent@ops.example');
  });
});

describe('outbox into a folder', () => {
  it('writes one parseable .eml per message into new/, atomically', async () => {
    const inst = createOutbox(baseScope(), { transport: { folder } });
    const out = await send(inst, { to: 'alice@example.com', subject: 'Über-report ✓', text: 'line 1\nline 2 — ünïcode' });
    expect(out.accepted).toEqual(['alice@example.com']);
    expect(await readdir(path.join(folder, 'tmp'))).toEqual([]);
    const files = await readdir(path.join(folder, 'new'));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/\.eml$/);
    const raw = await readFile(path.join(folder, 'new', files[0]!), 'utf8');
    expect(raw).toContain('\r\n');
    const msg = parseMessage(raw);
    expect(msg.headers.from).toBe('agent@ops.example');
    expect(msg.headers.to).toBe('alice@example.com');
    expect(msg.headers['message-id']).toBe(out.messageId);
    // Non-ASCII subjects are MIME encoded-words; decode to check.
    const decoded = msg.headers.subject!.replace(/=\?utf-8\?([bq])\?([^?]*)\?=\s*/gi, (_m, enc: string, data: string) =>
      enc.toLowerCase() === 'b' ? Buffer.from(data, 'base64').toString('utf8') : Buffer.from(data.replace(/_/g, ' ').replace(/=([0-9a-f]{2})/gi, (_x, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8'),
    );
    expect(decoded).toBe('Über-report ✓');
    expect(msg.headers['content-type']).toMatch(/text\/plain/);
  });
});
