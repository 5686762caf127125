/** kv capability on a real SQLite file: namespaces, prefixes, quotas, attenuation, revocation, budgets. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createKv } from '../../capabilities/kv/index.js';
import { call, errorOf, tempDir } from './helpers.js';

describe('kv', () => {
  let dir: string;
  let cleanup: () => void;
  let file: string;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir('kv-'));
    file = path.join(dir, 'kv.sqlite');
  });
  afterEach(() => cleanup());

  it('stores JSON durably in WAL mode, and lists keys in pages', async () => {
    const kv = createKv({ file, namespace: 'agent-a' });
    expect(await call(kv, 'get', 'missing')).toBeNull();
    expect(existsSync(file)).toBe(false); // reads never create the store
    await call(kv, 'set', { key: 'k1', value: { a: [1, 'two', null, true] } });
    await call(kv, 'set', { key: 'k2', value: 2 });
    await call(kv, 'set', { key: 'x', value: 'y' });
    expect(await call(kv, 'get', 'k1')).toEqual({ a: [1, 'two', null, true] });
    // a second instance on the same file sees it (durable, not in memory)
    expect(await call(createKv({ file, namespace: 'agent-a' }), 'get', 'k2')).toBe(2);
    expect(await call(kv, 'list')).toEqual({ keys: ['k1', 'k2', 'x'], more: false });
    expect(await call(kv, 'list', { prefix: 'k', limit: 1 })).toEqual({ keys: ['k1'], more: true });
    expect(await call(kv, 'list', { prefix: 'k', after: 'k1' })).toEqual({ keys: ['k2'], more: false });
    expect(await call(kv, 'delete', 'k1')).toEqual({ deleted: true });
    expect(await call(kv, 'delete', 'k1')).toEqual({ deleted: false });
    const db = new Database(file, { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
  });

  it('keeps namespaces apart', async () => {
    const a = createKv({ file, namespace: 'a' });
    const b = createKv({ file, namespace: 'b' });
    await call(a, 'set', { key: 'k', value: 'from a' });
    expect(await call(b, 'get', 'k')).toBeNull();
    expect(await call(b, 'list')).toEqual({ keys: [], more: false });
  });

  it('refuses keys and list prefixes outside the scope prefix', async () => {
    const kv = createKv({ file, namespace: 'a', prefix: 'notes/' });
    await call(kv, 'set', { key: 'notes/1', value: 1 });
    for (const [m, a] of [
      ['get', 'other'],
      ['set', { key: 'other', value: 1 }],
      ['delete', 'note'],
      ['list', { prefix: 'x' }],
    ] as const) {
      expect((await errorOf(call(kv, m, a))).code).toBe('OUT_OF_SCOPE');
    }
    // a shorter list prefix is narrowed to the scope prefix, never widened
    await call(createKv({ file, namespace: 'a' }), 'set', { key: 'nope', value: 1 });
    expect(await call(kv, 'list', { prefix: 'no' })).toEqual({ keys: ['notes/1'], more: false });
  });

  it('enforces maxValueBytes (scope) and maxTotalBytes (QUOTA_EXCEEDED) at their boundaries', async () => {
    const kv = createKv({ file, namespace: 'a', maxValueBytes: 5, maxTotalBytes: 12 });
    await call(kv, 'set', { key: 'a', value: '123' }); // "123" is 5 bytes of JSON; entry = 1 + 5 = 6
    expect((await errorOf(call(kv, 'set', { key: 'b', value: '1234' }))).code).toBe('OUT_OF_SCOPE'); // 6 bytes
    await call(kv, 'set', { key: 'b', value: '123' }); // total 12: exactly at the quota
    const e = await errorOf(call(kv, 'set', { key: 'c', value: 1 }));
    expect(e).toMatchObject({ code: 'QUOTA_EXCEEDED', data: { quota: 'maxTotalBytes', limit: 12 } });
    await call(kv, 'set', { key: 'a', value: 1 }); // replacing shrinks: allowed
    await call(kv, 'set', { key: 'c', value: 1 }); // now fits
    expect(await call(kv, 'list')).toEqual({ keys: ['a', 'b', 'c'], more: false });
  });

  it('attenuates by prefix and read-only; never widens; revocation reaches children', async () => {
    const kv = createKv({ file, namespace: 'a', prefix: 'p/' });
    const child = kv.attenuate({ file, namespace: 'a', prefix: 'p/q/', readOnly: true });
    expect(child.scope).toMatchObject({ prefix: 'p/q/', readOnly: true });
    expect((await errorOf(call(child, 'set', { key: 'p/q/1', value: 1 }))).code).toBe('OUT_OF_SCOPE');
    expect((await errorOf(call(child, 'get', 'p/other'))).code).toBe('OUT_OF_SCOPE');
    // a shorter prefix intersects to the parent's
    expect(kv.attenuate({ file, namespace: 'a' }).scope.prefix).toBe('p/');
    expect((await errorOf(() => kv.attenuate({ file, namespace: 'b' }))).code).toBe('INVALID_SCOPE');
    expect((await errorOf(() => kv.attenuate({ file, namespace: 'a', prefix: 'z/' }))).code).toBe('INVALID_SCOPE');
    expect((await errorOf(() => kv.attenuate({ file: `${file}2`, namespace: 'a' }))).code).toBe('INVALID_SCOPE');
    kv.revoke();
    expect((await errorOf(call(child, 'get', 'p/q/1'))).code).toBe('CAPABILITY_REVOKED');
  });

  it('charges byte budgets', async () => {
    const kv = createKv({ file, namespace: 'a' }, {}, { budgets: { set: { maxBytes: 60 } } });
    await call(kv, 'set', { key: 'k', value: 'x'.repeat(20) });
    expect((await errorOf(call(kv, 'set', { key: 'k', value: 'x'.repeat(40) }))).code).toBe('BUDGET_EXCEEDED');
  });

  it('validates scope and arguments strictly', async () => {
    expect((await errorOf(() => createKv({ file: 'rel.db', namespace: 'a' }))).code).toBe('INVALID_SCOPE');
    expect((await errorOf(() => createKv({ file: path.join(dir, 'no/such/dir.db'), namespace: 'a' }))).code).toBe('INVALID_SCOPE');
    const kv = createKv({ file, namespace: 'a' });
    expect(await errorOf(() => kv.parseArgs('set', { key: 'k', value: 1, ttl: 5 }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await errorOf(() => kv.parseArgs('get', ''))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await errorOf(() => kv.parseArgs('list', { limit: 0 }))).toMatchObject({ code: 'INVALID_ARGUMENT', data: { path: ['limit'] } });
  });
});
