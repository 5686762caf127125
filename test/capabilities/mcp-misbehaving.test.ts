/**
 * A misbehaving MCP server (test/capabilities/fixtures/misbehaving-mcp-server.mjs, hand-written
 * JSON-RPC over stdio) behind an `mcp` capability: a hang, a server that blocks its own event loop,
 * a crash, a 50 MB answer, garbage — each a typed error within a bounded time, the server
 * restarted with backoff, the host process healthy, and other calls (and other servers) unaffected.
 * Then the rug pull: the tool list changes mid-session (a description and schema changed, a tool
 * added); the changed tool is withdrawn and the new one held until an operator accepts them, and
 * accepted versions survive a restart in the approvals store.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type McpCapability, memoryApprovals, startMcp } from '../../capabilities/mcp/index.js';
import type { ToolEvent } from '../../capabilities/mcp/tools.js';
import { call, errorOf } from './helpers.js';

const SERVER = { command: process.execPath, args: [path.resolve('test/capabilities/fixtures/misbehaving-mcp-server.mjs')] };
const EVERYTHING = { command: path.resolve('node_modules/.bin/mcp-server-everything'), args: ['stdio'] };
const LIMITS = { callTimeoutMs: 1500, pingTimeoutMs: 300, maxMessageBytes: 1024 * 1024, restartMinMs: 50, restartMaxMs: 400, connectTimeoutMs: 10_000 };

async function until(check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('misbehaving server', () => {
  let bad: McpCapability;
  let good: McpCapability;
  beforeAll(async () => {
    [bad, good] = await Promise.all([startMcp('bad', { server: SERVER, limits: LIMITS }), startMcp('good', { server: EVERYTHING })]);
  });
  afterAll(async () => {
    await Promise.all([bad?.close(), good?.close()]);
  });

  it('a hang: MCP_TIMEOUT after callTimeoutMs, while a concurrent call on the same server answers', async () => {
    const inst = bad.create({});
    const started = Date.now();
    const hung = errorOf(call(inst, 'hang', {}));
    await expect(call(inst, 'echo', { text: 'still here' })).resolves.toBe('echo: still here');
    const err = await hung;
    expect(err).toMatchObject({ code: 'MCP_TIMEOUT', data: { timeoutMs: 1500 } });
    expect(Date.now() - started).toBeLessThan(4000);
    // It still answers pings: not restarted.
    await new Promise((r) => setTimeout(r, 400));
    expect(bad.connection.restarts).toBe(0);
  });

  it('a server that blocks its event loop: MCP_TIMEOUT, then it misses a ping and is killed and restarted', async () => {
    const inst = bad.create({});
    const before = bad.connection.restarts;
    const started = Date.now();
    expect((await errorOf(call(inst, 'spin', {}))).code).toBe('MCP_TIMEOUT');
    expect(Date.now() - started).toBeLessThan(4000);
    await until(() => bad.connection.restarts > before && bad.connection.status === 'ready');
    await expect(call(inst, 'echo', { text: 'after restart' })).resolves.toBe('echo: after restart');
  });

  it('a crash: MCP_SERVER_FAILED (crashed) at once, the server restarted with backoff, later calls work', async () => {
    const inst = bad.create({});
    const before = bad.connection.restarts;
    const started = Date.now();
    expect(await errorOf(call(inst, 'crash', {}))).toMatchObject({ code: 'MCP_SERVER_FAILED', data: { reason: 'crashed' } });
    expect(Date.now() - started).toBeLessThan(2000);
    // A call made while it restarts waits for the restart (within its own time limit).
    await expect(call(inst, 'echo', { text: 'back' })).resolves.toBe('echo: back');
    expect(bad.connection.restarts).toBe(before + 1);
  });

  it('a 50 MB answer: MCP_SERVER_FAILED (too-large) with memory bounded by maxMessageBytes; the server restarted', async () => {
    const inst = bad.create({});
    const rssBefore = process.memoryUsage().rss;
    const started = Date.now();
    const err = await errorOf(call(inst, 'huge', {}));
    expect(err).toMatchObject({ code: 'MCP_SERVER_FAILED', data: { reason: 'too-large' } });
    expect(Date.now() - started).toBeLessThan(5000);
    // Never anywhere near the 50 MB (let alone its UTF-16 string copy) in this process.
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(40 * 1024 * 1024);
    await expect(call(inst, 'echo', { text: 'fine' })).resolves.toBe('echo: fine');
  });

  it('garbage: a line that is not JSON is dropped, an answer that is not a tool result is MCP_SERVER_FAILED (invalid-response)', async () => {
    const inst = bad.create({});
    expect(await errorOf(call(inst, 'garbage', {}))).toMatchObject({ code: 'MCP_SERVER_FAILED', data: { reason: 'invalid-response' } });
    await expect(call(inst, 'echo', { text: 'ok' })).resolves.toBe('echo: ok');
  });

  it('other servers were never affected', async () => {
    await expect(call(good.create({}), 'echo', { message: 'unaffected' })).resolves.toBe('Echo: unaffected');
    expect(good.connection.restarts).toBe(0);
  });
});

describe('a server that cannot be (re)started', () => {
  it('at host start: MCP_SERVER_FAILED (unavailable) at once, naming the command failure', async () => {
    const started = Date.now();
    const err = await errorOf(startMcp('gone', { server: { command: '/nonexistent/mcp-server' }, limits: LIMITS }));
    expect(err).toMatchObject({ code: 'MCP_SERVER_FAILED', data: { reason: 'unavailable' } });
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('after a crash, failing restarts back off; calls fail unavailable within callTimeoutMs; it recovers when it can start', async () => {
    const { writeFileSync, rmSync } = await import('node:fs');
    const os = await import('node:os');
    const marker = path.join(os.tmpdir(), `mcp-refuse-${process.pid}-${Date.now()}`);
    const cap = await startMcp('flaky', { server: { ...SERVER, env: { MCP_TEST_REFUSE_START: marker } }, limits: { ...LIMITS, callTimeoutMs: 800, restartMinMs: 20, restartMaxMs: 200 } });
    try {
      const inst = cap.create({});
      writeFileSync(marker, '');
      expect((await errorOf(call(inst, 'crash', {}))).code).toBe('MCP_SERVER_FAILED');
      const started = Date.now();
      expect(await errorOf(call(inst, 'echo', { text: 'x' }))).toMatchObject({ code: 'MCP_SERVER_FAILED', data: { reason: 'unavailable' } });
      expect(Date.now() - started).toBeLessThan(2000);
      const attempts = cap.connection.restarts;
      expect(attempts).toBeGreaterThan(1);
      // Backing off: far fewer attempts than 20 ms apart would give.
      await new Promise((r) => setTimeout(r, 600));
      expect(cap.connection.restarts - attempts).toBeLessThan(8);
      rmSync(marker);
      await until(() => cap.connection.status === 'ready');
      await expect(call(inst, 'echo', { text: 'recovered' })).resolves.toBe('echo: recovered');
    } finally {
      rmSync(marker, { force: true });
      await cap.close();
    }
  });
});

describe('rug pull: the tool list changes mid-session', () => {
  it('withdraws the changed tool, holds the new one, until an operator accepts; acceptances are durable', async () => {
    const approvals = memoryApprovals();
    const events: ToolEvent[] = [];
    const first = await startMcp('tools', { server: SERVER, limits: LIMITS }, { approvals, onToolEvent: (e) => events.push(e) });
    try {
      expect(events[0]).toMatchObject({ type: 'tool.first-start', tools: expect.arrayContaining(['echo', 'rug_pull']) });
      const inst = first.create({});
      await expect(call(inst, 'echo', { text: 'a' })).resolves.toBe('echo: a');
      await call(inst, 'rugPull', {});
      await until(() => first.toolbox.pending().length === 2);
      expect(events).toEqual(expect.arrayContaining([
        expect.objectContaining({ type: 'tool.withdrawn', tool: 'echo', why: 'changed' }),
        expect.objectContaining({ type: 'tool.new', tool: 'exfiltrate' }),
      ]));
      // Withdrawn: refused before the gate (parseArgs) and at the call.
      expect(await errorOf(call(inst, 'echo', { text: 'b' }))).toMatchObject({ code: 'MCP_TOOL_WITHDRAWN', data: { tool: 'echo', status: 'changed' } });
      expect(() => inst.parseArgs('echo', { text: 'b' })).toThrow(expect.objectContaining({ code: 'MCP_TOOL_WITHDRAWN' }));
      // The new tool is not offered at all.
      expect(first.definition.methods.exfiltrate).toBeUndefined();
      expect(inst.hasMethod('exfiltrate')).toBe(false);
      const pending = first.toolbox.pending();
      const echo = pending.find((p) => p.tool === 'echo');
      expect(echo).toMatchObject({ change: 'changed', differs: ['description', 'inputSchema'] });
      const extra = pending.find((p) => p.tool === 'exfiltrate');
      expect(extra).toMatchObject({ change: 'new', method: 'exfiltrate' });
      // Accepting a fingerprint that is not the current one is refused.
      expect((await errorOf(first.toolbox.accept('echo', 'sha256:00', 'erin', 'looked'))).code).toBe('ALREADY_RESOLVED');
      await expect(first.toolbox.accept('echo', echo!.fingerprint, 'erin', 'reviewed the new description')).resolves.toEqual({ effective: 'now' });
      await expect(call(inst, 'echo', { text: 'c', copyTo: 'x' })).resolves.toBe('echo: c');
      await expect(first.toolbox.accept('exfiltrate', extra!.fingerprint, 'erin', 'needed')).resolves.toEqual({ effective: 'next start' });
      expect(events).toEqual(expect.arrayContaining([expect.objectContaining({ type: 'tool.accepted', tool: 'echo', by: 'erin', reason: 'reviewed the new description', effective: 'now' })]));
      expect(first.toolbox.pending()).toEqual([]);
    } finally {
      await first.close();
    }
    // Next start, same approvals: the server is back at version 1, so echo (accepted at v2) is withdrawn;
    // a server that changes under the host is caught across restarts too.
    const second = await startMcp('tools', { server: SERVER, limits: LIMITS }, { approvals });
    try {
      expect(second.toolbox.pending().map((p) => [p.tool, p.change])).toEqual([['echo', 'changed']]);
      expect((await errorOf(call(second.create({}), 'echo', { text: 'd' }))).code).toBe('MCP_TOOL_WITHDRAWN');
    } finally {
      await second.close();
    }
  });
});

describe('risk overrides', () => {
  it('raising needs nothing; lowering (below the worst case) needs a reason, which the docs show', async () => {
    const raised = await startMcp('r1', { server: SERVER, limits: LIMITS, risk: { echo: { readOnly: false, destructive: true, financial: true } } });
    expect(raised.definition.methods.echo?.riskResolved).toMatchObject({ readOnly: false, destructive: true, financial: true });
    await raised.close();
    // Even where the server's hints already claim as much: hints may change, the reason stays on record.
    const refused = await errorOf(startMcp('r2', { server: SERVER, limits: LIMITS, risk: { crash: { readOnly: true } } }).then(async (c) => c.close()));
    expect(refused).toMatchObject({ code: 'INVALID_ARGUMENT', data: { path: ['risk', 'crash', 'reason'] } });
    const lowered = await startMcp('r3', { server: EVERYTHING, risk: { 'toggle-simulated-logging': { readOnly: true, openWorld: false, reason: 'it only toggles log noise in a test server' } } });
    try {
      const m = lowered.definition.methods.toggleSimulatedLogging;
      expect(m?.riskResolved).toMatchObject({ readOnly: true, destructive: false, openWorld: false });
      expect(m?.description).toContain('Operator-set risk: it only toggles log noise in a test server');
    } finally {
      await lowered.close();
    }
  });
});
