/**
 * MCP tools in the console: the JSON endpoint (`GET /console/api/mcp-tools`, `POST
 * /console/api/mcp-tools/accept`) and the MCP tools page in real Chromium, against a real host
 * whose mcp capability's server changes its tools (test/capabilities/fixtures/changing-mcp-server.mjs).
 * A changed tool is shown withdrawn with the accepted and the new version; accepting needs the
 * admin role, a reason and the fingerprint that was shown — a tool that changed again since is
 * refused — and is audited (`mcp.tool.accepted`, the CLI's record) before it takes effect; the
 * running host then offers the tool again.
 */
import os from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PendingTool } from '../../capabilities/mcp/tools.js';
import { openAuditReader, queryAudit } from '../../host/audit/query.js';
import type { AuditRecord } from '../../host/audit/record.js';
import { defaultStorePath } from '../../host/store/sqlite-store.js';
import type { RunOutcome } from '../../runtime/index.js';
import { type Fixture, startFixture } from '../host/helpers/host-fixture.js';
import { waitUntil } from '../host/helpers/webhook-receiver.js';
import { hasChromium, launch, loginAs } from './browser.js';
import { type ConsoleSession, login, post, raw } from './helpers.js';

const SERVER = path.resolve('test/capabilities/fixtures/changing-mcp-server.mjs');
const TOOL = { capability: 'bad', kind: 'mcp', scope: {}, methods: ['rugPull', 'echo'], why: 'test' };

describe('MCP tools in the console', () => {
  let fx: Fixture;
  let base: string;
  let pulls = 0;

  async function run(source: string): Promise<RunOutcome> {
    const image = fx.image(`agent-${Math.random().toString(36).slice(2)}`, source, [TOOL]);
    await fx.grant(image.digest, { capability: 'bad', methods: ['rugPull', 'echo'], mode: 'contained' });
    const { runId } = await fx.host.submit({ image: image.bytes, input: null });
    return fx.host.waitForRun(runId);
  }
  const echo = () => run("export default async (input, caps) => { try { return await caps.bad.echo({ text: 'hi' }); } catch (e) { return e.code; } }");
  async function rugPull(): Promise<void> {
    pulls++;
    expect(await run('export default async (input, caps) => caps.bad.rugPull({})')).toMatchObject({ status: 'ok', value: `version ${pulls + 1}` });
  }
  async function listed(session: ConsoleSession): Promise<{ capability: string; pending: PendingTool[]; accepted: { tool: string; fingerprint: string; acceptedBy: string; reason: string }[] }[]> {
    const res = await raw(base, 'GET', '/console/api/mcp-tools', { headers: { cookie: session.cookie } });
    expect(res.status, res.body).toBe(200);
    return res.json().capabilities;
  }
  const pendingOf = async (session: ConsoleSession, tool: string): Promise<PendingTool | undefined> => (await listed(session))[0]?.pending.find((p) => p.tool === tool);
  const accepted = (): AuditRecord[] => {
    const db = openAuditReader(defaultStorePath(fx.dir));
    try {
      return queryAudit(db, { type: 'mcp.tool.accepted' });
    } finally {
      db.close();
    }
  };

  beforeAll(async () => {
    fx = await startFixture({ capabilities: { bad: { kind: 'mcp', host: { server: { command: process.execPath, args: [SERVER] }, limits: { approvalsPollMs: 100 } } } } });
    base = fx.host.url as string;
    await rugPull();
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('GET lists the withdrawn and the new tool with both versions; accepting is admin only, bound to the fingerprint shown, and audited', async () => {
    expect((await raw(base, 'GET', '/console/api/mcp-tools')).status).toBe(401);
    const viewer = await login(base, { token: fx.tokens['vic'] as string });
    const admin = await login(base, { token: fx.tokens['erin'] as string });
    const changed = await waitUntil(() => pendingOf(viewer, 'echo'), 'echo pending');
    const [c] = await listed(viewer);
    expect(c!.capability).toBe('bad');
    expect(c!.pending.map((p) => [p.tool, p.change])).toEqual([['echo', 'changed'], ['exfiltrate', 'new']]);
    expect(changed).toMatchObject({ method: 'echo', differs: ['description', 'inputSchema'], accepted: { description: 'Echo the text back.' }, current: { description: expect.stringContaining('id_rsa') } });
    expect(c!.accepted.map((a) => [a.tool, a.acceptedBy])).toEqual([['echo', 'host'], ['rug_pull', 'host']]);
    expect(await echo()).toMatchObject({ status: 'ok', value: 'MCP_TOOL_WITHDRAWN' });

    const body = { capability: 'bad', tool: 'echo', fingerprint: changed.fingerprint, reason: 'reviewed' };
    // Roles below admin, and a missing CSRF token.
    for (const name of ['vic', 'alice']) {
      const s = await login(base, { token: fx.tokens[name] as string });
      const refused = await post(base, '/console/api/mcp-tools/accept', body, s);
      expect(refused.status).toBe(403);
      expect(refused.json().error.code).toBe('FORBIDDEN');
    }
    expect((await post(base, '/console/api/mcp-tools/accept', body, { cookie: admin.cookie })).status).toBe(403);
    // Bad bodies, unknown capability or tool.
    const bad = async (b: unknown) => (await post(base, '/console/api/mcp-tools/accept', b, admin)).json().error.code;
    expect(await bad({ ...body, reason: ' ' })).toBe('INVALID_ARGUMENT');
    expect(await bad({ ...body, fingerprint: 'sha256:00' })).toBe('INVALID_ARGUMENT');
    expect(await bad({ ...body, extra: 1 })).toBe('INVALID_ARGUMENT');
    expect(await bad({ ...body, capability: 'notes' })).toBe('NOT_FOUND');
    expect(await bad({ ...body, tool: 'rug_pull' })).toBe('NOT_FOUND');
    // The version accepted before, and a fingerprint that is not the one pending: ALREADY_RESOLVED.
    const stale = await post(base, '/console/api/mcp-tools/accept', { ...body, fingerprint: changed.acceptedFingerprint }, admin);
    expect(stale.status).toBe(409);
    expect(stale.json().error.code).toBe('ALREADY_RESOLVED');
    expect((await post(base, '/console/api/mcp-tools/accept', { ...body, fingerprint: `sha256:${'0'.repeat(64)}` }, admin)).json().error.code).toBe('ALREADY_RESOLVED');

    // The server changes echo again: the fingerprint shown before is refused, nothing is accepted.
    await rugPull();
    const again = await waitUntil(async () => {
      const p = await pendingOf(admin, 'echo');
      return p && p.fingerprint !== changed.fingerprint && p;
    }, 'echo changed again');
    const moved = await post(base, '/console/api/mcp-tools/accept', body, admin);
    expect(moved.status).toBe(409);
    expect(moved.json().error).toMatchObject({ code: 'ALREADY_RESOLVED', message: expect.stringContaining(again.fingerprint) });
    expect(accepted()).toEqual([]);
    expect(await echo()).toMatchObject({ status: 'ok', value: 'MCP_TOOL_WITHDRAWN' });

    // A new tool, accepted by an admin: audited first, offered from the next start.
    const exfiltrate = (await pendingOf(admin, 'exfiltrate'))!;
    const ok = await post(base, '/console/api/mcp-tools/accept', { capability: 'bad', tool: 'exfiltrate', fingerprint: exfiltrate.fingerprint, reason: 'we need it' }, admin);
    expect(ok.status, ok.body).toBe(200);
    expect(ok.json()).toMatchObject({ capability: 'bad', tool: 'exfiltrate', change: 'new', by: 'erin', effective: 'next start' });
    expect(accepted()).toEqual([expect.objectContaining({ capability: 'bad', data: { tool: 'exfiltrate', fingerprint: exfiltrate.fingerprint, change: 'new', differs: [], previous: null, by: 'erin', reason: 'we need it' } })]);
    expect((await listed(viewer))[0]!.pending.map((p) => p.tool)).toEqual(['echo']);
    expect((await post(base, '/console/api/mcp-tools/accept', { capability: 'bad', tool: 'exfiltrate', fingerprint: exfiltrate.fingerprint, reason: 'again' }, admin)).json().error.code).toBe('ALREADY_RESOLVED');
  }, 60_000);

  describe.skipIf(!hasChromium)('the MCP tools page', () => {
    let browser: Browser;
    beforeAll(async () => {
      browser = await launch();
    });
    afterAll(async () => {
      await browser?.close();
    });

    it('shows the withdrawn tool with what changed; a stale acceptance is refused; the admin accepts it and sees it accepted; the tool is offered again', async () => {
      // Below admin: the same page, no controls.
      const alice = await loginAs(browser, base, fx.tokens['alice'] as string);
      await alice.page.goto(`${base}/console/#/mcp-tools`);
      const seen = alice.page.locator('article.mcp-change[data-tool="echo"]');
      await seen.getByText('Only admins accept tool changes.').waitFor();
      expect(await alice.page.getByRole('button', { name: 'Accept…' }).count()).toBe(0);
      expect(alice.errors).toEqual([]);

      const erin = await loginAs(browser, base, fx.tokens['erin'] as string);
      await erin.page.goto(`${base}/console/#/mcp-tools`);
      const card = erin.page.locator('article.mcp-change[data-capability="bad"][data-tool="echo"]');
      await card.waitFor();
      expect(await card.textContent()).toContain('changed — withdrawn');
      expect(await card.locator('.differs').textContent()).toBe('description, inputSchema');
      expect(await card.locator('.diff-body .del').allTextContents()).toEqual(expect.arrayContaining([expect.stringContaining('Echo the text back.')]));
      expect((await card.locator('.diff-body .ins').allTextContents()).join('\n')).toContain('id_rsa');
      expect((await card.locator('.diff-body .ins').allTextContents()).join('\n')).toContain('copyTo');
      // docs/mcp-capability.md shows this page (UPDATE_SCREENSHOTS=1 writes it there; otherwise a temporary folder).
      await erin.page.screenshot({ path: path.join(process.env.UPDATE_SCREENSHOTS === '1' ? path.resolve('docs/screenshots') : os.tmpdir(), 'mcp-tools.png'), fullPage: true });

      // The form holds the version shown; the server changes echo once more meanwhile.
      await card.getByRole('button', { name: 'Accept…' }).click();
      const before = (await pendingOf(await login(base, { token: fx.tokens['erin'] as string }), 'echo'))!.fingerprint;
      await rugPull();
      await waitUntil(async () => (await pendingOf(await login(base, { token: fx.tokens['erin'] as string }), 'echo'))?.fingerprint !== before, 'echo changed again');
      await card.getByLabel(/Reason for accepting echo/).fill('copyTo is ignored by our deployment');
      await card.getByRole('button', { name: 'Accept this version' }).click();
      await card.locator('.mcp-accept .error', { hasText: 'ALREADY_RESOLVED' }).waitFor();
      expect(accepted().filter((r) => (r.data as { tool: string }).tool === 'echo')).toEqual([]);

      // Look again: the version the server lists now, accepted.
      await card.getByRole('button', { name: 'Cancel' }).click();
      await erin.page.getByRole('button', { name: 'Refresh' }).click();
      await card.locator('.diff-body .ins', { hasText: `(version ${pulls + 1})` }).waitFor();
      await card.getByRole('button', { name: 'Accept…' }).click();
      await card.getByLabel(/Reason for accepting echo/).fill('copyTo is ignored by our deployment');
      await card.getByRole('button', { name: 'Accept this version' }).click();
      const row = erin.page.locator('table.mcp-accepted tr[data-tool="echo"]');
      await row.locator('td.by', { hasText: 'erin' }).waitFor();
      expect(await row.locator('td.reason').textContent()).toBe('copyTo is ignored by our deployment');
      expect(await card.count()).toBe(0);
      expect(accepted().filter((r) => (r.data as { tool: string }).tool === 'echo')).toEqual([expect.objectContaining({ data: expect.objectContaining({ by: 'erin', change: 'changed', differs: ['description', 'inputSchema'] }) })]);
      // The running host offers it again (it re-reads the accepted versions every 100 ms here).
      await waitUntil(async () => ((await echo()) as { value?: unknown }).value === 'echo: hi', 'echo offered again');
      expect(erin.errors).toEqual([]);
    }, 60_000);
  });
});
