/**
 * What the gate and the request manager write to the audit log. The gate only calls these hooks;
 * the record shapes live here.
 *
 * Per capability call: `call` (when it reaches the gate: arguments or their sha256, reason, risk),
 * `decision` (allow with its basis — grant and mode, or the request and who approved, edited or
 * not — or deny with the code), `intent` (allowed calls only: appended and committed BEFORE
 * `decided` returns, so it is on disk before the dispatcher performs the action), `outcome`
 * (result sha256 + shape, or the error code). Recommendations performed without a waiting run
 * (after a restart, or once the run has gone) get the same intent/outcome pair via `detached*`.
 *
 * Fails closed where it matters: if the intent cannot be made durable, `decided` throws
 * AUDIT_FAILED and the action is not performed. Every other record is appended `soon` (it shares
 * the next commit; nobody waits on it) and a failure is logged, never thrown: the action already
 * happened (or never will), and a missing outcome shows as a dangling intent.
 */
import type { Logger } from 'pino';
import { ContainedError } from '../../runtime/errors.js';
import type { CallOutcome, GateCall, GateDecision } from '../../runtime/gate.js';
import type { RequestEvent } from '../gate/events.js';
import type { GateAuditHooks } from '../gate/policy-gate.js';
import { agreedSpan, approvalDigest, countingApprovals, currentProposal, isEdited } from '../gate/proposal.js';
import { effectiveArgs, type ExecutionOutcome } from '../gate/requests.js';
import type { RequestRecord } from '../model.js';
import type { Store } from '../store/store.js';
import { argsForAudit, resultSummary } from './canonical.js';
import type { AuditLog } from './log.js';
import type { AuditInput } from './record.js';

export interface DetachedAuditHooks {
  /** Before an approved recommendation is performed with no run waiting: throws AUDIT_FAILED when the intent is not durable. */
  beforeDetached(request: RequestRecord, args: unknown): Promise<void>;
  afterDetached(request: RequestRecord, outcome: ExecutionOutcome): Promise<void>;
}

export interface GateAuditDeps {
  audit: AuditLog;
  store: Store;
  logger?: Logger;
}

function scope(call: GateCall): Pick<AuditInput, 'runId' | 'subject' | 'capability' | 'method' | 'callId'> {
  return { runId: call.runId, subject: call.subject, capability: call.capability, method: call.method, callId: call.callId };
}

function requestScope(r: RequestRecord): Pick<AuditInput, 'runId' | 'subject' | 'capability' | 'method'> {
  return { runId: r.runId, subject: r.subject, capability: r.capability, method: r.method };
}

/**
 * Every approval of a request, each with the digest of the arguments it approved and whether it
 * counts (it approved the current proposal). An approval of other arguments stays on record.
 */
function approvalsOnRecord(r: RequestRecord): Array<Record<string, unknown>> {
  const proposal = currentProposal(r);
  return r.approvals.map((a) => {
    const digest = approvalDigest(a);
    return {
      operator: a.operator,
      at: a.at,
      ...(digest === undefined ? {} : { argsDigest: digest }),
      counts: digest === proposal.argsDigest,
      edited: a.args !== undefined,
      ...(a.span === undefined ? {} : { span: a.span }),
      ...(a.note === undefined ? {} : { note: a.note }),
      // The passkey assertion it carried (signed approvals): verifiable offline with the log alone.
      ...(a.signature === undefined ? {} : { signature: a.signature }),
    };
  });
}

export function createGateAudit(deps: GateAuditDeps): GateAuditHooks & DetachedAuditHooks & { onRequestEvent(event: RequestEvent): void } {
  const { audit, store, logger } = deps;
  const background = (input: AuditInput): void => {
    try {
      audit.append(input, undefined, { soon: true }).catch((error: unknown) => logger?.error({ err: error, type: input.type }, 'audit: a record could not be written'));
    } catch (error) {
      logger?.error({ err: error, type: input.type }, 'audit: a record could not be built');
    }
  };

  /** Basis details for the decision record: the grant and its mode, or the request and its approvers. */
  async function basisDetails(basis: string): Promise<Record<string, unknown>> {
    const [kind, id] = [basis.slice(0, basis.indexOf(':')), basis.slice(basis.indexOf(':') + 1)];
    if (kind === 'grant') {
      const grant = await store.getGrant(id);
      return { grantId: id, mode: grant?.mode };
    }
    if (kind === 'request' || kind === 'escalation') {
      const request = await store.getRequest(id);
      if (!request) return { requestId: id };
      const proposal = currentProposal(request);
      const counted = countingApprovals(request, proposal);
      return {
        requestId: id,
        mode: request.kind === 'recommendation' ? 'assisted' : 'escalated',
        ...(request.grantId === undefined ? {} : { grantId: request.grantId }),
        // Who approved what runs, each with the digest they approved (the same one: only those count).
        approvedBy: counted.map((a) => a.operator),
        argsDigest: proposal.argsDigest,
        approvals: counted.map((a) => ({ operator: a.operator, argsDigest: approvalDigest(a), ...(a.signature === undefined ? {} : { credentialId: a.signature.credentialId }) })),
        edited: isEdited(request, proposal),
        ...(request.approvals.some((a) => a.note !== undefined) ? { notes: request.approvals.filter((a) => a.note !== undefined).map((a) => ({ operator: a.operator, note: a.note })) } : {}),
      };
    }
    return {};
  }

  return {
    requested(call) {
      background({
        type: 'call',
        ...scope(call),
        data: { definition: call.definition, ...argsForAudit(call.args), ...(call.reason === undefined ? {} : { reason: call.reason }), risk: call.risk, inScope: call.scope.ok },
      });
    },

    async decided(call, decision) {
      if (!decision.allow) {
        background({ type: 'decision', ...scope(call), data: { allow: false, code: decision.code, message: decision.message.slice(0, 500) } });
        return;
      }
      const basis = decision.basis ?? 'unknown';
      let details: Record<string, unknown>;
      try {
        details = await basisDetails(basis);
      } catch (error) {
        logger?.error({ err: error, basis }, 'audit: could not read the basis of a decision');
        details = {};
      }
      const args = decision.args === undefined ? {} : argsForAudit(decision.args);
      background({ type: 'decision', ...scope(call), data: { allow: true, basis, ...details, ...(decision.args === undefined ? {} : { editedArgs: args }) } });
      try {
        await audit.append({ type: 'intent', ...scope(call), data: { basis, ...(details.mode === undefined ? {} : { mode: details.mode }), ...argsForAudit(decision.args ?? call.args) } });
      } catch (error) {
        throw new ContainedError('AUDIT_FAILED', `${call.capability}.${call.method}: the audit log could not record the intent, so the action was not performed`, { cause: error });
      }
    },

    async settled(call, decision, outcome) {
      // Not awaited: the agent gets its result without waiting for a commit; a crash before the
      // next batch leaves the intent dangling, which is exactly what "outcome unknown" means.
      background({ type: 'outcome', ...scope(call), data: outcomeData(outcome.ok ? { ok: true, result: outcome.value } : { ok: false, error: outcome.error }, decision.basis) });
    },

    sensitiveRead(call, sources) {
      // Appended before the call's intent (the gate taints, then asks for the intent): the flow is on record before the data is read.
      background({ type: 'run.sensitive', ...scope(call), data: { sources: [...sources], definition: call.definition } });
    },

    async beforeDetached(request, args) {
      try {
        await audit.append({ type: 'intent', ...requestScope(request), callId: `request:${request.id}`, data: { basis: `request:${request.id}`, mode: 'assisted', detached: true, ...argsForAudit(args) } });
      } catch (error) {
        throw new ContainedError('AUDIT_FAILED', `request ${request.id}: the audit log could not record the intent, so the action was not performed`, { cause: error });
      }
    },

    async afterDetached(request, outcome) {
      background({ type: 'outcome', ...requestScope(request), callId: `request:${request.id}`, data: outcomeData(outcome, `request:${request.id}`) });
    },

    onRequestEvent(event) {
      const input = requestEventRecord(event);
      if (input) background(input);
    },
  };
}

function outcomeData(outcome: ExecutionOutcome, basis: string | undefined): Record<string, unknown> {
  if (outcome.ok) return { ok: true, ...(basis === undefined ? {} : { basis }), ...resultSummary(outcome.result) };
  return { ok: false, ...(basis === undefined ? {} : { basis }), error: { code: outcome.error.code, message: outcome.error.message.slice(0, 300) } };
}

/** Request lifecycle, runs: one record per event (grant changes come from the store's triggers). */
export function requestEventRecord(event: RequestEvent): AuditInput | undefined {
  switch (event.type) {
    case 'created': {
      const r = event.request;
      return {
        type: 'request.created',
        ...requestScope(r),
        data: {
          requestId: r.id,
          kind: r.kind,
          why: r.why,
          approvalsRequired: r.approvalsRequired,
          expiresAt: r.expiresAt,
          ...(r.grantId === undefined ? {} : { grantId: r.grantId }),
          ...(r.reason === undefined ? {} : { reason: r.reason }),
          ...(r.risk === undefined ? {} : { risk: r.risk }),
          ...(r.method === undefined ? {} : argsForAudit(r.args)),
          ...(r.requestedScope === undefined ? {} : { requestedScope: r.requestedScope }),
        },
      };
    }
    case 'updated': {
      const r = event.request;
      if (r.status !== 'pending') return undefined; // execution progress: intent/outcome records cover it
      return { type: 'request.approval', ...requestScope(r), data: { requestId: r.id, argsDigest: currentProposal(r).argsDigest, approvals: approvalsOnRecord(r), approvalsRequired: r.approvalsRequired } };
    }
    case 'resolved': {
      const r = event.request;
      const proposal = currentProposal(r);
      const edited = isEdited(r, proposal);
      return {
        type: 'request.resolved',
        ...requestScope(r),
        data: {
          requestId: r.id,
          kind: r.kind,
          status: r.status,
          by: r.resolvedBy ?? [],
          ...(r.denyReason === undefined ? {} : { denyReason: r.denyReason }),
          ...(r.status === 'approved' ? { edited, span: agreedSpan(countingApprovals(r, proposal)), argsDigest: proposal.argsDigest } : {}),
          ...(r.status === 'approved' && edited ? { editedArgs: argsForAudit(effectiveArgs(r)) } : {}),
          ...(r.approvals.length > 0 ? { approvals: approvalsOnRecord(r) } : {}),
        },
      };
    }
    case 'run': {
      const run = event.run;
      const ended = run.status === 'ok' || run.status === 'error' || run.status === 'cancelled';
      const outcome = run.outcome as { error?: { code?: unknown }; usage?: unknown } | undefined;
      return {
        type: ended ? 'run.ended' : 'run.started',
        runId: run.id,
        subject: run.subject,
        data: {
          status: run.status,
          ...(run.imageName === undefined ? {} : { imageName: run.imageName }),
          ...(run.submittedBy === undefined ? {} : { submittedBy: run.submittedBy }),
          ...(ended && typeof outcome?.error?.code === 'string' ? { error: outcome.error.code } : {}),
          ...(ended && outcome?.usage !== undefined ? { usage: outcome.usage } : {}),
          ...(ended && run.sensitiveSources !== undefined ? { sensitiveSources: run.sensitiveSources } : {}),
        },
      };
    }
    default:
      return undefined;
  }
}
