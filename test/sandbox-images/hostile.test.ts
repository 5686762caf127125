/**
 * The hostile-archive corpus: each case must be refused with its exact code, by the loader given a
 * Buffer and given a file path, and — in a process of its own whose cwd and TMPDIR we watch —
 * without writing a single file anywhere.
 */
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ContainedError } from '../../runtime/errors.js';
import { loadImage } from '../../sandbox-images/load.js';
import { cleanupTempDirs, expectCode, runLoadChild, tempDir } from './helpers.js';
import { hostileCorpus } from './hostile-corpus.js';

afterAll(cleanupTempDirs);

const watch = tempDir('images-watch-');
const escapeTarget = path.join(watch, 'escape');
const corpus = hostileCorpus(escapeTarget);

describe('hostile archives, loaded from a Buffer', () => {
  for (const c of corpus) {
    it(`${c.name} → ${c.code}`, async () => {
      if (c.code === 'OK') {
        await expect(loadImage(c.archive, c.options)).resolves.toMatchObject({ signer: { trusted: true } });
        return;
      }
      const error = await expectCode(loadImage(c.archive, c.options), c.code);
      expect(error.message.length).toBeGreaterThan(0);
    });
  }
});

describe('hostile archives, loaded from a file', () => {
  it('answers the same codes from a path as from a Buffer', async () => {
    const dir = tempDir('images-corpus-');
    for (const [i, c] of corpus.entries()) {
      const file = path.join(dir, `${i}.tgz`);
      writeFileSync(file, c.archive);
      const outcome = await loadImage(file, c.options).then(
        () => 'OK',
        (error: unknown) => (error instanceof ContainedError ? error.code : `not a ContainedError: ${String(error)}`),
      );
      expect(outcome, c.name).toBe(c.code);
    }
  });

  it('names the offending entry in the message', async () => {
    const byName = new Map(corpus.map((c) => [c.name, c]));
    const check = async (name: string, fragment: string): Promise<void> => {
      const c = byName.get(name);
      if (c === undefined) throw new Error(`no case ${name}`);
      const error = await expectCode(loadImage(c.archive, c.options), c.code as never);
      expect(error.message).toContain(fragment);
    };
    await check('dot-dot at start', '"../pwned.js"');
    await check('symbolic link', '"agent/link.js"');
    await check('FIFO', '"agent/pipe.js"');
    await check('case collision', '"agent/Main.js"');
    await check('oversized file', '"big.txt"');
    await check('control character in path', '\\u001b');
  });

  it('refuses a missing file, a folder and a FIFO path without hanging', async () => {
    const dir = tempDir('images-paths-');
    await expectCode(loadImage(path.join(dir, 'nope.tgz')), 'NOT_FOUND');
    await expectCode(loadImage(dir), 'IMAGE_CORRUPT');
    const { execFileSync } = await import('node:child_process');
    const fifo = path.join(dir, 'fifo.tgz');
    execFileSync('mkfifo', [fifo]);
    await expectCode(loadImage(fifo), 'IMAGE_CORRUPT');
  });
});

describe('nothing is written anywhere', () => {
  it('loads the whole corpus in a child process whose cwd and TMPDIR stay empty', async () => {
    const cwd = path.join(watch, 'cwd');
    const tmp = path.join(watch, 'tmp');
    const corpusDir = tempDir('images-corpus-child-');
    mkdirSync(cwd);
    mkdirSync(tmp);
    const jobs = corpus.map((c, i) => {
      const file = path.join(corpusDir, `${i}.tgz`);
      writeFileSync(file, c.archive);
      return { file, ...(c.options === undefined ? {} : { options: c.options }) };
    });
    const report = await runLoadChild(jobs, { cwd, env: { TMPDIR: tmp, TMP: tmp, TEMP: tmp } });
    expect(report.results.map((r) => r.code)).toEqual(corpus.map((c) => c.code));
    for (const r of report.results) if (r.code !== 'OK') expect(r.constructor).toBe('ContainedError');
    // The watched tree: exactly the two empty folders we made; nothing escaped to `escape/`.
    expect(readdirSync(watch).sort()).toEqual(['cwd', 'tmp']);
    expect(readdirSync(cwd)).toEqual([]);
    expect(readdirSync(tmp)).toEqual([]);
  });
});
