/**
 * Bearer-token authentication for the HTTP API. Fails closed: a missing, malformed, unknown or
 * revoked token is `UNAUTHENTICATED` (401) — the verifier never says which; a valid token whose
 * role is not allowed is `FORBIDDEN` (403). Only `Authorization: Bearer <token>` is read (no query
 * parameters, no cookies: those are the console's, which mounts its own routes).
 */
import type { IncomingMessage } from 'node:http';
import { ContainedError } from '../../runtime/errors.js';
import { type Operator, type Role, roleWithArticle } from '../model.js';
import type { TokenVerifier } from '../tokens.js';

/** Roles that may use the platform API (`/v1/images`, `/v1/runs`). */
export const API_ROLES: readonly Role[] = ['platform', 'admin'];

/** The bearer token of a request, or undefined (several Authorization headers count as none). */
export function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (typeof header !== 'string') return undefined;
  const match = /^Bearer +([^\s]+) *$/i.exec(header);
  return match?.[1];
}

/** The authenticated operator whose role is in `roles`; throws UNAUTHENTICATED or FORBIDDEN. */
export async function authenticate(req: IncomingMessage, verifier: TokenVerifier, roles: readonly Role[]): Promise<Operator> {
  const token = bearerToken(req);
  const operator = token === undefined ? undefined : await verifier.verify(token);
  if (operator === undefined) throw new ContainedError('UNAUTHENTICATED', 'a valid bearer token is required (Authorization: Bearer <token>)');
  if (!roles.includes(operator.role)) {
    throw new ContainedError('FORBIDDEN', `this endpoint needs the ${roles.join(' or ')} role; ${operator.name} is ${roleWithArticle(operator.role)}`);
  }
  return operator;
}
