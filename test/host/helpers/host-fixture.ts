/**
 * A real host for end-to-end tests: a temp data folder with a real SQLite store, real capability
 * instances (fs on a temp folder, outbox into a maildir folder, sql on a SQLite file), the HTTP +
 * WebSocket server on 127.0.0.1:0, operator tokens, and images packed from inline sources.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { parseHostConfig, type HostConfig } from '../../../host/config.js';
import { type Host, startHost } from '../../../host/host.js';
import type { Grant, Role } from '../../../host/model.js';
import { newGrantId } from '../../../host/grants.js';
import { OperatorClient } from '../../../host/operator/client.js';
import { createToken } from '../../../host/tokens.js';
import { computeDigest } from '../../../sandbox-images/digest.js';
import { packImage } from '../../../sandbox-images/pack.js';

export interface Fixture {
  dir: string;
  host: Host;
  config: HostConfig;
  tokens: Record<string, string>;
  operator(name: string): Promise<OperatorClient>;
  image(name: string, source: string, requests?: unknown[]): { bytes: Buffer; digest: string };
  grant(digest: string, fields: Partial<Grant> & Pick<Grant, 'capability' | 'methods' | 'mode'>): Promise<Grant>;
  mails(): string[];
  close(): Promise<void>;
}

export const OPERATORS: Record<string, Role> = { alice: 'approver', bob: 'approver', carol: 'approver', dave: 'approver', erin: 'admin', vic: 'viewer', plat: 'platform' };

export async function startFixture(overrides: Record<string, unknown> = {}, dataDir?: string): Promise<Fixture> {
  const dir = dataDir ?? mkdtempSync(path.join(os.tmpdir(), 'contained-host-'));
  mkdirSync(path.join(dir, 'notes'), { recursive: true });
  writeFileSync(path.join(dir, 'notes', 'a.txt'), 'hello');
  const db = new Database(path.join(dir, 'records.db'));
  db.exec("CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY, name TEXT, stale INTEGER); INSERT OR IGNORE INTO records VALUES (1,'a',1),(2,'b',0),(3,'c',1);");
  db.close();
  const config = parseHostConfig(
    {
      dataDir: dir,
      listen: { host: '127.0.0.1', port: 0 },
      capabilities: {
        notes: { kind: 'fs', scope: { root: path.join(dir, 'notes') } },
        mail: { kind: 'outbox', scope: { from: 'agent@example.com', allowedRecipients: ['@example.com'], maxPerRun: 50 }, host: { folder: path.join(dir, 'mail') } },
        records: { kind: 'sql', scope: { file: path.join(dir, 'records.db'), tables: ['records'] } },
      },
      requestTimeoutMs: 60_000,
      ...overrides,
    },
    dir,
  );
  const host = await startHost({ config, isolation: 'in-process', logger: pino({ level: 'silent' }) });
  const tokens: Record<string, string> = {};
  for (const [name, role] of Object.entries(OPERATORS)) {
    tokens[name] = (await createToken({ name, role, createdBy: 'test' }, host.store)).token;
  }
  const clients: OperatorClient[] = [];
  return {
    dir,
    host,
    config,
    tokens,
    async operator(name) {
      const client = await OperatorClient.connect({ url: `${host.url?.replace(/^http/, 'ws')}/v1/operator`, token: tokens[name] as string });
      clients.push(client);
      return client;
    },
    image(name, source, requests = []) {
      const manifest = { format: 1, name, version: '1.0.0', description: `test agent ${name}`, entry: 'main.js', requests, limits: { wallMs: 60_000, cpuMs: 5_000 } };
      const files = new Map<string, Uint8Array>([
        ['manifest.json', Buffer.from(JSON.stringify(manifest))],
        ['main.js', Buffer.from(source)],
      ]);
      return { bytes: packImage(files), digest: computeDigest(files).digest };
    },
    async grant(digest, fields) {
      const grant: Grant = { id: newGrantId(), subject: { digest }, approvals: 1, createdBy: 'test', reason: 'test grant', createdAt: Date.now(), ...fields };
      await host.store.insertGrant(grant);
      return grant;
    },
    mails() {
      const folder = path.join(dir, 'mail', 'new');
      try {
        return readdirSync(folder).map((f) => readFileSync(path.join(folder, f), 'utf8'));
      } catch {
        return [];
      }
    },
    async close() {
      await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
      await host.close();
      if (!dataDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function request(fields: unknown[]): unknown[] {
  return fields;
}
