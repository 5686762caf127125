/**
 * `contained mcp-tools list|accept` on a host's data folder: an `mcp` capability (the misbehaving
 * test server) publishes its pending tool changes in `<dataDir>/mcp-tools/` as the host does; the
 * CLI lists them, refuses a stale fingerprint, accepts the current one (audited as
 * `mcp.tool.accepted` before it takes effect), and the running capability offers the tool again.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileApprovals } from '../../capabilities/mcp/approvals-file.js';
import { type McpCapability, startMcp } from '../../capabilities/mcp/index.js';
import { openAuditReader, queryAudit } from '../../host/audit/query.js';
import { main } from '../../host/cli/main.js';
import { defaultStorePath } from '../../host/store/sqlite-store.js';
import { call, errorOf, tempDir } from '../capabilities/helpers.js';

const SERVER = { command: process.execPath, args: [path.resolve('test/capabilities/fixtures/misbehaving-mcp-server.mjs')] };
let dir: string;
let cleanup: () => void;
let cap: McpCapability;

beforeAll(async () => {
  ({ dir, cleanup } = tempDir('mcp-cli-'));
  cap = await startMcp('tracker', { server: SERVER, limits: { approvalsPollMs: 50 } }, { approvals: fileApprovals(path.join(dir, 'mcp-tools')) });
});
afterAll(async () => {
  await cap?.close();
  cleanup();
});

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => (out += t), stderr: (t) => (err += t) });
  return { code, out, err };
}

async function until(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('contained mcp-tools', () => {
  it('lists nothing pending after a first start, with every tool accepted by the host', async () => {
    const res = await cli(['mcp-tools', 'list', '--data-dir', dir, '--json']);
    expect(res.code).toBe(0);
    const [c] = JSON.parse(res.out) as { capability: string; pending: unknown[]; accepted: { tool: string; acceptedBy: string }[] }[];
    expect(c).toMatchObject({ capability: 'tracker', pending: [] });
    expect(c!.accepted.map((a) => a.tool)).toContain('echo');
    expect(c!.accepted.every((a) => a.acceptedBy === 'host')).toBe(true);
  });

  it('after a rug pull: lists the change, refuses a stale fingerprint, accepts (audited), and the tool comes back', async () => {
    const inst = cap.create({});
    await call(inst, 'rugPull', {});
    await until(() => cap.toolbox.pending().length === 2);
    expect((await errorOf(call(inst, 'echo', { text: 'x' }))).code).toBe('MCP_TOOL_WITHDRAWN');

    const text = await cli(['mcp-tools', 'list', 'tracker', '--data-dir', dir]);
    expect(text.out).toMatch(/tracker: 2 pending/);
    expect(text.out).toMatch(/echo\s+changed\s+description,inputSchema\s+sha256:/);
    expect(text.out).toMatch(/exfiltrate\s+new/);
    const listed = JSON.parse((await cli(['mcp-tools', 'list', 'tracker', '--data-dir', dir, '--json'])).out) as { pending: { tool: string; fingerprint: string }[] }[];
    const fp = listed[0]!.pending.find((p) => p.tool === 'echo')!.fingerprint;

    const stale = await cli(['mcp-tools', 'accept', 'tracker', 'echo', '--fingerprint', 'sha256:00', '--reason', 'x', '--data-dir', dir]);
    expect(stale.code).toBe(1);
    expect(stale.err).toMatch(/^ALREADY_RESOLVED/);
    expect((await cli(['mcp-tools', 'accept', 'tracker', 'echo', '--fingerprint', fp, '--data-dir', dir])).code).toBe(2); // no --reason

    const ok = await cli(['mcp-tools', 'accept', 'tracker', 'echo', '--fingerprint', fp, '--reason', 'the new copyTo field is harmless here', '--by', 'erin', '--data-dir', dir]);
    expect(ok).toMatchObject({ code: 0 });
    expect(ok.out).toContain('accepted tracker/echo');
    const db = openAuditReader(defaultStorePath(dir));
    try {
      const records = queryAudit(db, { type: 'mcp.tool.accepted' });
      expect(records).toHaveLength(1);
      expect(records[0]).toMatchObject({ capability: 'tracker', data: { tool: 'echo', fingerprint: fp, change: 'changed', by: 'erin', reason: 'the new copyTo field is harmless here' } });
    } finally {
      db.close();
    }
    await until(() => cap.toolbox.entry('echo')?.status === 'active');
    await expect(call(inst, 'echo', { text: 'back' })).resolves.toBe('echo: back');
    const after = JSON.parse((await cli(['mcp-tools', 'list', 'tracker', '--data-dir', dir, '--json'])).out) as { pending: { tool: string }[] }[];
    await until(async () => (await fileApprovals(path.join(dir, 'mcp-tools')).loadPending('tracker')).length === 1);
    expect(after[0]!.pending.map((p) => p.tool)).toContain('exfiltrate');
  });

  it('an unknown capability or tool is NOT_FOUND', async () => {
    expect((await cli(['mcp-tools', 'list', 'nope', '--data-dir', dir])).err).toMatch(/^NOT_FOUND/);
    expect((await cli(['mcp-tools', 'accept', 'tracker', 'nope', '--fingerprint', 'sha256:1', '--reason', 'r', '--data-dir', dir])).err).toMatch(/^NOT_FOUND/);
  });
});
