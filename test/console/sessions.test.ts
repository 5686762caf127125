/**
 * Console sessions on an injected clock: idle and absolute expiry at their boundaries, sweeping,
 * the session bound, single-use login codes, and the CSRF comparison against lookalikes.
 */
import { describe, expect, it } from 'vitest';
import { checkCsrf, createSessionStore, sha256 } from '../../host/console/sessions.js';

const alice = { tokenId: 'tok_a', name: 'alice', role: 'approver' as const };

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

describe('console sessions', () => {
  it('end after idleMs without a request, and each request restarts the idle timer', () => {
    const c = clock();
    const store = createSessionStore({ idleMs: 1000, maxAgeMs: 10_000, now: c.now });
    const { cookie, session } = store.create(alice, 'h');
    expect(session.key).toBe(sha256(cookie));
    c.advance(999);
    expect(store.get(cookie)?.operator.name).toBe('alice');
    c.advance(999);
    expect(store.get(cookie)).toBeDefined();
    c.advance(1000);
    expect(store.get(cookie)).toBeUndefined();
    expect(store.size()).toBe(0);
  });

  it('end maxAgeMs after login however active they are', () => {
    const c = clock();
    const store = createSessionStore({ idleMs: 1000, maxAgeMs: 2500, now: c.now });
    const { cookie } = store.create(alice, 'h');
    for (let i = 0; i < 4; i++) {
      c.advance(600);
      expect(store.get(cookie), `at ${(i + 1) * 600} ms`).toBeDefined();
    }
    c.advance(100);
    expect(store.get(cookie)).toBeUndefined();
  });

  it('sweep returns the expired sessions (their sockets get closed) and keeps live ones', () => {
    const c = clock();
    const store = createSessionStore({ idleMs: 1000, now: c.now });
    const old = store.create(alice, 'h');
    c.advance(600);
    const fresh = store.create({ ...alice, name: 'bob' }, 'h2');
    c.advance(500);
    expect(store.sweep().map((s) => s.key)).toEqual([old.session.key]);
    expect(store.get(fresh.cookie)).toBeDefined();
  });

  it('holds at most maxSessions, dropping the oldest', () => {
    const store = createSessionStore({ maxSessions: 2 });
    const a = store.create(alice, 'h');
    const b = store.create(alice, 'h');
    const c = store.create(alice, 'h');
    expect(store.get(a.cookie)).toBeUndefined();
    expect(store.get(b.cookie)).toBeDefined();
    expect(store.get(c.cookie)).toBeDefined();
  });

  it('refuses malformed and unknown cookies without throwing', () => {
    const store = createSessionStore();
    const { cookie } = store.create(alice, 'h');
    for (const bad of [undefined, '', 'x', `${cookie}x`, cookie.slice(1), `${cookie.slice(0, -1)}${cookie.endsWith('A') ? 'B' : 'A'}`, sha256(cookie)]) {
      expect(store.get(bad)).toBeUndefined();
    }
  });

  it('login codes work once, and not after codeTtlMs', () => {
    const c = clock();
    const store = createSessionStore({ codeTtlMs: 1000, now: c.now });
    const one = store.issueCode(alice, 'h');
    expect(store.redeemCode(one.code)).toEqual({ operator: alice, tokenHash: 'h' });
    expect(store.redeemCode(one.code)).toBeUndefined();
    const two = store.issueCode(alice, 'h');
    c.advance(1000);
    expect(store.redeemCode(two.code)).toBeUndefined();
    expect(store.redeemCode('not a code')).toBeUndefined();
  });

  it('CSRF: only the exact session token passes', () => {
    const store = createSessionStore();
    const { session } = store.create(alice, 'h');
    expect(checkCsrf(session, session.csrf)).toBe(true);
    const other = store.create(alice, 'h').session;
    for (const bad of [undefined, '', session.csrf.slice(1), `${session.csrf} `, session.csrf.toUpperCase() === session.csrf ? session.csrf.toLowerCase() : session.csrf.toUpperCase(), other.csrf, [session.csrf, session.csrf]]) {
      expect(checkCsrf(session, bad as string | string[] | undefined)).toBe(false);
    }
  });

  it('refuses nonsensical limits at creation', () => {
    expect(() => createSessionStore({ idleMs: 0 })).toThrow(RangeError);
    expect(() => createSessionStore({ maxAgeMs: Number.NaN })).toThrow(RangeError);
  });
});
