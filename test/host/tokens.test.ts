/**
 * Operator tokens: format, only the hash is stored, verification through the constant-time path,
 * and refusals (wrong, malformed, lookalike, revoked tokens; a store whose record does not match).
 */
import * as crypto from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { TokenRecord } from '../../host/model.js';
import { defaultStorePath, openSqliteStore } from '../../host/store/sqlite-store.js';
import type { Store } from '../../host/store/store.js';
import { createToken, createTokenVerifier, hashToken, looksLikeToken } from '../../host/tokens.js';
import { ContainedError } from '../../runtime/errors.js';

vi.mock('node:crypto', async (importOriginal) => {
  // eslint-disable-next-line @typescript-eslint/consistent-type-imports -- vi.mock needs the module type inline
  const original = await importOriginal<typeof import('node:crypto')>();
  return { ...original, timingSafeEqual: vi.fn(original.timingSafeEqual) };
});

let dir: string;
let file: string;
let store: Store;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'contained-tokens-'));
  file = defaultStorePath(dir);
  store = await openSqliteStore(file);
  vi.mocked(crypto.timingSafeEqual).mockClear();
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('createToken', () => {
  it('returns ctd_ + 32 random bytes (base64url) once and stores only the sha256', async () => {
    const { token, record } = await createToken({ name: 'alice', role: 'approver', createdBy: 'root' }, store, { now: () => 1_234 });
    expect(token).toMatch(/^ctd_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(token.slice(4), 'base64url')).toHaveLength(32);
    expect(record).toEqual({ id: expect.stringMatching(/^tok_[0-9a-f]{16}$/), name: 'alice', role: 'approver', hash: hashToken(token), createdAt: 1_234, createdBy: 'root' });
    expect(hashToken(token)).toBe(crypto.createHash('sha256').update(token).digest('hex'));
    expect(await store.listTokens()).toEqual([record]);
    await store.close();
    const bytes = Buffer.concat([await readFile(file), await readFile(`${file}-wal`).catch(() => Buffer.alloc(0))]);
    expect(bytes.includes(Buffer.from(token))).toBe(false);
    expect(bytes.includes(Buffer.from(token.slice(4)))).toBe(false);
    store = await openSqliteStore(file);
  });

  it('two tokens differ', async () => {
    const a = await createToken({ name: 'a', role: 'viewer', createdBy: 'root' }, store);
    const b = await createToken({ name: 'b', role: 'viewer', createdBy: 'root' }, store);
    expect(a.token).not.toBe(b.token);
  });

  it('refuses a name in use by an active token, and allows it again after revocation', async () => {
    const first = await createToken({ name: 'alice', role: 'viewer', createdBy: 'root' }, store);
    const error = await createToken({ name: 'alice', role: 'admin', createdBy: 'root' }, store).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ContainedError);
    expect((error as ContainedError).code).toBe('INVALID_ARGUMENT');
    expect((error as ContainedError).message).toContain(first.record.id);
    await store.revokeToken(first.record.id, 2_000);
    await expect(createToken({ name: 'alice', role: 'admin', createdBy: 'root' }, store)).resolves.toBeDefined();
  });

  it.each([
    ['', 'viewer'],
    ['-alice', 'viewer'],
    ['al ice', 'viewer'],
    ['a'.repeat(65), 'viewer'],
    ['alice\n', 'viewer'],
    ['alice', 'root'],
    ['alice', 'Admin'],
  ])('refuses name %j with role %j', async (name, role) => {
    const error = await createToken({ name, role: role as never, createdBy: 'root' }, store).catch((e: unknown) => e);
    expect((error as ContainedError).code).toBe('INVALID_ARGUMENT');
    expect(await store.listTokens()).toEqual([]);
  });
});

describe('TokenVerifier', () => {
  it('answers the operator for an active token, comparing the hash bytes with timingSafeEqual', async () => {
    const { token, record } = await createToken({ name: 'alice', role: 'admin', createdBy: 'root' }, store);
    const verifier = createTokenVerifier(store);
    expect(await verifier.verify(token)).toEqual({ tokenId: record.id, name: 'alice', role: 'admin' });
    const calls = vi.mocked(crypto.timingSafeEqual).mock.calls;
    expect(calls).toHaveLength(1);
    const [a, b] = calls[0] as unknown as [Buffer, Buffer];
    expect(a).toHaveLength(32);
    expect(b).toHaveLength(32);
    expect(a.toString('hex')).toBe(record.hash);
  });

  it('refuses a wrong token of the right shape, lookalikes and malformed input', async () => {
    const { token } = await createToken({ name: 'alice', role: 'admin', createdBy: 'root' }, store);
    const verifier = createTokenVerifier(store);
    const flipped = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
    const lookalikes = [
      flipped,
      `${token} `,
      ` ${token}`,
      `${token}\n`,
      token.toUpperCase(),
      `CTD_${token.slice(4)}`,
      token.slice(4),
      `Bearer ${token}`,
      hashToken(token), // the stored hash is not a token
      token.slice(0, -1),
      `${token}A`,
      '',
    ];
    for (const candidate of lookalikes) expect(await verifier.verify(candidate), JSON.stringify(candidate)).toBeUndefined();
    expect(await verifier.verify(undefined as never)).toBeUndefined();
    expect(await verifier.verify({ toString: () => token } as never)).toBeUndefined();
  });

  it('does not touch the store for malformed tokens', async () => {
    const findTokenByHash = vi.fn();
    const verifier = createTokenVerifier({ findTokenByHash } as unknown as Store);
    expect(await verifier.verify('not-a-token')).toBeUndefined();
    expect(findTokenByHash).not.toHaveBeenCalled();
    expect(looksLikeToken(`ctd_${'A'.repeat(43)}`)).toBe(true);
  });

  it('refuses a revoked token', async () => {
    const { token, record } = await createToken({ name: 'alice', role: 'admin', createdBy: 'root' }, store);
    const verifier = createTokenVerifier(store);
    expect(await verifier.verify(token)).toBeDefined();
    await store.revokeToken(record.id, Date.now());
    expect(await verifier.verify(token)).toBeUndefined();
  });

  it('refuses when the record the store returns does not carry the presented hash', async () => {
    const token = `ctd_${'A'.repeat(43)}`;
    const wrong: TokenRecord = { id: 't', name: 'mallory', role: 'admin', hash: 'f'.repeat(64), createdAt: 1, createdBy: 'x' };
    const verifier = createTokenVerifier({ findTokenByHash: async () => wrong } as unknown as Store);
    expect(await verifier.verify(token)).toBeUndefined();
    expect(crypto.timingSafeEqual).toHaveBeenCalledTimes(1);
  });
});
