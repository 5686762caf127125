/**
 * Whole-image checks on a set of files already in memory: the same path, type, size and manifest
 * rules the loader applies while streaming, applied at once. Used before writing any archive, so
 * the builder and the signer can never produce an image the loader would refuse.
 *
 * How it fails: throws the loader's own ContainedError code for the first violation found
 * (paths are checked in UTF-8 order, so the same input always reports the same error).
 */
import { isUtf8 } from 'node:buffer';
import { ContainedError } from '../runtime/errors.js';
import type { ImageLimits } from './limits.js';
import { checkEntry, parseManifest } from './manifest.js';
import type { Manifest } from './manifest.js';
import {
  MANIFEST_PATH,
  PathIndex,
  checkFileType,
  compareUtf8,
  describePath,
  normaliseEntryPath,
} from './paths.js';
import type { Verdict } from './paths.js';

/** Throw the verdict's failure as a ContainedError. */
export function orThrow<T>(verdict: Verdict<T>): T {
  if (!verdict.ok) throw new ContainedError(verdict.code, verdict.message);
  return verdict.value;
}

/** Bytes a tar stream of these files takes: a header per file, bodies padded, end marker. */
export function tarStreamBytes(sizes: Iterable<number>): number {
  let total = 1024;
  for (const size of sizes) total += 512 + Math.ceil(size / 512) * 512;
  return total;
}

/** Check a file set against the format and the limits; return its parsed manifest. */
export function validateFiles(files: ReadonlyMap<string, Uint8Array>, limits: ImageLimits): Manifest {
  if (files.size > limits.maxFiles) {
    throw new ContainedError('IMAGE_TOO_MANY_FILES', `the image has ${files.size} files (limit ${limits.maxFiles})`);
  }
  const index = new PathIndex();
  for (const p of [...files.keys()].sort(compareUtf8)) {
    const canonical = orThrow(normaliseEntryPath(p, false, limits));
    if (canonical !== p) throw new ContainedError('IMAGE_PATH_INVALID', `path ${describePath(p)} is not canonical`);
    orThrow(index.add(p, 'file'));
    orThrow(checkFileType(p, undefined));
    const data = files.get(p) as Uint8Array;
    if (data.byteLength > limits.maxFileBytes) {
      throw new ContainedError('IMAGE_FILE_TOO_LARGE', `file ${describePath(p)} has ${data.byteLength} bytes (limit ${limits.maxFileBytes})`);
    }
    if (!isUtf8(data)) throw new ContainedError('IMAGE_FILE_TYPE', `file ${describePath(p)} is not UTF-8 text`);
  }
  const total = tarStreamBytes([...files.values()].map((d) => d.byteLength));
  if (total > limits.maxTotalBytes) {
    throw new ContainedError('IMAGE_TOO_LARGE', `the image would take ${total} bytes uncompressed (limit ${limits.maxTotalBytes})`);
  }
  const manifestBytes = files.get(MANIFEST_PATH);
  if (manifestBytes === undefined) throw new ContainedError('IMAGE_MANIFEST_MISSING', `the image has no ${MANIFEST_PATH}`);
  const manifest = parseManifest(manifestBytes);
  checkEntry(manifest, (p) => files.has(p));
  return manifest;
}
