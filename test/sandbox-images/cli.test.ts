/** `imageCommand` called directly with captured io: exit codes, `CODE: message` lines, outputs. */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { imageCommand } from '../../sandbox-images/cli.js';
import { packImage } from '../../sandbox-images/pack.js';
import { baseEntries, baseFiles, cleanupTempDirs, gz, manifestJson, rawTar, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await imageCommand(argv, { stdout: (s) => (out += s), stderr: (s) => (err += s) });
  return { code, out, err };
}

function imageFile(files = baseFiles()): string {
  const file = path.join(tempDir('images-cli-'), 'agent.tgz');
  writeFileSync(file, packImage(files));
  return file;
}

describe('contained image: usage errors exit 2', () => {
  it('no subcommand prints the usage on stderr', async () => {
    const r = await run();
    expect(r.code).toBe(2);
    expect(r.err).toContain('contained image build');
  });

  it('--help exits 0 with the usage on stdout', async () => {
    expect((await run('--help')).code).toBe(0);
    expect((await run('verify', '--help')).out).toContain('contained image verify');
  });

  for (const argv of [
    ['frobnicate'],
    ['build', 'dir'],
    ['build', 'dir', '-o', 'x.tgz', 'extra'],
    ['inspect'],
    ['inspect', 'a.tgz', '--yaml'],
    ['verify', 'a.tgz', '--digest', 'sha1:abc'],
    ['sign', 'a.tgz'],
    ['keygen'],
  ]) {
    it(`${argv.join(' ')}`, async () => {
      const r = await run(...argv);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/^USAGE: /);
    });
  }
});

describe('contained image: failures exit 1 with CODE: message', () => {
  it('inspect of a missing file', async () => {
    const r = await run('inspect', path.join(tempDir(), 'nope.tgz'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^NOT_FOUND: /);
  });

  it('inspect of a hostile archive names the code and the entry', async () => {
    const file = path.join(tempDir(), 'evil.tgz');
    writeFileSync(file, gz(rawTar([...baseEntries(), { path: '../../etc/cron.d/x.txt', body: 'x' }])));
    const r = await run('inspect', file);
    expect(r.code).toBe(1);
    expect(r.err).toBe('IMAGE_PATH_TRAVERSAL: entry "../../etc/cron.d/x.txt" has a ".." segment\n');
  });

  it('verify: digest mismatch, unsigned with --require-signature, untrusted signer, bad key file', async () => {
    const file = imageFile();
    const mismatch = await run('verify', file, '--digest', `sha256:${'a'.repeat(64)}`);
    expect([mismatch.code, mismatch.err.split(':')[0]]).toEqual([1, 'IMAGE_DIGEST_MISMATCH']);
    const unsigned = await run('verify', file, '--require-signature');
    expect([unsigned.code, unsigned.err.split(':')[0]]).toEqual([1, 'IMAGE_SIGNATURE_INVALID']);

    const dir = tempDir();
    expect((await run('keygen', '--out', path.join(dir, 'a'))).code).toBe(0);
    expect((await run('keygen', '--out', path.join(dir, 'b'))).code).toBe(0);
    expect((await run('sign', file, '--key', path.join(dir, 'a.key.pem'))).code).toBe(0);
    const untrusted = await run('verify', file, '--pub', path.join(dir, 'b.pub.pem'));
    expect([untrusted.code, untrusted.err.split(':')[0]]).toEqual([1, 'IMAGE_UNTRUSTED_SIGNER']);
    const either = await run('verify', file, '--pub', path.join(dir, 'b.pub.pem'), '--pub', path.join(dir, 'a.pub.pem'));
    expect(either.code).toBe(0);
    expect(either.out).toContain('(trusted)');
    const notAKey = await run('verify', file, '--pub', file);
    expect([notAKey.code, notAKey.err.split(':')[0]]).toEqual([1, 'INVALID_ARGUMENT']);
    const publicAsPrivate = await run('sign', file, '--key', path.join(dir, 'a.pub.pem'));
    expect([publicAsPrivate.code, publicAsPrivate.err.split(':')[0]]).toEqual([1, 'INVALID_ARGUMENT']);
  });

  it('build of a folder with a bad manifest', async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'manifest.json'), manifestJson({ entry: 'main.js', requests: [{ capability: 'x' }] }));
    writeFileSync(path.join(dir, 'main.js'), 'export default () => 1;\n');
    const r = await run('build', dir, '-o', path.join(dir, '..', 'x.tgz'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^IMAGE_MANIFEST_INVALID: manifest.json does not match the schema: requests\.0\./);
  });
});

describe('contained image: outputs', () => {
  it('keygen writes a 0600 private key and refuses to overwrite it', async () => {
    const prefix = path.join(tempDir(), 'ops');
    const first = await run('keygen', '--out', prefix);
    expect(first.code).toBe(0);
    expect(first.out).toMatch(/key id\s+sha256:[0-9a-f]{64}/);
    expect(statSync(`${prefix}.key.pem`).mode & 0o777).toBe(0o600);
    expect(readFileSync(`${prefix}.key.pem`, 'utf8')).toContain('BEGIN PRIVATE KEY');
    expect(readFileSync(`${prefix}.pub.pem`, 'utf8')).toContain('BEGIN PUBLIC KEY');
    const again = await run('keygen', '--out', prefix);
    expect(again.code).toBe(1);
  });

  it('sign -o leaves the input unchanged', async () => {
    const file = imageFile();
    const before = readFileSync(file);
    const prefix = path.join(tempDir(), 'k');
    await run('keygen', '--out', prefix);
    const out = path.join(path.dirname(file), 'signed.tgz');
    expect((await run('sign', file, '--key', `${prefix}.key.pem`, '-o', out)).code).toBe(0);
    expect(readFileSync(file).equals(before)).toBe(true);
    expect(readFileSync(out).equals(before)).toBe(false);
    const inspected = await run('inspect', out, '--json');
    expect(JSON.parse(inspected.out)).toMatchObject({ signer: { trusted: false }, signatures: [{ algorithm: 'ed25519' }] });
  });

  it('inspect shows requests as a table and escapes control characters from the image', async () => {
    const files = baseFiles();
    files.set('manifest.json', Buffer.from(manifestJson({ description: 'Innocent\u001b]0;pwned\u0007 agent\rOK' })));
    const r = await run('inspect', imageFile(files));
    expect(r.code).toBe(0);
    expect(r.out).not.toMatch(/[\u001b\u0007\r]/);
    expect(r.out).toContain('\\u001b');
    expect(r.out).toMatch(/CAPABILITY\s+KIND\s+METHODS\s+SCOPE\s+WHY/);
    expect(r.out).toMatch(/files\s+fs\s+read\s+\{"readOnly":true\}\s+Read inputs\./);
    expect(r.out).toMatch(/PATH\s+BYTES\s+SHA256/);
  });
});
