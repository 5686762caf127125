/**
 * The builder refuses folders the format cannot carry, with the loader's codes, before writing
 * anything; real files, links, FIFOs and modes in temp folders.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, linkSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ErrorCode } from '../../runtime/errors.js';
import { buildImage, writeImage } from '../../sandbox-images/build.js';
import { loadImage } from '../../sandbox-images/load.js';
import { MAIN_JS, cleanupTempDirs, expectCode, manifestJson, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

/** A valid image folder; `extra` adds files (path → content) and returns the folder. */
function imageDir(extra: Record<string, string> = {}): string {
  const dir = tempDir('images-build-');
  mkdirSync(path.join(dir, 'agent'));
  writeFileSync(path.join(dir, 'manifest.json'), manifestJson());
  writeFileSync(path.join(dir, 'agent', 'main.js'), MAIN_JS);
  for (const [p, content] of Object.entries(extra)) {
    mkdirSync(path.dirname(path.join(dir, p)), { recursive: true });
    writeFileSync(path.join(dir, p), content);
  }
  return dir;
}

describe('buildImage', () => {
  it('builds a valid folder, with every allowed extension, and the result loads', async () => {
    const dir = imageDir({ 'lib/a.mjs': 'export const a = 1;\n', 'data/x.json': '{}', 'data/y.txt': 'y', 'data/z.csv': 'a,b\n', 'README.md': '# hi\n' });
    mkdirSync(path.join(dir, 'empty-folder'));
    const image = await loadImage(await buildImage(dir));
    expect([...image.files.keys()].sort()).toEqual(['README.md', 'agent/main.js', 'data/x.json', 'data/y.txt', 'data/z.csv', 'lib/a.mjs', 'manifest.json']);
  });

  const refusals: [string, (dir: string) => void, ErrorCode][] = [
    ['a symbolic link', (d) => symlinkSync('/etc/passwd', path.join(d, 'agent', 'passwd.txt')), 'IMAGE_LINK'],
    ['a symbolic link to a folder', (d) => symlinkSync('/etc', path.join(d, 'etc')), 'IMAGE_LINK'],
    ['a hard link', (d) => linkSync(path.join(d, 'agent', 'main.js'), path.join(d, 'agent', 'again.js')), 'IMAGE_LINK'],
    ['a FIFO', (d) => execFileSync('mkfifo', [path.join(d, 'agent', 'pipe.js')]), 'IMAGE_SPECIAL_FILE'],
    ['an executable', (d) => {
      writeFileSync(path.join(d, 'agent', 'tool.js'), 'x');
      chmodSync(path.join(d, 'agent', 'tool.js'), 0o755);
    }, 'IMAGE_FILE_TYPE'],
    ['node_modules', (d) => {
      mkdirSync(path.join(d, 'node_modules', 'x'), { recursive: true });
      writeFileSync(path.join(d, 'node_modules', 'x', 'index.js'), 'x');
    }, 'IMAGE_FILE_TYPE'],
    ['a .sh file', (d) => writeFileSync(path.join(d, 'run.sh'), 'rm -rf /'), 'IMAGE_FILE_TYPE'],
    ['a file without extension', (d) => writeFileSync(path.join(d, 'LICENSE'), 'MIT'), 'IMAGE_FILE_TYPE'],
    ['binary data', (d) => writeFileSync(path.join(d, 'blob.txt'), Buffer.from([0xff, 0x00, 0xfe])), 'IMAGE_FILE_TYPE'],
    ['a backslash in a name', (d) => writeFileSync(path.join(d, 'a\\b.js'), 'x'), 'IMAGE_PATH_INVALID'],
    ['the reserved signatures name', (d) => writeFileSync(path.join(d, '.signatures.json'), '{}'), 'IMAGE_PATH_INVALID'],
    ['names that differ only in case', (d) => writeFileSync(path.join(d, 'agent', 'MAIN.js'), 'x'), 'IMAGE_PATH_COLLISION'],
    ['no manifest', (d) => execFileSync('rm', [path.join(d, 'manifest.json')]), 'IMAGE_MANIFEST_MISSING'],
    ['an invalid manifest', (d) => writeFileSync(path.join(d, 'manifest.json'), manifestJson({ requests: 'everything' })), 'IMAGE_MANIFEST_INVALID'],
    ['a missing entry module', (d) => writeFileSync(path.join(d, 'manifest.json'), manifestJson({ entry: 'agent/nope.js' })), 'IMAGE_ENTRY_MISSING'],
  ];
  for (const [what, setup, code] of refusals) {
    it(`refuses ${what} → ${code}, and writes no output`, async () => {
      const dir = imageDir();
      setup(dir);
      const out = path.join(tempDir(), 'out.tgz');
      await expectCode(writeImage(dir, out), code);
      expect(existsSync(out)).toBe(false);
    });
  }

  it('applies the size limits at their boundary', async () => {
    const dir = imageDir({ 'data/k.txt': 'k'.repeat(1000) });
    await expect(buildImage(dir, { maxFileBytes: 1000 })).resolves.toBeInstanceOf(Buffer);
    await expectCode(buildImage(dir, { maxFileBytes: 999 }), 'IMAGE_FILE_TOO_LARGE');
    await expect(buildImage(dir, { maxFiles: 3 })).resolves.toBeInstanceOf(Buffer);
    await expectCode(buildImage(dir, { maxFiles: 2 }), 'IMAGE_TOO_MANY_FILES');
  });

  it('refuses a folder that does not exist, and a file given as the folder', async () => {
    await expectCode(buildImage(path.join(tempDir(), 'nope')), 'NOT_FOUND');
    const dir = imageDir();
    await expectCode(buildImage(path.join(dir, 'manifest.json')), 'INVALID_ARGUMENT');
  });
});
