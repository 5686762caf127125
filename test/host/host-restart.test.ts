/**
 * Restart loses nothing, and nothing is performed twice: a real `contained host` process is
 * killed with SIGKILL while a recommendation is pending, and between a durable decision and the
 * action; after a restart the request is offered again (or finished) and the email is sent once.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { newGrantId } from '../../host/grants.js';
import { OperatorClient } from '../../host/operator/client.js';
import { defaultStorePath, openSqliteStore } from '../../host/store/sqlite-store.js';
import { createToken } from '../../host/tokens.js';
import { computeDigest } from '../../sandbox-images/digest.js';
import { packImage } from '../../sandbox-images/pack.js';
import { exited, type HostProcess, maildirMessages, startHostProcess } from './helpers/host-process.js';
import { waitUntil } from './helpers/wait.js';

const children: ChildProcess[] = [];
const dirs: string[] = [];

afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface Setup {
  dir: string;
  configFile: string;
  tokens: { alice: string; plat: string };
  image: Buffer;
}

async function setup(): Promise<Setup> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-restart-'));
  dirs.push(dir);
  const configFile = path.join(dir, 'contained.config.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      dataDir: dir,
      listen: { host: '127.0.0.1', port: 0 },
      capabilities: { mail: { kind: 'outbox', scope: { from: 'agent@example.com', allowedRecipients: ['@example.com'] }, host: { folder: path.join(dir, 'mail') } } },
    }),
  );
  const manifest = { format: 1, name: 'mailer', version: '1.0.0', description: 'sends one email', entry: 'main.js', requests: [{ capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'the email' }] };
  const files = new Map<string, Uint8Array>([
    ['manifest.json', Buffer.from(JSON.stringify(manifest))],
    ['main.js', Buffer.from("export default async (input, caps) => caps.mail.send({ to: 'team@example.com', subject: 'restart test', text: 'once' }, { reason: 'test' })")],
  ]);
  const digest = computeDigest(files).digest;
  const store = await openSqliteStore(defaultStorePath(dir));
  const alice = (await createToken({ name: 'alice', role: 'approver', createdBy: 'test' }, store)).token;
  const plat = (await createToken({ name: 'plat', role: 'platform', createdBy: 'test' }, store)).token;
  await store.insertGrant({ id: newGrantId(), subject: { digest }, capability: 'mail', methods: ['send'], mode: 'assisted', approvals: 1, createdBy: 'test', reason: 'test', createdAt: Date.now() });
  await store.close();
  return { dir, configFile, tokens: { alice, plat }, image: packImage(files) };
}

function startHost(configFile: string, env: Record<string, string> = {}): Promise<HostProcess> {
  return startHostProcess(configFile, (child) => children.push(child), env);
}

const killed = exited;

async function submit(url: string, token: string, image: Buffer): Promise<string> {
  const res = await fetch(`${url}/v1/runs`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ image: image.toString('base64'), input: null }) });
  expect(res.status).toBe(202);
  return ((await res.json()) as { runId: string }).runId;
}

async function operator(url: string, token: string): Promise<OperatorClient> {
  return OperatorClient.connect({ url: `${url.replace(/^http/, 'ws')}/v1/operator`, token });
}


describe('host restart', () => {
  it('a pending recommendation survives SIGKILL, is offered again, and is performed exactly once after the run is gone', async () => {
    const s = await setup();
    const first = await startHost(s.configFile);
    await submit(first.url, s.tokens.plat, s.image);
    const op1 = await operator(first.url, s.tokens.alice);
    const pending = await waitUntil(() => [...op1.pending.values()][0], 'the recommendation');
    expect(pending).toMatchObject({ kind: 'recommendation', method: 'send', status: 'pending' });
    first.child.kill('SIGKILL');
    await killed(first.child);
    await op1.close().catch(() => undefined);

    const second = await startHost(s.configFile);
    const op2 = await operator(second.url, s.tokens.alice);
    expect([...op2.pending.keys()]).toEqual([pending.id]);
    await op2.decide({ requestId: pending.id, verdict: 'approve' });
    await waitUntil(() => (maildirMessages(s.dir).length > 0 ? true : undefined), 'the email');
    await op2.close();
    second.child.kill('SIGTERM');
    await killed(second.child);

    const store = await openSqliteStore(defaultStorePath(s.dir));
    expect(await store.getRequest(pending.id)).toMatchObject({ status: 'approved', execution: { state: 'done', ok: true } });
    await store.close();
    // A third start performs nothing again.
    const third = await startHost(s.configFile);
    await new Promise((r) => setTimeout(r, 500));
    third.child.kill('SIGTERM');
    await killed(third.child);
    expect(maildirMessages(s.dir)).toHaveLength(1);
  }, 90_000);

  it('killed between the durable decision and the action: the restart performs it once', async () => {
    const s = await setup();
    const first = await startHost(s.configFile, { CONTAINED_FAULT: 'kill-after-decision' });
    await submit(first.url, s.tokens.plat, s.image);
    const op = await operator(first.url, s.tokens.alice);
    const pending = await waitUntil(() => [...op.pending.values()][0], 'the recommendation');
    await op.decide({ requestId: pending.id, verdict: 'approve' }).catch(() => undefined);
    await killed(first.child);
    expect(first.child.signalCode).toBe('SIGKILL');
    expect(maildirMessages(s.dir)).toHaveLength(0);
    await op.close().catch(() => undefined);

    for (let i = 0; i < 2; i++) {
      const again = await startHost(s.configFile);
      await waitUntil(() => (maildirMessages(s.dir).length > 0 ? true : undefined), 'the email');
      again.child.kill('SIGTERM');
      await killed(again.child);
    }
    expect(maildirMessages(s.dir)).toHaveLength(1);
    const store = await openSqliteStore(defaultStorePath(s.dir));
    expect(await store.getRequest(pending.id)).toMatchObject({ status: 'approved', execution: { state: 'done', ok: true } });
    await store.close();
  }, 90_000);
});
