/**
 * The mcp kind's accepted tool versions in a fleet's PostgreSQL store (documents, schema v3), as
 * two hosts keep them: the first start records what it trusts once for the fleet; a rug pull seen
 * by one host is published there; an operator accepts it through the other host, and the running
 * capability on the first host offers the tool again. Two acceptances of two tools made at once
 * through two hosts both land (compare-and-set on the document). A corrupt document stops the
 * start instead of re-trusting every tool.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptPendingTool, documentApprovals, type FileApprovals, STORE_PREFIX } from '../../capabilities/mcp/approvals-file.js';
import { startMcp } from '../../capabilities/mcp/index.js';
import { storeDocuments } from '../../host/store/documents.js';
import { openPgStore } from '../../host/store/pg-store.js';
import type { Store } from '../../host/store/store.js';
import { call, errorOf } from '../capabilities/helpers.js';
import { pgAvailable, type PgServer, startPostgres } from '../helpers/postgres.js';
import { waitUntil } from './helpers/wait.js';

const SERVER = { command: process.execPath, args: [path.resolve('test/capabilities/fixtures/misbehaving-mcp-server.mjs')] };
const LIMITS = { approvalsPollMs: 50, callTimeoutMs: 5000 };

let server: PgServer;
const stores: Store[] = [];
beforeAll(async () => {
  if (pgAvailable) server = await startPostgres();
});
afterAll(async () => {
  for (const s of stores.splice(0)) await s.close();
  await server?.stop();
});

/** What a host on that database gives its mcp capabilities (each host its own writer id). */
async function host(url: string, writer: string): Promise<FileApprovals> {
  const store = await openPgStore(url);
  stores.push(store);
  return documentApprovals(storeDocuments(store, Date.now, writer), STORE_PREFIX, 'the host store');
}

describe.skipIf(!pgAvailable)('mcp tool approvals in a fleet\'s store', () => {
  it('recorded once for the fleet; a rug pull seen by the hosts is accepted through either and offered again on both; two acceptances at once both land', async () => {
    const url = await server.createDatabase();
    const [a, b] = [await host(url, 'host-a'), await host(url, 'host-b')];
    const capA = await startMcp('tools', { server: SERVER, limits: LIMITS }, { approvals: a });
    const capB = await startMcp('tools', { server: SERVER, limits: LIMITS }, { approvals: b });
    try {
      const first = await b.load('tools');
      expect(first?.tools.echo).toMatchObject({ acceptedBy: 'host', reason: 'first start (trust on first use)' });
      expect(await b.bindings()).toEqual(['tools']);

      // The server changes under the fleet (each host here runs its own copy of it): host A sees it first.
      const inst = capA.create({});
      const instB = capB.create({});
      await call(inst, 'rugPull', {});
      const pending = await waitUntil(async () => {
        const p = await b.loadPending('tools');
        return p.length === 2 ? p : undefined;
      }, 'the rug pull published in the store');
      expect((await errorOf(call(inst, 'echo', { text: 'x' }))).code).toBe('MCP_TOOL_WITHDRAWN');
      // Host B, whose server has not changed yet, publishes nothing pending; that does not hide host A's.
      await new Promise((r) => setTimeout(r, 200));
      expect(await a.loadPending('tools')).toHaveLength(2);
      await call(instB, 'rugPull', {});
      await waitUntil(
        () => call(instB, 'echo', { text: 'x' }).then(() => undefined, (error: { code?: string }) => (error.code === 'MCP_TOOL_WITHDRAWN' ? true : undefined)),
        'host B withdraws echo too',
      );
      // Both hosts saw the same change: one pending change per tool, not two.
      expect((await a.loadPending('tools')).map((p) => p.fingerprint).sort()).toEqual(pending.map((p) => p.fingerprint).sort());

      // Both pending tools accepted at the same moment, one through each host: both land.
      await Promise.all(pending.map((p, i) => acceptPendingTool(i === 0 ? a : b, { capability: 'tools', tool: p.tool, fingerprint: p.fingerprint, by: i === 0 ? 'erin' : 'frank', reason: 'read it', at: 1 })));
      const stored = await a.load('tools');
      for (const p of pending) expect(stored?.tools[p.tool]?.fingerprint).toBe(p.fingerprint);
      // Host A's running capability re-reads the store and offers echo again.
      await waitUntil(() => capA.toolbox.entry('echo')?.status === 'active', 'echo offered again on host A');
      await waitUntil(() => capB.toolbox.entry('echo')?.status === 'active', 'echo offered again on host B');
      await expect(call(inst, 'echo', { text: 'y' })).resolves.toBe('echo: y');
      await expect(call(instB, 'echo', { text: 'z' })).resolves.toBe('echo: z');
    } finally {
      await capA.close();
      await capB.close();
    }
  }, 60_000);

  it('a corrupt document in the store stops the start instead of re-trusting every tool', async () => {
    const url = await server.createDatabase();
    const store = await openPgStore(url);
    stores.push(store);
    await store.putDocument(`${STORE_PREFIX}tools.accepted`, '{ not json', 1);
    const err = await errorOf(startMcp('tools', { server: SERVER, limits: LIMITS }, { approvals: documentApprovals(storeDocuments(store), STORE_PREFIX, 'the host store') }));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toMatch(/the host store: mcp-tools\/tools\.accepted is not valid JSON/);
  });
});
