/**
 * What an approval approves. Every approval is bound to the digest of the exact arguments that
 * will be performed: `argsDigest` = `sha256:` + the hex sha256 of their canonical JSON
 * (host/audit/canonical.ts, so the audit log, the store and every client agree byte for byte).
 *
 * The **proposal** is what would run if the request were approved now: the arguments of the latest
 * edit (an approval carrying `args`), else what the agent asked (its call's arguments, or the
 * scope a `requestCapability` asked for). An edit is a new proposal: approvals of any other digest
 * stop counting. A request is approved when `approvalsRequired` distinct operators approved the
 * current proposal's digest.
 *
 * Pure functions, shared by the request manager, the audit and the views. They fail closed: an
 * approval with no digest (stored before digests existed) counts for nothing.
 */
import { canonicalJson, sha256Hex } from '../audit/canonical.js';
import type { Approval, GrantSpan, RequestRecord } from '../model.js';

/** The form of an arguments digest. */
export const ARGS_DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/;

/** The digest an approval of these arguments is bound to (`undefined` is `null`: no arguments). */
export function argsDigest(args: unknown): string {
  return `sha256:${sha256Hex(canonicalJson(args === undefined ? null : args))}`;
}

/** What the agent asked: its call's arguments, or for `requestCapability` the scope it asked for. */
export function askedArgs(request: Pick<RequestRecord, 'method' | 'args' | 'requestedScope'>): unknown {
  return request.method !== undefined ? request.args : request.requestedScope;
}

/** The arguments a request would run with now: the agent's, or an operator's edit. */
export interface ArgsProposal {
  /** The arguments that run if the request is approved now. */
  args: unknown;
  argsDigest: string;
  /** Who proposed them by editing; absent: they are what the agent asked. */
  by?: string;
  at?: number;
}

/** The digest an approval approved (one stored without a digest approved nothing we can name). */
export function approvalDigest(approval: Approval): string | undefined {
  if (approval.argsDigest !== undefined) return approval.argsDigest;
  return approval.args !== undefined ? argsDigest(approval.args) : undefined;
}

/** The current proposal: the latest edit, else what the agent asked. */
export function currentProposal(request: Pick<RequestRecord, 'method' | 'args' | 'requestedScope' | 'approvals'>): ArgsProposal {
  for (let i = request.approvals.length - 1; i >= 0; i--) {
    const a = request.approvals[i];
    if (a && a.args !== undefined) return { args: a.args, argsDigest: approvalDigest(a) as string, by: a.operator, at: a.at };
  }
  const args = askedArgs(request);
  return { args, argsDigest: argsDigest(args) };
}

/** The approvals that count: those of the current proposal's digest (distinct operators: the store refuses a repeat). */
export function countingApprovals(request: Pick<RequestRecord, 'method' | 'args' | 'requestedScope' | 'approvals'>, proposal = currentProposal(request)): Approval[] {
  return request.approvals.filter((a) => approvalDigest(a) === proposal.argsDigest);
}

/** Whether the arguments that run differ from what the agent asked. */
export function isEdited(request: Pick<RequestRecord, 'method' | 'args' | 'requestedScope' | 'approvals'>, proposal = currentProposal(request)): boolean {
  return proposal.argsDigest !== argsDigest(askedArgs(request));
}

const SPAN_ORDER: Readonly<Record<GrantSpan, number>> = { once: 0, run: 1, always: 2 };

/** How far an approved escalation reaches: the narrowest span among the approvals that count (no one approver widens it alone). */
export function agreedSpan(approvals: readonly Approval[]): GrantSpan {
  let span: GrantSpan | undefined;
  for (const a of approvals) {
    const s = a.span ?? 'once';
    if (span === undefined || SPAN_ORDER[s] < SPAN_ORDER[span]) span = s;
  }
  return span ?? 'once';
}

/** The proposal as operators see it in every request view. */
export interface ProposalView extends ArgsProposal {
  /** Operators whose approvals count: they approved exactly these arguments. */
  approvedBy: string[];
}

export function proposalView(request: Pick<RequestRecord, 'method' | 'args' | 'requestedScope' | 'approvals'>): ProposalView {
  const proposal = currentProposal(request);
  return { ...proposal, approvedBy: countingApprovals(request, proposal).map((a) => a.operator) };
}
