/**
 * A misbehaving MCP server (the hand-written test server) as a capability of a real host: a crash,
 * a hang and a 50 MB answer reach the agent as typed errors within bounded time, other runs (fs
 * here) go on meanwhile, the server is restarted and later runs use it. Then a rug pull while the
 * host runs: the changed tool is withdrawn for every run until an operator accepts it with
 * `contained mcp-tools accept`, audited, and the running host offers it again.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openAuditReader, queryAudit } from '../../host/audit/query.js';
import { main } from '../../host/cli/main.js';
import { defaultStorePath } from '../../host/store/sqlite-store.js';
import type { RunOutcome } from '../../runtime/index.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

const SERVER = { command: process.execPath, args: [path.resolve('test/capabilities/fixtures/misbehaving-mcp-server.mjs')] };
const LIMITS = { callTimeoutMs: 1500, pingTimeoutMs: 300, maxMessageBytes: 1024 * 1024, restartMinMs: 50, restartMaxMs: 400, approvalsPollMs: 100 };
let fx: Fixture;

const BAD = { capability: 'bad', kind: 'mcp', scope: {}, methods: ['echo', 'crash', 'hang', 'huge', 'rugPull'], why: 'test' };
const NOTES = { capability: 'notes', kind: 'fs', scope: {}, methods: ['read'], why: 'notes' };

async function run(source: string, name: string): Promise<RunOutcome> {
  const image = fx.image(name, source, [BAD, NOTES]);
  await fx.grant(image.digest, { capability: 'bad', methods: ['echo', 'crash', 'hang', 'huge', 'rugPull'], mode: 'contained' });
  await fx.grant(image.digest, { capability: 'notes', methods: ['read'], mode: 'contained' });
  const { runId } = await fx.host.submit({ image: image.bytes, input: null });
  return fx.host.waitForRun(runId);
}
const attempt = (expr: string) => `export default async (input, caps) => { try { return { value: await ${expr} }; } catch (e) { return { code: e.code, reason: e.data && e.data.reason }; } }`;

describe('a misbehaving MCP server in a real host', () => {
  beforeAll(async () => {
    const { mkdtempSync, mkdirSync, writeFileSync } = await import('node:fs');
    const os = await import('node:os');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-mcp-bad-'));
    mkdirSync(path.join(dir, 'notes'));
    writeFileSync(path.join(dir, 'notes', 'a.txt'), 'hello');
    fx = await startFixture({ capabilities: { bad: { kind: 'mcp', host: { server: SERVER, limits: LIMITS } }, notes: { kind: 'fs', scope: { root: path.join(dir, 'notes') } } } }, dir);
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('a crash: MCP_SERVER_FAILED (crashed) to the agent, other runs unaffected, the next run uses the restarted server', async () => {
    const [crashed, other] = await Promise.all([run(attempt('caps.bad.crash({})'), 'crash'), run("export default async (input, caps) => caps.notes.read('a.txt')", 'reader')]);
    expect(crashed).toMatchObject({ status: 'ok', value: { code: 'MCP_SERVER_FAILED', reason: 'crashed' } });
    expect(other).toMatchObject({ status: 'ok', value: 'hello' });
    expect(await run(attempt("caps.bad.echo({ text: 'again' })"), 'after-crash')).toMatchObject({ status: 'ok', value: { value: 'echo: again' } });
  });

  it('a hang: MCP_TIMEOUT within bounded time while another run is served', async () => {
    const started = Date.now();
    const [hung, other] = await Promise.all([run(attempt('caps.bad.hang({})'), 'hang'), run(attempt("caps.bad.echo({ text: 'meanwhile' })"), 'meanwhile')]);
    expect(hung).toMatchObject({ status: 'ok', value: { code: 'MCP_TIMEOUT' } });
    expect(other).toMatchObject({ status: 'ok', value: { value: 'echo: meanwhile' } });
    expect(Date.now() - started).toBeLessThan(6000);
  });

  it('a 50 MB answer: MCP_SERVER_FAILED (too-large), the host stays healthy', async () => {
    expect(await run(attempt('caps.bad.huge({})'), 'huge')).toMatchObject({ status: 'ok', value: { code: 'MCP_SERVER_FAILED', reason: 'too-large' } });
    expect(await run(attempt("caps.bad.echo({ text: 'fine' })"), 'after-huge')).toMatchObject({ status: 'ok', value: { value: 'echo: fine' } });
  });

  it('a rug pull while the host runs: withdrawn for every run until contained mcp-tools accept; audited; offered again', async () => {
    expect(await run(attempt('caps.bad.rugPull({})'), 'rug')).toMatchObject({ status: 'ok', value: { value: 'changed' } });
    const cli = async (argv: string[]) => {
      let out = '';
      let err = '';
      const code = await main(argv, { stdout: (t) => (out += t), stderr: (t) => (err += t) });
      return { code, out, err };
    };
    let pending: { tool: string; fingerprint: string; change: string }[] = [];
    for (let i = 0; i < 100 && pending.length < 2; i++) {
      const listed = JSON.parse((await cli(['mcp-tools', 'list', 'bad', '--data-dir', fx.dir, '--json'])).out) as { pending: typeof pending }[];
      pending = listed[0]?.pending ?? [];
      if (pending.length < 2) await new Promise((r) => setTimeout(r, 50));
    }
    expect(pending.map((p) => [p.tool, p.change])).toEqual([['echo', 'changed'], ['exfiltrate', 'new']]);
    expect(await run(attempt("caps.bad.echo({ text: 'x' })"), 'withdrawn')).toMatchObject({ status: 'ok', value: { code: 'MCP_TOOL_WITHDRAWN' } });

    const echo = pending.find((p) => p.tool === 'echo')!;
    const accepted = await cli(['mcp-tools', 'accept', 'bad', 'echo', '--fingerprint', echo.fingerprint, '--reason', 'reviewed', '--by', 'erin', '--data-dir', fx.dir]);
    expect(accepted.code, accepted.err).toBe(0);
    let back: RunOutcome | undefined;
    for (let i = 0; i < 50; i++) {
      back = await run(attempt("caps.bad.echo({ text: 'back' })"), `back-${i}`);
      if ((back as { value?: { value?: string } }).value?.value === 'echo: back') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(back).toMatchObject({ status: 'ok', value: { value: 'echo: back' } });
    const db = openAuditReader(defaultStorePath(fx.dir));
    try {
      expect(queryAudit(db, { type: 'mcp.tool.accepted' })).toEqual([expect.objectContaining({ capability: 'bad', data: expect.objectContaining({ tool: 'echo', by: 'erin', reason: 'reviewed' }) })]);
    } finally {
      db.close();
    }
  });
});
