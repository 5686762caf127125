/**
 * Which grant covers a call: the one rule the gate decides by and trust reports by. Pure (the
 * clock and the scope check are arguments), so both read the same answer from the same grants.
 *
 * A grant covers a call when it is neither revoked nor expired, names the call's capability and
 * method (or `*`), and its subject matches the run: the exact image digest, or the image name
 * with one of the run's trusted signers. Of the covering grants whose scope admits the call, the
 * least supervised mode wins (`contained`, then `executed`, then `assisted`); among equals, the
 * first in the order given (the store lists grants oldest first).
 *
 * Fails closed: anything that does not match exactly does not cover (a digest in another case, a
 * name without the signer, an untrusted signer). A scope check that throws is not caught here: the
 * call fails rather than falling through to another grant.
 */
import type { Grant, Mode, RunSubject, Subject } from './model.js';

/** How much a human is in the loop, least first: the gate prefers the lower, narrowing may only raise it. */
export const MODE_ORDER: Readonly<Record<Mode, number>> = { contained: 0, executed: 1, assisted: 2 };

/** Does `subject` (a grant's) match `run` (a run's identity)? Exact digest, or name plus a trusted signer. */
export function subjectMatches(subject: Subject, run: RunSubject): boolean {
  if ('digest' in subject) return run.digest !== undefined && run.digest === subject.digest;
  return run.name !== undefined && run.name === subject.name && run.signers.includes(subject.signer);
}

/** A call as grants see it: who, what, when. */
export interface GrantCall {
  subject: RunSubject;
  capability: string;
  method: string;
  /** Epoch ms. */
  now: number;
}

/** Whether `grant` covers this call now: subject, capability, method (or `*`), not revoked, not expired. */
export function grantCovers(grant: Grant, call: GrantCall): boolean {
  if (grant.revokedAt !== undefined) return false;
  if (grant.expiresAt !== undefined && !(call.now < grant.expiresAt)) return false;
  if (grant.capability !== call.capability) return false;
  if (!subjectMatches(grant.subject, call.subject)) return false;
  return grant.methods.includes(call.method) || grant.methods.includes('*');
}

export interface GrantChoice {
  /** The grant that decides the call, when any covering grant's scope admits it. */
  grant: Grant | undefined;
  /** Every grant covering the call, whatever its scope (oldest first, as given). */
  covering: Grant[];
}

/**
 * The grant that decides `call`: of the grants covering it whose scope `admits` it, the least
 * supervised. Without `admits` every scope is taken to admit (trust asks about an action, not
 * about one call's arguments). `admits` is asked in the order of preference and not after the
 * first yes.
 */
export function chooseGrant(grants: readonly Grant[], call: GrantCall, admits: (grant: Grant) => boolean = () => true): GrantChoice {
  const covering = grants.filter((grant) => grantCovers(grant, call));
  // Array.prototype.sort is stable: among equal modes the earlier grant stays first.
  const preferred = [...covering].sort((a, b) => MODE_ORDER[a.mode] - MODE_ORDER[b.mode]);
  const grant = preferred.find((g) => admits(g));
  return { grant, covering };
}

/** Whether moving a grant from `from` to `to` takes a human out of the loop (narrowing may not). */
export function lessSupervised(to: Mode, from: Mode): boolean {
  return MODE_ORDER[to] < MODE_ORDER[from];
}
