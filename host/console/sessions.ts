/**
 * Console sessions and one-time login codes, in memory (a restarted host logs everyone out).
 *
 * A session is created from a verified operator token and lives in an `HttpOnly; SameSite=Strict`
 * cookie holding 32 random bytes; the map is keyed by the sha256 of that value, so nothing in
 * memory can be replayed as a cookie. Each session has its own CSRF token (32 random bytes) that
 * the page reads from `GET /console/api/session` (same-origin only) and echoes in a header on every
 * state change; `checkCsrf` compares in constant time.
 *
 * Sessions end at the first of: logout, `idleMs` without a request, `maxAgeMs` after login, or the
 * operator's token being revoked (re-checked on every request by the routes, through the store).
 * Login codes (for `npm start`'s login link) are single-use and expire after `codeTtlMs`.
 *
 * Fails closed: an unknown, expired or malformed cookie/code is simply not a session.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Operator } from '../model.js';
import { CONSOLE_CONFIG_DEFAULTS, type ConsoleConfig } from './limits.js';

export interface Session {
  /** sha256 (hex) of the cookie value: the key, and what tags the session's WebSocket connections. */
  key: string;
  operator: Operator;
  /** sha256 (hex) of the operator token, to re-check revocation against the store. */
  tokenHash: string;
  csrf: string;
  createdAt: number;
  lastSeenAt: number;
  expiresAt: number;
}

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
  create(operator: Operator, tokenHash: string): { cookie: string; session: Session };
  /** The live session for a cookie value (refreshing its idle timer), else undefined. */
  get(cookie: string | undefined): Session | undefined;
  destroy(key: string): Session | undefined;
  /** Drop expired sessions; returns them (so their connections can be closed). */
  sweep(): Session[];
  /** End every session of a token (revoked). */
  destroyWhere(match: (session: Session) => boolean): Session[];
  issueCode(operator: Operator, tokenHash: string): { code: string; expiresAt: number };
  /** The operator a code was issued to, once; undefined if unknown, used or expired. */
  redeemCode(code: string): { operator: Operator; tokenHash: string } | undefined;
  size(): number;
}

export function checkCsrf(session: Session, presented: string | string[] | undefined): boolean {
  if (typeof presented !== 'string' || !SECRET.test(presented)) return false;
  const a = Buffer.from(session.csrf);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function createSessionStore(options: SessionOptions = {}): SessionStore {
  const o = { ...SESSION_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as Required<SessionOptions>;
  for (const key of ['idleMs', 'maxAgeMs', 'codeTtlMs', 'maxSessions'] as const) {
    // The config's schema bounds what a deployer may set; a library caller (or a test) may go lower, never to zero.
    if (!(o[key] > 0 && Number.isFinite(o[key]))) throw new RangeError(`console sessions: ${key} must be a positive number`);
  }
  const now = o.now ?? Date.now;
  const sessions = new Map<string, Session>();
  const codes = new Map<string, { operator: Operator; tokenHash: string; expiresAt: number }>();

  const live = (s: Session, at: number): boolean => at < s.expiresAt && at - s.lastSeenAt < o.idleMs;

  return {
    create(operator, tokenHash) {
      const at = now();
      const cookie = secret();
      const session: Session = { key: sha256(cookie), operator: { ...operator }, tokenHash, csrf: secret(), createdAt: at, lastSeenAt: at, expiresAt: at + o.maxAgeMs };
      if (sessions.size >= o.maxSessions) {
        const oldest = sessions.keys().next().value;
        if (oldest !== undefined) sessions.delete(oldest);
      }
      sessions.set(session.key, session);
      return { cookie, session };
    },
    get(cookie) {
      if (cookie === undefined || !SECRET.test(cookie)) return undefined;
      const session = sessions.get(sha256(cookie));
      if (!session) return undefined;
      const at = now();
      if (!live(session, at)) {
        sessions.delete(session.key);
        return undefined;
      }
      session.lastSeenAt = at;
      return session;
    },
    destroy(key) {
      const session = sessions.get(key);
      sessions.delete(key);
      return session;
    },
    sweep() {
      const at = now();
      const gone: Session[] = [];
      for (const session of sessions.values()) {
        if (!live(session, at)) {
          sessions.delete(session.key);
          gone.push(session);
        }
      }
      for (const [code, entry] of codes) if (entry.expiresAt <= at) codes.delete(code);
      return gone;
    },
    destroyWhere(match) {
      const gone = [...sessions.values()].filter(match);
      for (const s of gone) sessions.delete(s.key);
      return gone;
    },
    issueCode(operator, tokenHash) {
      const code = secret();
      const expiresAt = now() + o.codeTtlMs;
      codes.set(sha256(code), { operator: { ...operator }, tokenHash, expiresAt });
      return { code, expiresAt };
    },
    redeemCode(code) {
      if (!SECRET.test(code)) return undefined;
      const key = sha256(code);
      const entry = codes.get(key);
      if (!entry) return undefined;
      codes.delete(key);
      return entry.expiresAt > now() ? { operator: entry.operator, tokenHash: entry.tokenHash } : undefined;
    },
    size: () => sessions.size,
  };
}
