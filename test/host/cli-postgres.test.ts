/**
 * The CLI on a fleet's PostgreSQL store: `contained token`, `agent` and `grant` with the config's
 * `store` or `CONTAINED_STORE` read and write the shared database (a host of the fleet sees the
 * token at once), and an unreachable database is one typed line, not a stack.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../host/cli/main.js';
import { openPgStore } from '../../host/store/pg-store.js';
import { createTokenVerifier } from '../../host/tokens.js';
import { pgAvailable, type PgServer, startPostgres } from '../helpers/postgres.js';
import { DIGEST } from './store-fixtures.js';

let pg: PgServer;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'contained-cli-pg-'));
  if (pgAvailable) pg = await startPostgres();
});
afterAll(async () => {
  await pg?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function cli(env: Record<string, string>, ...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  let stdout = '';
  let stderr = '';
  try {
    const code = await main(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
    return { code, stdout, stderr };
  } finally {
    for (const key of Object.keys(env)) if (saved[key] === undefined) delete process.env[key];
    Object.assign(process.env, saved);
  }
}

describe.skipIf(!pgAvailable)('the CLI on a PostgreSQL store', () => {
  it('token, agent and grant commands write the shared database (CONTAINED_STORE or the config)', async () => {
    const db = await pg.createDatabase();
    const env = { CONTAINED_STORE: db };
    const created = await cli(env, 'token', 'create', '--name', 'alice', '--role', 'approver', '--data-dir', path.join(dir, 'a'), '--by', 'root');
    expect(created.code, created.stderr).toBe(0);
    const token = created.stdout.trim();
    // Another host's view of the same database knows the operator at once.
    const store = await openPgStore(db);
    try {
      expect(await createTokenVerifier(store).verify(token)).toMatchObject({ name: 'alice', role: 'approver' });
      const listed = await cli(env, 'token', 'list', '--json', '--data-dir', path.join(dir, 'b'));
      expect(JSON.parse(listed.stdout)).toEqual([expect.objectContaining({ name: 'alice', role: 'approver' })]);
      expect((await cli(env, 'agent', 'create', '--name', 'bot', '--subject', DIGEST, '--data-dir', path.join(dir, 'a'), '--by', 'root')).code).toBe(0);
      expect((await store.listAgents()).map((a) => a.name)).toEqual(['bot']);

      // The config's `store` does the same without the variable.
      const config = path.join(dir, 'contained.config.json');
      writeFileSync(config, JSON.stringify({ dataDir: path.join(dir, 'c'), store: db, capabilities: { notes: { kind: 'fs', scope: { root: dir } } } }));
      const grant = await cli({}, 'grant', 'add', '--config', config, '--subject', DIGEST, '--capability', 'notes', '--methods', 'read', '--mode', 'contained', '--reason', 'reads notes', '--by', 'alice');
      expect(grant.code, grant.stderr).toBe(0);
      expect(await store.listGrants()).toEqual([expect.objectContaining({ capability: 'notes', methods: ['read'], createdBy: 'alice' })]);
    } finally {
      await store.close();
    }
  });

  it('an unreachable database is STORE_UNAVAILABLE on one line (exit 1), with the password redacted', async () => {
    const result = await cli({ CONTAINED_STORE: 'postgres://contained:hunter2@127.0.0.1:1/nowhere' }, 'token', 'list', '--data-dir', path.join(dir, 'd'));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^STORE_UNAVAILABLE: /);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).not.toContain('hunter2');
  });
});
