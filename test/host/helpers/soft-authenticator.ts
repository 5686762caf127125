/**
 * A software WebAuthn authenticator for node-side tests: a real P-256 key pair per credential, real
 * authenticator data (rpIdHash, flags, counter), real CBOR attestation objects ("none") and real
 * ECDSA signatures over authenticatorData ‖ sha256(clientDataJSON) — what a passkey does, without a
 * browser. The browser tests use Chromium's virtual authenticator instead (test/console/).
 */
import { createHash, generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto';
import { isoCBOR } from '@simplewebauthn/server/helpers';

export interface SoftCredential {
  id: string;
  privateKey: KeyObject;
  cose: Uint8Array;
  counter: number;
}

const sha256 = (data: Buffer | string): Buffer => createHash('sha256').update(data).digest();

export class SoftAuthenticator {
  readonly credentials: SoftCredential[] = [];

  constructor(
    private readonly origin: string,
    private readonly rpId = 'localhost',
    /** false: an authenticator that keeps no counter (always 0). */
    private readonly counts = true,
  ) {}

  private authData(credential: SoftCredential, attested: boolean, flags = 0x05): Buffer {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(credential.counter);
    const parts = [sha256(this.rpId), Buffer.from([attested ? flags | 0x40 : flags]), counter];
    if (attested) {
      const id = Buffer.from(credential.id, 'base64url');
      const len = Buffer.alloc(2);
      len.writeUInt16BE(id.length);
      parts.push(Buffer.alloc(16), len, id, Buffer.from(credential.cose));
    }
    return Buffer.concat(parts);
  }

  /** A registration response for `options` (from generateRegistrationOptions). */
  register(options: { challenge: string }): Record<string, unknown> {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = publicKey.export({ format: 'jwk' });
    const cose = isoCBOR.encode(
      new Map<number, number | Uint8Array>([
        [1, 2],
        [3, -7],
        [-1, 1],
        [-2, new Uint8Array(Buffer.from(jwk.x as string, 'base64url'))],
        [-3, new Uint8Array(Buffer.from(jwk.y as string, 'base64url'))],
      ]),
    );
    const credential: SoftCredential = { id: randomBytes(16).toString('base64url'), privateKey, cose, counter: 0 };
    this.credentials.push(credential);
    const clientDataJSON = Buffer.from(JSON.stringify({ type: 'webauthn.create', challenge: options.challenge, origin: this.origin, crossOrigin: false }));
    const attestationObject = isoCBOR.encode(new Map<string, unknown>([['fmt', 'none'], ['attStmt', new Map()], ['authData', new Uint8Array(this.authData(credential, true))]]) as never);
    return {
      id: credential.id,
      rawId: credential.id,
      type: 'public-key',
      response: { clientDataJSON: clientDataJSON.toString('base64url'), attestationObject: Buffer.from(attestationObject).toString('base64url'), transports: ['internal'] },
      clientExtensionResults: {},
    };
  }

  /** An assertion over `challenge` (base64url) by `credential`, on `origin` (default this authenticator's). */
  assert(credential: SoftCredential, challenge: string, options: { origin?: string; userVerified?: boolean; keepCounter?: boolean } = {}): Record<string, unknown> {
    if (this.counts && !options.keepCounter) credential.counter += 1;
    const authenticatorData = this.authData(credential, false, options.userVerified === false ? 0x01 : 0x05);
    const clientDataJSON = Buffer.from(JSON.stringify({ type: 'webauthn.get', challenge, origin: options.origin ?? this.origin, crossOrigin: false }));
    const signature = sign('sha256', Buffer.concat([authenticatorData, sha256(clientDataJSON)]), credential.privateKey);
    return {
      id: credential.id,
      rawId: credential.id,
      type: 'public-key',
      response: { clientDataJSON: clientDataJSON.toString('base64url'), authenticatorData: authenticatorData.toString('base64url'), signature: signature.toString('base64url') },
      clientExtensionResults: {},
    };
  }
}

/** Register a new passkey of `authenticator` for the operator whose token is given, through the console's API. */
export async function registerPasskey(hostUrl: string, token: string, authenticator: SoftAuthenticator, label?: string): Promise<SoftCredential> {
  const { login, post } = await import('../../console/helpers.js');
  const session = await login(hostUrl, { token });
  const options = await post(hostUrl, '/console/api/passkeys/options', {}, session);
  if (options.status !== 200) throw new Error(`passkey options: HTTP ${options.status} ${options.body}`);
  const response = authenticator.register(options.json().options);
  const done = await post(hostUrl, '/console/api/passkeys', label === undefined ? { response } : { response, label }, session);
  if (done.status !== 201) throw new Error(`passkey registration: HTTP ${done.status} ${done.body}`);
  return authenticator.credentials[authenticator.credentials.length - 1] as SoftCredential;
}
