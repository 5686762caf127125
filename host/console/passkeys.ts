/**
 * The console's passkey routes (signed approvals, docs/approvals.md): an operator registers and
 * revokes their own passkeys, and gets the WebAuthn options to sign an approval with — the
 * challenge derived from the request id, the digest of the arguments on screen and the verdict. The
 * signed approval itself goes over the operator channel (`decide` with `assertion`), where the host
 * verifies it before counting it; nothing here decides anything.
 *
 * Every route needs a session; state changes need the CSRF token (routes.ts's guard and session).
 * Only approvers and admins register passkeys (nobody else approves). Refusals: FORBIDDEN (role),
 * SIGNATURE_INVALID (a registration that does not verify), NOT_FOUND (no such passkey of yours),
 * INVALID_ARGUMENT (a body that does not match its schema).
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import type { SignedApprovals } from '../approvals/signed.js';
import { readJson } from '../api/body.js';
import { ARGS_DIGEST_PATTERN } from '../gate/proposal.js';
import type { HttpRoute, RouteContext } from '../http.js';
import { type RequestRecord, roleAtLeast } from '../model.js';
import { sendConsoleJson } from './http.js';
import type { Session } from './sessions.js';
import type { Asset } from './static.js';

/** What the console uses of the signed approvals. */
export type PasskeyPort = Pick<SignedApprovals, 'registrationOptions' | 'register' | 'list' | 'revoke' | 'assertionOptions' | 'required' | 'relyingParty'>;

/** Largest registration body, bytes (an attestation object with a certificate chain fits). */
const MAX_PASSKEY_BODY_BYTES = 64 * 1024;

const registerSchema = z.strictObject({ response: z.record(z.string(), z.unknown()), label: z.string().max(100).optional() });
const approvalOptionsSchema = z.strictObject({ requestId: z.string().min(1).max(200), argsDigest: z.string().regex(ARGS_DIGEST_PATTERN) });
const emptySchema = z.strictObject({});

export interface PasskeyRouteDeps {
  passkeys: (PasskeyPort & { request(id: string): Promise<RequestRecord | undefined> }) | undefined;
  route(method: HttpRoute['method'], path: string, handler: (ctx: RouteContext) => Promise<void> | void): HttpRoute;
  session(req: IncomingMessage, res: ServerResponse, options: { csrf: boolean }): Promise<Session>;
}

export function passkeyRoutes(deps: PasskeyRouteDeps): HttpRoute[] {
  const { route, session } = deps;
  const port = (): NonNullable<PasskeyRouteDeps['passkeys']> => {
    if (!deps.passkeys) throw new ContainedError('NOT_FOUND', 'passkeys are not available on this host');
    return deps.passkeys;
  };
  const approverSession = async (req: IncomingMessage, res: ServerResponse, csrf: boolean): Promise<Session> => {
    const s = await session(req, res, { csrf });
    if (!roleAtLeast(s.operator.role, 'approver')) throw new ContainedError('FORBIDDEN', `${s.operator.name} is a ${s.operator.role}: only approvers and admins register passkeys and sign approvals`);
    return s;
  };
  return [
    route('GET', '/console/api/passkeys', async ({ req, res }) => {
      const s = await session(req, res, { csrf: false });
      const p = port();
      sendConsoleJson(res, 200, { passkeys: await p.list(s.operator), rpId: p.relyingParty().rpId });
    }),
    route('POST', '/console/api/passkeys/options', async ({ req, res }) => {
      const s = await approverSession(req, res, true);
      await readJson(req, emptySchema, MAX_PASSKEY_BODY_BYTES);
      sendConsoleJson(res, 200, { options: await port().registrationOptions(s.operator) });
    }),
    route('POST', '/console/api/passkeys', async ({ req, res }) => {
      const s = await approverSession(req, res, true);
      const body = await readJson(req, registerSchema, MAX_PASSKEY_BODY_BYTES);
      sendConsoleJson(res, 201, { passkey: await port().register(s.operator, body.response, body.label) });
    }),
    route('POST', '/console/api/passkeys/:id/revoke', async ({ req, res, params }) => {
      const s = await session(req, res, { csrf: true });
      await readJson(req, emptySchema, MAX_PASSKEY_BODY_BYTES);
      sendConsoleJson(res, 200, { passkey: await port().revoke(s.operator, params['id'] ?? '') });
    }),
    route('POST', '/console/api/approvals/options', async ({ req, res }) => {
      const s = await approverSession(req, res, true);
      const body = await readJson(req, approvalOptionsSchema, MAX_PASSKEY_BODY_BYTES);
      const p = port();
      const request = await p.request(body.requestId);
      if (!request) throw new ContainedError('NOT_FOUND', `no request ${body.requestId}`);
      // Signed where the policy asks for it: no passkey prompt on every other approval.
      const required = p.required(request);
      sendConsoleJson(res, 200, { required, ...(required ? { options: await p.assertionOptions(s.operator, body.requestId, body.argsDigest) } : {}) });
    }),
  ];
}

/** @simplewebauthn/browser's UMD bundle as a console asset (undefined when the package is missing). */
export function webauthnBrowserAsset(): Asset | undefined {
  try {
    // The package exports only its entry points: find the bundle next to the CommonJS one.
    const entry = createRequire(import.meta.url).resolve('@simplewebauthn/browser');
    const file = path.resolve(path.dirname(entry), '../dist/bundle/index.umd.min.js');
    return { body: readFileSync(file), type: 'text/javascript; charset=utf-8' };
  } catch {
    return undefined;
  }
}
