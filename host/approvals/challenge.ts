/**
 * What a signed approval signs, as pure data: the WebAuthn challenge of an approval is derived from
 * the request id, the digest of the exact arguments it approves and the verdict —
 *
 *   challenge = base64url( sha256( "contained.approval.v1\n" + requestId + "\n" + argsDigest + "\n" + verdict ) )
 *
 * — so an assertion made for one request, one set of arguments or one verdict is worth nothing for
 * any other, and anyone holding the audit log can recompute it offline. The wire shape of an
 * assertion (what @simplewebauthn/browser's `startAuthentication` returns) and of the signature an
 * approval keeps are here too, strict, bounded.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';

/** The domain-separation prefix of the challenge (a new version if the derivation ever changes). */
export const APPROVAL_CHALLENGE_CONTEXT = 'contained.approval.v1';

export type SignedVerdict = 'approve' | 'deny';

/** The base64url challenge an assertion over this approval must carry. */
export function approvalChallenge(requestId: string, argsDigest: string, verdict: SignedVerdict): string {
  return createHash('sha256').update(`${APPROVAL_CHALLENGE_CONTEXT}\n${requestId}\n${argsDigest}\n${verdict}`, 'utf8').digest('base64url');
}

const b64url = (max: number) => z.string().min(1).max(max).regex(/^[A-Za-z0-9_-]+$/, 'base64url');

/** A WebAuthn assertion as the browser library returns it (AuthenticationResponseJSON). */
export const assertionSchema = z.strictObject({
  id: b64url(1024),
  rawId: b64url(1024),
  type: z.literal('public-key'),
  response: z.strictObject({
    clientDataJSON: b64url(8192),
    authenticatorData: b64url(8192),
    signature: b64url(8192),
    userHandle: b64url(1024).optional(),
  }),
  clientExtensionResults: z.record(z.string(), z.unknown()).default({}),
  authenticatorAttachment: z.enum(['platform', 'cross-platform']).optional(),
});
export type AssertionJSON = z.infer<typeof assertionSchema>;

/** What an approval keeps of its verified assertion: enough to verify it again offline. */
export const approvalSignatureSchema = z.strictObject({
  credentialId: z.string().min(1),
  assertion: assertionSchema,
  /** The origin and relying party id it was verified against. */
  origin: z.string().min(1),
  rpId: z.string().min(1),
  /** The authenticator's signature counter in this assertion (0: it keeps none). */
  counter: z.number().int().min(0),
  userVerified: z.boolean(),
});
export type ApprovalSignature = z.infer<typeof approvalSignatureSchema>;
