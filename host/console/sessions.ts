/**
 * Console sessions and one-time login codes, kept in the host's store (Store.insertSession…), so a
 * restarted host, or another host of a fleet behind the same load balancer, keeps operators logged
 * in.
 *
 * A session is created from a verified operator token and lives in an `HttpOnly; SameSite=Strict`
 * cookie holding 32 random bytes; the store keeps the sha256 of that value, so nothing stored can
 * be replayed as a cookie. Each session has its own CSRF token (32 random bytes) that the page
 * reads from `GET /console/api/session` (same-origin only) and echoes in a header on every state
 * change; `checkCsrf` compares in constant time.
 *
 * Sessions end at the first of: logout, `idleMs` without a request, `maxAgeMs` after login, or the
 * operator's token being revoked (re-checked on every request by the routes, through the store).
 * Every lookup reads the store, so a session ended on one host is ended on all. Login codes (for
 * `npm start`'s login link) are single-use (taken from the store in one transaction) and expire
 * after `codeTtlMs`. `maxSessions` bounds the live sessions: the oldest is dropped at a login past
 * it (with several hosts logging in at once, the bound can be passed by a few until the next login).
 *
 * Fails closed: an unknown, expired or malformed cookie/code is simply not a session; a store that
 * cannot be reached fails the request (STORE_UNAVAILABLE, 503), never lets it through.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Operator } from '../model.js';
import type { SessionRecord, Store } from '../store/store.js';
import { CONSOLE_CONFIG_DEFAULTS, type ConsoleConfig } from './limits.js';

/** A live console session (the store's SessionRecord). */
export type Session = SessionRecord;

/** What the sessions need of the host's store. */
export type SessionRecords = Pick<Store, 'insertSession' | 'getSession' | 'touchSession' | 'deleteSession' | 'listSessions' | 'sweepSessions' | 'insertOneTimeSecret' | 'takeOneTimeSecret'>;

export interface SessionOptions {
  /** A session unused this long ends, ms (default 30 min). */
  idleMs?: number;
  /** A session ends this long after login whatever happens, ms (default 8 h). */
  maxAgeMs?: number;
  /** Lifetime of a one-time login code, ms (default 1 h). */
  codeTtlMs?: number;
  /** Most live sessions; beyond it the oldest is dropped (default 1 000). */
  maxSessions?: number;
  now?: () => number;
}

/** The session defaults: the host config's `console.sessions` (limits.ts, the one source of these numbers). */
export const SESSION_DEFAULTS: Readonly<ConsoleConfig['sessions']> = Object.freeze({ ...CONSOLE_CONFIG_DEFAULTS.sessions });

const SECRET = /^[A-Za-z0-9_-]{43}$/;

export function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

function secret(): string {
  return randomBytes(32).toString('base64url');
}

export interface SessionStore {
  /** A new session; `cookie` is the value to set (the only copy). */
  create(operator: Operator, tokenHash: string): Promise<{ cookie: string; session: Session }>;
  /** The live session for a cookie value (refreshing its idle timer), else undefined. */
  get(cookie: string | undefined): Promise<Session | undefined>;
  destroy(key: string): Promise<Session | undefined>;
  /** Drop expired sessions and login codes; returns the sessions (so their connections can be closed). */
  sweep(): Promise<Session[]>;
  issueCode(operator: Operator, tokenHash: string): Promise<{ code: string; expiresAt: number }>;
  /** The operator a code was issued to, once; undefined if unknown, used or expired. */
  redeemCode(code: string): Promise<{ operator: Operator; tokenHash: string } | undefined>;
}

export function checkCsrf(session: Session, presented: string | string[] | undefined): boolean {
  if (typeof presented !== 'string' || !SECRET.test(presented)) return false;
  const a = Buffer.from(session.csrf);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function createSessionStore(records: SessionRecords, options: SessionOptions = {}): SessionStore {
  const o = { ...SESSION_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as Required<SessionOptions>;
  for (const key of ['idleMs', 'maxAgeMs', 'codeTtlMs', 'maxSessions'] as const) {
    // The config's schema bounds what a deployer may set; a library caller (or a test) may go lower, never to zero.
    if (!(o[key] > 0 && Number.isFinite(o[key]))) throw new RangeError(`console sessions: ${key} must be a positive number`);
  }
  const now = o.now ?? Date.now;
  const live = (s: Session, at: number): boolean => at < s.expiresAt && at - s.lastSeenAt < o.idleMs;
  const operatorOf = (op: Operator): Operator => ({ tokenId: op.tokenId, name: op.name, role: op.role });

  return {
    async create(operator, tokenHash) {
      const at = now();
      const cookie = secret();
      const session: Session = { key: sha256(cookie), operator: operatorOf(operator), tokenHash, csrf: secret(), createdAt: at, lastSeenAt: at, expiresAt: at + o.maxAgeMs };
      const existing = await records.listSessions();
      // Oldest first: drop as many as it takes to stay within maxSessions with this one.
      for (const old of existing.slice(0, Math.max(0, existing.length - o.maxSessions + 1))) await records.deleteSession(old.key);
      await records.insertSession(session);
      return { cookie, session };
    },
    async get(cookie) {
      if (cookie === undefined || !SECRET.test(cookie)) return undefined;
      const session = await records.getSession(sha256(cookie));
      if (!session) return undefined;
      const at = now();
      if (!live(session, at)) {
        await records.deleteSession(session.key);
        return undefined;
      }
      if (!(await records.touchSession(session.key, at))) return undefined;
      return { ...session, lastSeenAt: Math.max(session.lastSeenAt, at) };
    },
    destroy: (key) => records.deleteSession(key),
    async sweep() {
      const at = now();
      return records.sweepSessions(at, at - o.idleMs);
    },
    async issueCode(operator, tokenHash) {
      const code = secret();
      const expiresAt = now() + o.codeTtlMs;
      await records.insertOneTimeSecret({ kind: 'login-code', hash: sha256(code), operator: operatorOf(operator), tokenHash, expiresAt });
      return { code, expiresAt };
    },
    async redeemCode(code) {
      if (!SECRET.test(code)) return undefined;
      const entry = await records.takeOneTimeSecret('login-code', sha256(code));
      if (!entry || entry.tokenHash === undefined) return undefined;
      return entry.expiresAt > now() ? { operator: entry.operator, tokenHash: entry.tokenHash } : undefined;
    },
  };
}
