/**
 * The staging contract against real files and a real SQLite kv store: a staged instance performs
 * reads for real, records every other call, answers from its overlay (reads in the same run see
 * it), and leaves the real resources untouched; a commit checks preconditions first (a changed
 * file or key: CHANGESET_CONFLICT, nothing applied), applies local effects, and can be undone
 * from before-images unless something changed since.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Database from 'better-sqlite3';
import { createSql } from '../../capabilities/sql/index.js';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFs } from '../../capabilities/fs/index.js';
import { createHttp } from '../../capabilities/http/index.js';
import { createKv } from '../../capabilities/kv/index.js';
import { defineCapability, method, StagingSession, type CapabilityInstance } from '../../capabilities/sdk/index.js';
import { createInstance } from '../../capabilities/sdk/instance.js';
import { commitChangeset, undoChangeset, type CommitResult } from '../../host/changesets/commit.js';
import { z } from 'zod';
import { call, errorOf, tempDir } from './helpers.js';

let base: string;
let cleanup: () => void;
let root: string;
beforeEach(() => {
  ({ dir: base, cleanup } = tempDir('staging-'));
  root = path.join(base, 'root');
  mkdirSync(path.join(root, 'docs'), { recursive: true });
  writeFileSync(path.join(root, 'keep.txt'), 'old');
  writeFileSync(path.join(root, 'gone.txt'), 'bye');
});
afterEach(() => cleanup());

function setup(): { fs: CapabilityInstance; kv: CapabilityInstance; instances: Map<string, CapabilityInstance> } {
  const fs = createFs({ root });
  const kv = createKv({ file: path.join(base, 'kv.db'), namespace: 'a' });
  return { fs, kv, instances: new Map<string, CapabilityInstance>([['fs', fs], ['kv', kv]]) };
}

describe('staged fs and kv', () => {
  it('records writes, answers reads from the overlay, and changes nothing real', async () => {
    const { fs, kv } = setup();
    await call(kv, 'set', { key: 'k', value: 1 });
    const session = new StagingSession('run-1');
    const sfs = fs.staged(session);
    const skv = kv.staged(session);
    expect(await call(sfs, 'write', { path: 'keep.txt', content: 'new' })).toEqual({ path: 'keep.txt', size: 3 });
    expect(await call(sfs, 'read', 'keep.txt')).toBe('new');
    await call(sfs, 'mkdir', 'out/deep');
    await call(sfs, 'write', { path: 'out/deep/r.md', content: 'report' });
    await call(sfs, 'append', { path: 'out/deep/r.md', content: '!' });
    expect(await call(sfs, 'read', 'out/deep/r.md')).toBe('report!');
    await call(sfs, 'remove', 'gone.txt');
    expect((await errorOf(call(sfs, 'read', 'gone.txt'))).data).toMatchObject({ reason: 'ENOENT' });
    await call(sfs, 'move', { from: 'keep.txt', to: 'docs/kept.txt' });
    const names = ((await call(sfs, 'list')) as Array<{ name: string }>).map((e) => e.name);
    expect(names).toEqual(['docs', 'out']);
    expect(((await call(sfs, 'list', 'docs')) as Array<{ name: string }>).map((e) => e.name)).toEqual(['kept.txt']);
    // A write into a folder that does not exist, even staged, fails as the real one would.
    expect((await errorOf(call(sfs, 'write', { path: 'nowhere/x.txt', content: '' }))).data).toMatchObject({ reason: 'ENOENT' });

    await call(skv, 'set', { key: 'k', value: 2 });
    await call(skv, 'set', { key: 'n', value: 'new' });
    expect(await call(skv, 'get', 'k')).toBe(2);
    expect(await call(skv, 'delete', 'k')).toEqual({ deleted: true });
    expect(await call(skv, 'get', 'k')).toBeNull();
    expect(await call(skv, 'list')).toEqual({ keys: ['n'], more: false });

    // Nothing real changed.
    expect(readFileSync(path.join(root, 'keep.txt'), 'utf8')).toBe('old');
    expect(existsSync(path.join(root, 'gone.txt'))).toBe(true);
    expect(existsSync(path.join(root, 'out'))).toBe(false);
    expect(await call(kv, 'get', 'k')).toBe(1);
    expect(await call(kv, 'get', 'n')).toBeNull();
    expect(session.effects.map((e) => `${e.capability}.${e.method}`)).toEqual([
      'fs.write', 'fs.mkdir', 'fs.write', 'fs.append', 'fs.remove', 'fs.move', 'kv.set', 'kv.set', 'kv.delete',
    ]);
    // Preconditions only where the run first changed a resource.
    expect(Object.keys(session.effects[0]!.preconditions)).toEqual(['keep.txt']);
    expect(Object.keys(session.effects[5]!.preconditions)).toEqual(['docs/kept.txt']);
    expect(session.effects[0]!.detail).toEqual({ path: 'keep.txt', before: 'old', after: 'new' });
  });

  it('commits in order, then undoes from before-images', async () => {
    const { fs, kv, instances } = setup();
    await call(kv, 'set', { key: 'k', value: 1 });
    const session = new StagingSession('run-2');
    await call(fs.staged(session), 'write', { path: 'keep.txt', content: 'new' });
    await call(fs.staged(session), 'remove', 'gone.txt');
    await call(kv.staged(session), 'set', { key: 'k', value: 2 });
    await call(kv.staged(session), 'set', { key: 'n', value: true });
    const outcome = await commitChangeset({ instances }, 'run-2', undefined, { effects: session.effects });
    expect(outcome).toMatchObject({ ok: true, result: { failed: 0 } });
    expect(readFileSync(path.join(root, 'keep.txt'), 'utf8')).toBe('new');
    expect(existsSync(path.join(root, 'gone.txt'))).toBe(false);
    expect(await call(kv, 'get', 'k')).toBe(2);
    const result = (outcome as { result: CommitResult }).result;
    expect(await undoChangeset({ instances }, result)).toEqual({ restored: 4 });
    expect(readFileSync(path.join(root, 'keep.txt'), 'utf8')).toBe('old');
    expect(readFileSync(path.join(root, 'gone.txt'), 'utf8')).toBe('bye');
    expect(await call(kv, 'get', 'k')).toBe(1);
    expect(await call(kv, 'get', 'n')).toBeNull();
  });

  it('refuses the undo after a later change, restoring nothing', async () => {
    const { fs, kv, instances } = setup();
    const session = new StagingSession('run-3');
    await call(fs.staged(session), 'write', { path: 'keep.txt', content: 'new' });
    await call(kv.staged(session), 'set', { key: 'k', value: 2 });
    const outcome = await commitChangeset({ instances }, 'run-3', undefined, { effects: session.effects });
    await call(kv, 'set', { key: 'k', value: 3 });
    const e = await errorOf(undoChangeset({ instances }, (outcome as { result: CommitResult }).result));
    expect(e.code).toBe('CHANGESET_CONFLICT');
    expect(e.data).toMatchObject({ conflicts: [{ capability: 'kv', resource: 'k' }] });
    expect(readFileSync(path.join(root, 'keep.txt'), 'utf8')).toBe('new');
  });

  it.each([
    ['a file changed since staging', (fs: CapabilityInstance) => call(fs, 'write', { path: 'keep.txt', content: 'changed' })],
    ['a kv value changed since staging', (_fs: CapabilityInstance, kv: CapabilityInstance) => call(kv, 'set', { key: 'k', value: 'other' })],
  ])('a conflict (%s) applies nothing', async (_name, change) => {
    const { fs, kv, instances } = setup();
    const session = new StagingSession('run-4');
    await call(fs.staged(session), 'write', { path: 'keep.txt', content: 'new' });
    await call(fs.staged(session), 'write', { path: 'docs/fresh.txt', content: 'x' });
    await call(kv.staged(session), 'set', { key: 'k', value: 2 });
    await change(fs, kv);
    const before = readFileSync(path.join(root, 'keep.txt'), 'utf8');
    const outcome = await commitChangeset({ instances }, 'run-4', undefined, { effects: session.effects });
    expect(outcome).toMatchObject({ ok: false, error: { code: 'CHANGESET_CONFLICT' } });
    expect(readFileSync(path.join(root, 'keep.txt'), 'utf8')).toBe(before);
    expect(existsSync(path.join(root, 'docs', 'fresh.txt'))).toBe(false);
  });

  it('rolls back applied local effects when a later one fails, and sends nothing open-world', async () => {
    const { fs, instances } = setup();
    const session = new StagingSession('run-5');
    await call(fs.staged(session), 'write', { path: 'keep.txt', content: 'new' });
    await call(fs.staged(session), 'mkdir', 'sub');
    await call(fs.staged(session), 'write', { path: 'sub/x.txt', content: 'x' });
    // Tamper with the recorded changeset so the last effect cannot apply (its folder is not made first).
    const effects = session.effects.filter((e) => e.method !== 'mkdir');
    const outcome = await commitChangeset({ instances }, 'run-5', undefined, { effects });
    expect(outcome).toMatchObject({ ok: false, error: { code: 'CHANGESET_FAILED' } });
    expect(readFileSync(path.join(root, 'keep.txt'), 'utf8')).toBe('old');
  });
});

describe('methods that cannot be staged', () => {
  it('fail NOT_STAGEABLE and never run', async () => {
    let ran = 0;
    const def = defineCapability({
      name: 'pay',
      description: 'test',
      scope: z.strictObject({}),
      intersect: (p) => p,
      describeScope: () => 'all',
      methods: {
        charge: method({ description: 'charge', args: z.number(), result: z.string(), risk: { financial: true }, run: () => String(++ran) }),
        balance: method({ description: 'balance', args: z.undefined(), result: z.number(), risk: { readOnly: true }, run: () => 42 }),
      },
    });
    const pay = createInstance(def, {}, {});
    const staged = pay.staged(new StagingSession('run-6'));
    expect((await errorOf(call(staged, 'charge', 5))).code).toBe('NOT_STAGEABLE');
    expect(await call(staged, 'balance')).toBe(42);
    expect(ran).toBe(0);
  });

  it('a folder move is not stageable', async () => {
    const { fs } = setup();
    expect((await errorOf(call(fs.staged(new StagingSession('r')), 'move', { from: 'docs', to: 'docs2' }))).code).toBe('NOT_STAGEABLE');
  });

  it('http.send is queued with a placeholder, never sent', async () => {
    const http = createHttp({ origins: ['https://api.example.com'], methods: ['GET', 'POST'] });
    const session = new StagingSession('run-7');
    const res = await call(http.staged(session), 'send', { url: 'https://api.example.com/x', method: 'POST', body: '{}' });
    expect(res).toMatchObject({ status: 202, statusText: 'Staged', headers: { 'x-contained-staged': 'true' } });
    expect(session.effects[0]).toMatchObject({ method: 'send', risk: { openWorld: true }, detail: { method: 'POST', url: 'https://api.example.com/x', body: '{}' } });
  });

  it('a changeset past maxEffects fails STAGING_LIMIT', async () => {
    const { kv } = setup();
    const staged = kv.staged(new StagingSession('run-8', { maxEffects: 2 }));
    await call(staged, 'set', { key: 'a', value: 1 });
    await call(staged, 'set', { key: 'b', value: 1 });
    expect((await errorOf(call(staged, 'set', { key: 'c', value: 1 }))).code).toBe('STAGING_LIMIT');
  });
});

describe('staged sql', () => {
  function db(): string {
    const file = path.join(base, 'app.db');
    const d = new Database(file);
    d.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, blob BLOB); INSERT INTO items VALUES (1,'a',1,NULL),(2,'b',2,x'00ff'),(3,'c',3,NULL)");
    d.close();
    return file;
  }
  const rows = (file: string): unknown[] => {
    const d = new Database(file, { readonly: true });
    try {
      return d.prepare('SELECT id, name, qty, hex(blob) AS blob FROM items ORDER BY id').all();
    } finally {
      d.close();
    }
  };

  it('runs statements on a scratch copy the same run reads, records the rows, commits exactly them, and undoes', async () => {
    const file = db();
    const sql = createSql({ file, tables: ['items'] });
    const before = rows(file);
    const session = new StagingSession('run-sql');
    const staged = sql.staged(session);
    expect(await call(staged, 'execute', { sql: 'UPDATE items SET qty = qty + 10 WHERE id >= ?', params: [2] })).toEqual({ changes: 2, lastInsertRowid: 0 });
    expect(await call(staged, 'execute', { sql: "INSERT INTO items (name, qty) VALUES ('d', 4)" })).toMatchObject({ changes: 1, lastInsertRowid: 4 });
    expect(await call(staged, 'execute', { sql: 'DELETE FROM items WHERE id = 1' })).toMatchObject({ changes: 1 });
    // The run sees its own writes; the database does not.
    expect(await call(staged, 'query', { sql: 'SELECT id, qty FROM items ORDER BY id' })).toMatchObject({ rows: [[2, 12], [3, 13], [4, 4]] });
    expect(rows(file)).toEqual(before);
    expect(session.effects[0]).toMatchObject({
      resources: ['items#2', 'items#3'],
      detail: { rows: [{ table: 'items', rowid: 2, before: { qty: 2, blob: { hex: '00FF' } }, after: { qty: 12, blob: { hex: '00FF' } } }, { rowid: 3 }] },
    });
    const instances = new Map<string, CapabilityInstance>([['sql', sql]]);
    // The same statement run again now would touch a row the review never saw: the commit writes only the captured rows.
    const d = new Database(file);
    d.exec("INSERT INTO items (id, name, qty) VALUES (9, 'late', 9)");
    d.close();
    const outcome = await commitChangeset({ instances }, 'run-sql', undefined, { effects: session.effects });
    expect(outcome).toMatchObject({ ok: true });
    expect(rows(file)).toEqual([
      { id: 2, name: 'b', qty: 12, blob: '00FF' },
      { id: 3, name: 'c', qty: 13, blob: '' },
      { id: 4, name: 'd', qty: 4, blob: '' },
      { id: 9, name: 'late', qty: 9, blob: '' },
    ]);
    expect(await undoChangeset({ instances }, (outcome as { result: CommitResult }).result)).toEqual({ restored: 4 });
    expect(rows(file)).toEqual([...before, { id: 9, name: 'late', qty: 9, blob: '' }]);
    await session.close();
  });

  it('a row changed since staging is CHANGESET_CONFLICT and nothing is applied', async () => {
    const file = db();
    const sql = createSql({ file, tables: ['items'] });
    const session = new StagingSession('run-sql-2');
    await call(sql.staged(session), 'execute', { sql: 'DELETE FROM items WHERE id IN (1, 3)' });
    await call(sql.staged(session), 'execute', { sql: "UPDATE items SET name = 'B' WHERE id = 2" });
    const d = new Database(file);
    d.exec('UPDATE items SET qty = 99 WHERE id = 3');
    d.close();
    const before = rows(file);
    const outcome = await commitChangeset({ instances: new Map<string, CapabilityInstance>([['sql', sql]]) }, 'run-sql-2', undefined, { effects: session.effects });
    expect(outcome).toMatchObject({ ok: false, error: { code: 'CHANGESET_CONFLICT' } });
    expect((outcome as { error: { message: string } }).error.message).toContain('sql:items#3');
    expect(rows(file)).toEqual(before);
    await session.close();
  });
});

describe('staged sql commits in one transaction', () => {
  it('a row that cannot be written leaves every row of the changeset as it was (CHANGESET_FAILED)', async () => {
    const file = path.join(base, 'tx.db');
    const d = new Database(file);
    d.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER); INSERT INTO items VALUES (1, 1), (2, 2)");
    d.close();
    const sql = createSql({ file, tables: ['items'] });
    const session = new StagingSession('run-tx');
    await call(sql.staged(session), 'execute', { sql: 'UPDATE items SET qty = qty * 10 WHERE id = 1' });
    await call(sql.staged(session), 'execute', { sql: 'UPDATE items SET qty = qty * 10 WHERE id = 2' });
    // After staging, the database starts refusing row 2 (a trigger the run never saw).
    const d2 = new Database(file);
    d2.exec("CREATE TRIGGER no_two BEFORE INSERT ON items WHEN NEW.id = 2 BEGIN SELECT RAISE(ABORT, 'row 2 is frozen'); END");
    d2.close();
    const outcome = await commitChangeset({ instances: new Map<string, CapabilityInstance>([['sql', sql]]) }, 'run-tx', undefined, { effects: session.effects });
    expect(outcome).toMatchObject({ ok: false, error: { code: 'CHANGESET_FAILED' } });
    const d3 = new Database(file, { readonly: true });
    expect(d3.prepare('SELECT id, qty FROM items ORDER BY id').all()).toEqual([{ id: 1, qty: 1 }, { id: 2, qty: 2 }]);
    d3.close();
    await session.close();
  });
});

describe('staged http.send against a loopback server', () => {
  it('is sent only at the commit, once', async () => {
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen.push(`${req.method} ${req.url} ${body}`);
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const api = createHttp({ origins: [origin], methods: ['GET', 'POST'], allowPrivateNetwork: true });
      const session = new StagingSession('run-http');
      expect(await call(api.staged(session), 'send', { url: `${origin}/hook`, method: 'POST', body: 'hi' })).toMatchObject({ status: 202 });
      expect(seen).toEqual([]);
      const outcome = await commitChangeset({ instances: new Map<string, CapabilityInstance>([['http', api]]) }, 'run-http', undefined, { effects: session.effects });
      expect(outcome).toMatchObject({ ok: true, result: { failed: 0, effects: [{ seq: 0, ok: true, result: { status: 200, body: 'ok' } }] } });
      expect(seen).toEqual(['POST /hook hi']);
    } finally {
      server.close();
    }
  });
});
