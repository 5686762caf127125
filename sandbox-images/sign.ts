/**
 * Signing an existing image: load it with every check (existing signatures must still verify),
 * add or replace this key's signature in `.signatures.json`, and repack it reproducibly. The digest
 * does not change; signing the same image with the same key twice gives the same bytes (ed25519
 * signatures are deterministic).
 *
 * How it fails: the loader's codes for a bad image; INVALID_ARGUMENT for a key that is not an
 * ed25519 private key.
 */
import type { KeyObject } from 'node:crypto';
import { loadImageWithSignatures } from './load.js';
import type { ImageLimits } from './limits.js';
import { packImage } from './pack.js';
import { SIGNATURES_PATH } from './paths.js';
import { createSignature, decodeSignatures, encodeSignatures, parsePrivateKey } from './signature.js';

export interface SignedImage {
  /** The signed `.tgz`. */
  archive: Buffer;
  /** The image digest (unchanged by signing). */
  digest: string;
  /** `sha256:<hex>` of the signing key's public half. */
  keyId: string;
}

/** Sign the image (Buffer or path) with an ed25519 private key (PEM or KeyObject). */
export async function signImage(
  input: Uint8Array | string,
  privateKey: string | KeyObject,
  limits: Partial<ImageLimits> = {},
): Promise<SignedImage> {
  const key = parsePrivateKey(privateKey);
  const { image, signatureBytes } = await loadImageWithSignatures(input, limits);
  // The loader verified the signatures already there; keep them, replacing this key's own.
  const existing = signatureBytes === undefined ? [] : decodeSignatures(signatureBytes);
  const record = createSignature(image.digest, key);
  const files = new Map(image.files);
  files.set(SIGNATURES_PATH, encodeSignatures([...existing.filter((r) => r.keyId !== record.keyId), record]));
  return { archive: packImage(files, limits), digest: image.digest, keyId: record.keyId };
}
