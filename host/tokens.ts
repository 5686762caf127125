/**
 * Operator tokens: `ctd_` + 32 random bytes in base64url (43 characters). The token is shown once
 * when created; the store keeps only its sha256 (hex), so a copy of the database cannot be used to
 * log in.
 *
 * Defends against: token guessing (256 bits), timing probes (the looked-up record's hash is
 * compared again with `crypto.timingSafeEqual` over the hash bytes; the lookup itself is by the
 * hash of the presented token, so its timing depends on nothing secret), revoked tokens (refused),
 * malformed input (refused before touching the store), two active operators with the same name
 * (the store's unique index on active names).
 *
 * Fails: `verify` answers `undefined` for anything that is not a valid, active token — never
 * throws for bad input (a store failure still throws). `createToken` throws `INVALID_ARGUMENT` for
 * a bad name or role, or a name already in use by an active token.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ContainedError } from '../runtime/errors.js';
import { type Operator, type Role, roleSchema, type TokenRecord } from './model.js';
import type { Store } from './store/store.js';

export const TOKEN_PREFIX = 'ctd_';
/** Random bytes in a token. */
export const TOKEN_BYTES = 32;
const TOKEN_PATTERN = /^ctd_[A-Za-z0-9_-]{43}$/;
/** Operator names: letters, digits, `.`, `_`, `-`, `@`; 1–64 characters, starting with a letter or digit. */
export const TOKEN_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/** sha256 of the token text, lower-case hex — what the store keeps. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** A fresh token (not stored anywhere). */
export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(TOKEN_BYTES).toString('base64url');
}

/** Cheap shape check before any lookup. */
export function looksLikeToken(value: unknown): value is string {
  return typeof value === 'string' && TOKEN_PATTERN.test(value);
}

export function newTokenId(): string {
  return `tok_${randomBytes(8).toString('hex')}`;
}

export interface CreateTokenInput {
  name: string;
  role: Role;
  createdBy: string;
}

/** Create and store a token; the returned `token` is the only copy there will ever be. */
export async function createToken(
  input: CreateTokenInput,
  store: Store,
  options: { now?: () => number; id?: string } = {},
): Promise<{ token: string; record: TokenRecord }> {
  if (typeof input.name !== 'string' || !TOKEN_NAME_PATTERN.test(input.name)) {
    throw new ContainedError('INVALID_ARGUMENT', `token name "${String(input.name).slice(0, 80)}": 1-64 letters, digits, ".", "_", "-" or "@", starting with a letter or digit`, {
      data: { field: 'name' },
    });
  }
  if (!roleSchema.safeParse(input.role).success) {
    throw new ContainedError('INVALID_ARGUMENT', `role "${String(input.role).slice(0, 40)}": one of ${roleSchema.options.join(', ')}`, { data: { field: 'role' } });
  }
  if (typeof input.createdBy !== 'string' || input.createdBy === '') throw new ContainedError('INVALID_ARGUMENT', 'a token needs its creator', { data: { field: 'createdBy' } });
  const active = (await store.listTokens()).find((t) => t.name === input.name && t.revokedAt === undefined);
  if (active) {
    throw new ContainedError('INVALID_ARGUMENT', `an active token named "${input.name}" exists (${active.id}); revoke it first or choose another name`, {
      data: { field: 'name', reason: 'duplicate' },
    });
  }
  const token = generateToken();
  const record: TokenRecord = {
    id: options.id ?? newTokenId(),
    name: input.name,
    role: input.role,
    hash: hashToken(token),
    createdAt: (options.now ?? Date.now)(),
    createdBy: input.createdBy,
  };
  // The store's unique index on active names closes the race between the check above and here.
  await store.insertToken(record);
  return { token, record };
}

/** Authenticates a bearer token (constant-time comparison of hashes inside). */
export interface TokenVerifier {
  verify(token: string): Promise<Operator | undefined>;
}

/** Tokens the verifier remembers before it starts again (a bound on memory, not a rule). */
const VERIFIED_TOKENS_MAX = 1_000;

/**
 * Verifies bearer tokens against the store: the operator for an active token, else undefined.
 *
 * With a store that has `changeCounter`, a token found active is remembered with the counter read
 * before it was looked up, and answered from memory while the counter has not moved (one small
 * read instead of a sha256, a lookup and a schema check per request). Every token created or
 * revoked, by this process or another (`contained token revoke`), moves the counter and empties
 * the memory, so a revocation takes effect at the next request, as without it. Refusals are never
 * remembered.
 */
export function createTokenVerifier(store: Pick<Store, 'findTokenByHash'> & Partial<Pick<Store, 'changeCounter'>>): TokenVerifier {
  const verified = new Map<string, Operator>();
  let version: number | undefined;
  const counter = store.changeCounter?.bind(store);

  async function lookup(token: string): Promise<Operator | undefined> {
    const presented = Buffer.from(hashToken(token), 'hex');
    const record = await store.findTokenByHash(presented.toString('hex'));
    if (!record) return undefined;
    const stored = Buffer.from(record.hash, 'hex');
    // Constant-time over the hash bytes; lengths are equal for any well-formed record.
    if (stored.length !== presented.length || !timingSafeEqual(stored, presented)) return undefined;
    if (record.revokedAt !== undefined) return undefined;
    return { tokenId: record.id, name: record.name, role: record.role };
  }

  return {
    async verify(token: string): Promise<Operator | undefined> {
      if (!looksLikeToken(token)) return undefined;
      // Read before the lookup: a revocation committed after this read moves the counter past it.
      const now = counter ? await counter() : undefined;
      if (now !== undefined && now !== version) {
        verified.clear();
        version = now;
      }
      const known = now === undefined ? undefined : verified.get(token);
      if (known) return { ...known };
      const operator = await lookup(token);
      if (operator && now !== undefined && now === version) {
        if (verified.size >= VERIFIED_TOKENS_MAX) verified.clear();
        verified.set(token, { ...operator });
      }
      return operator;
    },
  };
}
