/**
 * The API's per-request checks answered from memory, with the same answers as the store and the
 * file system: a verified token is remembered only while no token was created or revoked anywhere
 * (the store's change counter), so a revocation by another connection or process refuses the very
 * next request; refusals are never remembered; an image upload, once seen, is remembered (uploads
 * cannot be undone), a "not uploaded" never is.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { rememberingUploads } from '../../host/api/access.js';
import { createImageClients } from '../../host/runs/image-store.js';
import { openSqliteStore } from '../../host/store/sqlite-store.js';
import type { Store } from '../../host/store/store.js';
import { createToken, createTokenVerifier, generateToken } from '../../host/tokens.js';

let dir: string;
let store: Store;
let other: Store;
let lookups: number;

beforeEach(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'api-auth-cache-'));
  store = await openSqliteStore(path.join(dir, 'contained.db'));
  other = await openSqliteStore(path.join(dir, 'contained.db'));
  lookups = 0;
});
afterEach(async () => {
  await store.close();
  await other.close();
  rmSync(dir, { recursive: true, force: true });
});

function countingVerifier(s: Store): ReturnType<typeof createTokenVerifier> {
  return createTokenVerifier({
    findTokenByHash: (hash) => {
      lookups++;
      return s.findTokenByHash(hash);
    },
    changeCounter: () => s.changeCounter(),
  });
}

describe('token verifier: remembered while no token changes', () => {
  it('answers a verified token from memory', async () => {
    const { token, record } = await createToken({ name: 'ci', role: 'platform', createdBy: 'root' }, store);
    const verifier = countingVerifier(store);
    expect(await verifier.verify(token)).toEqual({ tokenId: record.id, name: 'ci', role: 'platform' });
    for (let i = 0; i < 10; i++) expect(await verifier.verify(token)).toEqual({ tokenId: record.id, name: 'ci', role: 'platform' });
    expect(lookups).toBe(1);
  });

  it('a token revoked by another connection (another process) is refused at the next request', async () => {
    const { token, record } = await createToken({ name: 'ci', role: 'platform', createdBy: 'root' }, store);
    const verifier = countingVerifier(store);
    expect(await verifier.verify(token)).toBeDefined();
    await other.revokeToken(record.id, 5);
    expect(await verifier.verify(token)).toBeUndefined();
    expect(await verifier.verify(token)).toBeUndefined();
  });

  it('a token revoked through the same store is refused at the next request', async () => {
    const { token, record } = await createToken({ name: 'ci', role: 'admin', createdBy: 'root' }, store);
    const verifier = countingVerifier(store);
    expect(await verifier.verify(token)).toBeDefined();
    await store.revokeToken(record.id, 5);
    expect(await verifier.verify(token)).toBeUndefined();
  });

  it('refusals are not remembered; another token does not ride on a remembered one', async () => {
    const verifier = countingVerifier(store);
    const unknown = generateToken();
    expect(await verifier.verify(unknown)).toBeUndefined();
    expect(await verifier.verify(unknown)).toBeUndefined();
    expect(lookups).toBe(2);
    const { token } = await createToken({ name: 'a', role: 'platform', createdBy: 'root' }, store);
    expect(await verifier.verify(token)).toMatchObject({ name: 'a' });
    expect(await verifier.verify(generateToken())).toBeUndefined();
    expect(await verifier.verify(`${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`)).toBeUndefined();
  });

  it('a caller that changes the answer does not change what is remembered', async () => {
    const { token } = await createToken({ name: 'ci', role: 'platform', createdBy: 'root' }, store);
    const verifier = countingVerifier(store);
    const first = await verifier.verify(token);
    if (first) first.role = 'admin';
    expect(await verifier.verify(token)).toMatchObject({ role: 'platform' });
  });
});

describe('image uploads: remembered once seen', () => {
  it('answers exactly as the store: no until uploaded (never remembered), yes after', async () => {
    const digest = `sha256:${'ab'.repeat(32)}`;
    const rows = createImageClients(store, dir);
    const clients = rememberingUploads(rows);
    expect(await clients.has(digest, 'ci')).toBe(false);
    await createImageClients(other, dir).add(digest, 'ci'); // by another store object (another host of the fleet)
    expect(await clients.has(digest, 'ci')).toBe(true);
    expect(await clients.has(digest, 'other')).toBe(false);
    await clients.add(digest, 'other');
    expect(await clients.has(digest, 'other')).toBe(true);
    expect(await createImageClients(other, dir).has(digest, 'other')).toBe(true);
  });

  it('still finds an upload recorded as a marker file by an earlier version', async () => {
    const digest = `sha256:${'cd'.repeat(32)}`;
    const markerDir = path.join(dir, 'images', 'clients', 'cd'.repeat(32));
    mkdirSync(markerDir, { recursive: true });
    writeFileSync(path.join(markerDir, createHash('sha256').update('ci', 'utf8').digest('hex')), '');
    expect(await createImageClients(store, dir).has(digest, 'ci')).toBe(true);
    expect(await createImageClients(store, dir).has(digest, 'other')).toBe(false);
  });
});
