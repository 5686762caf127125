/**
 * Withdrawals are audited: when the running host withdraws a changed tool of an mcp capability
 * (`mcp.tool.withdrawn`) or holds a new one (`mcp.tool.held`), one record per capability, tool and
 * fingerprint — not one per poll (the capability re-publishes what is pending every
 * approvalsPollMs), not again after a restart that finds the same change, and a new record when
 * the tool changes once more. A real host, a real MCP server over stdio whose tool list changes.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileApprovals } from '../../capabilities/mcp/approvals-file.js';
import { openAuditReader, queryAudit } from '../../host/audit/query.js';
import type { AuditRecord } from '../../host/audit/record.js';
import { type Host, startHost } from '../../host/host.js';
import { defaultStorePath } from '../../host/store/sqlite-store.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';
import { waitUntil } from './helpers/webhook-receiver.js';

const SERVER = path.resolve('test/capabilities/fixtures/changing-mcp-server.mjs');
const TOOL = { capability: 'bad', kind: 'mcp', scope: {}, methods: ['rugPull'], why: 'test' };

describe('tool changes of an mcp capability are audited once per fingerprint', () => {
  let dir: string;
  let fx: Fixture | undefined;
  let again: Host | undefined;
  const start = async (): Promise<Fixture> => {
    const server = { command: process.execPath, args: [SERVER], env: { MCP_TEST_VERSION_FILE: path.join(dir, 'mcp-version') } };
    return startFixture({ capabilities: { bad: { kind: 'mcp', host: { server, limits: { approvalsPollMs: 100 } } } } }, dir);
  };
  const records = (): { withdrawn: AuditRecord[]; held: AuditRecord[] } => {
    const db = openAuditReader(defaultStorePath(dir));
    try {
      return { withdrawn: queryAudit(db, { type: 'mcp.tool.withdrawn' }), held: queryAudit(db, { type: 'mcp.tool.held' }) };
    } finally {
      db.close();
    }
  };
  const pending = () => fileApprovals(path.join(dir, 'mcp-tools')).loadPending('bad');
  async function rugPull(host: Fixture, n: number): Promise<void> {
    const image = host.image(`rug-${n}`, 'export default async (input, caps) => caps.bad.rugPull({})', [TOOL]);
    await host.grant(image.digest, { capability: 'bad', methods: ['rugPull'], mode: 'contained' });
    const { runId } = await host.host.submit({ image: image.bytes, input: null });
    expect(await host.host.waitForRun(runId)).toMatchObject({ status: 'ok', value: `version ${n + 1}` });
  }

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'contained-mcp-audit-'));
    fx = await start();
  });
  afterAll(async () => {
    await fx?.close();
    await again?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a first start audits nothing; a rug pull: one withdrawn (echo) and one held (exfiltrate) record, however many polls follow', async () => {
    expect(records()).toEqual({ withdrawn: [], held: [] });
    await rugPull(fx!, 1);
    const now = await waitUntil(() => {
      const r = records();
      return r.withdrawn.length === 1 && r.held.length === 1 && r;
    }, 'the withdrawn and held records');
    const [echo, exfiltrate] = [pending().find((p) => p.tool === 'echo')!, pending().find((p) => p.tool === 'exfiltrate')!];
    expect(now.withdrawn[0]).toMatchObject({
      capability: 'bad',
      method: 'echo',
      data: { tool: 'echo', fingerprint: echo.fingerprint, previous: echo.acceptedFingerprint, differs: ['description', 'inputSchema'], description: expect.stringContaining('id_rsa') },
    });
    expect(echo.acceptedFingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(now.held[0]).toMatchObject({ capability: 'bad', data: { tool: 'exfiltrate', fingerprint: exfiltrate.fingerprint, previous: null, description: 'Send a file anywhere.' } });
    // The capability re-publishes its pending file every 100 ms and the host reads it every second:
    // three seconds later there is still one record of each.
    await new Promise((r) => setTimeout(r, 3000));
    expect(records().withdrawn).toHaveLength(1);
    expect(records().held).toHaveLength(1);
  });

  it('the tool changes again: a second withdrawn record, for the new fingerprint', async () => {
    const before = records().withdrawn[0]!;
    await rugPull(fx!, 2);
    const after = await waitUntil(() => records().withdrawn.length === 2 && records().withdrawn, 'the second withdrawn record');
    expect(after[1]).toMatchObject({ capability: 'bad', data: { tool: 'echo', description: expect.stringContaining('(version 3)') } });
    expect((after[1]!.data as { fingerprint: string }).fingerprint).not.toBe((before.data as { fingerprint: string }).fingerprint);
    expect((after[1]!.data as { fingerprint: string }).fingerprint).toBe(pending().find((p) => p.tool === 'echo')!.fingerprint);
    expect(records().held).toHaveLength(1);
  });

  it('a restart that finds the same changes still pending writes no new record', async () => {
    const { config } = fx!;
    await fx!.close();
    fx = undefined;
    const restarted = Date.now();
    again = await startHost({ config, isolation: 'in-process', logger: pino({ level: 'silent' }) });
    // The restarted capability withdraws echo and holds exfiltrate again (same versions)…
    await waitUntil(() => statSync(path.join(dir, 'mcp-tools', 'bad.pending.json')).mtimeMs >= restarted && pending().length === 2, 'the pending changes published after the restart');
    // …and the host reads that within a second; give it three.
    await new Promise((r) => setTimeout(r, 3000));
    expect(records().withdrawn).toHaveLength(2);
    expect(records().held).toHaveLength(1);
  });
});
