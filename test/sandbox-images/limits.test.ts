/**
 * Every loader limit at its boundary: an image exactly at the limit loads, one unit over is
 * refused with the limit's own code. Also: limits that are not positive integers are refused
 * before any byte is read.
 */
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { loadImage } from '../../sandbox-images/load.js';
import { packImage } from '../../sandbox-images/pack.js';
import { baseEntries, baseFiles, expectCode, gz, rawTar } from './helpers.js';

function image(extra: Record<string, string>): Buffer {
  const files = baseFiles();
  for (const [p, c] of Object.entries(extra)) files.set(p, Buffer.from(c));
  return packImage(files);
}

describe('loader limits at their boundary', () => {
  it('maxFileBytes', async () => {
    const archive = image({ 'k.txt': 'k'.repeat(700) });
    await expect(loadImage(archive, { maxFileBytes: 700 })).resolves.toBeDefined();
    await expectCode(loadImage(archive, { maxFileBytes: 699 }), 'IMAGE_FILE_TOO_LARGE');
  });

  it('maxTotalBytes (decompressed tar stream bytes)', async () => {
    const archive = image({ 'k.txt': 'k'.repeat(700) });
    const size = gunzipSync(archive).length;
    await expect(loadImage(archive, { maxTotalBytes: size })).resolves.toBeDefined();
    await expectCode(loadImage(archive, { maxTotalBytes: size - 1 }), 'IMAGE_TOO_LARGE');
  });

  it('maxArchiveBytes (compressed bytes)', async () => {
    const archive = image({});
    await expect(loadImage(archive, { maxArchiveBytes: archive.length })).resolves.toBeDefined();
    await expectCode(loadImage(archive, { maxArchiveBytes: archive.length - 1 }), 'IMAGE_TOO_LARGE');
  });

  it('maxFiles (files and directories)', async () => {
    const archive = image({ 'a.txt': 'a' });
    await expect(loadImage(archive, { maxFiles: 3 })).resolves.toBeDefined();
    await expectCode(loadImage(archive, { maxFiles: 2 }), 'IMAGE_TOO_MANY_FILES');
    const withDirs = gz(rawTar([{ path: 'agent/', type: '5' }, ...baseEntries()]));
    await expect(loadImage(withDirs, { maxFiles: 3 })).resolves.toBeDefined();
    await expectCode(loadImage(withDirs, { maxFiles: 2 }), 'IMAGE_TOO_MANY_FILES');
  });

  it('maxDepth', async () => {
    const archive = image({ 'a/b/c/d.txt': 'd' });
    await expect(loadImage(archive, { maxDepth: 4 })).resolves.toBeDefined();
    await expectCode(loadImage(archive, { maxDepth: 3 }), 'IMAGE_PATH_TOO_DEEP');
  });

  it('maxPathBytes', async () => {
    const archive = image({ 'abcdefghij.txt': 'x' });
    await expect(loadImage(archive, { maxPathBytes: 14 })).resolves.toBeDefined();
    await expectCode(loadImage(archive, { maxPathBytes: 13 }), 'IMAGE_PATH_INVALID');
  });

  it('refuses limits that are not positive integers', async () => {
    const archive = image({});
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      await expectCode(loadImage(archive, { maxTotalBytes: bad }), 'INVALID_ARGUMENT');
    }
    await expectCode(loadImage(archive, { expectedDigest: 'md5:abc' }), 'INVALID_ARGUMENT');
    await expectCode(loadImage(archive, { trustedKeys: ['not a key'] }), 'INVALID_ARGUMENT');
  });

  it('accepts what other tools write: ./ prefixes, directory entries, long paths via ustar prefix, trailing zero padding', async () => {
    const long = `${'d'.repeat(90)}/${'e'.repeat(90)}.txt`;
    const files = baseFiles();
    files.set(long, Buffer.from('long'));
    const viaPack = await loadImage(packImage(files));
    expect(viaPack.files.get(long)?.toString()).toBe('long');
    const tar = rawTar([{ path: './', type: '5' }, { path: './agent/', type: '5', mode: 0o755 }, ...baseEntries().map((e) => ({ ...e, path: `./${e.path}` }))]);
    const loaded = await loadImage(gz(Buffer.concat([tar, Buffer.alloc(9 * 1024)])));
    expect([...loaded.files.keys()].sort()).toEqual(['agent/main.js', 'manifest.json']);
  });
});
