/**
 * The host's audit signing key (ed25519) and checkpoint signatures.
 *
 * The key is generated on first start into `<dataDir>/audit-key.pem` (PKCS#8, mode 0600, never
 * logged) with its public half beside it in `audit-key.pub.pem`. Its id is `sha256:` + the hex
 * sha256 of the public key's SPKI DER; pin that id (or copy the public key) somewhere the host
 * cannot write, and `contained audit verify --public-key FILE` proves a checkpoint was signed by
 * this host and not by someone who rewrote the log and made themselves a new key.
 *
 * A checkpoint signs `contained-audit-checkpoint:v1:<seq>:<hash>:<at>`: the chain's head at `seq`.
 *
 * Fails closed: a private key file readable by group or others, or one that is not an ed25519
 * PKCS#8 key, is refused with INTERNAL at start-up.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ContainedError } from '../../runtime/errors.js';
import { keyIdOf } from '../../sandbox-images/signature.js';

export const AUDIT_KEY_FILE = 'audit-key.pem';
export const AUDIT_PUBLIC_KEY_FILE = 'audit-key.pub.pem';

export interface AuditKey {
  /** Absent when only the public key is known (verification from a copy). */
  privateKey: KeyObject | undefined;
  publicKey: KeyObject;
  keyId: string;
}

export interface Checkpoint {
  seq: number;
  hash: string;
  at: number;
  keyId: string;
  /** base64 ed25519 signature. */
  signature: string;
}

/**
 * Load the host key from the data folder, creating it (0600) when there is none. `keyFile`
 * (config `audit.keyFile`, relative to the data folder): a key shared by a fleet, never created
 * here (INTERNAL when it is missing).
 */
export function loadOrCreateAuditKey(dataDir: string, keyFile?: string): AuditKey {
  if (keyFile !== undefined) {
    const shared = path.resolve(dataDir, keyFile);
    if (!existsSync(shared)) throw new ContainedError('INTERNAL', `audit: the signing key ${shared} (audit.keyFile) does not exist`);
    return readPrivateKey(shared);
  }
  const file = path.join(dataDir, AUDIT_KEY_FILE);
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    // `wx`: two processes starting at once cannot both write a key; the loser reads the winner's.
    try {
      writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
      chmodSync(file, 0o600);
      writeFileSync(path.join(dataDir, AUDIT_PUBLIC_KEY_FILE), publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o644 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw new ContainedError('INTERNAL', `audit: cannot write the key ${file}`, { cause: error });
    }
  }
  return readPrivateKey(file);
}

function readPrivateKey(file: string): AuditKey {
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new ContainedError('INTERNAL', `audit: the signing key ${file} is readable by others (mode ${mode.toString(8)}); chmod 600 it`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(readFileSync(file));
  } catch (error) {
    throw new ContainedError('INTERNAL', `audit: ${file} is not a private key`, { cause: error });
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new ContainedError('INTERNAL', `audit: ${file} is not an ed25519 key`);
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, keyId: keyIdOf(publicKey) };
}

/** The public key for verification: a given PEM file, else the data folder's public (or private) key file. */
export function loadVerifyKey(dataDir: string, publicKeyFile?: string): AuditKey | undefined {
  const candidates = publicKeyFile !== undefined ? [publicKeyFile] : [path.join(dataDir, AUDIT_PUBLIC_KEY_FILE)];
  for (const file of candidates) {
    if (publicKeyFile === undefined && !existsSync(file)) continue;
    return readPublicKeyFile(file);
  }
  const privateFile = path.join(dataDir, AUDIT_KEY_FILE);
  if (existsSync(privateFile)) {
    const key = readPrivateKey(privateFile);
    return { privateKey: undefined, publicKey: key.publicKey, keyId: key.keyId };
  }
  return undefined;
}

/** One ed25519 public key from a PEM file (a public key, or the public half of a private one). */
export function readPublicKeyFile(file: string, flag = '--public-key'): AuditKey {
  if (!existsSync(file)) throw new ContainedError('USAGE', `${flag}: cannot read ${file}`);
  try {
    const publicKey = createPublicKey(readFileSync(file));
    if (publicKey.asymmetricKeyType !== 'ed25519') throw new Error('not ed25519');
    return { privateKey: undefined, publicKey, keyId: keyIdOf(publicKey) };
  } catch (error) {
    throw new ContainedError('INVALID_ARGUMENT', `audit: ${file} is not an ed25519 public key`, { cause: error });
  }
}

/**
 * Every key checkpoints are checked with: the given `--public-key` files when any (only those:
 * pinned keys); else this host's key (loadVerifyKey), the shared `audit.keyFile`'s and the
 * configured `audit.publicKeyFiles` (the fleet's other hosts). Undefined when none is found.
 */
export function loadVerifyKeys(dataDir: string, given: readonly string[], config?: { keyFile?: string | undefined; publicKeyFiles?: readonly string[] | undefined }): AuditKey[] | undefined {
  if (given.length > 0) return dedupe(given.map((f) => readPublicKeyFile(f)));
  const keys: AuditKey[] = [];
  const own = loadVerifyKey(dataDir);
  if (own) keys.push(own);
  if (config?.keyFile !== undefined) keys.push(readPublicKeyFile(path.resolve(dataDir, config.keyFile), 'audit.keyFile'));
  for (const f of config?.publicKeyFiles ?? []) keys.push(readPublicKeyFile(path.resolve(dataDir, f), 'audit.publicKeyFiles'));
  return keys.length > 0 ? dedupe(keys) : undefined;
}

function dedupe(keys: AuditKey[]): AuditKey[] {
  return [...new Map(keys.map((k) => [k.keyId, k])).values()];
}

function message(seq: number, hash: string, at: number): Buffer {
  return Buffer.from(`contained-audit-checkpoint:v1:${seq}:${hash}:${at}`, 'utf8');
}

export function signCheckpoint(key: AuditKey, seq: number, hash: string, at: number): Checkpoint {
  if (!key.privateKey) throw new ContainedError('INTERNAL', 'audit: no private key to sign a checkpoint with');
  return { seq, hash, at, keyId: key.keyId, signature: sign(null, message(seq, hash, at), key.privateKey).toString('base64') };
}

export function checkpointSignatureOk(key: AuditKey, cp: Checkpoint): boolean {
  if (cp.keyId !== key.keyId) return false;
  try {
    return verify(null, message(cp.seq, cp.hash, cp.at), key.publicKey, Buffer.from(cp.signature, 'base64'));
  } catch {
    return false;
  }
}
