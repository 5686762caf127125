/**
 * Hardening finding 2 (High), end to end: one agent with a read-only sql grant froze a real host
 * with a recursive CTE — `/metrics` took 5 s to answer, then the worker heartbeats timed out and
 * every other run died — and `contained run --wall-ms 1000` took 9.5 s to return.
 *
 * Hostile beside innocent, on a real `contained host` process (worker-process sandboxes, HTTP on
 * loopback, a real SQLite file, the operator WebSocket): while the hostile statement is stuck,
 * `/metrics` answers at once, other runs with sql calls finish, and an operator's approval of an
 * assisted call goes through; the stuck call then ends with SQL_LIMIT within its deadline, and no
 * innocent run has died. And the CLI: a stuck statement under `--wall-ms 1000` returns WALL_LIMIT
 * about a second later, leaving no query process behind.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { newGrantId } from '../../host/grants.js';
import type { Grant } from '../../host/model.js';
import { OperatorClient } from '../../host/operator/client.js';
import { defaultStorePath, openSqliteStore } from '../../host/store/sqlite-store.js';
import { createToken } from '../../host/tokens.js';
import { computeDigest } from '../../sandbox-images/digest.js';
import { packImage } from '../../sandbox-images/pack.js';

const MAIN = path.resolve('host/cli/main.ts');
const BIN = path.resolve('bin/contained.js');
/** A statement that never ends on its own. */
const FOREVER = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c';
/** The sql scope's deadline in this host. */
const TIMEOUT_MS = 6000;

const children: ChildProcess[] = [];
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'contained-sql-stall-'));
  const db = new Database(path.join(dir, 'records.db'));
  db.exec("CREATE TABLE records (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO records VALUES (1, 'a'), (2, 'b'), (3, 'c');");
  db.close();
});
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function image(name: string, source: string, requests: unknown[]): { bytes: Buffer; digest: string } {
  const manifest = { format: 1, name, version: '1.0.0', description: `sql-stall agent ${name}`, entry: 'main.js', requests, limits: { wallMs: 60_000, cpuMs: 5_000 } };
  const files = new Map<string, Uint8Array>([
    ['manifest.json', Buffer.from(JSON.stringify(manifest))],
    ['main.js', Buffer.from(source)],
  ]);
  return { bytes: packImage(files), digest: computeDigest(files).digest };
}

const SQL_REQUEST = { capability: 'records', kind: 'sql', scope: {}, methods: ['query'], why: 'read records' };
const MAIL_REQUEST = { capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'report' };

/** `contained host` in worker-process mode (the mode whose heartbeats the stall used to trip). */
function startHost(configFile: string): Promise<{ child: ChildProcess; url: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--no-node-snapshot', '--import', 'tsx', MAIN, 'host', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    const timer = setTimeout(() => reject(new Error(`host did not start: ${out}`)), 60_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1] as string });
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('exit', () => {
      clearTimeout(timer);
      reject(new Error(`host exited early: ${out}`));
    });
  });
}

async function api(url: string, token: string, method: string, route: string, body?: unknown): Promise<{ status: number; json: any; text: string; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(`${url}${route}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  const ms = performance.now() - t0;
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, ms };
}

async function waitFor<T>(f: () => Promise<T | undefined> | T | undefined, what: string, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Query processes whose host process is gone (there must be none: they die with their host). */
function orphanQueryProcesses(): number[] {
  const orphans: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes('query-process')) continue;
      const env = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      const host = Number(env.find((v) => v.startsWith('CONTAINED_SQL_HOST_PID='))?.split('=')[1]);
      if (host > 0) {
        try {
          process.kill(host, 0);
        } catch {
          orphans.push(Number(entry));
        }
      }
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return orphans;
}

describe('a stuck sql statement beside innocent runs (finding 2)', () => {
  it('while it is stuck, /metrics, other runs and operator decisions carry on; it ends with SQL_LIMIT; no innocent run died', async () => {
    const hostile = image('hostile', `export default async (input, caps) => {
      try { await caps.records.query({ sql: ${JSON.stringify(FOREVER)} }); return { code: 'none' }; }
      catch (e) { return { code: e.code, limit: e.data?.limit }; }
    }`, [SQL_REQUEST]);
    const reader = image('reader', "export default async (input, caps) => (await caps.records.query({ sql: 'SELECT count(*) FROM records WHERE id >= ?', params: [input.from] })).rows[0][0]", [SQL_REQUEST]);
    const mailer = image('mailer', "export default async (input, caps) => { await caps.mail.send({ to: 'team@example.com', subject: 'stall test', text: 'hello' }, { reason: 'report' }); return 'sent'; }", [MAIL_REQUEST]);

    const configFile = path.join(dir, 'contained.config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        dataDir: dir,
        listen: { host: '127.0.0.1', port: 0 },
        capabilities: {
          records: { kind: 'sql', scope: { file: path.join(dir, 'records.db'), tables: ['records'], readOnly: true, timeoutMs: TIMEOUT_MS } },
          mail: { kind: 'outbox', scope: { from: 'agent@example.com', allowedRecipients: ['@example.com'] }, host: { folder: path.join(dir, 'mail') } },
        },
      }),
    );
    const store = await openSqliteStore(defaultStorePath(dir));
    const plat = (await createToken({ name: 'plat', role: 'platform', createdBy: 'test' }, store)).token;
    const alice = (await createToken({ name: 'alice', role: 'approver', createdBy: 'test' }, store)).token;
    const grant = (digest: string, fields: Pick<Grant, 'capability' | 'methods' | 'mode'>): Grant => ({
      id: newGrantId(), subject: { digest }, approvals: 1, createdBy: 'test', reason: 'test', createdAt: Date.now(), ...fields,
    });
    await store.insertGrant(grant(hostile.digest, { capability: 'records', methods: ['query'], mode: 'contained' }));
    await store.insertGrant(grant(reader.digest, { capability: 'records', methods: ['query'], mode: 'contained' }));
    await store.insertGrant(grant(mailer.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' }));
    await store.close();

    const host = await startHost(configFile);
    const submit = async (img: { bytes: Buffer }, input: unknown = null): Promise<string> => {
      const res = await api(host.url, plat, 'POST', '/v1/runs', { image: img.bytes.toString('base64'), input });
      expect(res.status, res.text).toBe(202);
      return res.json.runId as string;
    };
    const finished = async (runId: string): Promise<any> =>
      waitFor(async () => {
        const r = await api(host.url, plat, 'GET', `/v1/runs/${runId}?waitMs=5000`);
        return r.json?.outcome ? r.json : undefined;
      }, `run ${runId}`, 60_000);

    // Warm: one innocent run first, so start-up costs are not counted below.
    expect((await finished(await submit(reader, { from: 1 }))).outcome).toMatchObject({ status: 'ok', value: 3 });

    const hostileId = await submit(hostile);
    const hostileStarted = performance.now();
    await waitFor(async () => ((await api(host.url, plat, 'GET', `/v1/runs/${hostileId}`)).json?.status === 'running' ? true : undefined), 'the hostile run');
    await new Promise((r) => setTimeout(r, 500)); // its statement is now running in a query process

    // While it is stuck: /metrics, innocent runs with sql calls, and an operator's decision.
    const metricsMs: number[] = [];
    const probe = (async () => {
      for (let i = 0; i < 10; i++) {
        const r = await api(host.url, plat, 'GET', '/metrics');
        expect(r.status).toBe(200);
        metricsMs.push(r.ms);
        await new Promise((res) => setTimeout(res, 50));
      }
    })();
    const readers = await Promise.all([1, 2, 3].map(async (from) => finished(await submit(reader, { from }))));
    const op = await OperatorClient.connect({ url: `${host.url.replace(/^http/, 'ws')}/v1/operator`, token: alice });
    try {
      const mailId = await submit(mailer);
      const pending = await waitFor(() => [...op.pending.values()].find((r) => r.runId === mailId), 'the recommendation');
      await op.decide({ requestId: pending.id, verdict: 'approve' });
      expect((await finished(mailId)).outcome).toMatchObject({ status: 'ok', value: 'sent' });
    } finally {
      await op.close().catch(() => undefined);
    }
    await probe;

    expect(readers.map((r) => r.outcome)).toEqual([
      expect.objectContaining({ status: 'ok', value: 3 }),
      expect.objectContaining({ status: 'ok', value: 2 }),
      expect.objectContaining({ status: 'ok', value: 1 }),
    ]);
    expect(Math.max(...metricsMs), `GET /metrics took ${metricsMs.map(Math.round).join(', ')} ms`).toBeLessThan(500);
    // All of that happened while the hostile statement was still stuck.
    expect((await api(host.url, plat, 'GET', `/v1/runs/${hostileId}`)).json.status).toBe('running');

    // The stuck call ends with a typed code within its deadline (plus start-up and polling slack).
    const ended = await finished(hostileId);
    expect(ended.outcome).toMatchObject({ status: 'ok', value: { code: 'SQL_LIMIT', limit: 'timeoutMs' } });
    expect(performance.now() - hostileStarted).toBeLessThan(TIMEOUT_MS + 3000);

    // No innocent run died: every run of this host ended ok, none SANDBOX_CRASHED.
    const metrics = (await api(host.url, plat, 'GET', '/metrics')).text;
    expect(metrics).not.toMatch(/SANDBOX_CRASHED/);
    expect(metrics).toMatch(/^contained_runs_total\{status="ok",code=""\} 6$/m);
    console.log(`stuck statement: /metrics answered in ${metricsMs.map(Math.round).join(', ')} ms; the call ended after ${Math.round(performance.now() - hostileStarted)} ms (timeoutMs ${TIMEOUT_MS})`);
  }, 180_000);
});

describe('contained run with a stuck sql statement', () => {
  function contained(args: string[]): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
    const t0 = performance.now();
    return new Promise((resolve) => {
      const child = execFile(process.execPath, [BIN, ...args], { timeout: 60_000, cwd: dir }, (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ code, stdout, stderr, ms: performance.now() - t0 });
      });
      children.push(child);
    });
  }

  it('--wall-ms 1000 returns WALL_LIMIT about a second later and leaves no query process behind', async () => {
    const grant = `db=sql:${JSON.stringify({ file: path.join(dir, 'records.db'), tables: ['records'], readOnly: true, timeoutMs: 60_000 })}`;
    writeFileSync(path.join(dir, 'quick.js'), "export default async (input, caps) => (await caps.db.query({ sql: 'SELECT count(*) FROM records' })).rows[0][0];");
    writeFileSync(path.join(dir, 'stuck.js'), `export default async (input, caps) => caps.db.query({ sql: ${JSON.stringify(FOREVER)} });`);
    // The same command with a statement that ends at once: what start-up and exit cost here (the
    // faster of two, the first may compile the sources).
    let quick = { ms: Infinity } as Awaited<ReturnType<typeof contained>>;
    for (let i = 0; i < 2; i++) {
      const res = await contained(['run', 'quick.js', '--grant', grant, '--wall-ms', '1000', '--json']);
      expect(res.code, res.stderr).toBe(0);
      expect(JSON.parse(res.stdout)).toMatchObject({ status: 'ok', value: 3 });
      if (res.ms < quick.ms) quick = res;
    }

    const stuck = await contained(['run', 'stuck.js', '--grant', grant, '--wall-ms', '1000', '--json']);
    expect(stuck.code, stuck.stderr).toBe(3);
    expect(JSON.parse(stuck.stdout)).toMatchObject({ status: 'error', error: { code: 'WALL_LIMIT' } });
    // The wall limit plus ~1 s of slack over the quick run's own start-up and exit.
    expect(stuck.ms - quick.ms, `stuck ${Math.round(stuck.ms)} ms, quick ${Math.round(quick.ms)} ms`).toBeLessThan(2000);
    console.log(`contained run --wall-ms 1000: stuck statement ${Math.round(stuck.ms)} ms, quick statement ${Math.round(quick.ms)} ms`);
    await new Promise((r) => setTimeout(r, 200));
    expect(orphanQueryProcesses()).toEqual([]);
  }, 120_000);
});
