/**
 * Accepted tool versions kept durably in files (capabilities/mcp/approvals-file.ts), as the host
 * keeps them in `<dataDir>/mcp-tools/`: the first start trusts what it sees and records it; a rug
 * pull publishes the pending change for operators outside the host; an acceptance written there
 * (what `contained mcp-tools accept` does) names the exact fingerprint and reaches the running
 * capability at its next re-read, which brings the withdrawn tool back. A corrupt file is refused,
 * never read as "nothing accepted".
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptPendingTool, fileApprovals } from '../../capabilities/mcp/approvals-file.js';
import { startMcp } from '../../capabilities/mcp/index.js';
import { call, errorOf, tempDir } from './helpers.js';

const SERVER = { command: process.execPath, args: [path.resolve('test/capabilities/fixtures/misbehaving-mcp-server.mjs')] };
const LIMITS = { approvalsPollMs: 50, callTimeoutMs: 5000 };
let dir: string;
let cleanup: () => void;
beforeAll(() => {
  ({ dir, cleanup } = tempDir('mcp-approvals-'));
});
afterAll(() => cleanup());

async function until(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('file approvals', () => {
  it('first start recorded; a rug pull published as pending; accepted from outside; the tool comes back', async () => {
    const approvals = fileApprovals(path.join(dir, 'mcp-tools'));
    const cap = await startMcp('tools', { server: SERVER, limits: LIMITS }, { approvals });
    try {
      const accepted = JSON.parse(readFileSync(path.join(dir, 'mcp-tools', 'tools.accepted.json'), 'utf8')) as { tools: Record<string, { acceptedBy: string; reason: string }> };
      expect(accepted.tools.echo).toMatchObject({ acceptedBy: 'host', reason: 'first start (trust on first use)' });
      expect(await approvals.loadPending('tools')).toEqual([]);
      expect(await approvals.bindings()).toEqual(['tools']);

      const inst = cap.create({});
      await call(inst, 'rugPull', {});
      await until(async () => (await approvals.loadPending('tools')).length === 2);
      const echo = (await approvals.loadPending('tools')).find((p) => p.tool === 'echo')!;
      expect(echo).toMatchObject({ change: 'changed', differs: ['description', 'inputSchema'] });
      expect(echo.current.description).toContain('id_rsa');
      expect((await errorOf(call(inst, 'echo', { text: 'x' }))).code).toBe('MCP_TOOL_WITHDRAWN');

      // The wrong fingerprint, or a tool that is not pending, is refused.
      expect((await errorOf(acceptPendingTool(approvals, { capability: 'tools', tool: 'echo', fingerprint: 'sha256:0', by: 'erin', reason: 'r', at: 1 }))).code).toBe('ALREADY_RESOLVED');
      expect((await errorOf(acceptPendingTool(approvals, { capability: 'tools', tool: 'hang', fingerprint: echo.fingerprint, by: 'erin', reason: 'r', at: 1 }))).code).toBe('NOT_FOUND');

      await acceptPendingTool(approvals, { capability: 'tools', tool: 'echo', fingerprint: echo.fingerprint, by: 'erin', reason: 'read the new description', at: 1 });
      // The running capability re-reads the approvals and offers echo again.
      await until(() => cap.toolbox.entry('echo')?.status === 'active');
      await expect(call(inst, 'echo', { text: 'y' })).resolves.toBe('echo: y');
      await until(async () => (await approvals.loadPending('tools')).length === 1);
      expect((await errorOf(acceptPendingTool(approvals, { capability: 'tools', tool: 'echo', fingerprint: echo.fingerprint, by: 'erin', reason: 'again', at: 2 }))).code).toBe('ALREADY_RESOLVED');
    } finally {
      await cap.close();
    }
  });

  it('a corrupt approvals file stops the start instead of re-trusting every tool', async () => {
    const folder = path.join(dir, 'corrupt');
    const approvals = fileApprovals(folder);
    await approvals.save('tools', { server: 'x', tools: {} });
    writeFileSync(path.join(folder, 'tools.accepted.json'), '{ not json');
    const err = await errorOf(startMcp('tools', { server: SERVER, limits: LIMITS }, { approvals }));
    expect(err.code).toBe('INTERNAL');
  });
});
