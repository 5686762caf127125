/**
 * Console sessions on an injected clock, kept in a real SQLite store: idle and absolute expiry at
 * their boundaries, sweeping, the session bound, single-use login codes, the CSRF comparison
 * against lookalikes, and sessions that outlive the store object (a restarted host).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkCsrf, createSessionStore, type SessionOptions, sha256 } from '../../host/console/sessions.js';
import { openSqliteStore } from '../../host/store/sqlite-store.js';
import type { Store } from '../../host/store/store.js';

const alice = { tokenId: 'tok_a', name: 'alice', role: 'approver' as const };

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

let dir: string;
const opened: Store[] = [];
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'contained-sessions-'));
});
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

async function records(): Promise<Store> {
  const s = await openSqliteStore(path.join(dir, 'contained.db'));
  opened.push(s);
  return s;
}

async function sessions(options: SessionOptions = {}) {
  return createSessionStore(await records(), options);
}

describe('console sessions', () => {
  it('end after idleMs without a request, and each request restarts the idle timer', async () => {
    const c = clock();
    const r = await records();
    const store = createSessionStore(r, { idleMs: 1000, maxAgeMs: 10_000, now: c.now });
    const { cookie, session } = await store.create(alice, 'h');
    expect(session.key).toBe(sha256(cookie));
    c.advance(999);
    expect((await store.get(cookie))?.operator.name).toBe('alice');
    c.advance(999);
    expect(await store.get(cookie)).toBeDefined();
    c.advance(1000);
    expect(await store.get(cookie)).toBeUndefined();
    expect(await r.listSessions()).toHaveLength(0);
  });

  it('end maxAgeMs after login however active they are', async () => {
    const c = clock();
    const store = await sessions({ idleMs: 1000, maxAgeMs: 2500, now: c.now });
    const { cookie } = await store.create(alice, 'h');
    for (let i = 0; i < 4; i++) {
      c.advance(600);
      expect(await store.get(cookie), `at ${(i + 1) * 600} ms`).toBeDefined();
    }
    c.advance(100);
    expect(await store.get(cookie)).toBeUndefined();
  });

  it('sweep returns the expired sessions (their sockets get closed) and keeps live ones', async () => {
    const c = clock();
    const store = await sessions({ idleMs: 1000, now: c.now });
    const old = await store.create(alice, 'h');
    c.advance(600);
    const fresh = await store.create({ ...alice, name: 'bob' }, 'h2');
    c.advance(500);
    expect((await store.sweep()).map((s) => s.key)).toEqual([old.session.key]);
    expect(await store.get(fresh.cookie)).toBeDefined();
  });

  it('holds at most maxSessions, dropping the oldest', async () => {
    const c = clock();
    const store = await sessions({ maxSessions: 2, now: c.now });
    const a = await store.create(alice, 'h');
    c.advance(1);
    const b = await store.create(alice, 'h');
    c.advance(1);
    const d = await store.create(alice, 'h');
    expect(await store.get(a.cookie)).toBeUndefined();
    expect(await store.get(b.cookie)).toBeDefined();
    expect(await store.get(d.cookie)).toBeDefined();
  });

  it('refuses malformed and unknown cookies without throwing', async () => {
    const store = await sessions();
    const { cookie } = await store.create(alice, 'h');
    for (const bad of [undefined, '', 'x', `${cookie}x`, cookie.slice(1), `${cookie.slice(0, -1)}${cookie.endsWith('A') ? 'B' : 'A'}`, sha256(cookie)]) {
      expect(await store.get(bad)).toBeUndefined();
    }
  });

  it('login codes work once, and not after codeTtlMs', async () => {
    const c = clock();
    const store = await sessions({ codeTtlMs: 1000, now: c.now });
    const one = await store.issueCode(alice, 'h');
    expect(await store.redeemCode(one.code)).toEqual({ operator: alice, tokenHash: 'h' });
    expect(await store.redeemCode(one.code)).toBeUndefined();
    const two = await store.issueCode(alice, 'h');
    c.advance(1000);
    expect(await store.redeemCode(two.code)).toBeUndefined();
    expect(await store.redeemCode('not a code')).toBeUndefined();
  });

  it('a session, a login code and a destroy are seen through another store object on the same store (a restarted host, another host)', async () => {
    const first = createSessionStore(await records());
    const { cookie } = await first.create(alice, 'h');
    const { code } = await first.issueCode(alice, 'h');
    const second = createSessionStore(await records());
    const session = await second.get(cookie);
    expect(session?.operator).toEqual(alice);
    expect(await second.redeemCode(code)).toEqual({ operator: alice, tokenHash: 'h' });
    expect(await first.redeemCode(code)).toBeUndefined();
    await second.destroy(session?.key as string);
    expect(await first.get(cookie)).toBeUndefined();
  });

  it('CSRF: only the exact session token passes', async () => {
    const store = await sessions();
    const { session } = await store.create(alice, 'h');
    expect(checkCsrf(session, session.csrf)).toBe(true);
    const other = (await store.create(alice, 'h')).session;
    for (const bad of [undefined, '', session.csrf.slice(1), `${session.csrf} `, session.csrf.toUpperCase() === session.csrf ? session.csrf.toLowerCase() : session.csrf.toUpperCase(), other.csrf, [session.csrf, session.csrf]]) {
      expect(checkCsrf(session, bad as string | string[] | undefined)).toBe(false);
    }
  });

  it('refuses nonsensical limits at creation', async () => {
    const r = await records();
    expect(() => createSessionStore(r, { idleMs: 0 })).toThrow(RangeError);
    expect(() => createSessionStore(r, { maxAgeMs: Number.NaN })).toThrow(RangeError);
  });
});
