/**
 * Gzip bombs. Each would inflate far past the loader's cap; the loader must stop after about
 * `maxTotalBytes` of decompressed data (IMAGE_TOO_LARGE), quickly, with a small peak RSS — measured
 * in a child process of its own. The bombs are written once per run, streaming, from a few
 * precomputed gzip members (concatenated members are one valid gzip stream), so 10 GB never
 * exists anywhere.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { Parser } from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_IMAGE_LIMITS } from '../../sandbox-images/limits.js';
import { loadImage } from '../../sandbox-images/load.js';
import { cleanupTempDirs, expectCode, rawHeader, rawTar, runLoadChild, tempDir } from './helpers.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TEN_GIB = 10 * GiB;

let dir: string;
let zeroBomb: string;
let tarBomb: string;
let ratioBomb: Buffer;
let ratioBombFile: string;

/** Write `count` repetitions of the members produced by `member(i)` to `file`. */
function writeMembers(file: string, count: number, member: (i: number) => Buffer[]): void {
  const fd = openSync(file, 'w');
  try {
    for (let i = 0; i < count; i++) for (const part of member(i)) writeSync(fd, part);
  } finally {
    closeSync(fd);
  }
}

beforeAll(async () => {
  dir = tempDir('images-bombs-');
  // 1. Plain zeros: to tar, two zero blocks are an end marker, and the rest "trailing data" that
  //    only the decompressed-byte counter can stop.
  const zeros16 = gzipSync(Buffer.alloc(16 * MiB), { level: 9 });
  zeroBomb = path.join(dir, 'zeros.tgz');
  writeMembers(zeroBomb, TEN_GIB / (16 * MiB), () => [zeros16]);
  // 2. A well-formed tar: 2560 files of 4 MiB of zeros each.
  const zeros4 = gzipSync(Buffer.alloc(4 * MiB), { level: 9 });
  tarBomb = path.join(dir, 'files.tgz');
  writeMembers(tarBomb, TEN_GIB / (4 * MiB), (i) => [gzipSync(rawHeader({ path: `f${i}.txt`, size: 4 * MiB })), zeros4]);
  // 3. The ~900:1 bomb that tar's maxDecompressionRatio (1000) lets through: 64 files of 1 MiB of
  //    zeros with a printable byte every 24000 bytes.
  const sparse = Buffer.alloc(MiB);
  for (let i = 0; i < sparse.length; i += 24_000) sparse[i] = 0x21 + (i % 90);
  ratioBomb = gzipSync(rawTar(Array.from({ length: 64 }, (_, i) => ({ path: `s${i}.txt`, body: sparse }))), { level: 9 });
  ratioBombFile = path.join(dir, 'ratio.tgz');
  writeMembers(ratioBombFile, 1, () => [ratioBomb]);
}, 60_000);

afterAll(cleanupTempDirs);

describe('gzip bombs', () => {
  it('are small on disk and would inflate to 10 GiB', async () => {
    const { statSync } = await import('node:fs');
    expect(statSync(zeroBomb).size).toBeLessThan(16 * MiB);
    expect(statSync(tarBomb).size).toBeLessThan(16 * MiB);
  });

  it('stop early, in a child process whose peak RSS stays small', async () => {
    const report = await runLoadChild([{ file: zeroBomb }, { file: tarBomb }, { file: ratioBombFile }], { cwd: dir });
    expect(report.results.map((r) => r.code)).toEqual(['IMAGE_TOO_LARGE', 'IMAGE_TOO_LARGE', 'IMAGE_TOO_LARGE']);
    for (const r of report.results) expect(r.ms, r.file).toBeLessThan(5_000);
    const growth = report.maxRssBytes - report.baselineRssBytes;
    expect(growth, `peak RSS grew by ${(growth / MiB).toFixed(1)} MiB`).toBeLessThan(150 * MiB);
  });

  it('the zero bomb is stopped by the decompressed-byte counter, from a Buffer too', async () => {
    const { readFileSync } = await import('node:fs');
    const started = performance.now();
    const error = await expectCode(loadImage(readFileSync(zeroBomb)), 'IMAGE_TOO_LARGE');
    expect(error.message).toContain('decompresses past');
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it('the ~900:1 bomb passes tar’s own ratio check but not the absolute cap', async () => {
    const inflated = 64 * (512 + MiB) + 1024;
    const ratio = inflated / ratioBomb.length;
    expect(ratio).toBeGreaterThan(850);
    expect(ratio).toBeLessThan(1000);
    expect(inflated).toBeGreaterThan(DEFAULT_IMAGE_LIMITS.maxTotalBytes);
    // tar's Parser with its default maxDecompressionRatio reads the whole bomb without aborting.
    const aborted = await new Promise<boolean>((resolve) => {
      const parser = new Parser({});
      let abort = false;
      parser.on('abort', () => {
        abort = true;
      });
      parser.on('warn', (code: string) => {
        if (code === 'TAR_ABORT') abort = true;
      });
      parser.on('entry', (entry) => entry.resume());
      parser.on('end', () => resolve(abort));
      parser.on('close', () => resolve(abort));
      parser.end(ratioBomb);
    });
    expect(aborted).toBe(false);
    await expectCode(loadImage(ratioBomb), 'IMAGE_TOO_LARGE');
  });
});
