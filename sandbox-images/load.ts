/**
 * The image loader: untrusted `.tgz` in, a validated image in memory out. Nothing is extracted or
 * written anywhere; see `read-archive.ts` for the streaming defences.
 *
 * Order of checks: options (before any byte is read) → archive and entries (streaming) → manifest
 * present and valid → entry module present → digest → expected digest → signatures and trust.
 *
 * How it fails: only ever throws ContainedError — an IMAGE_* code naming the entry, NOT_FOUND for
 * a missing archive file, INVALID_ARGUMENT for bad options; anything unexpected becomes INTERNAL.
 */
import type { KeyObject } from 'node:crypto';
import { ContainedError } from '../runtime/errors.js';
import { DIGEST_PATTERN, computeDigest } from './digest.js';
import type { ImageFileInfo } from './digest.js';
import { resolveLimits } from './limits.js';
import type { ImageLimits } from './limits.js';
import { checkEntry, parseManifest } from './manifest.js';
import type { Manifest } from './manifest.js';
import { MANIFEST_PATH, SIGNATURES_PATH } from './paths.js';
import { readArchive } from './read-archive.js';
import { checkSignatures, parsePublicKey } from './signature.js';
import type { ImageSigner } from './signature.js';

export interface LoadImageOptions extends Partial<ImageLimits> {
  /** Refuse the image (IMAGE_DIGEST_MISMATCH) unless its digest is exactly this `sha256:<hex>`. */
  expectedDigest?: string;
  /**
   * Trust store: ed25519 public keys (PEM or KeyObject). When given — even empty — the image must
   * carry a valid signature by one of them (IMAGE_SIGNATURE_INVALID if unsigned,
   * IMAGE_UNTRUSTED_SIGNER if signed only by others).
   */
  trustedKeys?: readonly (string | KeyObject)[];
  /** Require a valid signature by any key (IMAGE_SIGNATURE_INVALID otherwise). */
  requireSignature?: boolean;
}

export interface LoadedImage {
  manifest: Manifest;
  /** Every file of the image by canonical path (`manifest.json` included, signatures excluded). */
  files: ReadonlyMap<string, Buffer>;
  /** The digest listing: files sorted by path with size and sha256. */
  entries: readonly ImageFileInfo[];
  /** `sha256:<hex>` over the canonical listing (see digest.ts). */
  digest: string;
  /** All signatures in the image, each verified against the digest. */
  signatures: readonly ImageSigner[];
  /** The trusted signer (with a trust store), or the first signer (without); absent if unsigned. */
  signer?: ImageSigner;
}

/** Load and verify an image from a Buffer or the path of a `.tgz` file. */
export async function loadImage(input: Uint8Array | string, options: LoadImageOptions = {}): Promise<LoadedImage> {
  return (await loadImageWithSignatures(input, options)).image;
}

/** `loadImage`, also returning the raw signatures entry (for the signer, which rewrites it). */
export async function loadImageWithSignatures(
  input: Uint8Array | string,
  options: LoadImageOptions = {},
): Promise<{ image: LoadedImage; signatureBytes: Buffer | undefined }> {
  try {
    return await load(input, options);
  } catch (error) {
    if (error instanceof ContainedError) throw error;
    throw new ContainedError('INTERNAL', 'unexpected failure while loading an image', { cause: error });
  }
}

async function load(input: Uint8Array | string, options: LoadImageOptions): Promise<{ image: LoadedImage; signatureBytes: Buffer | undefined }> {
  if (typeof input !== 'string' && !(input instanceof Uint8Array)) {
    throw new ContainedError('INVALID_ARGUMENT', 'an image is a Buffer or the path of a .tgz file');
  }
  const limits = resolveLimits(pickLimits(options));
  const { expectedDigest } = options;
  if (expectedDigest !== undefined && (typeof expectedDigest !== 'string' || !DIGEST_PATTERN.test(expectedDigest))) {
    throw new ContainedError('INVALID_ARGUMENT', 'expectedDigest must look like sha256:<64 hex digits>', { data: { path: 'expectedDigest' } });
  }
  const trustedKeys = options.trustedKeys?.map((k) => parsePublicKey(k));

  const all = await readArchive(input, limits);
  const manifestBytes = all.get(MANIFEST_PATH);
  if (manifestBytes === undefined) throw new ContainedError('IMAGE_MANIFEST_MISSING', `the image has no ${MANIFEST_PATH}`);
  const manifest = parseManifest(manifestBytes);
  const signatureBytes = all.get(SIGNATURES_PATH);
  all.delete(SIGNATURES_PATH);
  checkEntry(manifest, (p) => all.has(p));

  const { digest, entries } = computeDigest(all);
  if (expectedDigest !== undefined && digest !== expectedDigest) {
    throw new ContainedError('IMAGE_DIGEST_MISMATCH', `the image digest is ${digest}, expected ${expectedDigest}`, {
      data: { digest, expectedDigest },
    });
  }
  const trust = checkSignatures(signatureBytes, digest, {
    ...(trustedKeys === undefined ? {} : { trustedKeys }),
    requireSignature: options.requireSignature === true,
  });
  const image: LoadedImage = { manifest, files: all, entries, digest, signatures: trust.signatures };
  if (trust.signer !== undefined) image.signer = trust.signer;
  return { image, signatureBytes };
}

function pickLimits(options: LoadImageOptions): Partial<ImageLimits> {
  const { maxArchiveBytes, maxTotalBytes, maxFileBytes, maxFiles, maxDepth, maxPathBytes } = options;
  return Object.fromEntries(
    Object.entries({ maxArchiveBytes, maxTotalBytes, maxFileBytes, maxFiles, maxDepth, maxPathBytes }).filter(([, v]) => v !== undefined),
  );
}
