/**
 * MCP servers as capabilities in a real host: `kind: "mcp"` in the host config starts the real
 * server-everything and server-filesystem over stdio at host start, and agent programs (images)
 * call their tools through grants in each mode — contained (at once), executed (at once, queued for
 * review when sampled), assisted (a recommendation two operators approve over the WebSocket, then performed) —
 * with a grant narrowing a tool's argument to a set, an out-of-grant call escalated and denied with
 * a reason, and the host's `contained caps docs --config` printing their generated types.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../host/cli/main.js';
import type { RequestView } from '../../host/operator/backend.js';
import type { OperatorClient, OperatorEvent } from '../../host/operator/client.js';
import type { RunOutcome } from '../../runtime/index.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

const BIN = path.resolve('node_modules/.bin');
let fx: Fixture;
let files: string;

beforeAll(async () => {
  const { mkdtempSync } = await import('node:fs');
  const os = await import('node:os');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-mcp-host-'));
  files = path.join(dir, 'files');
  mkdirSync(files);
  writeFileSync(path.join(files, 'a.txt'), 'alpha');
  writeFileSync(path.join(files, 'b.txt'), 'beta');
  fx = await startFixture(
    {
      capabilities: {
        everything: { kind: 'mcp', host: { server: { command: path.join(BIN, 'mcp-server-everything'), args: ['stdio'] } } },
        files: { kind: 'mcp', host: { server: { command: path.join(BIN, 'mcp-server-filesystem'), args: [files] } } },
      },
    },
    dir,
  );
});
afterAll(async () => {
  await fx?.close();
});

const EVERYTHING = { capability: 'everything', kind: 'mcp', scope: {}, methods: ['getSum', 'echo'], why: 'sums' };
const FILES = { capability: 'files', kind: 'mcp', scope: {}, methods: ['readTextFile', 'writeFile', 'createDirectory'], why: 'files' };

function nextCreated(op: OperatorClient, filter: (r: RequestView) => boolean): Promise<RequestView> {
  return new Promise((resolve) => {
    const off = op.onEvent((event: OperatorEvent) => {
      if (event.type === 'created' && filter(event.request as RequestView)) {
        off();
        resolve(event.request as RequestView);
      }
    });
  });
}

async function run(image: { bytes: Buffer }, input: unknown = null): Promise<{ runId: string; outcome: Promise<RunOutcome> }> {
  const { runId } = await fx.host.submit({ image: image.bytes, input });
  return { runId, outcome: fx.host.waitForRun(runId) };
}

describe('mcp capabilities in the host', () => {
  it('contained: a read-only tool runs at once, no request to anyone', async () => {
    const image = fx.image('mcp-sum', 'export default async (input, caps) => caps.everything.getSum({ a: 40, b: 2 })', [EVERYTHING]);
    await fx.grant(image.digest, { capability: 'everything', methods: ['getSum'], mode: 'contained' });
    const before = (await fx.host.requests.pending()).length;
    const { outcome } = await run(image);
    expect(await outcome).toMatchObject({ status: 'ok', value: expect.stringMatching(/42/) });
    expect((await fx.host.requests.pending()).length).toBe(before);
  });

  it('contained, narrowed by the grant: a path limited to a set; a call outside it escalates, and a denial carries the reason', async () => {
    const a = path.join(files, 'a.txt');
    const b = path.join(files, 'b.txt');
    const image = fx.image(
      'mcp-read',
      `export default async (input, caps) => {
        const first = await caps.files.readTextFile({ path: ${JSON.stringify(a)} });
        try { await caps.files.readTextFile({ path: ${JSON.stringify(b)} }, { reason: 'need b too' }); return 'read b'; }
        catch (e) { return [first.content, e.code, e.message]; }
      }`,
      [FILES],
    );
    await fx.grant(image.digest, { capability: 'files', methods: ['readTextFile'], mode: 'contained', scope: { args: { readTextFile: { path: { oneOf: [a] } } } } });
    const alice = await fx.operator('alice');
    const seen = nextCreated(alice, (r) => r.subject === image.digest);
    const { outcome } = await run(image);
    const request = await seen;
    expect(request).toMatchObject({ kind: 'escalation', capability: 'files', method: 'readTextFile', args: { path: b } });
    await alice.decide({ requestId: request.id, verdict: 'deny', reason: 'b is not part of this job' });
    expect(await outcome).toMatchObject({ status: 'ok', value: ['alpha', 'ESCALATION_DENIED', expect.stringContaining('b is not part of this job')] });
  });

  it('executed: runs at once', async () => {
    const dir = path.join(files, 'made-by-agent');
    const image = fx.image('mcp-mkdir', `export default async (input, caps) => caps.files.createDirectory({ path: ${JSON.stringify(dir)} })`, [FILES]);
    await fx.grant(image.digest, { capability: 'files', methods: ['createDirectory'], mode: 'executed' });
    const { outcome } = await run(image);
    expect(await outcome).toMatchObject({ status: 'ok' });
    expect(existsSync(dir)).toBe(true);
  });

  it('assisted: a destructive tool (write_file, destructiveHint) becomes a recommendation two operators approve; then it is performed', async () => {
    const target = path.join(files, 'report.txt');
    const image = fx.image(
      'mcp-write',
      `export default async (input, caps) => caps.files.writeFile({ path: ${JSON.stringify(target)}, content: 'written after approval' }, { reason: 'weekly report' })`,
      [FILES],
    );
    await fx.grant(image.digest, { capability: 'files', methods: ['writeFile'], mode: 'assisted' });
    const alice = await fx.operator('alice');
    const bob = await fx.operator('bob');
    const seen = nextCreated(bob, (r) => r.subject === image.digest);
    const { outcome } = await run(image);
    const request = await seen;
    expect(request).toMatchObject({ kind: 'recommendation', capability: 'files', method: 'writeFile', reason: 'weekly report', approvalsRequired: 2 });
    expect(request.risk).toMatchObject({ destructive: true, readOnly: false });
    expect(existsSync(target)).toBe(false);
    await alice.decide({ requestId: request.id, verdict: 'approve' });
    await bob.decide({ requestId: request.id, verdict: 'approve' });
    expect(await outcome).toMatchObject({ status: 'ok' });
    expect(readFileSync(target, 'utf8')).toBe('written after approval');
  });

  it('staged: a tool that is not read-only is queued in the changeset with a placeholder answer, and called only after the changeset is approved', async () => {
    const target = path.join(files, 'staged.txt');
    const image = fx.image(
      'mcp-staged',
      `export default async (input, caps) => ({ answer: await caps.files.writeFile({ path: ${JSON.stringify(target)}, content: 'after the review' }), read: await caps.files.readTextFile({ path: ${JSON.stringify(path.join(files, 'a.txt'))} }) })`,
      [FILES],
    );
    await fx.grant(image.digest, { capability: 'files', methods: ['writeFile', 'readTextFile'], mode: 'contained' });
    const alice = await fx.operator('alice');
    const bob = await fx.operator('bob');
    const seen = nextCreated(bob, (r) => r.subject === image.digest && r.kind === 'changeset');
    const { runId } = await fx.host.submit({ image: image.bytes, input: null, staged: true });
    const outcome = await fx.host.waitForRun(runId);
    // The read-only tool ran for real; the write was queued: the program got a placeholder, the server nothing.
    expect(outcome).toMatchObject({ status: 'ok', value: { answer: { staged: true, tool: 'write_file' }, read: { content: 'alpha' } } });
    expect(existsSync(target)).toBe(false);
    const cs = await seen;
    const effects = (cs.args as { effects: Array<{ capability: string; method: string; summary: string; detail: unknown; risk: { openWorld: boolean } }> }).effects;
    expect(effects).toHaveLength(1);
    expect(effects[0]).toMatchObject({ capability: 'files', method: 'writeFile', summary: expect.stringContaining('write_file'), detail: { tool: 'write_file', arguments: { path: target, content: 'after the review' } } });
    expect(cs.approvalsRequired).toBe(2); // destructive: two people
    await alice.decide({ requestId: cs.id, verdict: 'approve', argsDigest: cs.proposal.argsDigest });
    expect(existsSync(target)).toBe(false);
    await bob.decide({ requestId: cs.id, verdict: 'approve', argsDigest: cs.proposal.argsDigest });
    await expect.poll(() => existsSync(target) && readFileSync(target, 'utf8'), { timeout: 10_000 }).toBe('after the review');
  });

  it('arguments that fail the tool schema are refused before the gate: no request, INVALID_ARGUMENT', async () => {
    const image = fx.image('mcp-bad', "export default async (input, caps) => { try { await caps.everything.getSum({ a: 'x', b: 1 }); } catch (e) { return [e.code, e.data && e.data.path]; } }", [EVERYTHING]);
    await fx.grant(image.digest, { capability: 'everything', methods: ['getSum'], mode: 'assisted' });
    const before = (await fx.host.requests.pending()).length;
    const { outcome } = await run(image);
    expect(await outcome).toMatchObject({ status: 'ok', value: ['INVALID_ARGUMENT', ['a']] });
    expect((await fx.host.requests.pending()).length).toBe(before);
  });

  it('the host keeps its accepted tool versions in <dataDir>/mcp-tools, and contained mcp-tools lists them', async () => {
    let out = '';
    const code = await main(['mcp-tools', 'list', '--data-dir', fx.dir, '--json'], { stdout: (t) => (out += t), stderr: () => undefined });
    expect(code).toBe(0);
    const listed = JSON.parse(out) as { capability: string; pending: unknown[] }[];
    expect(listed.map((c) => c.capability).sort()).toEqual(['everything', 'files']);
    expect(listed.every((c) => c.pending.length === 0)).toBe(true);
  });

  it('contained caps docs --config: one method per tool, TypeScript types generated from each tool JSON Schema', async () => {
    const file = path.join(fx.dir, 'docs.config.json');
    writeFileSync(file, JSON.stringify({ dataDir: fx.dir, capabilities: { everything: { kind: 'mcp', host: { server: { command: path.join(BIN, 'mcp-server-everything'), args: ['stdio'] } } } } }));
    let out = '';
    let err = '';
    const code = await main(['caps', 'docs', '--config', file, '--capability', 'everything'], { stdout: (t) => (out += t), stderr: (t) => (err += t) });
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(out).toContain('interface Caps {');
    expect(out).toMatch(/getSum\(args: \{ \/\*\* First number \*\/ a: number; \/\*\* Second number \*\/ b: number \}, options\?: CallOptions\): Promise<string>;/);
    expect(out).toMatch(/getStructuredContent\(args: \{ [^}]*location: "New York" \| "Chicago" \| "Los Angeles" \}, options\?: CallOptions\): Promise<\{ [^}]*temperature: number/);
    expect(out).toMatch(/Risk: read-only\./);
    let md = '';
    await main(['caps', 'docs', '--config', file, '--format', 'md'], { stdout: (t) => (md += t), stderr: () => undefined });
    expect(md).toContain('## caps.everything (everything)');
  });
});
