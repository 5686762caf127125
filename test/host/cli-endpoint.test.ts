/**
 * One CONTAINED_URL for every CLI command that talks to a host, against a real host (SQLite store,
 * run API and operator channel on 127.0.0.1:0): the host's http:// address and its ws:// channel
 * URL both work for `submit`, `approve`, `deny` and `review`; a host nobody answers on is
 * HOST_UNREACHABLE (exit 1, one line) from every such command; bad URLs are USAGE naming the flag
 * or the variable. And `approve`/`deny` take an unambiguous id prefix (AMBIGUOUS_ID otherwise).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../host/cli/main.js';
import type { WireRequestView as RequestView } from '../../host/operator/protocol.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';
import { type Harness, startHarness, TOKENS } from './operator-harness.js';

let fx: Fixture;
let tmp: string;
beforeAll(async () => {
  fx = await startFixture();
  tmp = mkdtempSync(path.join(os.tmpdir(), 'contained-endpoint-'));
});
afterAll(async () => {
  await fx.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** The CLI in-process, with CONTAINED_URL / CONTAINED_TOKEN set (or unset) for this call only. */
async function cli(argv: string[], env: { CONTAINED_URL?: string; CONTAINED_TOKEN?: string } = {}): Promise<{ code: number; out: string; err: string }> {
  const saved = { url: process.env.CONTAINED_URL, token: process.env.CONTAINED_TOKEN };
  delete process.env.CONTAINED_URL;
  delete process.env.CONTAINED_TOKEN;
  Object.assign(process.env, env);
  let out = '';
  let err = '';
  try {
    const code = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t) });
    return { code, out, err };
  } finally {
    for (const [key, value] of [['CONTAINED_URL', saved.url], ['CONTAINED_TOKEN', saved.token]] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}

const MAIL = { capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'mail' };
const http = (): string => fx.host.url as string;
const ws = (): string => `${http().replace(/^http/, 'ws')}/v1/operator`;

function imageFile(name: string, source: string, requests: unknown[] = []): { file: string; digest: string } {
  const image = fx.image(name, source, requests);
  const file = path.join(tmp, `${name}.tgz`);
  writeFileSync(file, image.bytes);
  return { file, digest: image.digest };
}

async function pendingOf(digest: string): Promise<RequestView> {
  for (let i = 0; i < 500; i++) {
    const found = (await fx.host.requests.pending()).find((r) => r.subject === digest);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no pending request from ${digest}`);
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('CONTAINED_URL serves every command', () => {
  it("the host's http:// address (what `contained host` prints): submit, approve by prefix, review list", async () => {
    const { file, digest } = imageFile('ep-http', "export default async (input, caps) => (await caps.mail.send({ to: 'team@example.com', subject: 'ep', text: 'x' })).accepted", [MAIL]);
    await fx.grant(digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const submitted = await cli(['submit', file, '--no-wait', '--json'], { CONTAINED_URL: `${http()}/`, CONTAINED_TOKEN: fx.tokens['plat'] as string });
    expect(submitted.code, submitted.err).toBe(0);
    const { runId } = JSON.parse(submitted.out) as { runId: string };
    const request = await pendingOf(digest);
    const approved = await cli(['approve', request.id.slice(0, 8)], { CONTAINED_URL: http(), CONTAINED_TOKEN: fx.tokens['alice'] as string });
    expect(approved).toEqual({ code: 0, out: `${request.id}: approved\n`, err: '' });
    expect(await fx.host.waitForRun(runId)).toMatchObject({ status: 'ok', value: ['team@example.com'] });
    const reviews = await cli(['review', 'list', '--json'], { CONTAINED_URL: http(), CONTAINED_TOKEN: fx.tokens['alice'] as string });
    expect(reviews.code, reviews.err).toBe(0);
    expect(Array.isArray(JSON.parse(reviews.out))).toBe(true);
  });

  it('the ws:// channel URL serves submit too, and ws://HOST:PORT without the path serves deny', async () => {
    const { file } = imageFile('ep-ws', 'export default async () => 42');
    const res = await cli(['submit', file, '--json'], { CONTAINED_URL: ws(), CONTAINED_TOKEN: fx.tokens['plat'] as string });
    expect(res.code, res.err).toBe(0);
    expect(JSON.parse(res.out)).toMatchObject({ status: 'ok', value: 42 });

    const mailer = imageFile('ep-ws-deny', "export default async (input, caps) => caps.mail.send({ to: 'team@example.com', subject: 'no', text: 'x' })", [MAIL]);
    await fx.grant(mailer.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const { runId } = await fx.host.submit({ image: fx.image('ep-ws-deny', "export default async (input, caps) => caps.mail.send({ to: 'team@example.com', subject: 'no', text: 'x' })", [MAIL]).bytes });
    const request = await pendingOf(mailer.digest);
    const denied = await cli(['deny', request.id.slice(0, 6), '--reason', 'not today'], { CONTAINED_URL: ws().replace('/v1/operator', ''), CONTAINED_TOKEN: fx.tokens['bob'] as string });
    expect(denied).toEqual({ code: 0, out: `${request.id}: denied: not today\n`, err: '' });
    expect(await fx.host.waitForRun(runId)).toMatchObject({ status: 'error', error: { code: 'ESCALATION_DENIED' } });
  });

  it('a host nobody answers on: HOST_UNREACHABLE, exit 1, one line, from every command that talks to a host, in both URL forms', async () => {
    const port = await closedPort();
    const { file } = imageFile('ep-none', 'export default async () => 1');
    const commands = [
      ['submit', file],
      ['approve', 'abcd1234'],
      ['deny', 'abcd1234', '--reason', 'no'],
      ['operator'],
      ['review', 'list'],
      ['review', 'mark', 'rev_x', 'ok'],
      ['trust', 'accept', 'prm_x', '--reason', 'r'],
      ['trust', 'decline', 'prm_x', '--reason', 'r'],
    ];
    for (const url of [`http://127.0.0.1:${port}`, `ws://127.0.0.1:${port}/v1/operator`]) {
      for (const argv of commands) {
        const viaFlag = await cli([...argv, '--url', url, '--token', 'tok_x']);
        const viaEnv = await cli(argv, { CONTAINED_URL: url, CONTAINED_TOKEN: 'tok_x' });
        for (const res of [viaFlag, viaEnv]) {
          expect(res.code, `${argv.join(' ')} ${url}`).toBe(1);
          expect(res.err, `${argv.join(' ')} ${url}`).toMatch(/^HOST_UNREACHABLE: [^\n]*\n$/);
        }
      }
    }
  });

  it('a URL that is not the host is USAGE naming the flag or the variable', async () => {
    const cases: Array<[string, RegExp]> = [
      ['ftp://127.0.0.1:7420', /must be an http\(s\):\/\/ or ws\(s\):\/\/ URL/],
      ['127.0.0.1:7420', /must be an http\(s\):\/\/ or ws\(s\):\/\/ URL|is not a URL/],
      ['not a url', /is not a URL/],
      ['http://alice:secret@127.0.0.1:7420', /must not carry credentials/],
      ['http://127.0.0.1:7420/?token=x', /must not have a query/],
    ];
    for (const [url, pattern] of cases) {
      for (const argv of [['approve', 'abcd1234'], ['submit', path.join(tmp, 'ep-none.tgz')], ['review', 'list']]) {
        const viaFlag = await cli([...argv, '--url', url, '--token', 'tok_x']);
        expect(viaFlag.code, `${argv[0]} ${url}`).toBe(2);
        expect(viaFlag.err).toMatch(new RegExp(`^USAGE: --url ${pattern.source}`));
        const viaEnv = await cli(argv, { CONTAINED_URL: url, CONTAINED_TOKEN: 'tok_x' });
        expect(viaEnv.code, `${argv[0]} ${url}`).toBe(2);
        expect(viaEnv.err).toMatch(new RegExp(`^USAGE: CONTAINED_URL ${pattern.source}`));
      }
    }
  });
});

describe('approve / deny by id prefix', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it('an unambiguous prefix of a pending request decides it; the output names the full id', async () => {
    h.backend.add({ id: 'c0ffee00-1111-4000-8000-000000000001' });
    h.backend.add({ id: 'deadbeef-2222-4000-8000-000000000002' });
    const approved = await cli(['approve', 'c0ff', '--url', h.url, '--token', TOKENS.alice]);
    expect(approved).toEqual({ code: 0, out: 'c0ffee00-1111-4000-8000-000000000001: approved\n', err: '' });
    const denied = await cli(['deny', 'deadbeef-22', '--reason', 'no', '--url', h.url, '--token', TOKENS.alice]);
    expect(denied).toEqual({ code: 0, out: 'deadbeef-2222-4000-8000-000000000002: denied: no\n', err: '' });
    expect(h.backend.decisions.map((d) => d.input.requestId)).toEqual(['c0ffee00-1111-4000-8000-000000000001', 'deadbeef-2222-4000-8000-000000000002']);
  });

  it('an ambiguous prefix is AMBIGUOUS_ID listing the candidates (exit 2); nothing is decided', async () => {
    h.backend.add({ id: 'abab0001-aaaa', method: 'send' });
    h.backend.add({ id: 'abab0002-bbbb', capability: 'notes', method: 'remove' });
    const before = h.backend.decisions.length;
    for (const argv of [['approve', 'abab'], ['deny', 'abab000', '--reason', 'x']]) {
      const res = await cli([...argv, '--url', h.url, '--token', TOKENS.alice]);
      expect(res.code, argv.join(' ')).toBe(2);
      expect(res.err).toBe(`AMBIGUOUS_ID: "${argv[1]}" matches 2 pending requests: abab0001-aaaa (outbox.send), abab0002-bbbb (notes.remove); give more of the id\n`);
    }
    expect(h.backend.decisions.length).toBe(before);
    expect((await cli(['approve', 'abab0002', '--url', h.url, '--token', TOKENS.alice])).out).toBe('abab0002-bbbb: approved\n');
  });

  it('a prefix shorter than 4 characters is USAGE; an id that names no pending request goes to the host as given (NOT_FOUND)', async () => {
    h.backend.add({ id: 'fab0-cccc' });
    const short = await cli(['approve', 'fab', '--url', h.url, '--token', TOKENS.alice]);
    expect(short).toMatchObject({ code: 2, err: 'USAGE: "fab" is too short to name a request: give at least 4 characters of its id\n' });
    const missing = await cli(['approve', 'zzzz', '--url', h.url, '--token', TOKENS.alice]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^NOT_FOUND: /);
  });
});
