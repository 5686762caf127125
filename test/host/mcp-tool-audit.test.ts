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
import { loadOrCreateAuditKey } from '../../host/audit/keys.js';
import { AuditLog } from '../../host/audit/log.js';
import { openMcpToolChanges } from '../../host/audit/mcp-tools.js';
import { fingerprint, type McpToolSnapshot } from '../../capabilities/mcp/schema.js';
import { renderEmail, renderWebhook } from '../../host/notify/format.js';
import type { OutboxRow } from '../../host/store/notify-outbox.js';
import type { AuditRecord } from '../../host/audit/record.js';
import { type Host, startHost } from '../../host/host.js';
import { defaultStorePath } from '../../host/store/sqlite-store.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';
import { type Receiver, startReceiver, waitUntil } from './helpers/webhook-receiver.js';

const SERVER = path.resolve('test/capabilities/fixtures/changing-mcp-server.mjs');
const SECRET = 'whsec_mcp_tools_0123456789abcdef';
const TOOL = { capability: 'bad', kind: 'mcp', scope: {}, methods: ['rugPull'], why: 'test' };

describe('tool changes of an mcp capability are audited once per fingerprint', () => {
  let dir: string;
  let fx: Fixture | undefined;
  let again: Host | undefined;
  let hook: Receiver;
  const start = async (): Promise<Fixture> => {
    const server = { command: process.execPath, args: [SERVER], env: { MCP_TEST_VERSION_FILE: path.join(dir, 'mcp-version') } };
    const notify = { webhooks: [{ name: 'ops', url: hook.url, secret: SECRET, events: ['mcp.tool.pending'] }], pollMs: 20 };
    return startFixture({ capabilities: { bad: { kind: 'mcp', host: { server, limits: { approvalsPollMs: 100 } } } }, notify }, dir);
  };
  const records = (): { withdrawn: AuditRecord[]; held: AuditRecord[] } => {
    const db = openAuditReader(defaultStorePath(dir));
    try {
      return { withdrawn: queryAudit(db, { type: 'mcp.tool.withdrawn' }), held: queryAudit(db, { type: 'mcp.tool.held' }) };
    } finally {
      db.close();
    }
  };
  /**
   * The mcp.tool.pending deliveries, as [tool, change, fingerprint], one per Idempotency-Key: a
   * delivery answered just as the host closed is sent again after the restart under the same key
   * (at least once; docs/approvals.md tells receivers to drop a key they have seen).
   */
  const delivered = (): [string, string, string][] =>
    [...new Map(hook.accepted().map((d) => [String(d.headers['idempotency-key']), d])).values()].map((d) => {
      expect(d.signature).toMatchObject({ ok: true });
      expect(d.json).toMatchObject({ event: 'mcp.tool.pending', url: expect.stringMatching(/\/console\/#\/mcp-tools$/) });
      return [d.json!.mcpTool.tool, d.json!.mcpTool.change, d.json!.mcpTool.fingerprint];
    });
  const pending = () => fileApprovals(path.join(dir, 'mcp-tools')).loadPending('bad');
  async function rugPull(host: Fixture, n: number): Promise<void> {
    const image = host.image(`rug-${n}`, 'export default async (input, caps) => caps.bad.rugPull({})', [TOOL]);
    await host.grant(image.digest, { capability: 'bad', methods: ['rugPull'], mode: 'contained' });
    const { runId } = await host.host.submit({ image: image.bytes, input: null });
    expect(await host.host.waitForRun(runId)).toMatchObject({ status: 'ok', value: `version ${n + 1}` });
  }

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'contained-mcp-audit-'));
    hook = await startReceiver(SECRET);
    fx = await start();
  });
  afterAll(async () => {
    await fx?.close();
    await again?.close();
    await hook?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a first start audits nothing; a rug pull: one withdrawn (echo) and one held (exfiltrate) record, however many polls follow', async () => {
    expect(records()).toEqual({ withdrawn: [], held: [] });
    await rugPull(fx!, 1);
    const now = await waitUntil(() => {
      const r = records();
      return r.withdrawn.length === 1 && r.held.length === 1 && r;
    }, 'the withdrawn and held records');
    const [echo, exfiltrate] = [(await pending()).find((p) => p.tool === 'echo')!, (await pending()).find((p) => p.tool === 'exfiltrate')!];
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
    // And one webhook delivery each (mcp.tool.pending), linking to the console's MCP tools page.
    expect(delivered().sort()).toEqual([
      ['echo', 'changed', echo.fingerprint],
      ['exfiltrate', 'new', exfiltrate.fingerprint],
    ]);
  });

  it('the tool changes again: a second withdrawn record, for the new fingerprint', async () => {
    const before = records().withdrawn[0]!;
    await rugPull(fx!, 2);
    const after = await waitUntil(() => records().withdrawn.length === 2 && records().withdrawn, 'the second withdrawn record');
    expect(after[1]).toMatchObject({ capability: 'bad', data: { tool: 'echo', description: expect.stringContaining('(version 3)') } });
    expect((after[1]!.data as { fingerprint: string }).fingerprint).not.toBe((before.data as { fingerprint: string }).fingerprint);
    expect((after[1]!.data as { fingerprint: string }).fingerprint).toBe((await pending()).find((p) => p.tool === 'echo')!.fingerprint);
    expect(records().held).toHaveLength(1);
    await waitUntil(() => delivered().length === 3, 'the third delivery');
  });

  it('a restart that finds the same changes still pending writes no new record', async () => {
    const { config } = fx!;
    await fx!.close();
    fx = undefined;
    const restarted = Date.now();
    again = await startHost({ config, isolation: 'in-process', logger: pino({ level: 'silent' }) });
    // The restarted capability withdraws echo and holds exfiltrate again (same versions)…
    await waitUntil(async () => statSync(path.join(dir, 'mcp-tools', 'bad.pending.json')).mtimeMs >= restarted && (await pending()).length === 2, 'the pending changes published after the restart');
    // …and the host reads that within a second; give it three.
    await new Promise((r) => setTimeout(r, 3000));
    expect(records().withdrawn).toHaveLength(2);
    expect(records().held).toHaveLength(1);
    expect(delivered()).toHaveLength(3);
  });
});

describe('the mcp.tool.pending notification in chat and email', () => {
  const row: OutboxRow = {
    id: 1,
    target: 'webhook:x',
    event: 'mcp.tool.pending',
    eventKey: 'mcp.tool.pending:bad:echo:sha256:aa',
    orderKey: 'mcp:bad:echo',
    idempotencyKey: 'ntf_000000000000000000000001',
    status: 'pending',
    attempts: 0,
    nextAt: 0,
    createdAt: 0,
    payload: { at: 0, mcpTool: { capability: 'bad', tool: 'echo', method: 'echo', change: 'changed', fingerprint: 'sha256:aa', previous: 'sha256:bb', differs: ['description'], description: 'Echo. <!channel> *Approved* by admin' } },
  };

  it('names the tool and the change; the server-written description is quoted and escaped; the link opens the MCP tools page', () => {
    const slack = JSON.parse(renderWebhook(row, 'slack', 'https://c.example/console/').body) as { text: string };
    expect(slack.text).toContain('*MCP tool withdrawn until accepted: bad/echo*');
    expect(slack.text).toContain('change: changed (description)');
    expect(slack.text).toContain('> Echo. &lt;!channel&gt; *Approved* by admin');
    expect(slack.text).not.toContain('<!channel>');
    expect(slack.text).toContain('<https://c.example/console/#/mcp-tools|');
    const { subject, text } = renderEmail({ ...row, payload: { at: 0, mcpTool: { ...row.payload.mcpTool as object, change: 'new', tool: 'exfiltrate', differs: [] } } }, 'https://c.example/console');
    expect(subject).toBe('[contained] New MCP tool not offered until accepted: bad/exfiltrate');
    expect(text).toContain('Description (written by the MCP server):');
    expect(text).toContain('https://c.example/console/#/mcp-tools');
  });
});

describe('acceptances in one host', () => {
  it('two admins accepting two tools at once: both acceptances are kept (each reads and rewrites the accepted file in turn)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-mcp-accept-'));
    const audit = new AuditLog({ file: defaultStorePath(dir), key: loadOrCreateAuditKey(dir), checkpointIntervalMs: 0, inboxPollMs: 0 });
    const changes = openMcpToolChanges({ dataDir: dir, bindings: ['tracker'], audit });
    try {
      const tool = (name: string, description: string): McpToolSnapshot => ({ name, description, inputSchema: { type: 'object' } });
      const approvals = fileApprovals(path.join(dir, 'mcp-tools'));
      await approvals.save('tracker', { server: 'stdio:[]', tools: { a: { tool: tool('a', 'A'), fingerprint: fingerprint(tool('a', 'A')), acceptedBy: 'host', acceptedAt: 1, reason: 'first start' } } });
      const a2 = tool('a', 'A, changed');
      const b = tool('b', 'B');
      await approvals.savePending('tracker', [
        { capability: 'tracker', tool: 'a', method: 'a', change: 'changed', fingerprint: fingerprint(a2), acceptedFingerprint: fingerprint(tool('a', 'A')), differs: ['description'], current: a2, accepted: tool('a', 'A') },
        { capability: 'tracker', tool: 'b', method: 'b', change: 'new', fingerprint: fingerprint(b), differs: [], current: b },
      ]);
      await Promise.all([changes.accept({ capability: 'tracker', tool: 'a', fingerprint: fingerprint(a2), reason: 'ok' }, 'erin'), changes.accept({ capability: 'tracker', tool: 'b', fingerprint: fingerprint(b), reason: 'ok' }, 'frank')]);
      const stored = await approvals.load('tracker');
      expect(Object.fromEntries(Object.entries(stored!.tools).map(([k, v]) => [k, [v.fingerprint, v.acceptedBy]]))).toEqual({ a: [fingerprint(a2), 'erin'], b: [fingerprint(b), 'frank'] });
      expect(queryAudit(audit.db, { type: 'mcp.tool.accepted' }).map((r) => (r.data as { by: string }).by).sort()).toEqual(['erin', 'frank']);
      await expect(changes.accept({ capability: 'other', tool: 'a', fingerprint: fingerprint(a2), reason: 'ok' }, 'erin')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    } finally {
      changes.close();
      await audit.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
