/**
 * The image digest: sha256 over a canonical listing of the image's files, so the identity of an
 * image is its content and nothing else: not tar mtimes, owners, modes, entry order, compression,
 * nor its signatures.
 *
 * Listing (UTF-8, one line per file, files sorted by the UTF-8 bytes of their path):
 *
 *     contained-image-digest/v1\n
 *     <sha256 hex of the file> <size in bytes, decimal> <path>\n
 *
 * `manifest.json` is one of the listed files, so the digest covers the manifest byte for byte.
 * The signatures entry (`.signatures.json`) is not listed. Paths never contain a newline (the path
 * policy refuses control characters), so the listing is unambiguous.
 *
 * How it fails: it does not; callers validate the file set first.
 */
import { createHash } from 'node:crypto';
import { SIGNATURES_PATH, compareUtf8 } from './paths.js';

export const DIGEST_LISTING_HEADER = 'contained-image-digest/v1\n';
export const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/;

/** One file of an image, as listed in the digest. */
export interface ImageFileInfo {
  path: string;
  size: number;
  /** Hex sha256 of the file's bytes. */
  sha256: string;
}

const sha256hex = (data: Uint8Array | string): string => createHash('sha256').update(data).digest('hex');

/** The files that make up the digest, sorted, with their sizes and hashes. */
export function listImageFiles(files: ReadonlyMap<string, Uint8Array>): ImageFileInfo[] {
  return [...files.entries()]
    .filter(([p]) => p !== SIGNATURES_PATH)
    .sort(([a], [b]) => compareUtf8(a, b))
    .map(([p, data]) => ({ path: p, size: data.byteLength, sha256: sha256hex(data) }));
}

/** The exact text the digest hashes. */
export function canonicalListing(entries: readonly ImageFileInfo[]): string {
  return DIGEST_LISTING_HEADER + entries.map((e) => `${e.sha256} ${e.size} ${e.path}\n`).join('');
}

/** `sha256:<hex>` of the canonical listing, and the listing's entries. */
export function computeDigest(files: ReadonlyMap<string, Uint8Array>): { digest: string; entries: ImageFileInfo[] } {
  const entries = listImageFiles(files);
  return { digest: `sha256:${sha256hex(canonicalListing(entries))}`, entries };
}
