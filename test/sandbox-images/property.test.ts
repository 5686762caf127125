/**
 * Property tests (fast-check): random file trees → build → load gives back the same files and the
 * same digest; the digest and the archive bytes do not depend on insertion order, and the digest
 * does not depend on tar entry order, mtimes, owners or modes either.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { gunzipSync, gzipSync } from 'node:zlib';
import { buildImage } from '../../sandbox-images/build.js';
import { computeDigest } from '../../sandbox-images/digest.js';
import { loadImage } from '../../sandbox-images/load.js';
import { packImage } from '../../sandbox-images/pack.js';
import { ALLOWED_EXTENSIONS } from '../../sandbox-images/paths.js';
import { MAIN_JS, cleanupTempDirs, gz, manifestJson, rawEntry, rawTar, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

const fold = (s: string): string => s.normalize('NFKC').toUpperCase().toLowerCase().normalize('NFKC');

/** Keep only paths that name distinct files on any file system (independent of the code under test). */
function distinctTree(paths: string[]): string[] {
  const files = new Set<string>();
  const dirs = new Map<string, string>();
  const kept: string[] = [];
  const admit = (p: string): boolean => {
    const segments = p.split('/');
    const ancestors = segments.slice(0, -1).map((_, i) => segments.slice(0, i + 1).join('/'));
    if (files.has(fold(p)) || dirs.has(fold(p))) return false;
    if (ancestors.some((a) => files.has(fold(a)) || (dirs.has(fold(a)) && dirs.get(fold(a)) !== a))) return false;
    files.add(fold(p));
    for (const a of ancestors) dirs.set(fold(a), a);
    return true;
  };
  admit('manifest.json');
  admit('agent/main.js');
  for (const p of paths) if (admit(p)) kept.push(p);
  return kept;
}

const segment = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9_-]{1,10}$/),
  fc.constantFrom('café', 'straße', '日本', 'ωmega', 'naïve', 'x y'),
);
const filePath = fc
  .tuple(fc.array(segment, { minLength: 0, maxLength: 3 }), segment, fc.constantFrom(...ALLOWED_EXTENSIONS))
  .map(([dirs, name, ext]) => [...dirs, `${name}${ext}`].join('/'));
const content = fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'binary', maxLength: 600 }), fc.constant(''));
const tree = fc
  .array(fc.tuple(filePath, content), { maxLength: 12 })
  .map((entries) => {
    const byPath = new Map(entries);
    const files = new Map<string, Buffer>([
      ['manifest.json', Buffer.from(manifestJson())],
      ['agent/main.js', Buffer.from(MAIN_JS)],
    ]);
    for (const p of distinctTree([...byPath.keys()])) files.set(p, Buffer.from(byPath.get(p) as string, 'utf8'));
    return files;
  });

function writeTree(files: ReadonlyMap<string, Buffer>): string {
  const dir = tempDir('images-prop-');
  for (const [p, data] of files) {
    mkdirSync(path.dirname(path.join(dir, p)), { recursive: true });
    writeFileSync(path.join(dir, p), data);
  }
  return dir;
}

interface TarMeta {
  order: number;
  mtime: number;
  uid: number;
  gid: number;
  uname: string;
  mode: number;
}

function specDigest(files: ReadonlyMap<string, Buffer>): string {
  const lines = [...files.keys()]
    .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    .map((p) => `${createHash('sha256').update(files.get(p) as Buffer).digest('hex')} ${(files.get(p) as Buffer).length} ${p}\n`);
  return `sha256:${createHash('sha256').update(`contained-image-digest/v1\n${lines.join('')}`).digest('hex')}`;
}

describe('properties', () => {
  it('build a folder → load: same files, same digest', async () => {
    await fc.assert(
      fc.asyncProperty(tree, async (files) => {
        const archive = await buildImage(writeTree(files));
        const image = await loadImage(archive);
        expect(new Map(image.files)).toEqual(files);
        expect(image.digest).toBe(computeDigest(files).digest);
        expect(image.digest).toBe(specDigest(files));
      }),
      { numRuns: 30 },
    );
  });

  it('archive bytes and digest do not depend on insertion order', async () => {
    await fc.assert(
      fc.asyncProperty(tree, fc.infiniteStream(fc.nat()), async (files, seeds) => {
        const shuffled = new Map([...files].map((e) => [e, seeds.next().value as number] as const).sort((a, b) => a[1] - b[1]).map(([e]) => e));
        expect(packImage(shuffled).equals(packImage(files))).toBe(true);
        expect(computeDigest(shuffled).digest).toBe(computeDigest(files).digest);
      }),
      { numRuns: 50 },
    );
  });

  it('the digest ignores tar entry order, mtimes, owners, modes and directory entries', async () => {
    const meta = fc.record({
      order: fc.nat(),
      mtime: fc.integer({ min: 0, max: 0o77777777777 }),
      uid: fc.integer({ min: 0, max: 65535 }),
      gid: fc.integer({ min: 0, max: 65535 }),
      uname: fc.stringMatching(/^[a-z]{0,8}$/),
      mode: fc.constantFrom(0o644, 0o600, 0o444, 0o640),
    });
    await fc.assert(
      fc.asyncProperty(tree, fc.infiniteStream(meta), fc.boolean(), async (files, metas, withDirs) => {
        const entries = [...files].map(([p, body]) => ({ p, body, m: metas.next().value as TarMeta }));
        entries.sort((a, b) => a.m.order - b.m.order);
        const raw = entries.flatMap(({ p, body, m }) => {
          const parts = [rawEntry({ path: p, body, mtime: m.mtime, uid: m.uid, gid: m.gid, uname: m.uname, gname: m.uname, mode: m.mode })];
          if (withDirs && p.includes('/')) parts.unshift(rawEntry({ path: `${p.slice(0, p.lastIndexOf('/'))}/`, type: '5', mode: 0o755 }));
          return parts;
        });
        // Directory entries may repeat across files: keep each once.
        const seen = new Set<string>();
        const unique = raw.filter((block) => {
          const key = block.subarray(0, 100).toString();
          if (block[156] !== 0x35) return true;
          if (seen.has(key)) return false;
          seen.add(key);
          return true;
        });
        const longPaths = entries.some(({ p }) => Buffer.byteLength(p) > 99);
        fc.pre(!longPaths);
        const image = await loadImage(gz(rawTar(unique)));
        expect(image.digest).toBe(computeDigest(files).digest);
      }),
      { numRuns: 40 },
    );
  });

  it('the gzip member and chunk boundaries do not matter; data hidden after the end marker is always found', async () => {
    const split = (data: Buffer, cuts: number[]): Buffer => {
      const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
      const members: Buffer[] = [];
      let from = 0;
      for (const p of [...points, data.length]) {
        if (p > from) members.push(gzipSync(data.subarray(from, p)));
        from = Math.max(from, p);
      }
      return Buffer.concat(members);
    };
    await fc.assert(
      fc.asyncProperty(tree, fc.array(fc.nat(), { maxLength: 12 }), fc.boolean(), async (files, cuts, hide) => {
        const tar = gunzipSync(packImage(files));
        const hidden = rawTar([{ path: 'hidden.js', body: 'x' }]);
        const archive = split(hide ? Buffer.concat([tar, hidden]) : tar, cuts);
        if (hide) {
          await expect(loadImage(archive)).rejects.toMatchObject({ code: 'IMAGE_CORRUPT', message: expect.stringContaining('after its end-of-archive marker') });
        } else {
          expect((await loadImage(archive)).digest).toBe(computeDigest(files).digest);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('mutated archives only ever fail with a ContainedError, and never hang', async () => {
    const { ContainedError } = await import('../../runtime/errors.js');
    await fc.assert(
      fc.asyncProperty(tree, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.boolean(), async (files, edits, inTar) => {
        // Mutating the tar (then gzipping) reaches the tar parser; mutating the gzip reaches zlib.
        const target = inTar ? gunzipSync(packImage(files)) : Buffer.from(packImage(files));
        for (const [at, value] of edits) target[at % target.length] = value;
        const archive = inTar ? gzipSync(target) : target;
        const outcome = await loadImage(archive).then(
          () => 'loaded',
          (error: unknown) => error,
        );
        if (outcome !== 'loaded') {
          expect(outcome).toBeInstanceOf(ContainedError);
          expect((outcome as InstanceType<typeof ContainedError>).code).not.toBe('INTERNAL');
        }
      }),
      { numRuns: 300 },
    );
  });
});
