/** Which store a host or CLI command uses: the config's `store`, `CONTAINED_STORE` over it, SQLite by default. */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultStorePath } from '../../host/store/sqlite-store.js';
import { localStateFile, redactUrl, storeLocation } from '../../host/store/store-location.js';

describe('store location', () => {
  const dataDir = '/srv/contained';

  it('is the SQLite file in the data folder when nothing is configured', () => {
    expect(storeLocation({ dataDir }, {})).toEqual({ kind: 'sqlite', file: defaultStorePath(dataDir) });
    expect(localStateFile({ dataDir }, {})).toBe(defaultStorePath(dataDir));
  });

  it('takes a file path relative to the data folder, or a postgres:// URL', () => {
    expect(storeLocation({ dataDir, store: 'state/host.db' }, {})).toEqual({ kind: 'sqlite', file: path.join(dataDir, 'state/host.db') });
    expect(storeLocation({ dataDir, store: 'postgresql://u@db:5432/c' }, {})).toEqual({ kind: 'postgres', url: 'postgresql://u@db:5432/c' });
    // With PostgreSQL the host's own file (trust ledger, passkeys, outbox) stays in the data folder.
    expect(localStateFile({ dataDir, store: 'postgres://u@db/c' }, {})).toBe(defaultStorePath(dataDir));
  });

  it('CONTAINED_STORE overrides the config, and a malformed URL there is INVALID_ARGUMENT', () => {
    expect(storeLocation({ dataDir, store: 'postgres://u@a/c' }, { CONTAINED_STORE: 'postgres://u@b/c' })).toEqual({ kind: 'postgres', url: 'postgres://u@b/c' });
    expect(storeLocation({ dataDir, store: 'postgres://u@a/c' }, { CONTAINED_STORE: '  ' })).toEqual({ kind: 'postgres', url: 'postgres://u@a/c' });
    expect(() => storeLocation({ dataDir }, { CONTAINED_STORE: 'postgres://[x' })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('redacts a password in a URL shown in logs', () => {
    expect(redactUrl('postgres://u:hunter2@db:5432/c')).toBe('postgres://u:***@db:5432/c');
  });
});
