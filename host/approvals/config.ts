/**
 * The `approvals` section of the host config: which requests need passkey-signed approvals, and the
 * WebAuthn relying party the console is (docs/approvals.md, "Passkey-signed approvals").
 *
 * - `signed`: `off` (default; an approval may still carry a signature, which is then verified and
 *   recorded), `risky` (every request for a destructive or financial action — the ones with a
 *   two-person rule), `all` (every request).
 * - `origin`: the console as browsers reach it (`https://contained.example.com`); an assertion made
 *   on any other origin is refused. Default: `http://localhost:<port>` of a loopback host (tests,
 *   a single machine). Behind a proxy or on a real name, set it.
 * - `rpId`: the relying party id passkeys are bound to; default the host name of `origin`.
 * - `userVerification`: `required` (default: PIN or biometrics each time) or `preferred` (presence
 *   only is accepted).
 *
 * A strict zod schema: a typo fails at start-up.
 */
import { z } from 'zod';

export const SIGNED_APPROVAL_POLICIES = ['off', 'risky', 'all'] as const;

export const approvalsConfigSchema = z.strictObject({
  /** Which requests need a passkey assertion on every approval. */
  signed: z.enum(SIGNED_APPROVAL_POLICIES).default('off'),
  /** The console's origin as browsers see it (scheme, host, port; no path). */
  origin: z
    .url()
    .refine((u) => /^https?:\/\/[^/]+\/?$/.test(u), 'an origin: scheme, host and port only (https://contained.example.com)')
    .optional(),
  /** WebAuthn relying party id (a domain, never an IP address); default the host name of `origin`, else `localhost`. */
  rpId: z.string().min(1).max(253).regex(/^[a-z0-9.-]+$/, 'a domain name in lower case').optional(),
  /** `required`: each assertion must say the user was verified (PIN, biometrics); `preferred`: presence is enough. */
  userVerification: z.enum(['required', 'preferred']).default('required'),
  /** The relying party's display name in the browser's passkey dialog. */
  rpName: z.string().min(1).max(100).default('contained'),
  /** How long a registration ceremony may take, ms. */
  registrationTimeoutMs: z.number().int().min(10_000).max(600_000).default(120_000),
});
export type ApprovalsConfig = z.output<typeof approvalsConfigSchema>;
