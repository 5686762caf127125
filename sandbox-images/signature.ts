/**
 * Image signatures: ed25519 (node:crypto) over the image digest, stored inside the archive in the
 * reserved root entry `.signatures.json`, which the digest does not cover (so signing never
 * changes an image's identity, and several keys can sign the same image).
 *
 * Signed message (UTF-8): `contained-image-signature/v1\n<digest>` — a domain-separated statement
 * "I vouch for the image with this digest", useless as a signature of anything else.
 *
 * `.signatures.json`: `{"format":1,"signatures":[{"algorithm":"ed25519","keyId":"sha256:<hex of the
 * SPKI DER public key>","publicKey":"<base64 SPKI DER>","signature":"<base64>"}]}`.
 *
 * Defends against: forged, altered or replayed signatures (every signature present must verify
 * against the digest recomputed from the files, and its keyId must match its key), signers that
 * are not trusted (when the host passes a trust store, one signature must come from it), and
 * non-ed25519 keys.
 *
 * How it fails: IMAGE_SIGNATURE_INVALID (missing where required, malformed, does not verify),
 * IMAGE_UNTRUSTED_SIGNER (valid, but no key in the trust store), INVALID_ARGUMENT (a key given by
 * the host is not an ed25519 PEM key).
 */
import { isUtf8 } from 'node:buffer';
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { z } from 'zod';
import { ContainedError } from '../runtime/errors.js';

export const SIGNATURE_MESSAGE_PREFIX = 'contained-image-signature/v1\n';

const base64 = z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/).max(512);
const signatureRecordSchema = z.strictObject({
  algorithm: z.literal('ed25519'),
  keyId: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  publicKey: base64,
  signature: base64,
});
const signaturesFileSchema = z.strictObject({
  format: z.literal(1),
  signatures: z.array(signatureRecordSchema).min(1).max(16),
});

export type SignatureRecord = z.infer<typeof signatureRecordSchema>;

/** Who signed an image, as reported by the loader. */
export interface ImageSigner {
  keyId: string;
  /** The signer's public key, PEM (SPKI). */
  publicKeyPem: string;
  /** True when the key is in the trust store the image was loaded with. */
  trusted: boolean;
}

export interface SignatureCheck {
  /** Every signature in the image (all verified). */
  signatures: ImageSigner[];
  /** The trusted signer when a trust store was given, else the first signer; none if unsigned. */
  signer?: ImageSigner;
}

const invalid = (message: string, cause?: unknown): ContainedError =>
  new ContainedError('IMAGE_SIGNATURE_INVALID', message, cause === undefined ? {} : { cause });

/** The exact bytes an image signature signs. */
export function signatureMessage(digest: string): Buffer {
  return Buffer.from(SIGNATURE_MESSAGE_PREFIX + digest, 'utf8');
}

/** `sha256:<hex>` of the key's SPKI DER encoding. */
export function keyIdOf(publicKey: KeyObject): string {
  return `sha256:${createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex')}`;
}

/** An ed25519 public key from PEM (or a private key's public half). Throws INVALID_ARGUMENT. */
export function parsePublicKey(key: string | KeyObject): KeyObject {
  let object: KeyObject;
  try {
    object = typeof key === 'string' ? createPublicKey(key) : key.type === 'private' ? createPublicKey(key) : key;
  } catch (cause) {
    throw new ContainedError('INVALID_ARGUMENT', 'not a PEM public key', { cause });
  }
  if (object.asymmetricKeyType !== 'ed25519') {
    throw new ContainedError('INVALID_ARGUMENT', `image keys are ed25519, not ${String(object.asymmetricKeyType)}`);
  }
  return object;
}

/** An ed25519 private key from PEM. Throws INVALID_ARGUMENT. */
export function parsePrivateKey(key: string | KeyObject): KeyObject {
  let object: KeyObject;
  try {
    object = typeof key === 'string' ? createPrivateKey(key) : key;
  } catch (cause) {
    throw new ContainedError('INVALID_ARGUMENT', 'not a PEM private key', { cause });
  }
  if (object.type !== 'private' || object.asymmetricKeyType !== 'ed25519') {
    throw new ContainedError('INVALID_ARGUMENT', 'image signing keys are ed25519 private keys');
  }
  return object;
}

/** A fresh ed25519 key pair, PEM encoded (PKCS#8 private, SPKI public). */
export function generateSigningKeys(): { privateKeyPem: string; publicKeyPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

/** A signature record for the digest. */
export function createSignature(digest: string, privateKey: string | KeyObject): SignatureRecord {
  const key = parsePrivateKey(privateKey);
  const publicKey = createPublicKey(key);
  return {
    algorithm: 'ed25519',
    keyId: keyIdOf(publicKey),
    publicKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
    signature: sign(null, signatureMessage(digest), key).toString('base64'),
  };
}

/** The bytes of `.signatures.json` (records sorted by keyId: deterministic). */
export function encodeSignatures(records: readonly SignatureRecord[]): Buffer {
  const sorted = [...records].sort((a, b) => (a.keyId < b.keyId ? -1 : a.keyId > b.keyId ? 1 : 0));
  return Buffer.from(`${JSON.stringify({ format: 1, signatures: sorted }, null, 2)}\n`, 'utf8');
}

/** Parse `.signatures.json` bytes. Throws IMAGE_SIGNATURE_INVALID. */
export function decodeSignatures(bytes: Uint8Array): SignatureRecord[] {
  let json: unknown;
  try {
    if (!isUtf8(bytes)) throw new Error('not UTF-8');
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (cause) {
    throw invalid('the signatures entry is not valid JSON', cause);
  }
  const parsed = signaturesFileSchema.safeParse(json);
  if (!parsed.success) throw invalid(`the signatures entry is malformed: ${parsed.error.issues[0]?.message ?? ''}`);
  const ids = parsed.data.signatures.map((s) => s.keyId);
  if (new Set(ids).size !== ids.length) throw invalid('the signatures entry names the same key twice');
  return parsed.data.signatures;
}

function verifyRecord(record: SignatureRecord, digest: string): ImageSigner {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(record.publicKey, 'base64'), format: 'der', type: 'spki' });
  } catch (cause) {
    throw invalid(`signature by ${record.keyId} carries an unreadable public key`, cause);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw invalid(`signature by ${record.keyId} is not an ed25519 key`);
  if (keyIdOf(key) !== record.keyId) throw invalid(`signature by ${record.keyId} carries a different public key`);
  const signature = Buffer.from(record.signature, 'base64');
  if (signature.length !== 64 || !verify(null, signatureMessage(digest), key, signature)) {
    throw invalid(`signature by ${record.keyId} does not verify for ${digest}`);
  }
  return { keyId: record.keyId, publicKeyPem: key.export({ type: 'spki', format: 'pem' }).toString(), trusted: false };
}

export interface TrustOptions {
  /** Trust store: when given (even empty), a valid signature by one of these keys is required. */
  trustedKeys?: readonly KeyObject[];
  /** Require at least one valid signature, by any key. */
  requireSignature?: boolean;
}

/** Verify the signatures entry (or its absence) against the digest and the trust options. */
export function checkSignatures(bytes: Uint8Array | undefined, digest: string, trust: TrustOptions): SignatureCheck {
  const required = trust.trustedKeys !== undefined || trust.requireSignature === true;
  if (bytes === undefined) {
    if (required) throw invalid('the image is not signed, and a signature is required');
    return { signatures: [] };
  }
  const signatures = decodeSignatures(bytes).map((record) => verifyRecord(record, digest));
  if (trust.trustedKeys === undefined) return { signatures, signer: signatures[0] };
  const trusted = new Set(trust.trustedKeys.map(keyIdOf));
  for (const s of signatures) s.trusted = trusted.has(s.keyId);
  const signer = signatures.find((s) => s.trusted);
  if (signer === undefined) {
    throw new ContainedError(
      'IMAGE_UNTRUSTED_SIGNER',
      `the image is signed by ${signatures.map((s) => s.keyId).join(', ')}, none of them in the trust store`,
      { data: { keyIds: signatures.map((s) => s.keyId) } },
    );
  }
  return { signatures, signer };
}
