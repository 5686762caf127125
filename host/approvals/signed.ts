/**
 * Passkey-signed approvals: operators register passkeys (WebAuthn, @simplewebauthn/server), and
 * where the host config asks for it (`approvals.signed`), or the grant a request was raised under
 * does (`Grant.signedApprovals`, copied onto the request), every approval carries an assertion whose
 * challenge is derived from the request id, the digest of the exact arguments it approves and the
 * verdict (challenge.ts). The request manager calls `verifySignature` before it counts an approval.
 *
 * What it defends, and how it fails (each a ContainedError, nothing counted or stored):
 * - an approval without an assertion where one is required: SIGNATURE_REQUIRED;
 * - an assertion by an unknown or revoked credential, or by another operator's credential; made for
 *   another request, other arguments or the other verdict; on another origin or relying party;
 *   without user verification when it is required; whose signature does not verify (forged); whose
 *   counter did not move up (a replay, a cloned key); or by a credential already counted on this
 *   request: SIGNATURE_INVALID with `data.reason`. Two operators cannot share a credential (it
 *   belongs to whoever registered it) and one operator cannot approve twice (DUPLICATE_APPROVER, the
 *   store's rule), so the two approvals of a two-person rule are two people with two passkeys.
 *
 * Registrations and revocations are written in the audit log's transaction with their record
 * (`passkey.registered` holds the public key), so the log alone verifies every signature offline
 * (host/audit/signatures.ts).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { generateAuthenticationOptions, generateRegistrationOptions, verifyAuthenticationResponse, verifyRegistrationResponse } from '@simplewebauthn/server';
import type { AuthenticationResponseJSON, PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import { needsSecondSignOff } from '../../capabilities/sdk/risk.js';
import { ContainedError } from '../../runtime/errors.js';
import type { AuditLog } from '../audit/log.js';
import type { Operator, RequestRecord } from '../model.js';
import { type PasskeyRecord, type PasskeyStore } from '../store/credentials.js';
import { mapStep } from '../store/within.js';
import type { ApprovalsConfig } from './config.js';
import { type ApprovalSignature, approvalChallenge, type AssertionJSON, assertionSchema } from './challenge.js';

/** Where the console is, as WebAuthn needs it. */
export interface RelyingParty {
  rpId: string;
  origins: string[];
}

export interface SignedApprovalsOptions {
  config: ApprovalsConfig;
  passkeys: PasskeyStore;
  audit: Pick<AuditLog, 'append'>;
  /** The host's own URL once it listens (the default origin is its `localhost` form). */
  url(): string | undefined;
  now?: () => number;
}

/** A passkey as its owner sees it in the console (no key material). */
export interface PasskeyView {
  id: string;
  label?: string;
  createdAt: number;
  lastUsedAt?: number;
  revokedAt?: number;
}

export interface SignedApprovals {
  /** Whether approvals of this request must be signed (its grant's `signedApprovals`, or the `approvals.signed` policy). */
  required(request: Pick<RequestRecord, 'risk' | 'approvalsRequired' | 'method' | 'signedApprovals'>): boolean;
  relyingParty(): RelyingParty;
  /** RequestManager's hook: verify an approval's assertion before it counts. */
  verifySignature(operator: Operator, request: RequestRecord, argsDigest: string, assertion: AssertionJSON | undefined): Promise<ApprovalSignature | undefined>;
  /** The options the browser signs an approval with: the derived challenge and the operator's own passkeys. */
  assertionOptions(operator: Operator, requestId: string, argsDigest: string): Promise<PublicKeyCredentialRequestOptionsJSON>;
  registrationOptions(operator: Operator): Promise<PublicKeyCredentialCreationOptionsJSON>;
  /** Verify a registration made with the last options given to this operator, store it with its audit record. */
  register(operator: Operator, response: unknown, label?: string): Promise<PasskeyView>;
  list(operator: Operator): Promise<PasskeyView[]>;
  /** Revoke one of the operator's own passkeys (an admin: anyone's). */
  revoke(operator: Operator, id: string): Promise<PasskeyView>;
}

/** SIGNATURE_INVALID with its reason. */
export function signatureInvalid(reason: string, message: string, data: Record<string, unknown> = {}): ContainedError {
  return new ContainedError('SIGNATURE_INVALID', message, { data: { reason, ...data } });
}

/** The reason a @simplewebauthn/server verification error stands for (its messages are stable per check). */
export function reasonOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  if (/challenge/i.test(message)) return 'challenge';
  if (/origin/i.test(message)) return 'origin';
  if (/RP ID|rpID|rpIdHash/i.test(message)) return 'rp-id';
  if (/user verification|user could not be verified|user was not present|user presence/i.test(message)) return 'user-verification';
  if (/counter/i.test(message)) return 'counter';
  return 'malformed';
}

function b64urlToBytes(text: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.from(text, 'base64url'));
}

function view(p: PasskeyRecord): PasskeyView {
  return { id: p.id, createdAt: p.createdAt, ...(p.label ? { label: p.label } : {}), ...(p.lastUsedAt ? { lastUsedAt: p.lastUsedAt } : {}), ...(p.revokedAt ? { revokedAt: p.revokedAt } : {}) };
}

export function createSignedApprovals(options: SignedApprovalsOptions): SignedApprovals {
  const { config, passkeys, audit } = options;
  const now = options.now ?? Date.now;
  /** Registration challenges in flight, per operator (one at a time; the latest wins). */
  const registering = new Map<string, { challenge: string; expiresAt: number }>();

  function relyingParty(): RelyingParty {
    if (config.origin !== undefined) {
      const origin = new URL(config.origin).origin;
      return { rpId: config.rpId ?? new URL(origin).hostname, origins: [origin] };
    }
    const url = options.url();
    const port = url === undefined ? '' : new URL(url).port;
    return { rpId: config.rpId ?? 'localhost', origins: url === undefined ? [] : [`http://localhost${port ? `:${port}` : ''}`] };
  }

  function required(request: Pick<RequestRecord, 'risk' | 'approvalsRequired' | 'method' | 'signedApprovals'>): boolean {
    // Raised under a grant that requires signed approvals (or a staged run's changeset with a call
    // such a grant allowed): signed, whatever the host policy says.
    if (request.signedApprovals === true) return true;
    if (config.signed === 'all') return true;
    if (config.signed === 'off') return false;
    // risky: a destructive or financial call; for a capability request (no method, no risk), one
    // whose methods include such a one (it needs two approvers for that reason).
    return request.risk !== undefined ? needsSecondSignOff(request.risk) : request.method === undefined && request.approvalsRequired >= 2;
  }

  async function verifySignature(operator: Operator, request: RequestRecord, argsDigest: string, raw: AssertionJSON | undefined): Promise<ApprovalSignature | undefined> {
    if (raw === undefined) {
      if (!required(request)) return undefined;
      throw new ContainedError('SIGNATURE_REQUIRED', `request ${request.id} needs passkey-signed approvals: approve it in the console with a registered passkey`, { data: { requestId: request.id } });
    }
    const parsed = assertionSchema.safeParse(raw);
    if (!parsed.success) throw signatureInvalid('malformed', `the assertion is malformed: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    const assertion = parsed.data;
    if (assertion.id !== assertion.rawId) throw signatureInvalid('malformed', 'the assertion\'s id and rawId differ');
    const passkey = await passkeys.get(assertion.id);
    if (!passkey) throw signatureInvalid('unknown-credential', 'this passkey is not registered on this host');
    if (passkey.revokedAt !== undefined) throw signatureInvalid('revoked', 'this passkey was revoked');
    if (passkey.operator !== operator.name) throw signatureInvalid('not-yours', `this passkey belongs to another operator, not to ${operator.name}`);
    if (request.approvals.some((a) => a.signature?.credentialId === passkey.id)) {
      throw signatureInvalid('same-credential', 'this passkey already signed an approval of this request: a second approval needs another person with their own passkey');
    }
    const rp = relyingParty();
    const expectedChallenge = approvalChallenge(request.id, argsDigest, 'approve');
    let verified: Awaited<ReturnType<typeof verifyAuthenticationResponse>>;
    try {
      verified = await verifyAuthenticationResponse({
        response: assertion as AuthenticationResponseJSON,
        expectedChallenge,
        expectedOrigin: rp.origins,
        expectedRPID: [passkey.rpId],
        credential: { id: passkey.id, publicKey: b64urlToBytes(passkey.publicKey), counter: passkey.counter },
        requireUserVerification: config.userVerification === 'required',
      });
    } catch (error) {
      const reason = reasonOf(error);
      throw signatureInvalid(
        reason,
        reason === 'challenge'
          ? `the assertion was not made for this approval (request ${request.id}, arguments ${argsDigest}, approve)`
          : `the assertion does not verify (${reason})`,
        reason === 'challenge' ? { argsDigest } : {},
      );
    }
    if (!verified.verified) throw signatureInvalid('signature', 'the assertion\'s signature does not verify with the registered public key');
    const info = verified.authenticationInfo;
    if (!(await passkeys.advanceCounter(passkey.id, passkey.counter, info.newCounter, now()))) {
      throw signatureInvalid('counter', 'the passkey\'s counter did not move up since its last use (a replayed assertion, or a cloned authenticator)');
    }
    return { credentialId: passkey.id, assertion, origin: info.origin, rpId: info.rpID, counter: info.newCounter, userVerified: info.userVerified };
  }

  return {
    required,
    relyingParty,
    verifySignature,

    async assertionOptions(operator, requestId, argsDigest) {
      const rp = relyingParty();
      const own = (await passkeys.forOperator(operator.name)).filter((p) => p.revokedAt === undefined);
      return generateAuthenticationOptions({
        rpID: rp.rpId,
        challenge: b64urlToBytes(approvalChallenge(requestId, argsDigest, 'approve')),
        allowCredentials: own.map((p) => ({ id: p.id, ...(p.transports ? { transports: p.transports as never } : {}) })),
        userVerification: config.userVerification,
        timeout: 120_000,
      });
    },

    async registrationOptions(operator) {
      const rp = relyingParty();
      const options = await generateRegistrationOptions({
        rpName: config.rpName,
        rpID: rp.rpId,
        userName: operator.name,
        userID: new TextEncoder().encode(operator.name),
        challenge: randomBytes(32),
        attestationType: 'none',
        // ES256, EdDSA, RS256: what every passkey offers, and what Node verifies offline without experimental APIs.
        supportedAlgorithmIDs: [-7, -8, -257],
        excludeCredentials: (await passkeys.forOperator(operator.name)).map((p) => ({ id: p.id })),
        authenticatorSelection: { residentKey: 'preferred', userVerification: config.userVerification },
        timeout: config.registrationTimeoutMs,
      });
      registering.set(operator.name, { challenge: options.challenge, expiresAt: now() + config.registrationTimeoutMs });
      return options;
    },

    async register(operator, response, label) {
      const pending = registering.get(operator.name);
      registering.delete(operator.name);
      if (!pending || pending.expiresAt < now()) throw signatureInvalid('registration', 'no passkey registration is under way for you (or it took too long): start again');
      const rp = relyingParty();
      let verified: Awaited<ReturnType<typeof verifyRegistrationResponse>>;
      try {
        verified = await verifyRegistrationResponse({
          response: response as RegistrationResponseJSON,
          expectedChallenge: pending.challenge,
          expectedOrigin: rp.origins,
          expectedRPID: rp.rpId,
          requireUserVerification: config.userVerification === 'required',
        });
      } catch (error) {
        throw signatureInvalid('registration', `the passkey registration does not verify (${reasonOf(error)})`);
      }
      if (!verified.verified || !verified.registrationInfo) throw signatureInvalid('registration', 'the passkey registration does not verify');
      const info = verified.registrationInfo;
      const record: PasskeyRecord = {
        id: info.credential.id,
        operator: operator.name,
        publicKey: Buffer.from(info.credential.publicKey).toString('base64url'),
        counter: info.credential.counter,
        ...(info.credential.transports?.length ? { transports: info.credential.transports.slice(0, 8) } : {}),
        rpId: info.rpID ?? rp.rpId,
        ...(label !== undefined && label.trim() !== '' ? { label: label.trim().slice(0, 100) } : {}),
        createdAt: now(),
      };
      await audit.append(
        {
          type: 'passkey.registered',
          data: {
            credentialId: record.id,
            operator: record.operator,
            publicKey: record.publicKey,
            counter: record.counter,
            rpId: record.rpId,
            origin: info.origin,
            userVerified: info.userVerified,
            aaguid: info.aaguid,
            ...(record.label ? { label: record.label } : {}),
            registrationId: randomUUID(),
          },
        },
        passkeys.insert(record),
      );
      return view(record);
    },

    async list(operator) {
      return (await passkeys.forOperator(operator.name)).map(view);
    },

    async revoke(operator, id) {
      const passkey = await passkeys.get(id);
      if (!passkey || (passkey.operator !== operator.name && operator.role !== 'admin')) throw new ContainedError('NOT_FOUND', 'no such passkey of yours');
      if (passkey.revokedAt !== undefined) throw new ContainedError('ALREADY_RESOLVED', 'this passkey is already revoked');
      const at = now();
      await audit.append(
        { type: 'passkey.revoked', data: { credentialId: id, operator: passkey.operator, by: operator.name } },
        mapStep(passkeys.revoke(id, operator.name, at), (revoked) => {
          if (!revoked) throw new ContainedError('ALREADY_RESOLVED', 'this passkey is already revoked');
        }),
      );
      return view({ ...passkey, revokedAt: at, revokedBy: operator.name });
    },
  };
}
