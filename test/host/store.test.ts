/**
 * What only the SQLite store has, on real files: schema, pragmas and file permissions, corrupt rows
 * failing typed, and a decision acknowledged by a process surviving SIGKILL of that process. The
 * behaviour every Store shares (records round-tripping, compare-and-set decisions with one winner
 * across connections) is the contract suite, store-contract.test.ts, run on SQLite and PostgreSQL.
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContainedError } from '../../runtime/errors.js';
import { defaultStorePath, openSqliteStore } from '../../host/store/sqlite-store.js';
import { SCHEMA_VERSION } from '../../host/store/schema.js';
import type { Store } from '../../host/store/store.js';
import { grant, request, run, token } from './store-fixtures.js';

let dir: string;
let file: string;
const open: Store[] = [];

async function store(f = file, options: Parameters<typeof openSqliteStore>[1] = {}): Promise<Store> {
  const s = await openSqliteStore(f, options);
  open.push(s);
  return s;
}

async function reopen(s: Store): Promise<Store> {
  await s.close();
  return store();
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<ContainedError> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ContainedError);
  expect((error as ContainedError).code).toBe(code);
  return error as ContainedError;
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'contained-store-'));
  file = defaultStorePath(path.join(dir, 'data'));
});
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
  await rm(dir, { recursive: true, force: true });
});

describe('opening', () => {
  it('creates the data folder (owner-only) and a WAL database with synchronous=FULL and every schema migration', async () => {
    expect(file).toBe(path.join(dir, 'data', 'contained.db'));
    await store();
    expect(statSync(path.join(dir, 'data')).mode & 0o777).toBe(0o700);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const raw = new Database(file, { readonly: true });
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(raw.prepare('SELECT version FROM schema_version').all()).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => ({ version: i + 1 })));
      // v6: the runs' sensitive sources (the data-flow rule).
      expect((raw.prepare("SELECT name FROM pragma_table_info('runs')").all() as Array<{ name: string }>).map((c) => c.name)).toContain('sensitive_sources');
      // v7: signed approvals required by a grant, and by the request raised under it.
      for (const table of ['grants', 'requests']) {
        expect((raw.prepare(`SELECT name FROM pragma_table_info('${table}')`).all() as Array<{ name: string }>).map((c) => c.name)).toContain('signed_approvals');
      }
    } finally {
      raw.close();
    }
    expect(SCHEMA_VERSION).toBeGreaterThanOrEqual(8);
  });

  it('opens an existing file without migrating it again', async () => {
    const s = await store();
    await s.insertGrant(grant());
    const again = await reopen(s);
    expect(await again.getGrant('g1')).toEqual(grant());
    const raw = new Database(file, { readonly: true });
    expect(raw.prepare('SELECT COUNT(*) AS n FROM schema_version').get()).toEqual({ n: SCHEMA_VERSION });
    raw.close();
  });

  it('refuses a database written by a newer schema', async () => {
    await (await store()).close();
    const raw = new Database(file);
    raw.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)').run(SCHEMA_VERSION + 1, 0);
    raw.close();
    const error = await rejectsWith(openSqliteStore(file), 'INTERNAL');
    expect(error.message).toMatch(/newer than this build/);
  });

  it('refuses a folder where the file is expected, naming the fix', async () => {
    const error = await rejectsWith(openSqliteStore(dir), 'INTERNAL');
    expect(error.message).toContain('contained.db');
  });

  it('fails typed after close', async () => {
    const s = await store();
    await s.close();
    await rejectsWith(s.listGrants(), 'INTERNAL');
  });
});

describe('corrupt rows', () => {
  async function corrupt(sql: string, ...params: unknown[]): Promise<void> {
    const raw = new Database(file);
    raw.prepare(sql).run(...params);
    raw.close();
  }

  it('fail with INTERNAL naming the table and id, and leave other rows readable', async () => {
    const s = await store();
    await s.insertGrant(grant({ id: 'bad-json' }));
    await s.insertGrant(grant({ id: 'bad-mode' }));
    await s.insertGrant(grant({ id: 'two-subjects' }));
    await s.insertGrant(grant({ id: 'fine' }));
    await s.insertRequest(request({ id: 'bad-status' }));
    await s.insertRun(run({ id: 'bad-run' }));
    await s.insertToken(token({ id: 'bad-token' }));
    await corrupt("UPDATE grants SET methods = '[\"read\",' WHERE id = 'bad-json'");
    await corrupt("UPDATE grants SET mode = 'autonomous' WHERE id = 'bad-mode'");
    await corrupt("UPDATE grants SET subject_name = 'x', subject_signer = 'y' WHERE id = 'two-subjects'");
    await corrupt("UPDATE requests SET status = 'maybe' WHERE id = 'bad-status'");
    await corrupt("UPDATE runs SET input = '{' WHERE id = 'bad-run'");
    await corrupt("UPDATE tokens SET role = 'root' WHERE id = 'bad-token'");

    const e1 = await rejectsWith(s.getGrant('bad-json'), 'INTERNAL');
    expect(e1.message).toMatch(/grants row "bad-json" is corrupt/);
    expect(e1.data).toEqual({ table: 'grants', id: 'bad-json' });
    await rejectsWith(s.getGrant('bad-mode'), 'INTERNAL');
    await rejectsWith(s.getGrant('two-subjects'), 'INTERNAL');
    await rejectsWith(s.listGrants(), 'INTERNAL');
    await rejectsWith(s.getRequest('bad-status'), 'INTERNAL');
    await rejectsWith(s.listRequests({ status: 'maybe' as never }), 'INTERNAL');
    // A CAS on a corrupt row fails typed too, and changes nothing.
    expect(await s.resolveRequest('bad-status', { status: 'denied', at: 1, denyReason: 'x' }).catch((e: ContainedError) => e.code)).toBe('INTERNAL');
    await rejectsWith(s.addApproval('bad-status', { operator: 'a', at: 1 }), 'INTERNAL');
    await rejectsWith(s.getRun('bad-run'), 'INTERNAL');
    await rejectsWith(s.findTokenByHash('a'.repeat(64)), 'INTERNAL');
    expect(await s.getGrant('fine')).toEqual(grant({ id: 'fine' }));
  });
});

describe('durability', () => {
  it('a decision acknowledged by a process survives SIGKILL of that process', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.resolve('test/host/store-sigkill-child.ts'), file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.trim());
      });
      child.on('exit', (code) => reject(new Error(`child exited ${code}: ${stderr}`)));
    });
    expect(line).toBe('acknowledged true true');
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    // Nothing was checkpointed: the decision is in the WAL the killed process left behind.
    expect(existsSync(`${file}-wal`) && statSync(`${file}-wal`).size).toBeGreaterThan(0);
    const s = await store();
    expect(await s.getRequest('killed')).toMatchObject({
      status: 'approved',
      resolvedBy: ['alice', 'bob'],
      approvals: [{ operator: 'alice' }, { operator: 'bob' }],
      execution: { state: 'claimed', at: 2_003 },
    });
    expect(await s.claimExecution('killed', 9_000)).toBe(false);
  }, 30_000);

  it('uses synchronous=FULL by default and NORMAL on request', async () => {
    const sync = (s: Store): unknown => (s as unknown as { db: Database.Database }).db.pragma('synchronous', { simple: true });
    expect(sync(await store())).toBe(2);
    expect(sync(await store(path.join(dir, 'normal.db'), { synchronous: 'normal' }))).toBe(1);
  });
});
