/**
 * Staged runs on a real host (SQLite store, HTTP API, operator channel, real files, a real SQLite
 * database, outbox into a maildir): the records-cleanup example staged end to end — rows are
 * deleted only after the changeset is approved by two operators, and a denial changes nothing;
 * an approval is bound to the changeset's digest; a conflict (a file changed since staging)
 * applies nothing; an outbox send is queued until approval and sent once; undo restores the
 * before-images and is refused after a later change.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StagedEffect } from '../../capabilities/sdk/index.js';
import { openAuditReader, queryAudit } from '../../host/audit/query.js';
import { main } from '../../host/cli/main.js';
import { argsDigest } from '../../host/gate/proposal.js';
import { defaultStorePath, openSqliteStore } from '../../host/store/sqlite-store.js';
import type { OperatorClient } from '../../host/operator/client.js';
import { formatRequest } from '../../host/operator/terminal.js';
import type { WireRequestView as RequestView } from '../../host/operator/protocol.js';
import { EXAMPLES_DIR } from '../../sandbox-images/build-examples.js';
import { buildImage } from '../../sandbox-images/build.js';
import { loadImage } from '../../sandbox-images/load.js';
import { login, post } from '../console/helpers.js';
import { call } from './api-client.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

function seed(dir: string): string {
  const file = path.join(dir, 'cleanup.db');
  const db = new Database(file);
  db.exec(readFileSync(path.join(EXAMPLES_DIR, 'records-cleanup', 'data', 'seed.sql'), 'utf8'));
  db.close();
  return file;
}

function ids(file: string): number[] {
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare('SELECT id FROM records ORDER BY id').all() as { id: number }[]).map((r) => r.id);
  } finally {
    db.close();
  }
}

function changesetOf(op: OperatorClient, runId: string): Promise<RequestView> {
  return new Promise((resolve) => {
    const seen = [...op.pending.values()].find((r) => r.runId === runId && r.kind === 'changeset');
    if (seen) return resolve(seen as RequestView);
    const off = op.onEvent((event) => {
      const r = 'request' in event ? (event.request as RequestView) : undefined;
      if (event.type === 'created' && r?.runId === runId && r.kind === 'changeset') {
        off();
        resolve(r);
      }
    });
  });
}

async function finished(base: string, token: string, runId: string): Promise<{ status: string; outcome: { status: string; value?: unknown; error?: unknown } }> {
  for (;;) {
    const res = await call(base, 'GET', `/v1/runs/${runId}?waitMs=10000`, { token });
    if (res.body.outcome) return res.body;
  }
}

let debug: (() => Promise<unknown>) | undefined;
async function until<T>(f: () => Promise<T | undefined> | T | undefined, what: string, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(await debug?.())}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('staged runs on a host', () => {
  let fx: Fixture;
  let cleanupDb: string;
  let cleanup: { bytes: Buffer; digest: string };

  beforeAll(async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-changesets-'));
    mkdirSync(path.join(dir, 'notes'));
    cleanupDb = seed(dir);
    fx = await startFixture(
      {
        capabilities: {
          notes: { kind: 'fs', scope: { root: path.join(dir, 'notes') } },
          mail: { kind: 'outbox', scope: { from: 'agent@example.com', allowedRecipients: ['@example.com'], maxPerRun: 50 }, host: { folder: path.join(dir, 'mail') } },
          records: { kind: 'sql', scope: { file: cleanupDb, tables: ['records'] } },
          state: { kind: 'kv', scope: { file: path.join(dir, 'state.db'), namespace: 'agents' } },
        },
      },
      dir,
    );
    const bytes = await buildImage(path.join(EXAMPLES_DIR, 'records-cleanup', 'image'));
    cleanup = { bytes: Buffer.from(bytes), digest: (await loadImage(bytes)).digest };
    await fx.grant(cleanup.digest, { capability: 'records', methods: ['query', 'execute'], mode: 'assisted', approvals: 2 });
  });
  afterAll(async () => {
    await fx.close();
  });

  const submit = async (bytes: Buffer, input: unknown): Promise<string> => {
    const res = await call(fx.host.url as string, 'POST', '/v1/runs', { token: fx.tokens['plat'] as string, json: { image: bytes.toString('base64'), input, staged: true } });
    expect(res.status).toBe(202);
    return res.body.runId as string;
  };

  it('records-cleanup staged: the run completes, nothing is deleted until two operators approve the changeset, then exactly the staged rows go', async () => {
    const alice = await fx.operator('alice');
    const bob = await fx.operator('bob');
    const before = ids(cleanupDb);
    const runId = await submit(cleanup.bytes, { olderThanDays: 90 });
    const request = changesetOf(alice, runId);
    const run = await finished(fx.host.url as string, fx.tokens['plat'] as string, runId);
    // The program ran to completion as if its deletes had happened.
    expect(run.outcome).toMatchObject({ status: 'ok', value: { found: 4, deleted: 4, ids: [1, 2, 3, 4] } });
    expect(ids(cleanupDb)).toEqual(before);
    const cs = await request;
    expect(cs).toMatchObject({ kind: 'changeset', status: 'pending', approvalsRequired: 2, risk: { destructive: true }, method: 'commit' });
    const effects = (cs.args as { effects: StagedEffect[] }).effects;
    expect(effects).toHaveLength(1);
    expect(effects[0]).toMatchObject({ capability: 'records', method: 'execute', resources: ['records#1', 'records#2', 'records#3', 'records#4'] });
    expect((effects[0]?.detail as { rows: Array<{ before: { owner: string }; after: null }> }).rows.map((r) => [r.before.owner, r.after])).toEqual([
      ['ana', null],
      ['bo', null],
      ['chen', null],
      ['dara', null],
    ]);

    // The terminal shows each row the statement changes, and the digest an approval names.
    const shown = formatRequest(cs, Date.now());
    expect(shown).toContain('records.execute');
    expect(shown).toContain('- records#1 {"id":1,"owner":"ana"');
    expect(shown).toContain(`changeset digest: ${cs.proposal.argsDigest}`);
    await alice.decide({ requestId: cs.id, verdict: 'approve', argsDigest: cs.proposal.argsDigest });
    expect(ids(cleanupDb)).toEqual(before);
    await bob.decide({ requestId: cs.id, verdict: 'approve', argsDigest: cs.proposal.argsDigest });
    debug = async () => { const r = await fx.host.store.getRequest(cs.id); return { status: r?.status, approvals: r?.approvals, execution: r?.execution }; };
    const done = await until(async () => {
      const r = await fx.host.store.getRequest(cs.id);
      return r?.execution?.state === 'done' ? r : undefined;
    }, 'the commit');
    expect(done).toMatchObject({ status: 'approved', execution: { ok: true } });
    expect(ids(cleanupDb)).toEqual([5, 6, 7]);
    // The trust ledger counts the review as one assisted review of records.execute, approved as-is.
    const figures = await until(async () => {
      const f = await fx.host.trust.figuresFor({ ...done, capability: 'records', method: 'execute' }) as { assisted?: { approvedAsIs: number } } | undefined;
      return (f?.assisted?.approvedAsIs ?? 0) >= 1 ? f : undefined;
    }, 'the ledger');
    expect(figures?.assisted).toMatchObject({ reviews: 1, approvedAsIs: 1 });

    // Undo, over the operator channel: a viewer may not; an approver restores the four rows from their before-images.
    const vic = await fx.operator('vic');
    await expect(vic.undoChangeset(cs.id)).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect(await alice.undoChangeset(cs.id)).toEqual({ requestId: cs.id, restored: 4 });
    expect(ids(cleanupDb)).toEqual(before);
    // The undo is stored on the request and audited; a second undo is ALREADY_RESOLVED.
    expect((await fx.host.store.getRequest(cs.id))?.execution?.undone).toMatchObject({ by: 'alice', restored: 4 });
    await fx.host.audit.flush();
    const auditDb = openAuditReader(defaultStorePath(fx.dir));
    const undone = queryAudit(auditDb, { type: 'changeset.undone' }).filter((r) => (r.data as { requestId?: string }).requestId === cs.id);
    auditDb.close();
    expect(undone).toHaveLength(1);
    expect(undone[0]).toMatchObject({ runId, data: { by: 'alice', restored: 4, resources: expect.arrayContaining([{ capability: 'records', resource: 'records#1' }]) } });
    await expect(alice.undoChangeset(cs.id)).rejects.toMatchObject({ code: 'ALREADY_RESOLVED' });
  });

  it('denied: nothing changes', async () => {
    const alice = await fx.operator('alice');
    const before = ids(cleanupDb);
    const runId = await submit(cleanup.bytes, { olderThanDays: 90 });
    const cs = await changesetOf(alice, runId);
    await alice.decide({ requestId: cs.id, verdict: 'deny', reason: 'not this week' });
    await new Promise((r) => setTimeout(r, 200));
    expect(ids(cleanupDb)).toEqual(before);
    expect(await fx.host.store.getRequest(cs.id)).toMatchObject({ status: 'denied' });
    expect((await fx.host.store.getRequest(cs.id))?.execution).toBeUndefined();
  });

  it('the approval is bound to the changeset digest: an approval of another changeset is STALE_REQUEST and counts nothing', async () => {
    const alice = await fx.operator('alice');
    const runId = await submit(cleanup.bytes, { olderThanDays: 90 });
    const cs = await changesetOf(alice, runId);
    const effects = (cs.args as { effects: StagedEffect[] }).effects;
    // What an approver would have reviewed had the changeset deleted one row fewer.
    const other = { effects: [{ ...effects[0], resources: effects[0]?.resources.slice(1) }] };
    expect(argsDigest(other)).not.toBe(cs.proposal.argsDigest);
    await expect(alice.decide({ requestId: cs.id, verdict: 'approve', argsDigest: argsDigest(other) })).rejects.toMatchObject({ code: 'STALE_REQUEST' });
    // Nor can an operator edit a changeset into another one.
    await expect(alice.decide({ requestId: cs.id, verdict: 'approve', args: other })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect((await fx.host.store.getRequest(cs.id))?.approvals).toEqual([]);
    await alice.decide({ requestId: cs.id, verdict: 'deny', reason: 'test done' });
  });

  it('a changeset needs at least the approvals an assisted grant of its calls asks for', async () => {
    const alice = await fx.operator('alice');
    const image = fx.image('three-approvers', "export default async (input, caps) => caps.mail.send({ to: 'team@example.com', subject: 'three', text: 'x' })", []);
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted', approvals: 3 });
    const runId = await submit(image.bytes, null);
    const cs = await changesetOf(alice, runId);
    // outbox.send is neither destructive nor financial: one approver would do, but the grant asks for three.
    expect(cs.approvalsRequired).toBe(3);
    await alice.decide({ requestId: cs.id, verdict: 'deny', reason: 'test done' });
  });

  it('fs, kv and outbox staged together; a file changed since staging is CHANGESET_CONFLICT and nothing is applied', async () => {
    const alice = await fx.operator('alice');
    writeFileSync(path.join(fx.dir, 'notes', 'a.txt'), 'hello');
    const source = `export default async (input, caps) => {
      const old = await caps.notes.read('a.txt');
      await caps.notes.write({ path: 'a.txt', content: old + ' world' });
      const seen = await caps.notes.read('a.txt');
      await caps.state.set({ key: 'last', value: seen });
      const sent = await caps.mail.send({ to: 'team@example.com', subject: 'staged', text: seen });
      return { seen, sent, kv: await caps.state.get('last') };
    }`;
    const image = fx.image('staged-mix', source, []);
    for (const capability of ['notes', 'state', 'mail']) await fx.grant(image.digest, { capability, methods: ['*'], mode: 'contained' });
    const mailsBefore = fx.mails().length;
    const runId = await submit(image.bytes, null);
    const cs = await changesetOf(alice, runId);
    const run = await finished(fx.host.url as string, fx.tokens['plat'] as string, runId);
    expect(run.outcome).toMatchObject({ status: 'ok', value: { seen: 'hello world', kv: 'hello world', sent: { staged: true, accepted: ['team@example.com'] } } });
    expect(readFileSync(path.join(fx.dir, 'notes', 'a.txt'), 'utf8')).toBe('hello');
    expect(fx.mails()).toHaveLength(mailsBefore);
    expect(cs.approvalsRequired).toBe(2); // fs.write and kv.set are destructive
    // Someone changes the file after staging.
    writeFileSync(path.join(fx.dir, 'notes', 'a.txt'), 'changed meanwhile');
    const bob = await fx.operator('bob');
    await alice.decide({ requestId: cs.id, verdict: 'approve' });
    await bob.decide({ requestId: cs.id, verdict: 'approve' });
    const done = await until(async () => {
      const r = await fx.host.store.getRequest(cs.id);
      return r?.execution?.state === 'done' ? r : undefined;
    }, 'the commit');
    expect(done.execution).toMatchObject({ ok: false, error: { code: 'CHANGESET_CONFLICT' } });
    expect(readFileSync(path.join(fx.dir, 'notes', 'a.txt'), 'utf8')).toBe('changed meanwhile');
    expect(fx.mails()).toHaveLength(mailsBefore);

    // The same run again, left alone: committed, the email sent once, after the local effects.
    const again = await submit(image.bytes, null);
    const cs2 = await changesetOf(alice, again);
    await alice.decide({ requestId: cs2.id, verdict: 'approve' });
    await bob.decide({ requestId: cs2.id, verdict: 'approve' });
    const ok = await until(async () => {
      const r = await fx.host.store.getRequest(cs2.id);
      return r?.execution?.state === 'done' ? r : undefined;
    }, 'the commit');
    expect(ok.execution).toMatchObject({ ok: true, result: { failed: 0 } });
    expect(readFileSync(path.join(fx.dir, 'notes', 'a.txt'), 'utf8')).toBe('changed meanwhile world');
    expect(fx.mails()).toHaveLength(mailsBefore + 1);
  });

  it('a grant with stageRuns stages every run of its subject: a run submitted not staged ends with a changeset, nothing applied until approved', async () => {
    const alice = await fx.operator('alice');
    const bob = await fx.operator('bob');
    const image = fx.image('staged-by-grant', "export default async (input, caps) => { await caps.notes.write({ path: 'by-grant.txt', content: 'written' }); return caps.notes.read('by-grant.txt'); }", []);
    await fx.grant(image.digest, { capability: 'notes', methods: ['*'], mode: 'contained', stageRuns: true });
    const res = await call(fx.host.url as string, 'POST', '/v1/runs', { token: fx.tokens['plat'] as string, json: { image: image.bytes.toString('base64'), input: null } });
    expect(res.status).toBe(202);
    const runId = res.body.runId as string;
    const request = changesetOf(alice, runId);
    const run = await finished(fx.host.url as string, fx.tokens['plat'] as string, runId);
    // The program saw its write (the staged view); the file does not exist.
    expect(run.outcome).toMatchObject({ status: 'ok', value: 'written' });
    const file = path.join(fx.dir, 'notes', 'by-grant.txt');
    expect(existsSync(file)).toBe(false);
    const cs = await request;
    expect(cs).toMatchObject({ kind: 'changeset', status: 'pending' });
    expect((cs.args as { effects: StagedEffect[] }).effects).toEqual([expect.objectContaining({ capability: 'notes', method: 'write' })]);
    await alice.decide({ requestId: cs.id, verdict: 'approve' });
    expect(existsSync(file)).toBe(false);
    await bob.decide({ requestId: cs.id, verdict: 'approve' });
    await until(async () => {
      const r = await fx.host.store.getRequest(cs.id);
      return r?.execution?.state === 'done' ? r : undefined;
    }, 'the commit');
    expect(readFileSync(file, 'utf8')).toBe('written');
    // Undo is refused, restoring nothing, when the file changed since the commit.
    writeFileSync(file, 'changed after the commit');
    await expect(alice.undoChangeset(cs.id)).rejects.toMatchObject({ code: 'CHANGESET_CONFLICT' });
    expect(readFileSync(file, 'utf8')).toBe('changed after the commit');
    expect((await fx.host.store.getRequest(cs.id))?.execution?.undone).toBeUndefined();

    // The flag survives the store; a narrowing keeps it, may add it, never drops it.
    const ADMIN = { name: 'erin', role: 'admin' } as const;
    const staged = (await fx.host.grants.active()).find((g) => 'digest' in g.subject && g.subject.digest === image.digest && g.capability === 'notes');
    expect(staged?.stageRuns).toBe(true);
    const kept = await fx.host.grants.narrow(staged?.id as string, { methods: ['read', 'write'], mode: 'assisted', approvals: 2, reason: 'closer' }, ADMIN);
    expect(kept.grant.stageRuns).toBe(true);
    await expect(fx.host.grants.narrow(kept.grant.id, { stageRuns: false, reason: 'faster' }, ADMIN)).rejects.toMatchObject({ code: 'NOT_NARROWER', data: { field: 'stageRuns' } });
    const plain = await fx.grant(image.digest, { capability: 'state', methods: ['get'], mode: 'contained' });
    expect((await fx.host.grants.narrow(plain.id, { stageRuns: true, reason: 'stage from now on' }, ADMIN)).grant.stageRuns).toBe(true);
  });

  it('the console API adds a grant with stageRuns and refuses narrowing it away', async () => {
    const base = fx.host.url as string;
    const s = await login(base, { token: fx.tokens['erin'] as string });
    const added = await post(base, '/console/api/grants', { subject: { digest: cleanup.digest }, capability: 'notes', methods: ['read'], mode: 'contained', stageRuns: true, reason: 'review every run' }, s);
    expect(added.status, added.body).toBe(201);
    const id = (added.json().grant as { id: string; stageRuns?: boolean }).id;
    expect((await fx.host.store.getGrant(id))?.stageRuns).toBe(true);
    const dropped = await post(base, `/console/api/grants/${id}/narrow`, { stageRuns: false, reason: 'faster' }, s);
    expect(dropped.json().error).toMatchObject({ code: 'NOT_NARROWER' });
    expect((await fx.host.grants.revoke(id, 'erin', 'test done'))?.revokedAt).toBeDefined();
  });

  it('contained grant add --stage-runs writes the flag and shows it', async () => {
    const config = path.join(fx.dir, 'stage-runs.config.json');
    writeFileSync(config, JSON.stringify({ dataDir: './stage-runs-state', capabilities: { reports: { kind: 'fs', scope: { root: fx.dir } } } }));
    let stdout = '';
    let stderr = '';
    const code = await main(['grant', 'add', '--config', config, '--subject', cleanup.digest, '--capability', 'reports', '--methods', 'read', '--mode', 'contained', '--reason', 'review every run', '--by', 'erin', '--stage-runs'], { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expect(stdout).toMatch(/runs\s+staged/);
    const id = /granted (grt_[0-9a-f]{16})/.exec(stdout)?.[1];
    const store = await openSqliteStore(defaultStorePath(path.join(fx.dir, 'stage-runs-state')));
    try {
      expect((await store.getGrant(id as string))?.stageRuns).toBe(true);
    } finally {
      await store.close();
    }
  });
});

describe('the host config\'s staging section', () => {
  let fx: Fixture;
  beforeAll(async () => {
    fx = await startFixture({ staging: { maxEffects: 2, undoWindowMs: 0 } });
  });
  afterAll(async () => {
    await fx.close();
  });

  it('limits the effects of a staged run (STAGING_LIMIT) and sets the undo window (0: a committed changeset cannot be undone)', async () => {
    const image = fx.image('three-writes', "export default async (input, caps) => { try { for (let i = 0; i < input.n; i++) await caps.notes.write({ path: `limit-${i}.txt`, content: String(i) }); } catch (e) { return e.code; } return input.n; }", []);
    await fx.grant(image.digest, { capability: 'notes', methods: ['*'], mode: 'contained', stageRuns: true });
    const submit = async (n: number): Promise<string> => (await call(fx.host.url as string, 'POST', '/v1/runs', { token: fx.tokens['plat'] as string, json: { image: image.bytes.toString('base64'), input: { n } } })).body.runId as string;
    const over = await finished(fx.host.url as string, fx.tokens['plat'] as string, await submit(3));
    // The third write fails STAGING_LIMIT (the program sees the code).
    expect(over.outcome).toMatchObject({ status: 'ok', value: 'STAGING_LIMIT' });

    const alice = await fx.operator('alice');
    const bob = await fx.operator('bob');
    const runId = await submit(2);
    const cs = await changesetOf(alice, runId);
    await alice.decide({ requestId: cs.id, verdict: 'approve' });
    await bob.decide({ requestId: cs.id, verdict: 'approve' });
    await until(async () => {
      const r = await fx.host.store.getRequest(cs.id);
      return r?.execution?.state === 'done' ? r : undefined;
    }, 'the commit');
    expect(readFileSync(path.join(fx.dir, 'notes', 'limit-1.txt'), 'utf8')).toBe('1');
    await new Promise((r) => setTimeout(r, 5));
    await expect(alice.undoChangeset(cs.id)).rejects.toMatchObject({ code: 'ALREADY_RESOLVED' });
    expect(readFileSync(path.join(fx.dir, 'notes', 'limit-1.txt'), 'utf8')).toBe('1');
  });
});
