/**
 * The host's gate: every capability call of every run is decided here, by grant and mode.
 *
 * - A grant covering the subject, capability and method, whose (possibly narrower) scope admits
 *   the argument, decides by its mode: `contained` runs at once; `executed` runs at once and is
 *   recorded for after-the-fact review; `assisted` becomes a recommendation that runs only when
 *   approved (possibly with edited arguments), with two distinct approvers for destructive or
 *   financial methods.
 * - A call covered by no grant becomes an escalation (or `CAPABILITY_DENIED` at once when the host
 *   is configured so): allowed once, for the run, or always (a new narrowest grant), or denied.
 * - A call outside the host's own instance scope is refused: no human can widen what the host
 *   itself offers.
 * - Once a run has read a sensitive source, its open-world calls need a human whatever the mode
 *   (or are refused `DATA_FLOW_DENIED`): the run-level data-flow rule, data-flow.ts.
 *
 * Waiting for a human pauses the run's wall clock. Every allowed call is performed through the
 * instance the grant attenuated (its budgets and scope apply again at the moment of use).
 *
 * Which grant decides is `chooseGrant` (grant-choice.ts), the rule trust reports by too; grants
 * are read and written, and attenuated instances kept, by the grant service (grant-service.ts).
 */
import type { Logger } from 'pino';
import type { CapabilityInstance, StagingSession } from '../../capabilities/sdk/index.js';
import { needsSecondSignOff } from '../../capabilities/sdk/risk.js';
import { ContainedError } from '../../runtime/errors.js';
import type { CallOutcome, CapabilityRequest, Gate, GateCall, GateContext, GateDecision } from '../../runtime/gate.js';
import { chooseGrant } from '../grant-choice.js';
import type { GrantService } from '../grant-service.js';
import { capabilityOffer, type CapabilityOffer } from '../grants.js';
import type { Grant, RequestRecord, RunSubject } from '../model.js';
import type { DataFlowRule } from './data-flow.js';
import { approvedRequestGate, viaForRequest } from './detached.js';
import { requireChangesetApprovals, requireSignedChangeset, stageDecision } from '../changesets/staged-gate.js';
import type { FinalDecision, RequestManager } from './requests.js';

/** A "for this run" answer to an escalation. */
export interface RunAllowance {
  capability: string;
  /** A method name, or '*' for every method (a granted `requestCapability`). */
  method: string;
  via: CapabilityInstance;
}

/** What the gate knows of a live run: its subject, and what operators allowed it "for this run". */
export interface GateRun {
  subject: RunSubject;
  allowances: RunAllowance[];
  /** A staged run's changeset: its allowed calls are staged, not performed (host/changesets/). */
  staging?: StagingSession;
}

/** The audit log's hooks into the gate (host/audit/gate-audit.ts implements them). */
export interface GateAuditHooks {
  /** A call reached the gate (appended in order; not awaited). */
  requested(call: GateCall): void;
  /** The gate decided; for an allowed call the intent is durable when this resolves. */
  decided(call: GateCall, decision: GateDecision): Promise<void>;
  /** The action ran (or failed): the outcome is queued (committed with the next batch). Never throws. */
  settled(call: GateCall, decision: GateDecision & { allow: true }, outcome: CallOutcome): Promise<void>;
  /** An allowed call made its run read these sensitive sources for the first time (data-flow.ts). Never throws. */
  sensitiveRead?(call: GateCall, sources: readonly string[]): void;
}

export interface PolicyGateOptions {
  /** Reads the grants a call is decided by, keeps their attenuated instances, writes "always" grants. */
  grants: GrantService;
  requests: RequestManager;
  /** Capability instances the host offers, by name. */
  instances: ReadonlyMap<string, CapabilityInstance>;
  /** The live run a call belongs to. */
  run(runId: string): GateRun | undefined;
  /** `escalate` (default) or `deny` calls covered by no grant. */
  outOfScope: 'escalate' | 'deny';
  /** Default time a request waits for a human. */
  requestTimeoutMs: number;
  /** Told about every action performed in `executed` mode (the review queue). */
  onExecuted?(call: GateCall, grant: Grant, outcome: CallOutcome): void | Promise<void>;
  /** The audit log: call, decision, intent (durable before an allowed call returns from `decide`), outcome. */
  audit?: GateAuditHooks;
  /** The run-level data-flow rule (data-flow.ts): open-world calls after a sensitive read need a human. Absent: off. */
  dataFlow?: DataFlowRule;
  now?: () => number;
  logger?: Logger;
}

export class PolicyGate implements Gate {
  private readonly now: () => number;

  constructor(private readonly options: PolicyGateOptions) {
    this.now = options.now ?? Date.now;
  }

  /** The host's grant service (the only writer of grants). */
  get grants(): GrantService {
    return this.options.grants;
  }

  async decide(call: GateCall, ctx: GateContext): Promise<GateDecision> {
    this.options.audit?.requested(call);
    const durable: Array<Promise<void>> = [];
    const decision = await this.decideCall(call, ctx, durable);
    // Tainted before the call is performed: its result can never reach the agent first.
    const run = decision.allow ? this.options.run(call.runId) : undefined;
    const fresh = run ? this.options.dataFlow?.received(run, call) : undefined;
    if (fresh?.length) this.options.audit?.sensitiveRead?.(call, fresh);
    // In a staged run an allowed call is staged into the run's changeset (host/changesets/staged-gate.ts).
    stageDecision(this.options.run(call.runId), decision, this.options.instances.get(call.capability));
    // An allowed call's intent is on disk before the dispatcher performs it (AUDIT_FAILED otherwise).
    await this.options.audit?.decided(call, decision);
    // And so is the approval it was allowed by (committed without its own fsync: the intent's commit
    // covered it, so this usually resolves at once).
    await Promise.all(durable);
    return decision;
  }

  private async decideCall(call: GateCall, ctx: GateContext, durable: Array<Promise<void>>): Promise<GateDecision> {
    const host = this.options.instances.get(call.capability);
    const run = this.options.run(call.runId);
    if (!host || !run) return deny('CAPABILITY_DENIED', `${call.capability}.${call.method} is not offered by this host`);
    if (!call.scope.ok) return deny('CAPABILITY_DENIED', `${call.capability}.${call.method}: ${call.scope.message} (outside what this host offers)`);

    const flow = this.options.dataFlow?.check(run, call);
    if (flow?.action === 'deny') return deny('DATA_FLOW_DENIED', `${call.capability}.${call.method}: ${flow.reason}, and this host refuses open-world calls after a sensitive read`);
    const now = this.now();
    const { grant, covering: grants } = chooseGrant(
      await this.options.grants.matching(run.subject, now),
      { subject: run.subject, capability: call.capability, method: call.method, now },
      (g) => this.options.grants.instanceFor(g, host).checkScope(call.method, call.args).ok,
    );
    if (grant) {
      const via = this.options.grants.instanceFor(grant, host);
      // A staged run's calls are reviewed together, as its changeset: no per-call recommendation.
      if (run.staging) {
        // Its grant's signed approvals then apply to the changeset (host/changesets/staged-gate.ts).
        if (grant.signedApprovals === true) requireSignedChangeset(run.staging);
        // And an assisted grant's approvers: the changeset needs at least as many as it asks.
        if (grant.mode === 'assisted') requireChangesetApprovals(run.staging, grant.approvals);
        return { allow: true, basis: `grant:${grant.id}`, via };
      }
      if (grant.mode !== 'assisted' && !flow) return { allow: true, basis: `grant:${grant.id}`, via };
      return this.recommend(call, ctx, grant, via, durable, flow?.reason);
    }
    const allowance = run.allowances.find(
      (a) => a.capability === call.capability && (a.method === '*' || a.method === call.method) && a.via.checkScope(call.method, call.args).ok,
    );
    if (allowance && !flow) return { allow: true, basis: 'run-allowance', via: allowance.via };
    const why = grants.length > 0
      ? `outside the scope of ${grants.length === 1 ? 'grant' : 'grants'} ${grants.map((g) => g.id).join(', ')}`
      : `no grant covers ${call.capability}.${call.method} for this agent`;
    if (this.options.outOfScope === 'deny') return deny('CAPABILITY_DENIED', `${call.capability}.${call.method}: ${why}`);
    return this.escalate(call, ctx, host, flow ? `${why}; ${flow.reason}` : why, durable);
  }

  async settle(call: GateCall, decision: GateDecision & { allow: true }, outcome: CallOutcome): Promise<void> {
    await this.options.audit?.settled(call, decision, outcome);
    const basis = decision.basis ?? '';
    if (basis.startsWith('request:')) {
      await this.options.requests.complete(
        basis.slice('request:'.length),
        outcome.ok ? { ok: true, result: outcome.value } : { ok: false, error: { code: outcome.error.code, message: outcome.error.message } },
      );
    } else if (basis.startsWith('grant:') && this.options.onExecuted) {
      const grant = await this.options.grants.get(basis.slice('grant:'.length));
      if (grant?.mode === 'executed') await this.options.onExecuted(call, grant, outcome);
    }
  }

  async requestCapability(request: CapabilityRequest, ctx: GateContext): Promise<GateDecision> {
    const host = this.options.instances.get(request.capability);
    const run = this.options.run(request.runId);
    if (!host || !run) return deny('CAPABILITY_DENIED', `requestCapability: this host offers no capability "${request.capability}"`);
    // The scope must lie within the host's (a wider one is refused, not intersected); the methods
    // it leaves usable decide the approvals, what a "run" answer allows, and what "always" writes.
    let offer: CapabilityOffer;
    try {
      offer = capabilityOffer(host, request.scope);
    } catch (error) {
      return deny('INVALID_ARGUMENT', `requestCapability("${request.capability}"): ${error instanceof ContainedError ? error.message : 'invalid scope'}`);
    }
    const { via } = offer;
    if (this.options.outOfScope === 'deny') return deny('CAPABILITY_DENIED', `requestCapability("${request.capability}"): this host does not escalate`);
    const durable: Array<Promise<void>> = [];
    const decision = await this.wait(ctx, durable, {
      kind: 'escalation',
      runId: request.runId,
      subject: request.subject,
      capability: request.capability,
      definition: host.definition.name,
      requestedScope: request.scope ?? undefined,
      reason: request.reason,
      why: `the agent asks for ${request.capability} (${host.definition.describeScope(via.scope)}): ${offer.methods.join(', ') || 'no method'}`,
      approvalsRequired: offer.approvals,
      timeoutMs: this.options.requestTimeoutMs,
    });
    if (decision.status !== 'approved') return refusal(decision);
    await Promise.all(durable);
    if (decision.span === 'always') await this.writeAlways(decision);
    for (const method of offer.methods) run.allowances.push({ capability: request.capability, method, via });
    return { allow: true, basis: `request:${decision.request.id}` };
  }

  /**
   * The instance a request's action is performed through: its grant's attenuated instance for a
   * recommendation (also after a restart), the host instance for an escalation.
   */
  viaForRequest(request: RequestRecord, host: CapabilityInstance): Promise<CapabilityInstance> {
    return viaForRequest(this.options, request, host);
  }

  /**
   * The gate an approved recommendation nobody waits for (its run ended, or the host restarted) is
   * dispatched through: the runtime's Dispatcher validates the call as it does every sandbox call,
   * and this allows exactly that request's capability and method, within the host's scope, through
   * its grant's attenuated instance (`viaForRequest`). The decision was the operators'; its audit
   * and completion are the RequestManager's (beforeDetached, afterDetached, complete).
   */
  approvedRequestGate(request: RequestRecord): Gate {
    return approvedRequestGate(this.options, request);
  }

  /**
   * Revoke the attenuated instance of a grant (calls in flight through it fail CAPABILITY_REVOKED).
   * Revocations through the grant service (`host.grants.revoke`) do this themselves; this is for
   * one stored by another process. Kept for library users of `host.gate`.
   */
  revokeGrant(grantId: string, reason: string): void {
    this.options.grants.revokeInstance(grantId, reason);
  }

  /** `flow`: the data-flow rule's reason, when it (not the grant's mode) is why a human must decide. */
  private async recommend(call: GateCall, ctx: GateContext, grant: Grant, via: CapabilityInstance, durable: Array<Promise<void>>, flow?: string): Promise<GateDecision> {
    const decision = await this.wait(ctx, durable, {
      ...callFields(call),
      kind: 'recommendation',
      why: flow === undefined ? `assisted mode (grant ${grant.id})` : `${flow} (grant ${grant.id}, ${grant.mode} mode)`,
      grantId: grant.id,
      // The grant asks for passkey-signed approvals whatever the host policy: the request carries it.
      ...(grant.signedApprovals === true ? { signedApprovals: true } : {}),
      approvalsRequired: Math.max(grant.approvals, needsSecondSignOff(call.risk) ? 2 : 1),
      timeoutMs: grant.requestTimeoutMs ?? this.options.requestTimeoutMs,
    });
    if (decision.status !== 'approved') return refusal(decision);
    // Claim before performing: a recommendation is performed at most once, even across a crash.
    if (!(await this.options.requests.claim(decision.request.id))) {
      return deny('ALREADY_RESOLVED', `request ${decision.request.id} was already performed`);
    }
    return { allow: true, args: decision.args, basis: `request:${decision.request.id}`, via };
  }

  private async escalate(call: GateCall, ctx: GateContext, host: CapabilityInstance, why: string, durable: Array<Promise<void>>): Promise<GateDecision> {
    const decision = await this.wait(ctx, durable, {
      ...callFields(call),
      kind: 'escalation',
      why,
      approvalsRequired: needsSecondSignOff(call.risk) ? 2 : 1,
      timeoutMs: this.options.requestTimeoutMs,
    });
    if (decision.status !== 'approved') return refusal(decision);
    if (decision.span === 'run') this.options.run(call.runId)?.allowances.push({ capability: call.capability, method: call.method, via: host });
    if (decision.span === 'always') await this.writeAlways(decision);
    return { allow: true, args: decision.args, basis: `escalation:${decision.request.id}`, via: host };
  }

  private async writeAlways(decision: FinalDecision & { status: 'approved' }): Promise<void> {
    if (!this.options.instances.has(decision.request.capability)) return;
    const approver = decision.request.approvals[decision.request.approvals.length - 1]?.operator ?? 'operator';
    await this.options.grants.always(decision.request, { by: approver, args: decision.args });
  }

  /** Open a request and wait for its decision; an approval's `durable` goes to `durable` (awaited before acting). */
  private async wait(ctx: GateContext, durable: Array<Promise<void>>, request: Parameters<RequestManager['open']>[0]): Promise<FinalDecision> {
    const resume = ctx.pauseWallClock();
    try {
      const decision = await this.options.requests.open(request, ctx.signal);
      if (decision.status === 'approved' && decision.durable) durable.push(decision.durable);
      return decision;
    } finally {
      resume();
    }
  }
}

/** What a request records about the call that opened it. */
function callFields(call: GateCall): Pick<RequestRecord, 'runId' | 'subject' | 'capability' | 'definition' | 'method' | 'args' | 'reason' | 'risk'> {
  return {
    runId: call.runId,
    subject: call.subject,
    capability: call.capability,
    definition: call.definition,
    method: call.method,
    args: call.args,
    reason: call.reason,
    risk: call.risk,
  };
}

function deny(code: 'CAPABILITY_DENIED' | 'INVALID_ARGUMENT' | 'ALREADY_RESOLVED' | 'DATA_FLOW_DENIED', message: string): GateDecision {
  return { allow: false, code, message };
}

function refusal(decision: FinalDecision): GateDecision {
  switch (decision.status) {
    case 'denied':
      return { allow: false, code: 'ESCALATION_DENIED', message: `denied: ${decision.reason}` };
    case 'expired':
      return { allow: false, code: 'ESCALATION_TIMEOUT', message: `nobody decided request ${decision.request.id} in time` };
    case 'run_gone':
      return { allow: false, code: 'RUN_GONE', message: 'the run ended before the decision' };
    case 'approved':
      return { allow: false, code: 'INTERNAL', message: 'unexpected approval' };
  }
}
