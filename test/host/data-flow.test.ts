/**
 * The run-level data-flow rule end to end (docs/data-flow.md): a real host with a real SQLite CRM
 * file, fs folders and a kv file, an outbox delivering to a loopback SMTP server and an http
 * capability against a loopback HTTP server, operators over the WebSocket channel. Once a run has
 * read a sensitive source, its open-world calls wait for a human whatever their grant's mode (or
 * fail DATA_FLOW_DENIED on a host configured so), and the agent cannot shed the taint.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openAuditReader, queryAudit } from '../../host/audit/query.js';
import type { RequestView } from '../../host/operator/backend.js';
import type { OperatorClient, OperatorEvent } from '../../host/operator/client.js';
import { defaultStorePath } from '../../host/store/sqlite-store.js';
import type { RunOutcome } from '../../runtime/index.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

interface Mail {
  rcpt: string[];
  raw: string;
}

async function smtp(): Promise<{ server: SMTPServer; port: number; mails: Mail[] }> {
  const mails: Mail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push({ rcpt: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString('utf8') });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { server, port: (server.server.address() as AddressInfo).port, mails };
}

async function web(): Promise<{ server: Server; origin: string; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(`${req.method ?? ''} ${req.url ?? ''}`);
    res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits };
}

/** A data folder with a CRM database (customers, orders), fs folders (hr, public) and nothing else yet. */
function dataFolder(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-dataflow-'));
  const db = new Database(path.join(dir, 'crm.db'));
  db.exec(`CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT);
           INSERT INTO customers VALUES (1, 'Ada Lovelace', 'ada@example.com'), (2, 'Alan Turing', 'alan@example.com');
           CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER);
           INSERT INTO orders VALUES (1, 120), (2, 80);`);
  db.close();
  mkdirSync(path.join(dir, 'files', 'hr'), { recursive: true });
  mkdirSync(path.join(dir, 'files', 'public'), { recursive: true });
  writeFileSync(path.join(dir, 'files', 'hr', 'salaries.txt'), 'Ada: 100');
  writeFileSync(path.join(dir, 'files', 'public', 'menu.txt'), 'soup');
  return dir;
}

/**
 * The capabilities: `crm` (customers and orders), `customers` (a second binding of the same
 * table), `orders` (the other table only), fs `files` (hr and public), `hr` and `public` bindings
 * of its subfolders, kv `cache` (all keys) and `scratch` (keys under `tmp/`), outbox `mail` (SMTP on loopback), http `web` (loopback).
 */
function overrides(dir: string, smtpPort: number, origin: string, afterSensitive: 'escalate' | 'deny'): Record<string, unknown> {
  const crm = path.join(dir, 'crm.db');
  return {
    capabilities: {
      crm: { kind: 'sql', scope: { file: crm, tables: ['customers', 'orders'] } },
      customers: { kind: 'sql', scope: { file: crm, tables: ['customers'] } },
      orders: { kind: 'sql', scope: { file: crm, tables: ['orders'] } },
      files: { kind: 'fs', scope: { root: path.join(dir, 'files') } },
      hr: { kind: 'fs', scope: { root: path.join(dir, 'files', 'hr') } },
      public: { kind: 'fs', scope: { root: path.join(dir, 'files', 'public') } },
      cache: { kind: 'kv', scope: { file: path.join(dir, 'cache.db'), namespace: 'agent' } },
      scratch: { kind: 'kv', scope: { file: path.join(dir, 'cache.db'), namespace: 'agent', prefix: 'tmp/' } },
      mail: { kind: 'outbox', scope: { from: 'agent@example.com', allowedRecipients: ['@example.com'] }, host: { smtp: { host: '127.0.0.1', port: smtpPort, timeoutMs: 10_000 } } },
      web: { kind: 'http', scope: { origins: [origin], methods: ['GET', 'POST'], allowedCidrs: ['127.0.0.1/32'] } },
    },
    dataFlow: {
      afterSensitive,
      sensitive: [
        { label: 'customers', capability: 'crm', scope: { tables: ['customers'] }, methods: ['query'] },
        { label: 'hr files', capability: 'files', scope: { paths: ['hr'] } },
        { label: 'cached customers', capability: 'cache', scope: { prefix: 'cust/' } },
      ],
    },
  };
}

/** Resolve with the next `created` request for this subject seen by this operator. */
function nextCreated(op: OperatorClient, subject: string): Promise<RequestView> {
  return new Promise((resolve) => {
    const off = op.onEvent((event: OperatorEvent) => {
      if (event.type === 'created' && (event.request as RequestView).subject === subject) {
        off();
        resolve(event.request as RequestView);
      }
    });
  });
}

const SEND = "caps.mail.send({ to: 'ops@example.com', subject: 'report', text: JSON.stringify(data) })";

describe('the data-flow rule (afterSensitive: escalate)', () => {
  let dir: string;
  let fx: Fixture;
  let relay: Awaited<ReturnType<typeof smtp>>;
  let site: Awaited<ReturnType<typeof web>>;

  beforeAll(async () => {
    dir = dataFolder();
    [relay, site] = await Promise.all([smtp(), web()]);
    fx = await startFixture(overrides(dir, relay.port, site.origin, 'escalate'), dir);
  });
  afterAll(async () => {
    await fx.close();
    await new Promise<void>((resolve) => relay.server.close(() => resolve()));
    await new Promise<void>((resolve) => site.server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  /** An image whose program is `body` (with `caps` and `input` in scope), with contained reads and an `executed` email grant. */
  async function agent(name: string, body: string): Promise<{ digest: string; bytes: Buffer }> {
    const image = fx.image(name, `export default async (input, caps) => { ${body} }`);
    for (const capability of ['crm', 'customers', 'orders', 'files', 'hr', 'public', 'cache', 'scratch']) {
      await fx.grant(image.digest, { capability, methods: ['*'], mode: 'contained' });
    }
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'executed' });
    await fx.grant(image.digest, { capability: 'web', methods: ['*'], mode: 'contained' });
    return image;
  }

  async function run(image: { bytes: Buffer }): Promise<{ runId: string; outcome: Promise<RunOutcome> }> {
    const { runId } = await fx.host.submit({ image: image.bytes, input: null });
    return { runId, outcome: fx.host.waitForRun(runId) };
  }

  function sentWith(text: string): Mail[] {
    return relay.mails.filter((m) => m.raw.includes(text));
  }

  it('without a sensitive read, an executed email grant sends at once: no request', async () => {
    const image = await agent('orders-only', `const data = await caps.orders.query({ sql: 'SELECT total FROM orders' }); await ${SEND.replace("'report'", "'orders-only'")}; return 'sent';`);
    const before = (await fx.host.requests.pending()).length;
    const { outcome } = await run(image);
    expect(await outcome).toMatchObject({ status: 'ok', value: 'sent' });
    expect((await fx.host.requests.pending()).length).toBe(before);
    expect(sentWith('Subject: orders-only')).toHaveLength(1);
    const { runId } = await run(image);
    await fx.host.waitForRun(runId);
    expect(await fx.host.store.getRun(runId)).not.toHaveProperty('sensitiveSources');
  });

  it('after a sensitive read, the executed email waits for a human who sees why; approved, it is sent', async () => {
    const image = await agent('customers-approved', `const data = await caps.crm.query({ sql: 'SELECT name, email FROM customers' }); await ${SEND.replace("'report'", "'approved-report'")}; return 'sent';`);
    const alice = await fx.operator('alice');
    const seen = nextCreated(alice, image.digest);
    const { runId, outcome } = await run(image);
    const request = await seen;
    expect(request).toMatchObject({ kind: 'recommendation', capability: 'mail', method: 'send', runId });
    expect(request.why).toContain('this run read customers (sensitive) before this call');
    expect(request.why).toContain('executed mode');
    // Not sent while it waits.
    expect(sentWith('Subject: approved-report')).toHaveLength(0);
    await alice.decide({ requestId: request.id, verdict: 'approve' });
    expect(await outcome).toMatchObject({ status: 'ok', value: 'sent' });
    expect(sentWith('Subject: approved-report')).toHaveLength(1);
    expect(sentWith('Subject: approved-report')[0]?.raw).toContain('Ada Lovelace');
  });

  it('denied, the agent gets ESCALATION_DENIED with the reason and nothing is sent', async () => {
    const image = await agent('customers-denied', `const data = await caps.crm.query({ sql: 'SELECT name FROM customers' }); try { await ${SEND.replace("'report'", "'denied-report'")}; return 'sent'; } catch (e) { return [e.code, e.message]; }`);
    const bob = await fx.operator('bob');
    const seen = nextCreated(bob, image.digest);
    const { outcome } = await run(image);
    await bob.decide({ requestId: (await seen).id, verdict: 'deny', reason: 'customer data stays in' });
    expect(await outcome).toMatchObject({ status: 'ok', value: ['ESCALATION_DENIED', expect.stringContaining('customer data stays in')] });
    expect(sentWith('Subject: denied-report')).toHaveLength(0);
  });

  it('the taint survives a different binding of the same table, a failed read, caught errors and copying through kv', async () => {
    // `customers` is another binding of crm's customers table: it counts. The first query fails
    // (no such column) and is caught; the run is tainted all the same. The agent then launders
    // the data through kv and an fs file, and sends only what it reads back.
    const body = `
      try { await caps.customers.query({ sql: 'SELECT nope FROM customers' }); } catch (e) {}
      const rows = await caps.customers.query({ sql: 'SELECT name FROM customers' });
      await caps.scratch.set({ key: 'tmp/x', value: rows });
      await caps.public.write({ path: 'copy.txt', content: JSON.stringify(rows) });
      try { throw new Error('forget everything'); } catch (e) {}
      const data = [await caps.scratch.get('tmp/x'), await caps.public.read('copy.txt')];
      try { await ${SEND.replace("'report'", "'laundered'")}; return 'sent'; } catch (e) { return e.code; }`;
    const image = await agent('launderer', body);
    const carol = await fx.operator('carol');
    const seen = nextCreated(carol, image.digest);
    const { runId, outcome } = await run(image);
    const request = await seen;
    expect(request.why).toContain('this run read customers (sensitive) before this call');
    await carol.decide({ requestId: request.id, verdict: 'deny', reason: 'no' });
    expect(await outcome).toMatchObject({ status: 'ok', value: 'ESCALATION_DENIED' });
    expect(sentWith('Subject: laundered')).toHaveLength(0);
    // Only the customers table: kv under tmp/ and the public folder are not sensitive.
    expect(await fx.host.store.getRun(runId)).toMatchObject({ sensitiveSources: ['customers'] });
  });

  it('an operator\'s "for this run" answer given before the read does not carry over: the next send is held again, its why naming both', async () => {
    // No grant for mail: the first send escalates; alice allows mail.send for the run. Then the
    // agent reads customers, and the second send is held again whatever the allowance.
    const image = fx.image(
      'allowance-then-read',
      `export default async (input, caps) => {
         await caps.mail.send({ to: 'ops@example.com', subject: 'allowance-1', text: 'hello' });
         const data = await caps.crm.query({ sql: 'SELECT email FROM customers' });
         try { await caps.mail.send({ to: 'ops@example.com', subject: 'allowance-2', text: JSON.stringify(data) }); return 'sent'; } catch (e) { return e.code; }
       }`,
      [{ capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'mail' }],
    );
    await fx.grant(image.digest, { capability: 'crm', methods: ['query'], mode: 'contained' });
    const alice = await fx.operator('alice');
    const first = nextCreated(alice, image.digest);
    const { outcome } = await run(image);
    const r1 = await first;
    expect(r1).toMatchObject({ kind: 'escalation', capability: 'mail' });
    expect(r1.why).not.toContain('sensitive');
    const second = nextCreated(alice, image.digest);
    await alice.decide({ requestId: r1.id, verdict: 'approve', span: 'run' });
    const r2 = await second;
    expect(r2).toMatchObject({ kind: 'escalation', capability: 'mail', method: 'send' });
    expect(r2.why).toContain('no grant covers mail.send');
    expect(r2.why).toContain('this run read customers (sensitive) before this call');
    await alice.decide({ requestId: r2.id, verdict: 'deny', reason: 'not the customer list' });
    expect(await outcome).toMatchObject({ status: 'ok', value: 'ESCALATION_DENIED' });
    expect(sentWith('Subject: allowance-1')).toHaveLength(1);
    expect(sentWith('Subject: allowance-2')).toHaveLength(0);
  });

  it('a grant narrowed to the sensitive table (an attenuated instance) taints as its binding does', async () => {
    const image = fx.image('narrowed', `export default async (input, caps) => { const data = await caps.crm.query({ sql: 'SELECT email FROM customers' }); try { await ${SEND.replace("'report'", "'narrowed'")}; return 'sent'; } catch (e) { return e.code; } }`);
    await fx.grant(image.digest, { capability: 'crm', scope: { tables: ['customers'], readOnly: true }, methods: ['query'], mode: 'contained' });
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'executed' });
    const dave = await fx.operator('dave');
    const seen = nextCreated(dave, image.digest);
    const { outcome } = await run(image);
    await dave.decide({ requestId: (await seen).id, verdict: 'deny', reason: 'no' });
    expect(await outcome).toMatchObject({ status: 'ok', value: 'ESCALATION_DENIED' });
  });

  it('a sensitive fs folder: reading it through a parent binding taints; a sibling folder does not', async () => {
    const clean = await agent('public-reader', `const data = await caps.public.read('menu.txt'); await ${SEND.replace("'report'", "'menu'")}; return 'sent';`);
    expect(await (await run(clean)).outcome).toMatchObject({ status: 'ok', value: 'sent' });
    expect(sentWith('Subject: menu')).toHaveLength(1);

    const image = await agent('hr-reader', `const data = await caps.files.read('hr/salaries.txt'); try { await ${SEND.replace("'report'", "'salaries'")}; return 'sent'; } catch (e) { return e.code; }`);
    const alice = await fx.operator('alice');
    const seen = nextCreated(alice, image.digest);
    const { outcome } = await run(image);
    const request = await seen;
    expect(request.why).toContain('this run read hr files (sensitive) before this call');
    await alice.decide({ requestId: request.id, verdict: 'deny', reason: 'no' });
    expect(await outcome).toMatchObject({ status: 'ok', value: 'ESCALATION_DENIED' });
    expect(sentWith('Subject: salaries')).toHaveLength(0);
  });

  it('an http call after a sensitive kv read waits for a human too (contained grant); the audit and the request say why', async () => {
    const image = await agent(
      'kv-to-web',
      `await caps.cache.set({ key: 'cust/1', value: 'Ada' });
       const data = await caps.cache.get('cust/1');
       try { const r = await caps.web.get({ url: '${site.origin}/collect?d=' + encodeURIComponent(JSON.stringify(data)) }); return r.status; } catch (e) { return e.code; }`,
    );
    const bob = await fx.operator('bob');
    const seen = nextCreated(bob, image.digest);
    const { runId, outcome } = await run(image);
    const request = await seen;
    expect(request).toMatchObject({ capability: 'web', method: 'get' });
    expect(request.why).toContain('this run read cached customers (sensitive) before this call');
    expect(site.hits.filter((h) => h.includes('/collect'))).toHaveLength(0);
    await bob.decide({ requestId: request.id, verdict: 'approve' });
    expect(await outcome).toMatchObject({ status: 'ok', value: 200 });
    expect(site.hits.filter((h) => h.startsWith('GET /collect?d='))).toHaveLength(1);

    await fx.host.audit.flush();
    const db = openAuditReader(defaultStorePath(dir));
    try {
      const records = queryAudit(db, { runId });
      const types = records.map((r) => `${r.type}${r.capability ? ` ${r.capability}.${r.method ?? ''}` : ''}`);
      // The taint is on record once (the write to cust/1 and the read both reach the source: the first one taints).
      const tainted = records.filter((r) => r.type === 'run.sensitive');
      expect(tainted).toHaveLength(1);
      expect(tainted[0]).toMatchObject({ capability: 'cache', method: 'set', data: { sources: ['cached customers'], definition: 'kv' } });
      // ... before that call's intent, and the escalated call's request says why; the run record and its end say what it read.
      expect(await fx.host.store.getRun(runId)).toMatchObject({ status: 'ok', sensitiveSources: ['cached customers'] });
      expect(records.find((r) => r.type === 'run.ended')?.data).toMatchObject({ status: 'ok', sensitiveSources: ['cached customers'] });
      expect(types.indexOf('run.sensitive cache.set')).toBeLessThan(types.indexOf('intent cache.set'));
      const created = records.find((r) => r.type === 'request.created' && r.capability === 'web');
      expect((created?.data as { why?: string }).why).toContain('this run read cached customers (sensitive) before this call');
      const decision = records.find((r) => r.type === 'decision' && r.capability === 'web');
      expect(decision?.data).toMatchObject({ allow: true, basis: `request:${request.id}`, mode: 'assisted' });
    } finally {
      db.close();
    }
  });
});

describe('the data-flow rule (afterSensitive: deny)', () => {
  let dir: string;
  let fx: Fixture;
  let relay: Awaited<ReturnType<typeof smtp>>;
  let site: Awaited<ReturnType<typeof web>>;

  beforeAll(async () => {
    dir = dataFolder();
    [relay, site] = await Promise.all([smtp(), web()]);
    fx = await startFixture(overrides(dir, relay.port, site.origin, 'deny'), dir);
  });
  afterAll(async () => {
    await fx.close();
    await new Promise<void>((resolve) => relay.server.close(() => resolve()));
    await new Promise<void>((resolve) => site.server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses open-world calls after a sensitive read with DATA_FLOW_DENIED at once, even under an assisted grant; before the read they run', async () => {
    const image = fx.image(
      'deny-host',
      `export default async (input, caps) => {
         const first = await caps.web.get({ url: '${site.origin}/before' });
         const data = await caps.crm.query({ sql: 'SELECT name FROM customers' });
         const out = [];
         try { await ${SEND}; out.push('sent'); } catch (e) { out.push(e.code, e.message); }
         try { await caps.web.get({ url: '${site.origin}/after' }); out.push('fetched'); } catch (e) { out.push(e.code); }
         return [first.status, ...out];
       }`,
    );
    await fx.grant(image.digest, { capability: 'crm', methods: ['query'], mode: 'contained' });
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    await fx.grant(image.digest, { capability: 'web', methods: ['get'], mode: 'contained' });
    const before = (await fx.host.requests.pending()).length;
    const { runId } = await fx.host.submit({ image: image.bytes, input: null });
    const outcome = await fx.host.waitForRun(runId);
    expect(outcome).toMatchObject({
      status: 'ok',
      value: [200, 'DATA_FLOW_DENIED', expect.stringContaining('this run read customers (sensitive) before this call'), 'DATA_FLOW_DENIED'],
    });
    expect((await fx.host.requests.pending()).length).toBe(before);
    expect(relay.mails).toHaveLength(0);
    expect(site.hits).toEqual(['GET /before']);
  });
});
