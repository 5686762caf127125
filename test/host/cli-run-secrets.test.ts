/**
 * `contained run --secrets FILE`: an http grant with a credential works from the CLI against a real
 * loopback server (through the launcher and a worker sandbox); without the flag, or with a file
 * that lacks the secret, the command stops before the program runs with a USAGE error naming
 * `--secrets`. No output of the command ever contains a secret value, whatever is wrong with the file.
 */
import { execFile, spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRunSecrets, MAX_SECRETS_FILE_BYTES } from '../../host/cli/run-secrets.js';

const BIN = path.resolve('bin/contained.js');
const TOKEN = 'sk-cli-9d4e2b7a61f0';
const SECRET = `Bearer ${TOKEN}`;
let dir: string;
let server: http.Server;
let base = '';
const seenAuth: string[] = [];

function contained(args: string[], cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 60_000, ...(cwd ? { cwd } : {}) }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

/** A file in the test folder with the given mode (the umask does not apply to chmod). */
async function file(name: string, content: string, mode = 0o600): Promise<string> {
  const target = path.join(dir, name);
  await mkdir(path.dirname(target), { recursive: true });
  await writeFile(target, content);
  await chmod(target, mode);
  return target;
}

function grant(secret = 'svc-token'): string {
  return `api=http:${JSON.stringify({ origins: [base], allowedCidrs: ['127.0.0.1/32'], credentials: [{ origin: base, header: 'authorization', secret }] })}`;
}

const AGENT = "export default async (input, caps) => { const r = await caps.api.get({ url: input.url }); return { status: r.status, body: r.body }; };";

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'contained-secrets-'));
  server = http.createServer((req, res) => {
    seenAuth.push(String(req.headers.authorization ?? ''));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ youSent: req.headers.authorization ?? null }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

describe('contained run --secrets FILE', () => {
  it('attaches the credential an http grant names; the agent and the output see it redacted', async () => {
    const entry = await file('agent.js', AGENT, 0o644);
    const secrets = await file('secrets.json', JSON.stringify({ 'svc-token': SECRET, other: 'unused' }));
    seenAuth.length = 0;
    const res = await contained(['run', entry, '--grant', grant(), '--secrets', secrets, '--input', JSON.stringify({ url: `${base}/v1/echo` }), '--json']);
    expect(res.code, res.stderr).toBe(0);
    expect(seenAuth).toEqual([SECRET]);
    const outcome = JSON.parse(res.stdout) as { status: string; value: { status: number; body: string } };
    expect(outcome.status).toBe('ok');
    expect(JSON.parse(outcome.value.body)).toEqual({ youSent: '[REDACTED]' });
    expect(res.stdout + res.stderr).not.toContain(TOKEN);
  });

  it('resolves FILE against the working directory', async () => {
    const cwd = await mkdtemp(path.join(dir, 'cwd-'));
    const entry = await file(path.relative(dir, path.join(cwd, 'agent.js')), AGENT, 0o644);
    await file(path.relative(dir, path.join(cwd, 'creds', 's.json')), JSON.stringify({ 'svc-token': SECRET }));
    const res = await contained(['run', entry, '--grant', grant(), '--secrets', 'creds/s.json', '--input', JSON.stringify({ url: base }), '--json'], cwd);
    expect(res.code, res.stderr).toBe(0);
  });

  it('without --secrets, a grant with a credential stops before the run: USAGE naming the grant, the secret and --secrets', async () => {
    const entry = await file('agent.js', AGENT, 0o644);
    seenAuth.length = 0;
    const res = await contained(['run', entry, '--grant', grant(), '--input', JSON.stringify({ url: base }), '--json']);
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr).toBe(
      `USAGE: --grant api: its credential for ${base} names the secret "svc-token"; give --secrets FILE, a JSON file of secret name → value holding it (others must have no access: chmod 600)\n`,
    );
    expect(seenAuth).toEqual([]);
  });

  it('a file without the secret: USAGE naming it and the names the file holds, never a value', async () => {
    const entry = await file('agent.js', AGENT, 0o644);
    const secrets = await file('wrong.json', JSON.stringify({ 'crm-token': SECRET }));
    const res = await contained(['run', entry, '--grant', grant(), '--secrets', secrets, '--input', JSON.stringify({ url: base })]);
    expect(res.code).toBe(2);
    expect(res.stderr).toBe(`USAGE: --grant api: its credential for ${base} names the secret "svc-token", which --secrets ${secrets} does not hold (it holds: "crm-token")\n`);
    expect(res.stdout + res.stderr).not.toContain(TOKEN);
  });

  it('a file other users can read is refused (exit 2, says chmod 600); the value is not printed', async () => {
    const entry = await file('agent.js', AGENT, 0o644);
    const secrets = await file('open.json', JSON.stringify({ 'svc-token': SECRET }), 0o644);
    const res = await contained(['run', entry, '--grant', grant(), '--secrets', secrets, '--input', JSON.stringify({ url: base })]);
    expect(res.code).toBe(2);
    expect(res.stderr).toBe(`USAGE: --secrets ${secrets} is accessible to other users (mode 644); run chmod 600 ${secrets}\n`);
    expect(res.stdout + res.stderr).not.toContain(TOKEN);
  });

  it('is listed in the usage text', async () => {
    const res = await contained(['run', '--help']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/--secrets FILE +secrets http grants attach/);
  });
});

describe('loadRunSecrets: every bad file is a USAGE error naming --secrets, and no message quotes the file', () => {
  const refused = async (target: string, pattern: RegExp): Promise<void> => {
    const error = await loadRunSecrets(target, dir, 'linux').then(
      () => expect.fail(`${target} was accepted`),
      (e: unknown) => e as { code: string; message: string },
    );
    expect(error.code, target).toBe('USAGE');
    expect(error.message, target).toMatch(pattern);
    expect(error.message, target).toMatch(/^--secrets/);
    expect(error.message, target).not.toContain(TOKEN);
  };

  it('reads names and values; only get() gives a value', async () => {
    const s = await loadRunSecrets(await file('ok.json', JSON.stringify({ b: SECRET, a: 'x', __proto__x: 'y' })), dir, 'linux');
    expect(s.names).toEqual(['__proto__x', 'a', 'b']);
    expect(s.get('b')).toBe(SECRET);
    expect(s.get('nope')).toBeUndefined();
    expect(s.get('toString')).toBeUndefined();
    expect(JSON.stringify(s)).not.toContain(TOKEN);
  });

  it('a "__proto__" key is an ordinary secret name', async () => {
    const s = await loadRunSecrets(await file('proto.json', `{"__proto__":"${SECRET}"}`), dir, 'linux');
    expect(s.get('__proto__')).toBe(SECRET);
    expect(s.names).toEqual(['__proto__']);
  });

  it('refuses JSON syntax errors by place only, however V8 words them', async () => {
    await refused(await file('bad1.json', `{"svc-token": ${TOKEN}}`), /is not valid JSON/);
    await refused(await file('bad2.json', `{\n  "svc-token": "${SECRET}",\n}`), /is not valid JSON \(line 3, column 1\)/);
    await refused(await file('bad3.json', `{"svc-token": "${SECRET}`), /is not valid JSON/);
    await refused(await file('empty.json', ''), /is not valid JSON/);
  });

  it('refuses anything but an object of non-empty one-line strings, naming the key', async () => {
    await refused(await file('array.json', JSON.stringify([SECRET])), /must hold a JSON object/);
    await refused(await file('null.json', 'null'), /must hold a JSON object/);
    await refused(await file('string.json', JSON.stringify(SECRET)), /must hold a JSON object/);
    await refused(await file('number.json', JSON.stringify({ 'svc-token': 42 })), /the value of "svc-token" must be a string \(it is number\)/);
    await refused(await file('nested.json', JSON.stringify({ 'svc-token': { value: SECRET } })), /the value of "svc-token" must be a string \(it is object\)/);
    await refused(await file('emptyvalue.json', JSON.stringify({ 'svc-token': '' })), /the value of "svc-token" is empty/);
    await refused(await file('crlf.json', JSON.stringify({ 'svc-token': `${SECRET}\r\nX-Injected: 1` })), /the value of "svc-token" contains a line break or NUL/);
    await refused(await file('nul.json', JSON.stringify({ 'svc-token': `${SECRET}\u0000` })), /contains a line break or NUL/);
    await refused(await file('emptyname.json', JSON.stringify({ '': SECRET })), /a secret has an empty name/);
  });

  it('refuses a file others can read, write or run, at every such bit; group access is allowed', async () => {
    for (const mode of [0o604, 0o602, 0o601, 0o666, 0o644, 0o755]) {
      await refused(await file(`mode-${mode.toString(8)}.json`, JSON.stringify({ a: SECRET }), mode), new RegExp(`accessible to other users \\(mode ${mode.toString(8)}\\); run chmod 600`));
    }
    for (const mode of [0o600, 0o400, 0o640, 0o660]) {
      const s = await loadRunSecrets(await file(`ok-${mode.toString(8)}.json`, JSON.stringify({ a: SECRET }), mode), dir, 'linux');
      expect(s.get('a'), mode.toString(8)).toBe(SECRET);
    }
  });

  it('judges a link by the file it points to', async () => {
    const open = await file('target-open.json', JSON.stringify({ a: SECRET }), 0o644);
    const closed = await file('target-closed.json', JSON.stringify({ a: SECRET }), 0o600);
    await symlink(open, path.join(dir, 'link-open.json'));
    await symlink(closed, path.join(dir, 'link-closed.json'));
    await refused(path.join(dir, 'link-open.json'), /accessible to other users/);
    expect((await loadRunSecrets('link-closed.json', dir, 'linux')).get('a')).toBe(SECRET);
  });

  it('on Windows (no POSIX modes) the mode is not judged', async () => {
    const s = await loadRunSecrets(await file('win.json', JSON.stringify({ a: SECRET }), 0o644), dir, 'win32');
    expect(s.get('a')).toBe(SECRET);
  });

  it('refuses a missing file, a folder, an empty name and a file over the size cap', async () => {
    await refused(path.join(dir, 'missing.json'), /^--secrets: no such file: /);
    await refused(dir, /is a folder/);
    await refused('  ', /^--secrets takes a file/);
    await refused(await file('big.json', `{"a":"${'x'.repeat(MAX_SECRETS_FILE_BYTES)}"}`), new RegExp(`is larger than ${MAX_SECRETS_FILE_BYTES} bytes`));
  });

  it('reads a pipe (--secrets <(vault …)), whose mode is not judged', async () => {
    const fifo = path.join(dir, 'secrets.fifo');
    const made = spawnSync('mkfifo', ['-m', '0666', fifo]);
    if (made.status !== 0) return; // no mkfifo on this system
    const writer = new Promise<void>((resolve, reject) => {
      const child = execFile('sh', ['-c', `printf '%s' '${JSON.stringify({ a: SECRET })}' > "${fifo}"`], (error) => (error ? reject(error) : resolve()));
      void child;
    });
    const s = await loadRunSecrets(fifo, dir, 'linux');
    await writer;
    expect(s.get('a')).toBe(SECRET);
  });
});
