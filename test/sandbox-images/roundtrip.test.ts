/**
 * Round trip for every example agent: build → inspect → verify → load (and sign → verify with a
 * trust store); two builds are byte-identical; the digest is stable, independent of file mtimes
 * and modes, and matches the published format (recomputed here from the spec, not the code).
 */
import { createHash } from 'node:crypto';
import { cpSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { buildExamples, exampleNames, EXAMPLES_DIR } from '../../sandbox-images/build-examples.js';
import { buildImage, writeImage } from '../../sandbox-images/build.js';
import { imageCommand } from '../../sandbox-images/cli.js';
import { loadImage } from '../../sandbox-images/load.js';
import { manifestSchema } from '../../sandbox-images/manifest.js';
import { imageProgram } from '../../sandbox-images/program.js';
import { signImage } from '../../sandbox-images/sign.js';
import { generateSigningKeys } from '../../sandbox-images/signature.js';
import { cleanupTempDirs, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

function capture(): { io: { stdout: (s: string) => void; stderr: (s: string) => void }; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return { io: { stdout: (s) => (out += s), stderr: (s) => (err += s) }, out: () => out, err: () => err };
}

/** The digest recomputed from docs/image-format.md. */
function specDigest(files: ReadonlyMap<string, Buffer>): string {
  const lines = [...files.keys()]
    .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    .map((p) => `${createHash('sha256').update(files.get(p) as Buffer).digest('hex')} ${(files.get(p) as Buffer).length} ${p}\n`);
  return `sha256:${createHash('sha256').update(`contained-image-digest/v1\n${lines.join('')}`).digest('hex')}`;
}

const names = await exampleNames();

describe('example agents', () => {
  it('there are the three documented examples, each with input.json and host-side data/', () => {
    expect(names).toEqual(['records-cleanup', 'refund-desk', 'report-digest']);
    for (const name of names) {
      const input = JSON.parse(readFileSync(path.join(EXAMPLES_DIR, name, 'input.json'), 'utf8')) as unknown;
      expect(typeof input).toBe('object');
      const manifest = manifestSchema.parse(JSON.parse(readFileSync(path.join(EXAMPLES_DIR, name, 'image', 'manifest.json'), 'utf8')));
      expect(manifest.name).toBe(name);
      expect(manifest.input).toBeDefined();
      for (const key of (manifest.input?.required ?? []) as string[]) expect(input).toHaveProperty(key);
    }
  });

  for (const name of names) {
    it(`${name}: build → inspect → verify → sign → verify --pub → load`, async () => {
      const dir = tempDir();
      const out = path.join(dir, `${name}.tgz`);
      const built = capture();
      expect(await imageCommand(['build', path.join(EXAMPLES_DIR, name, 'image'), '-o', out], built.io)).toBe(0);
      const digest = /sha256:[0-9a-f]{64}/.exec(built.out())?.[0];
      expect(digest).toBeDefined();

      const inspected = capture();
      expect(await imageCommand(['inspect', out], inspected.io)).toBe(0);
      expect(inspected.out()).toContain(digest);
      expect(inspected.out()).toContain('agent/main.js');
      expect(inspected.out()).toContain('(not signed)');

      const json = capture();
      expect(await imageCommand(['inspect', out, '--json'], json.io)).toBe(0);
      const report = JSON.parse(json.out()) as { digest: string; manifest: { name: string }; files: { path: string }[] };
      expect(report.digest).toBe(digest);
      expect(report.manifest.name).toBe(name);

      const verified = capture();
      expect(await imageCommand(['verify', out, '--digest', digest as string], verified.io)).toBe(0);
      expect(verified.out()).toContain('not signed');

      const keys = path.join(dir, 'ops');
      expect(await imageCommand(['keygen', '--out', keys], capture().io)).toBe(0);
      expect(await imageCommand(['sign', out, '--key', `${keys}.key.pem`], capture().io)).toBe(0);
      const trusted = capture();
      expect(await imageCommand(['verify', out, '--pub', `${keys}.pub.pem`, '--digest', digest as string], trusted.io)).toBe(0);
      expect(trusted.out()).toContain('(trusted)');

      const image = await loadImage(out, { trustedKeys: [readFileSync(`${keys}.pub.pem`, 'utf8')], expectedDigest: digest as string });
      expect(image.digest).toBe(digest);
      expect(image.signer?.trusted).toBe(true);
      expect(image.files.get(image.manifest.entry)?.toString('utf8')).toContain('export default async function main(input, caps)');
      expect(specDigest(image.files as Map<string, Buffer>)).toBe(digest);
      const program = imageProgram(image);
      expect(program.entry).toBe('agent/main.js');
      expect(Object.keys(program.files)).not.toContain('manifest.json');
      // The agent program imports only relative modules that are in the image.
      for (const [p, source] of Object.entries(program.files)) {
        for (const [, spec] of source.matchAll(/from\s+'([^']+)'/g)) {
          expect(spec, p).toMatch(/^\.\.?\//);
          expect(program.files, `${p} imports ${spec}`).toHaveProperty(path.posix.join(path.posix.dirname(p), spec as string));
        }
      }
    });
  }
});

describe('reproducible builds', () => {
  it('two builds of every example are byte-identical, and npm run build:examples agrees', async () => {
    const a = await buildExamples(EXAMPLES_DIR, tempDir());
    const b = await buildExamples(EXAMPLES_DIR, tempDir());
    expect(a.map((x) => x.digest)).toEqual(b.map((x) => x.digest));
    for (const [i, x] of a.entries()) expect(readFileSync(x.file).equals(readFileSync((b[i] as { file: string }).file))).toBe(true);
  });

  it('mtimes, modes and the source location change neither the bytes nor the digest', async () => {
    const src = path.join(EXAMPLES_DIR, 'report-digest', 'image');
    const first = await buildImage(src);
    const copy = path.join(tempDir(), 'copy');
    cpSync(src, copy, { recursive: true });
    utimesSync(path.join(copy, 'agent', 'main.js'), new Date('2031-05-05'), new Date('2031-05-05'));
    const { chmodSync } = await import('node:fs');
    chmodSync(path.join(copy, 'README.md'), 0o600);
    const second = await buildImage(copy);
    expect(second.equals(first)).toBe(true);
  });

  it('writes a fixed gzip header and ustar headers with fixed owner, mode and mtime', async () => {
    const archive = await buildImage(path.join(EXAMPLES_DIR, 'refund-desk', 'image'));
    // gzip: magic, deflate, no flags (no name), mtime 0, XFL 2 (level 9), OS 3.
    expect([...archive.subarray(0, 10)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3]);
    const tar = gunzipSync(archive);
    const header = tar.subarray(0, 512);
    expect(header.subarray(0, 9).toString()).toBe('README.md');
    expect(header.subarray(100, 108).toString()).toBe('0000644\0');
    expect(header.subarray(108, 124).toString()).toBe('0000000\u00000000000\0');
    expect(header.subarray(136, 148).toString()).toBe('07033241600\0');
    expect(header.subarray(156, 157).toString()).toBe('0');
    expect(header.subarray(265, 329).every((b) => b === 0)).toBe(true);
    expect(tar.subarray(tar.length - 1024).every((b) => b === 0)).toBe(true);
  });

  it('signing is deterministic and does not change the digest', async () => {
    const dir = tempDir();
    const keys = generateSigningKeys();
    const { archive, digest } = await writeImage(path.join(EXAMPLES_DIR, 'records-cleanup', 'image'), path.join(dir, 'a.tgz'));
    const once = await signImage(archive, keys.privateKeyPem);
    const twice = await signImage(once.archive, keys.privateKeyPem);
    expect(once.digest).toBe(digest);
    expect(twice.archive.equals(once.archive)).toBe(true);
    const other = generateSigningKeys();
    const cosigned = await signImage(once.archive, other.privateKeyPem);
    const image = await loadImage(cosigned.archive, { trustedKeys: [other.publicKeyPem] });
    expect(image.signatures.map((s) => s.keyId).sort()).toEqual([keys.keyId, other.keyId].sort());
    expect(image.signer?.keyId).toBe(other.keyId);
    writeFileSync(path.join(dir, 'signed.tgz'), cosigned.archive);
  });
});
