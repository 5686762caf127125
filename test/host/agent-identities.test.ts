/**
 * Agent identities (host/agents.ts): `contained agent create|list|revoke` through the real
 * dispatcher against a real SQLite file; the token is shown once, stored as its sha256, verified
 * in constant time, refused once revoked, and never confused with an operator token.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentRunSubject, createAgentVerifier, findActiveAgent, looksLikeAgentToken } from '../../host/agents.js';
import { main } from '../../host/cli/main.js';
import { defaultStorePath, openSqliteStore } from '../../host/store/sqlite-store.js';
import { DIGEST, KEY } from './store-fixtures.js';

let dir: string;
let config: string;

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
  return { code, stdout, stderr };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'contained-agents-'));
  config = path.join(dir, 'contained.config.json');
  await writeFile(config, JSON.stringify({ dataDir: './state' }));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('contained agent', () => {
  it('creates an agent, prints its token once, stores only the hash; verifies, lists, revokes', async () => {
    const created = await cli('agent', 'create', '--config', config, '--name', 'claude-desktop', '--subject', DIGEST, '--by', 'ada');
    expect(created.code).toBe(0);
    const token = created.stdout.trim();
    expect(looksLikeAgentToken(token)).toBe(true);
    expect(created.stderr).toMatch(/only time the agent token is shown/);

    const store = await openSqliteStore(defaultStorePath(path.join(dir, 'state')));
    try {
      const [record] = await store.listAgents();
      expect(record).toMatchObject({ name: 'claude-desktop', subject: DIGEST, createdBy: 'ada' });
      expect(JSON.stringify(record)).not.toContain(token);
      const verifier = createAgentVerifier(store);
      expect(await verifier.verify(token)).toMatchObject({ name: 'claude-desktop', subject: { digest: DIGEST } });
      expect(await verifier.verify(`${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`)).toBeUndefined();
      expect(await verifier.verify('ctd_' + token.slice(4))).toBeUndefined();
      expect(await verifier.verify('')).toBeUndefined();
      expect(await findActiveAgent(store, 'claude-desktop')).toMatchObject({ subject: { digest: DIGEST } });
    } finally {
      await store.close();
    }

    const list = await cli('agent', 'list', '--config', config, '--json');
    expect(list.code).toBe(0);
    expect(list.stdout).not.toContain('hash');
    expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({ name: 'claude-desktop', subject: DIGEST })]);

    const dup = await cli('agent', 'create', '--config', config, '--name', 'claude-desktop', '--subject', DIGEST);
    expect(dup.code).toBe(2);
    expect(dup.stderr).toMatch(/^INVALID_ARGUMENT: an active agent named "claude-desktop" exists/);

    const revoked = await cli('agent', 'revoke', 'claude-desktop', '--config', config);
    expect(revoked.code).toBe(0);
    const again = await openSqliteStore(defaultStorePath(path.join(dir, 'state')));
    try {
      expect(await createAgentVerifier(again).verify(token)).toBeUndefined();
      expect(await findActiveAgent(again, 'claude-desktop')).toBeUndefined();
    } finally {
      await again.close();
    }
    expect((await cli('agent', 'revoke', 'claude-desktop', '--config', config)).code).toBe(1);
  });

  it('takes a signed-name subject; refuses a bad name or subject', async () => {
    const signed = await cli('agent', 'create', '--config', config, '--name', 'cursor', '--subject', `report-digest@${KEY}`, '--json');
    expect(signed.code).toBe(0);
    expect(JSON.parse(signed.stdout)).toMatchObject({ name: 'cursor', subject: `report-digest@${KEY}`, token: expect.stringMatching(/^cta_/) });
    expect(agentRunSubject({ name: 'report-digest', signer: KEY })).toEqual({ digest: undefined, name: 'report-digest', signers: [KEY] });
    expect((await cli('agent', 'create', '--config', config, '--name', 'bad name', '--subject', DIGEST)).code).toBe(2);
    const badSubject = await cli('agent', 'create', '--config', config, '--name', 'x', '--subject', 'not-a-subject');
    expect(badSubject.code).toBe(2);
    expect(badSubject.stderr).toMatch(/^INVALID_ARGUMENT: subject/);
    expect((await cli('agent', 'create', '--config', config, '--name', 'y')).code).toBe(2);
  });
});

describe('agents over the HTTP API (admins)', () => {
  it('creates (token once), lists (no hashes) and revokes agents; other roles and agent tokens are refused', async () => {
    const { startHost } = await import('../../host/host.js');
    const { loadHostConfig } = await import('../../host/config.js');
    const { createToken } = await import('../../host/tokens.js');
    const pino = (await import('pino')).default;
    const file = path.join(dir, 'api.config.json');
    await writeFile(file, JSON.stringify({ dataDir: './api-state', listen: { host: '127.0.0.1', port: 0 } }));
    const host = await startHost({ config: await loadHostConfig(file), isolation: 'in-process', logger: pino({ level: 'silent' }) });
    try {
      const admin = (await createToken({ name: 'root', role: 'admin', createdBy: 'test' }, host.store)).token;
      const approver = (await createToken({ name: 'al', role: 'approver', createdBy: 'test' }, host.store)).token;
      const call = (method: string, p: string, token?: string, body?: unknown): Promise<Response> =>
        fetch(`${host.url}${p}`, { method, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });

      expect((await call('GET', '/v1/agents')).status).toBe(401);
      expect((await call('GET', '/v1/agents', approver)).status).toBe(403);
      const created = await call('POST', '/v1/agents', admin, { name: 'web-agent', subject: DIGEST });
      expect(created.status).toBe(201);
      const body = (await created.json()) as { token: string; createdBy: string; hash?: string };
      expect(looksLikeAgentToken(body.token)).toBe(true);
      expect(body).toMatchObject({ name: 'web-agent', subject: DIGEST, createdBy: 'root' });
      expect(body.hash).toBeUndefined();
      expect((await call('GET', '/v1/agents', body.token)).status).toBe(401);
      expect((await call('POST', '/v1/agents', admin, { name: 'web-agent', subject: DIGEST })).status).toBe(400);
      expect((await call('POST', '/v1/agents', admin, { name: 'x', subject: 'nope' })).status).toBe(400);
      const listed = (await (await call('GET', '/v1/agents', admin)).json()) as { agents: Array<Record<string, unknown>> };
      expect(listed.agents).toEqual([expect.objectContaining({ name: 'web-agent' })]);
      expect(JSON.stringify(listed)).not.toMatch(/hash|cta_/);
      expect(await createAgentVerifier(host.store).verify(body.token)).toMatchObject({ name: 'web-agent' });
      const revoked = await call('DELETE', '/v1/agents/web-agent', admin);
      expect(revoked.status).toBe(200);
      expect(await revoked.json()).toMatchObject({ name: 'web-agent', revokedAt: expect.any(Number) });
      expect(await createAgentVerifier(host.store).verify(body.token)).toBeUndefined();
      expect((await call('DELETE', '/v1/agents/web-agent', admin)).status).toBe(404);
    } finally {
      await host.close();
    }
  });
});
