/**
 * `contained run` through the real launcher (bin/contained.js → node --no-node-snapshot → CLI →
 * worker-process sandbox): outcomes, exit codes, and that no agent program can make the command
 * die, hang, or exit with another status.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSmtpUrl } from '../../host/cli/run-host.js';

const BIN = path.resolve('bin/contained.js');
let dir: string;

function contained(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 60_000, ...(options.cwd ? { cwd: options.cwd } : {}), env: { ...process.env, ...options.env } }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function agent(name: string, source: string): Promise<string> {
  const file = path.join(dir, name);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, source);
  return file;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'contained-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('contained run', () => {
  it('runs a multi-module program with JSON input and prints the outcome (exit 0)', async () => {
    await agent('lib/math.js', 'export const double = (n) => n * 2;');
    const entry = await agent('main.js', "import { double } from './lib/math.js';\nexport default async function main(input) { console.log('got', input.n); return { result: double(input.n) }; }");
    const res = await contained(['run', entry, '--input', '{"n":21}', '--json']);
    expect(res.code).toBe(0);
    const outcome = JSON.parse(res.stdout) as { status: string; value: unknown; logs: Array<{ message: string }> };
    expect(outcome.status).toBe('ok');
    expect(outcome.value).toEqual({ result: 42 });
    expect(outcome.logs[0]?.message).toBe('got 21');
  });

  it('reads --input from @file and prints a human-readable outcome by default', async () => {
    const entry = await agent('echo.js', 'export default async function main(input) { return input; }');
    const inputFile = path.join(dir, 'input.json');
    await writeFile(inputFile, '{"hello":"world"}');
    const res = await contained(['run', entry, '--input', `@${inputFile}`]);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^ok \(cpu/);
    expect(res.stdout).toContain('"hello": "world"');
  });

  it('exits 3 when a limit is exceeded (busy loop after await)', async () => {
    const entry = await agent('loop.js', 'export default async function main() { await null; for (;;) {} }');
    const res = await contained(['run', entry, '--cpu-ms', '300', '--json']);
    expect(res.code).toBe(3);
    expect(JSON.parse(res.stdout)).toMatchObject({ status: 'error', error: { code: 'CPU_LIMIT' } });
  });

  it('exits 3 on the wall-clock limit and on the memory limit', async () => {
    const wall = await agent('wall.js', 'export default async function main() { for (;;) { await null; } }');
    const res = await contained(['run', wall, '--wall-ms', '300', '--cpu-ms', '10000', '--json']);
    expect(res.code).toBe(3);
    expect(['WALL_LIMIT', 'CPU_LIMIT']).toContain((JSON.parse(res.stdout) as { error: { code: string } }).error.code);
    const mem = await agent('mem.js', 'export default async function main() { const a = []; for (;;) a.push("x".repeat(1024) + a.length); }');
    const res2 = await contained(['run', mem, '--memory-mb', '16', '--json']);
    expect(res2.code).toBe(3);
    expect(JSON.parse(res2.stdout)).toMatchObject({ error: { code: 'MEMORY_LIMIT' } });
  });

  it('exits 1 for an agent error and for an invalid program', async () => {
    const thrower = await agent('throw.js', "export default async function main() { throw new Error('nope'); }");
    const res = await contained(['run', thrower, '--json']);
    expect(res.code).toBe(1);
    expect(JSON.parse(res.stdout)).toMatchObject({ error: { code: 'AGENT_ERROR', message: 'nope' } });
    const bare = await agent('bare.js', "import fs from 'node:fs';\nexport default async function main() { return 1; }");
    const res2 = await contained(['run', bare, '--json']);
    expect(res2.code).toBe(1);
    expect(JSON.parse(res2.stdout)).toMatchObject({ error: { code: 'INVALID_PROGRAM' } });
    expect(res2.stdout).toContain('only relative imports');
  });

  it('exits 2 on usage errors with a one-line typed message and no stack', async () => {
    const entry = await agent('ok.js', 'export default () => 1;');
    for (const args of [['run'], ['run', entry, '--cpu-ms', 'abc'], ['run', entry, '--input', '{bad'], ['run', entry, '--frob'], ['frob']]) {
      const res = await contained(args);
      expect(res.code, args.join(' ')).toBe(2);
      expect(res.stderr).toMatch(/^USAGE: /);
      expect(res.stderr).not.toMatch(/\n\s+at /);
    }
  });
});

describe('contained run: a missing program is a usage error', () => {
  it('exits 2 with one USAGE line naming the file (entry module or image), not INVALID_PROGRAM', async () => {
    for (const name of ['nothere.js', 'nothere.tgz']) {
      const res = await contained(['run', path.join(dir, name)]);
      expect(res.code, name).toBe(2);
      expect(res.stderr).toBe(`USAGE: no such file: ${path.join(dir, name)}\n`);
      expect(res.stdout).toBe('');
    }
    const res = await contained(['run', dir]);
    expect(res.code).toBe(2);
    expect(res.stderr).toBe(`USAGE: ${dir} is a folder; give the program's entry module (e.g. main.js) or an image (.tgz)\n`);
  });
});

describe('contained run with an outbox grant', () => {
  const MAIL = 'mail=outbox:{"from":"bot@example.com","allowedRecipients":["@example.com"]}';
  const SEND = "export default async (input, caps) => (await caps.mail.send({ to: 'team@example.com', subject: 'Hi', text: 'hello' })).accepted;";
  const eml = (folder: string): string[] => (existsSync(path.join(folder, 'new')) ? readdirSync(path.join(folder, 'new')).map((f) => readFileSync(path.join(folder, 'new', f), 'utf8')) : []);

  it('by default delivers into the maildir ./.contained/outbox and says so on stderr', async () => {
    const cwd = await mkdtemp(path.join(dir, 'cwd-'));
    const entry = await agent('send.js', SEND);
    const res = await contained(['run', entry, '--grant', MAIL, '--json'], { cwd });
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ status: 'ok', value: ['team@example.com'] });
    expect(res.stderr).toContain(`outbox: mail goes to the maildir ${path.join(cwd, '.contained', 'outbox')} (new/ holds one .eml per message); --smtp URL sends it instead`);
    const mails = eml(path.join(cwd, '.contained', 'outbox'));
    expect(mails).toHaveLength(1);
    expect(mails[0]).toMatch(/^Subject: Hi\r$/m);
  });

  it('--maildir DIR delivers there (relative to the working directory); nothing is printed about it', async () => {
    const cwd = await mkdtemp(path.join(dir, 'cwd-'));
    const entry = await agent('send.js', SEND);
    const res = await contained(['run', entry, '--grant', MAIL, '--maildir', 'sent'], { cwd });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).not.toContain('outbox:');
    expect(eml(path.join(cwd, 'sent'))).toHaveLength(1);
    expect(existsSync(path.join(cwd, '.contained'))).toBe(false);
  });

  it('--smtp smtp://host:port sends through a real SMTP relay', async () => {
    const received: Array<{ rcpt: string[]; raw: string }> = [];
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS', 'AUTH'],
      logger: false,
      onData(stream, session, callback) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          received.push({ rcpt: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString('utf8') });
          callback();
        });
      },
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    try {
      const port = (server.server.address() as AddressInfo).port;
      const cwd = await mkdtemp(path.join(dir, 'cwd-'));
      const entry = await agent('send.js', SEND);
      const res = await contained(['run', entry, '--grant', MAIL, '--smtp', `smtp://127.0.0.1:${port}`, '--json'], { cwd });
      expect(res.code, res.stderr).toBe(0);
      expect(JSON.parse(res.stdout)).toMatchObject({ status: 'ok', value: ['team@example.com'] });
      expect(received).toHaveLength(1);
      expect(received[0]?.rcpt).toEqual(['team@example.com']);
      expect(existsSync(path.join(cwd, '.contained'))).toBe(false);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('bad --smtp / --maildir values are USAGE errors that name the flag', async () => {
    const entry = await agent('send.js', SEND);
    const cases: Array<[string[], RegExp]> = [
      [['--smtp', 'mail.example.com'], /^USAGE: --smtp takes smtp:\/\/HOST\[:PORT\] or smtps:\/\/HOST\[:PORT\]/],
      [['--smtp', 'http://mail.example.com'], /^USAGE: --smtp takes smtp:/],
      [['--smtp', 'smtp://bot:hunter2@mail.example.com'], /^USAGE: --smtp: put the password in CONTAINED_SMTP_PASSWORD/],
      [['--smtp', 'smtp://mail.example.com:99999'], /^USAGE: --smtp takes smtp:/],
      [['--smtp', 'smtp://127.0.0.1:25', '--maildir', 'x'], /^USAGE: give --smtp or --maildir, not both/],
      [['--maildir', ''], /^USAGE: --maildir takes a folder/],
    ];
    for (const [flags, pattern] of cases) {
      const res = await contained(['run', entry, '--grant', MAIL, ...flags]);
      expect(res.code, flags.join(' ')).toBe(2);
      expect(res.stderr, flags.join(' ')).toMatch(pattern);
      expect(res.stderr.trim().split('\n'), flags.join(' ')).toHaveLength(1);
    }
  });

  it('no error a CLI user sees names an internal type: a payments grant says which host option it needs', async () => {
    const entry = await agent('ok.js', 'export default () => 1;');
    const res = await contained(['run', entry, '--grant', 'pay=payments:{"maxAmountCents":1000,"currency":"EUR"}']);
    expect(res.code).toBe(2);
    expect(res.stderr).not.toMatch(/HostDeps|dataDir/);
    expect(res.stderr).toMatch(/no refunds ledger is configured: set "host": \{ "ledger"/);
    const docs = await contained(['caps', 'docs', '--grant', MAIL]);
    expect(docs.code, docs.stderr).toBe(0);
    expect(docs.stdout).toContain('send(');
  });

  it('relative scope paths resolve against the working directory (the usage example ./notes works)', async () => {
    const cwd = await mkdtemp(path.join(dir, 'cwd-'));
    await mkdir(path.join(cwd, 'notes'));
    await writeFile(path.join(cwd, 'notes', 'a.txt'), 'from notes');
    const entry = await agent('read.js', "export default async (input, caps) => caps.notes.read('a.txt');");
    const res = await contained(['run', entry, '--grant', 'notes=fs:{"root":"./notes","readOnly":true}', '--json'], { cwd });
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ status: 'ok', value: 'from notes' });
  });
});

describe('--smtp URL forms', () => {
  it('ports default by scheme; a user takes the password from CONTAINED_SMTP_PASSWORD and makes STARTTLS required', () => {
    expect(parseSmtpUrl('smtp://mail.example.com', {})).toEqual({ host: 'mail.example.com', port: 587, secure: false });
    expect(parseSmtpUrl('smtps://mail.example.com/', {})).toEqual({ host: 'mail.example.com', port: 465, secure: true });
    expect(parseSmtpUrl('smtp://[::1]:2525', {})).toEqual({ host: '::1', port: 2525, secure: false });
    expect(parseSmtpUrl('smtp://bot%40corp@mail.example.com:25', { CONTAINED_SMTP_PASSWORD: 'pw' })).toEqual({
      host: 'mail.example.com',
      port: 25,
      secure: false,
      auth: { user: 'bot@corp', pass: 'pw' },
      requireTLS: true,
    });
    expect(parseSmtpUrl('smtps://bot@mail.example.com', { CONTAINED_SMTP_PASSWORD: 'pw' })).toEqual({ host: 'mail.example.com', port: 465, secure: true, auth: { user: 'bot', pass: 'pw' } });
    for (const bad of ['smtp://bot@mail.example.com', 'smtp://mail.example.com/path', 'smtp://mail.example.com?x=1', 'smtp://', 'SMTP']) {
      expect(() => parseSmtpUrl(bad, {}), bad).toThrow(expect.objectContaining({ code: 'USAGE', message: expect.stringMatching(/^--smtp/) }));
    }
  });
});
