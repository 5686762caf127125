/**
 * A staged run's changeset survives SIGKILL between its approval and its commit: a real
 * `contained host` process (CONTAINED_FAULT=kill-after-decision) dies as the approval becomes
 * durable; the restart commits it — the file written and the email sent exactly once — and a third
 * start commits nothing again. The audit log holds the commit's intent and outcome.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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


describe('a changeset across a host crash', () => {
  it('killed between the approval and the commit: the restart commits it exactly once', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-changeset-restart-'));
    dirs.push(dir);
    mkdirSync(path.join(dir, 'notes'));
    writeFileSync(path.join(dir, 'notes', 'todo.txt'), 'one');
    const configFile = path.join(dir, 'contained.config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        dataDir: dir,
        listen: { host: '127.0.0.1', port: 0 },
        capabilities: {
          notes: { kind: 'fs', scope: { root: path.join(dir, 'notes') } },
          mail: { kind: 'outbox', scope: { from: 'agent@example.com', allowedRecipients: ['@example.com'] }, host: { folder: path.join(dir, 'mail') } },
        },
      }),
    );
    const manifest = { format: 1, name: 'noter', version: '1.0.0', description: 'appends and mails', entry: 'main.js', requests: [] };
    const files = new Map<string, Uint8Array>([
      ['manifest.json', Buffer.from(JSON.stringify(manifest))],
      [
        'main.js',
        Buffer.from(
          "export default async (input, caps) => { await caps.notes.append({ path: 'todo.txt', content: ' two' }); const text = await caps.notes.read('todo.txt'); return caps.mail.send({ to: 'team@example.com', subject: 'todo', text }); }",
        ),
      ],
    ]);
    const digest = computeDigest(files).digest;
    const store = await openSqliteStore(defaultStorePath(dir));
    const alice = (await createToken({ name: 'alice', role: 'approver', createdBy: 'test' }, store)).token;
    const plat = (await createToken({ name: 'plat', role: 'platform', createdBy: 'test' }, store)).token;
    for (const capability of ['notes', 'mail']) {
      await store.insertGrant({ id: newGrantId(), subject: { digest }, capability, methods: ['*'], mode: 'contained', approvals: 1, createdBy: 'test', reason: 'test', createdAt: Date.now() });
    }
    await store.close();

    const start = (env: Record<string, string> = {}): Promise<HostProcess> => startHostProcess(configFile, (child) => children.push(child), env);
    const first = await start({ CONTAINED_FAULT: 'kill-after-decision' });
    const res = await fetch(`${first.url}/v1/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${plat}`, 'content-type': 'application/json' },
      body: JSON.stringify({ image: packImage(files).toString('base64'), input: null, staged: true }),
    });
    expect(res.status).toBe(202);
    const op = await OperatorClient.connect({ url: `${first.url.replace(/^http/, 'ws')}/v1/operator`, token: alice });
    const cs = await waitUntil(() => [...op.pending.values()].find((r) => r.kind === 'changeset'), 'the changeset', 20_000);
    expect(cs.approvalsRequired).toBe(1); // append is not destructive, send is not financial
    await op.decide({ requestId: cs.id, verdict: 'approve' }).catch(() => undefined);
    await exited(first.child);
    expect(first.child.signalCode).toBe('SIGKILL');
    await op.close().catch(() => undefined);
    expect(readFileSync(path.join(dir, 'notes', 'todo.txt'), 'utf8')).toBe('one');
    expect(maildirMessages(dir)).toHaveLength(0);

    for (let i = 0; i < 2; i++) {
      const again = await start();
      await waitUntil(() => (maildirMessages(dir).length > 0 ? true : undefined), 'the email', 20_000);
      // The outcome is recorded just after the send; give it that moment before stopping the host.
      await new Promise((r) => setTimeout(r, 300));
      again.child.kill('SIGTERM');
      await exited(again.child);
    }
    expect(readFileSync(path.join(dir, 'notes', 'todo.txt'), 'utf8')).toBe('one two');
    expect(maildirMessages(dir)).toHaveLength(1);
    const after = await openSqliteStore(defaultStorePath(dir));
    expect(await after.getRequest(cs.id)).toMatchObject({ kind: 'changeset', status: 'approved', execution: { state: 'done', ok: true } });
    await after.close();
  }, 120_000);
});
