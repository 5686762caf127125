/**
 * Sandbox images: the `.tgz` format agents ship in, its reproducible builder, its digest and
 * ed25519 signatures, and a loader that untrusted archives cannot break. Public API, explicitly
 * named; see docs/image-format.md.
 */
export { buildImage, writeImage, readImageFolder } from './build.js';
export type { BuildImageOptions } from './build.js';
export { imageCommand, IMAGE_USAGE } from './cli.js';
export type { ImageCommandIo } from './cli.js';
export { computeDigest, canonicalListing, listImageFiles, DIGEST_PATTERN, DIGEST_LISTING_HEADER } from './digest.js';
export type { ImageFileInfo } from './digest.js';
export { DEFAULT_IMAGE_LIMITS, resolveLimits } from './limits.js';
export type { ImageLimits } from './limits.js';
export { loadImage } from './load.js';
export type { LoadImageOptions, LoadedImage } from './load.js';
export { manifestSchema, capabilityRequestSchema, manifestLimitsSchema, parseManifest } from './manifest.js';
export type { Manifest, ManifestCapabilityRequest, ManifestLimits } from './manifest.js';
export { packImage, FIXED_MTIME_SECONDS } from './pack.js';
export { ALLOWED_EXTENSIONS, MANIFEST_PATH, SIGNATURES_PATH } from './paths.js';
export { imageProgram } from './program.js';
export { signImage } from './sign.js';
export type { SignedImage } from './sign.js';
export {
  generateSigningKeys,
  keyIdOf,
  parsePrivateKey,
  parsePublicKey,
  signatureMessage,
  SIGNATURE_MESSAGE_PREFIX,
} from './signature.js';
export type { ImageSigner } from './signature.js';
