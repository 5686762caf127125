/**
 * The gate's one step for staged runs: an allowed call of a staged run is performed through the
 * staged form of its instance (`CapabilityInstance.staged`), so it is recorded into the run's
 * changeset and answered from the staged view instead of happening; reads run for real. The grant,
 * scope and budgets that allowed it apply unchanged. A grant basis becomes `staged:grant:<id>`, so
 * nothing staged is queued for after-the-fact review as if it had been executed.
 *
 * A call allowed by a grant that requires passkey-signed approvals (`Grant.signedApprovals`) marks
 * its run's staging session: the changeset it ends with is reviewed with signed approvals too, so a
 * staged run is no way around the grant's requirement.
 */
import type { CapabilityInstance, StagingSession } from '../../capabilities/sdk/index.js';
import type { GateDecision } from '../../runtime/gate.js';

/** Rewrite an allowed decision of a staged run in place (anything else is left as it is). */
export function stageDecision(run: { staging?: StagingSession } | undefined, decision: GateDecision, host: CapabilityInstance | undefined): void {
  const session = run?.staging;
  if (!decision.allow || session === undefined) return;
  const via = decision.via ?? host;
  if (via === undefined) return;
  decision.via = via.staged(session);
  if (decision.basis?.startsWith('grant:')) decision.basis = `staged:${decision.basis}`;
}

/** Staging sessions with a call allowed by a grant that requires signed approvals. */
const signedSessions = new WeakSet<StagingSession>();

/** The run's changeset will need passkey-signed approvals (a call of it was allowed by such a grant). */
export function requireSignedChangeset(session: StagingSession): void {
  signedSessions.add(session);
}

/** The most approvals any assisted grant that allowed a call of the session asks for. */
const sessionApprovals = new WeakMap<StagingSession, number>();

/** A call of the run was allowed by an assisted grant asking for `approvals` approvers: its changeset needs at least as many. */
export function requireChangesetApprovals(session: StagingSession, approvals: number): void {
  sessionApprovals.set(session, Math.max(approvals, sessionApprovals.get(session) ?? 1));
}

/** The approvals the grants of a session's calls ask for (1 when none asked for more). */
export function changesetGrantApprovals(session: StagingSession): number {
  return sessionApprovals.get(session) ?? 1;
}

/** Whether the changeset of this session needs passkey-signed approvals. */
export function changesetNeedsSignatures(session: StagingSession): boolean {
  return signedSessions.has(session);
}
