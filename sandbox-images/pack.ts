/**
 * Writes image archives, byte for byte reproducibly: the same files always give the same `.tgz`.
 *
 * We write the ustar headers ourselves rather than use `tar`'s Pack: Pack works from `fs.stat`
 * results and adds pax headers (atime/ctime, long names) depending on its input, while here every
 * byte of every header is set by this file from (path, size) alone, so there is nothing left to
 * pin down. The output is a strict subset of ustar that every tar reads:
 * - regular files only (type `0`), no directory entries, no pax or GNU headers;
 * - entries sorted by the UTF-8 bytes of their path;
 * - mode 0644, uid/gid 0, empty owner names, mtime 2000-01-01T00:00:00Z, devices 0;
 * - paths over 100 bytes split into ustar `prefix` + `name` (so at most 255 bytes);
 * - two zero blocks at the end, no further record padding.
 * Compression: gzip level 9, default window/memLevel/strategy, no file name, mtime 0, OS byte 3
 * ("Unix") forced so the header does not depend on the platform.
 *
 * How it fails: throws the loader's error codes (via `validateFiles`) before writing anything.
 */
import { gzipSync, constants as zlibConstants } from 'node:zlib';
import { ContainedError } from '../runtime/errors.js';
import { resolveLimits } from './limits.js';
import type { ImageLimits } from './limits.js';
import { compareUtf8, describePath } from './paths.js';
import { validateFiles } from './validate.js';

/** mtime of every entry: 2000-01-01T00:00:00Z, in seconds. */
export const FIXED_MTIME_SECONDS = 946_684_800;
const BLOCK = 512;

function writeOctal(block: Buffer, offset: number, width: number, value: number): void {
  const digits = value.toString(8).padStart(width - 1, '0');
  if (digits.length > width - 1) throw new ContainedError('INTERNAL', `value ${value} does not fit a ${width}-byte tar field`);
  block.write(`${digits}\0`, offset, width, 'ascii');
}

/** Split a path into ustar `prefix` (≤ 155 bytes) and `name` (≤ 100 bytes) at a `/`. */
function splitUstarPath(p: string): { name: Buffer; prefix: Buffer } {
  const bytes = Buffer.from(p, 'utf8');
  if (bytes.length <= 100) return { name: bytes, prefix: Buffer.alloc(0) };
  for (let i = bytes.length - 1; i > 0; i--) {
    if (bytes[i] !== 0x2f) continue;
    const prefix = bytes.subarray(0, i);
    const name = bytes.subarray(i + 1);
    if (prefix.length <= 155 && name.length <= 100 && name.length > 0) return { name, prefix };
  }
  throw new ContainedError('IMAGE_PATH_INVALID', `path ${describePath(p)} does not fit a ustar header`);
}

/** The 512-byte ustar header of one regular file. */
export function ustarFileHeader(p: string, size: number): Buffer {
  const block = Buffer.alloc(BLOCK);
  const { name, prefix } = splitUstarPath(p);
  name.copy(block, 0);
  writeOctal(block, 100, 8, 0o644); // mode
  writeOctal(block, 108, 8, 0); // uid
  writeOctal(block, 116, 8, 0); // gid
  writeOctal(block, 124, 12, size);
  writeOctal(block, 136, 12, FIXED_MTIME_SECONDS);
  block.write('        ', 148, 8, 'ascii'); // checksum placeholder: spaces while summing
  block.write('0', 156, 1, 'ascii'); // typeflag: regular file
  block.write('ustar\u000000', 257, 8, 'ascii'); // magic "ustar\0", version "00"
  writeOctal(block, 329, 8, 0); // devmajor
  writeOctal(block, 337, 8, 0); // devminor
  prefix.copy(block, 345);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return block;
}

/** An uncompressed tar of the files, sorted, with the fixed header fields above. */
export function packTar(files: ReadonlyMap<string, Uint8Array>): Buffer {
  const parts: Buffer[] = [];
  for (const p of [...files.keys()].sort(compareUtf8)) {
    const data = files.get(p) as Uint8Array;
    parts.push(ustarFileHeader(p, data.byteLength), Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    const pad = (BLOCK - (data.byteLength % BLOCK)) % BLOCK;
    if (pad > 0) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}

/** gzip with fixed settings and a platform-independent header. */
export function gzipDeterministic(data: Uint8Array): Buffer {
  const out = gzipSync(data, {
    level: 9,
    windowBits: 15,
    memLevel: 8,
    strategy: zlibConstants.Z_DEFAULT_STRATEGY,
  });
  // Header: ID1 ID2 CM FLG MTIME(4) XFL OS. zlib writes MTIME 0 and no name; OS differs by platform.
  out[9] = 3;
  return out;
}

/**
 * A `.tgz` image of the files (paths → bytes, possibly including `.signatures.json`). The files
 * are validated first with the loader's rules and limits.
 */
export function packImage(files: ReadonlyMap<string, Uint8Array>, limits: Partial<ImageLimits> = {}): Buffer {
  validateFiles(files, resolveLimits(limits));
  return gzipDeterministic(packTar(files));
}
