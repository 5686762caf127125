/**
 * The operator clients against a real channel: `contained approve|deny` (in-process through the CLI
 * dispatcher, and once through the real launcher with CONTAINED_URL/CONTAINED_TOKEN), their exit
 * codes, the Node client's typed connection failures, and the interactive console driven through
 * streams.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../host/cli/main.js';
import { OperatorClient } from '../../host/operator/client.js';
import { runOperatorTerminal } from '../../host/operator/terminal.js';
import { ContainedError } from '../../runtime/errors.js';
import { connectReady, type Harness, startHarness, TOKENS } from './operator-harness.js';

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.close();
});

async function cli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
  return { code, stdout, stderr };
}

describe('contained approve / deny', () => {
  it('approve: exit 0, the request is approved, operators see it resolved', async () => {
    h.backend.add({ id: 'req-1' });
    const watcher = await connectReady(h.url, TOKENS.viewer);
    const res = await cli(['approve', 'req-1', '--url', h.url, '--token', TOKENS.alice]);
    expect(res).toEqual({ code: 0, stdout: 'req-1: approved\n', stderr: '' });
    await watcher.waitFor((m) => m.type === 'resolved' && m.request.id === 'req-1');
    expect(h.backend.decisions).toEqual([{ operator: 'alice', input: { requestId: 'req-1', verdict: 'approve' } }]);
  });

  it('approve with --span and --args (edits) and --note', async () => {
    h.backend.add({ id: 'esc', kind: 'escalation' });
    const res = await cli(['approve', 'esc', '--span', 'always', '--args', '{"to":"a@example.com"}', '--note', 'ok', '--url', h.url, '--token', TOKENS.alice]);
    expect(res.code).toBe(0);
    expect(h.backend.decisions[0]?.input).toEqual({ requestId: 'esc', verdict: 'approve', span: 'always', args: { to: 'a@example.com' }, note: 'ok' });
  });

  it('first of two approvals: exit 0 and says it waits for another approver', async () => {
    h.backend.add({ id: 'two', approvalsRequired: 2 });
    const res = await cli(['approve', 'two', '--url', h.url, '--token', TOKENS.alice]);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('approval recorded (1/2)');
  });

  it('deny --reason: exit 0', async () => {
    h.backend.add({ id: 'req-2' });
    const res = await cli(['deny', 'req-2', '--reason', 'not this week', '--url', h.url, '--token', TOKENS.bob]);
    expect(res).toEqual({ code: 0, stdout: 'req-2: denied: not this week\n', stderr: '' });
    expect(h.backend.requests.get('req-2')).toMatchObject({ status: 'denied', denyReason: 'not this week' });
  });

  it('typed refusals from the host: exit 1 with CODE: message (including the host\'s INVALID_ARGUMENT)', async () => {
    h.backend.add({ id: 'done' });
    await cli(['approve', 'done', '--url', h.url, '--token', TOKENS.alice]);
    const cases: Array<[string[], RegExp]> = [
      [['approve', 'done', '--token', TOKENS.bob], /^ALREADY_RESOLVED: /],
      [['approve', 'ghost', '--token', TOKENS.alice], /^NOT_FOUND: /],
      [['approve', 'done', '--token', TOKENS.viewer], /^FORBIDDEN: /],
      [['approve', 'done', '--token', 'tok_wrong'], /^UNAUTHENTICATED: /],
      [['deny', 'done', '--reason', 'x'.repeat(3000), '--token', TOKENS.alice], /^INVALID_ARGUMENT: /],
    ];
    for (const [argv, pattern] of cases) {
      const res = await cli([...argv, '--url', h.url]);
      expect(res.code, argv.join(' ')).toBe(1);
      expect(res.stderr, argv.join(' ')).toMatch(pattern);
      expect(res.stderr.split('\n')).toHaveLength(2); // one line
    }
  });

  it('an unreachable host: exit 1 HOST_UNREACHABLE', async () => {
    const url = h.url;
    await h.close();
    h = await startHarness();
    const res = await cli(['approve', 'x', '--url', url, '--token', TOKENS.alice]);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^HOST_UNREACHABLE: /);
  });

  it('usage errors: exit 2', async () => {
    const cases = [
      ['approve', '--url', h.url, '--token', TOKENS.alice],
      ['approve', 'a', 'b', '--url', h.url, '--token', TOKENS.alice],
      ['approve', 'a', '--span', 'forever', '--url', h.url, '--token', TOKENS.alice],
      ['approve', 'a', '--args', '{nope', '--url', h.url, '--token', TOKENS.alice],
      ['approve', 'a', '--bogus', '--url', h.url, '--token', TOKENS.alice],
      ['deny', 'a', '--url', h.url, '--token', TOKENS.alice],
      ['deny', 'a', '--reason', '  ', '--url', h.url, '--token', TOKENS.alice],
      ['approve', 'a', '--url', 'ftp://127.0.0.1:1/', '--token', TOKENS.alice], // http(s):// is the host's address too (cli-endpoint.test.ts)
      ['operator', 'extra', '--url', h.url, '--token', TOKENS.alice],
    ];
    const saved = process.env.CONTAINED_TOKEN;
    delete process.env.CONTAINED_TOKEN;
    try {
      cases.push(['approve', 'a', '--url', h.url]); // no token anywhere
      for (const argv of cases) {
        const res = await cli(argv);
        expect(res.code, argv.join(' ')).toBe(2);
        expect(res.stderr, argv.join(' ')).toMatch(/^USAGE: /);
      }
    } finally {
      if (saved !== undefined) process.env.CONTAINED_TOKEN = saved;
    }
    expect(h.backend.decisions).toEqual([]);
    expect((await cli(['approve', '--help'])).code).toBe(0);
  });

  it('through the real launcher, with CONTAINED_URL and CONTAINED_TOKEN', async () => {
    h.backend.add({ id: 'env-1' });
    const bin = path.resolve('bin/contained.js');
    const run = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
      new Promise((resolve) => {
        execFile(process.execPath, [bin, ...args], { env: { ...process.env, CONTAINED_URL: h.url, CONTAINED_TOKEN: TOKENS.alice }, timeout: 30_000 }, (error, stdout, stderr) => {
          resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
        });
      });
    const [ok, again] = [await run(['approve', 'env-1']), await run(['deny', 'env-1', '--reason', 'too late'])];
    expect(ok).toMatchObject({ code: 0, stdout: 'env-1: approved\n' });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^ALREADY_RESOLVED: /);
  });
});

describe('OperatorClient', () => {
  it('keeps `pending` current from the snapshot and events', async () => {
    h.backend.add({ id: 'a' });
    const client = await OperatorClient.connect({ url: h.url, token: TOKENS.alice });
    expect([...client.pending.keys()]).toEqual(['a']);
    const seen = new Promise((resolve) => client.onEvent((e) => e.type === 'created' && resolve(e)));
    h.backend.add({ id: 'b' });
    await seen;
    expect([...client.pending.keys()]).toEqual(['a', 'b']);
    await client.decide({ requestId: 'a', verdict: 'approve' });
    await client.ping(); // by now the resolved event for `a` has arrived
    expect([...client.pending.keys()]).toEqual(['b']);
    await client.close();
  });

  it('typed failures: 401 UNAUTHENTICATED, 403 FORBIDDEN, closed mid-request HOST_UNREACHABLE', async () => {
    await expect(OperatorClient.connect({ url: h.url, token: 'tok_wrong' })).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    await expect(OperatorClient.connect({ url: h.url, token: TOKENS.alice, origin: 'https://evil.example' })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    const client = await OperatorClient.connect({ url: h.url, token: TOKENS.alice });
    h.backend.decide = () => new Promise(() => {}); // never answers
    const pending = client.decide({ requestId: 'x', verdict: 'approve' });
    h.channel.disconnect(() => true);
    const error = await pending.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ContainedError);
    expect(error).toMatchObject({ code: 'HOST_UNREACHABLE' });
  });
});

describe('interactive console', () => {
  it('lists pending requests, approves, edits, denies, reports refusals, and quits', async () => {
    h.backend.add({ id: 'req-approve', approvalsRequired: 2 });
    h.backend.add({ id: 'req-edit', args: { to: 'all@example.com' } });
    const client = await OperatorClient.connect({ url: h.url, token: TOKENS.alice });
    const input = new PassThrough();
    const output = new PassThrough();
    let text = '';
    output.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    const until = async (needle: string): Promise<void> => {
      const deadline = Date.now() + 5000;
      while (!text.includes(needle)) {
        if (Date.now() > deadline) throw new Error(`console never printed ${JSON.stringify(needle)}; got:\n${text}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    const done = runOperatorTerminal(client, { input, output, terminal: false });

    await until('2 pending requests');
    expect(text).toContain('connected as alice (approver)');
    expect(text).toContain('outbox.send');
    expect(text).toContain('approvals 0/2');
    expect(text).toContain('"to": "all@example.com"');

    h.backend.add({ id: 'req-deny', reason: 'clean up old files' });
    await until('new request:');
    await until('req-deny');

    input.write('approve req-appr\n'); // unique prefix
    await until('req-approve: approvals 1/2 (alice); waiting for another approver');
    input.write('edit req-edit {"to":"me@example.com"}\n');
    await until('req-edit: approved by alice');
    input.write('deny req-deny not now, maybe next week\n');
    await until('req-deny: denied by alice: not now, maybe next week');
    input.write('approve req-edit\n');
    await until('ALREADY_RESOLVED:');
    input.write('approve req-approve\n');
    await until('DUPLICATE_APPROVER:');
    input.write('edit req-approve {broken\n');
    await until('INVALID_ARGUMENT: edited arguments are not JSON');
    input.write('frobnicate\n');
    await until('unknown command "frobnicate"');
    input.write('list\n');
    await until('1 pending request:');
    input.write('quit\n');
    expect(await done).toBe(0);

    expect(h.backend.requests.get('req-edit')?.approvals).toMatchObject([{ operator: 'alice', args: { to: 'me@example.com' } }]);
    expect(h.backend.requests.get('req-deny')?.denyReason).toBe('not now, maybe next week');
    await client.close();
  });

  it('ends with 1 when the connection is lost', async () => {
    const client = await OperatorClient.connect({ url: h.url, token: TOKENS.viewer });
    const input = new PassThrough();
    const output = new PassThrough();
    output.resume();
    const done = runOperatorTerminal(client, { input, output, terminal: false });
    h.channel.disconnect(() => true);
    expect(await done).toBe(1);
  });
});
