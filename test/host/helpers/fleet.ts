/**
 * Several real `contained host` processes on one PostgreSQL database (test/helpers/postgres.ts):
 * each with its own data folder and port, the same capabilities (a `notes` folder each, one shared
 * maildir so an email sent by any host is counted once), operator tokens and grants written to the
 * shared store, and images packed from inline sources.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { main } from '../../../host/cli/main.js';
import { newGrantId } from '../../../host/grants.js';
import type { Grant, Role } from '../../../host/model.js';
import { OperatorClient } from '../../../host/operator/client.js';
import { openPgStore } from '../../../host/store/pg-store.js';
import type { Store } from '../../../host/store/store.js';
import { createToken } from '../../../host/tokens.js';
import { computeDigest } from '../../../sandbox-images/digest.js';
import { packImage } from '../../../sandbox-images/pack.js';
import { exited, type HostProcess, maildirMessages, startHostProcess } from './host-process.js';

export const FLEET_OPERATORS: Record<string, Role> = { alice: 'approver', bob: 'approver', carol: 'approver', dave: 'approver', erin: 'approver', adam: 'admin', plat: 'platform' };

export interface FleetFixture {
  root: string;
  db: string;
  tokens: Record<string, string>;
  /** Start host number `i` (its own data folder `host<i>`; the same folder again after a kill). */
  start(i: number, env?: Record<string, string>, extra?: Record<string, unknown>): Promise<HostProcess>;
  operator(url: string, name: string): Promise<OperatorClient>;
  image(name: string, source: string, requests: unknown[]): { bytes: Buffer; digest: string };
  grant(fields: Partial<Grant> & Pick<Grant, 'capability' | 'methods' | 'mode'>, digest: string): Promise<Grant>;
  submit(url: string, image: Buffer, input?: unknown): Promise<string>;
  /** The run record from the host that runs it, once it has ended (`waitMs` long-poll). */
  waitRun(url: string, runId: string): Promise<{ status: string; outcome?: { status: string; value?: unknown; error?: { code: string } } }>;
  mails(): string[];
  store(): Promise<Store>;
  /** `contained audit verify` on the fleet's one chain, with the public key of every host started: its exit code and output. */
  verifyAudit(): Promise<{ code: number; stdout: string; stderr: string }>;
  kill(host: HostProcess): Promise<void>;
  close(): Promise<void>;
}

export async function startFleetFixture(db: string, fleet: { heartbeatMs: number; deadAfterMs: number } = { heartbeatMs: 200, deadAfterMs: 1_500 }): Promise<FleetFixture> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'contained-fleet-'));
  const children: ChildProcess[] = [];
  const clients: OperatorClient[] = [];
  const stores: Store[] = [];
  const tokens: Record<string, string> = {};
  const setup = await openPgStore(db);
  for (const [name, role] of Object.entries(FLEET_OPERATORS)) tokens[name] = (await createToken({ name, role, createdBy: 'test' }, setup)).token;

  async function store(): Promise<Store> {
    const s = await openPgStore(db);
    stores.push(s);
    return s;
  }

  return {
    root,
    db,
    tokens,
    async start(i, env = {}, extra = {}) {
      const dir = path.join(root, `host${i}`);
      mkdirSync(path.join(dir, 'notes'), { recursive: true });
      writeFileSync(path.join(dir, 'notes', 'a.txt'), `note of host ${i}`);
      writeFileSync(path.join(dir, 'notes', 'b.txt'), `secret of host ${i}`);
      const configFile = path.join(dir, 'contained.config.json');
      writeFileSync(
        configFile,
        JSON.stringify({
          dataDir: dir,
          store: db,
          fleet,
          listen: { host: '127.0.0.1', port: 0 },
          requestTimeoutMs: 120_000,
          maxConcurrentRuns: 200,
          capabilities: {
            notes: { kind: 'fs', scope: { root: path.join(dir, 'notes') } },
            mail: { kind: 'outbox', scope: { from: 'agent@example.com', allowedRecipients: ['@example.com'], maxPerRun: 5 }, host: { folder: path.join(root, 'mail') } },
          },
          ...extra,
        }),
      );
      return startHostProcess(configFile, (child) => children.push(child), env);
    },
    async operator(url, name) {
      const client = await OperatorClient.connect({ url: `${url.replace(/^http/, 'ws')}/v1/operator`, token: tokens[name] as string });
      clients.push(client);
      return client;
    },
    image(name, source, requests) {
      const manifest = { format: 1, name, version: '1.0.0', description: name, entry: 'main.js', requests };
      const files = new Map<string, Uint8Array>([
        ['manifest.json', Buffer.from(JSON.stringify(manifest))],
        ['main.js', Buffer.from(source)],
      ]);
      return { bytes: packImage(files), digest: computeDigest(files).digest };
    },
    async grant(fields, digest) {
      const grant: Grant = { id: newGrantId(), subject: { digest }, approvals: 1, createdBy: 'test', reason: 'test', createdAt: Date.now(), ...fields };
      await setup.insertGrant(grant);
      return grant;
    },
    async submit(url, image, input = null) {
      const res = await fetch(`${url}/v1/runs`, { method: 'POST', headers: { authorization: `Bearer ${tokens.plat}`, 'content-type': 'application/json' }, body: JSON.stringify({ image: image.toString('base64'), input }) });
      if (res.status !== 202) throw new Error(`submit: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { runId: string }).runId;
    },
    async waitRun(url, runId) {
      for (;;) {
        const res = await fetch(`${url}/v1/runs/${runId}?waitMs=10000`, { headers: { authorization: `Bearer ${tokens.plat}` } });
        const run = (await res.json()) as { status: string; outcome?: { status: string; value?: unknown; error?: { code: string } } };
        if (run.status !== 'running' && run.status !== 'queued') return run;
      }
    },
    mails: () => maildirMessages(root),
    store,
    async verifyAudit() {
      const keys = readdirSync(root)
        .filter((d) => d.startsWith('host'))
        .map((d) => path.join(root, d, 'audit-key.pub.pem'))
        .filter((f) => existsSync(f));
      let stdout = '';
      let stderr = '';
      const code = await main(['audit', 'verify', '--config', path.join(root, 'host1', 'contained.config.json'), ...keys.flatMap((k) => ['--public-key', k])], {
        stdout: (t) => void (stdout += t),
        stderr: (t) => void (stderr += t),
      });
      return { code, stdout, stderr };
    },
    async kill(host) {
      host.child.kill('SIGKILL');
      await exited(host.child);
    },
    async close() {
      await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
      for (const c of children.splice(0)) {
        if (c.exitCode === null && c.signalCode === null) {
          c.kill('SIGTERM');
          await Promise.race([exited(c), new Promise((r) => setTimeout(r, 5_000))]);
          c.kill('SIGKILL');
        }
      }
      await Promise.all(stores.splice(0).map((s) => s.close()));
      await setup.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}
