/**
 * A small, real, in-memory `OperatorBackend` for the operator channel tests: it keeps requests,
 * grants and runs, enforces first-decision-wins and two distinct approvers, checks roles, and
 * emits events. (The host's policy backend is tested end to end elsewhere.) Also a `TokenVerifier`
 * over a fixed token table.
 */
import { ContainedError } from '../../runtime/errors.js';
import type { Grant, Operator, Role, RunRecord } from '../../host/model.js';
import { roleAtLeast } from '../../host/model.js';
import { argsDigest, askedArgs, countingApprovals, currentProposal, proposalView } from '../../host/gate/proposal.js';
import type { DecideInput, OperatorBackend, RequestEvent, RequestView, TokenVerifier } from '../../host/operator/backend.js';

export interface NewRequest extends Partial<RequestView> {
  id: string;
}

/** A copy to hand out, with its current proposal (as the host's views carry it). */
function view(request: RequestView): RequestView {
  return { ...structuredClone(request), proposal: proposalView(request) };
}

export class MemoryBackend implements OperatorBackend {
  readonly requests = new Map<string, RequestView>();
  readonly grants = new Map<string, Grant>();
  readonly runs = new Map<string, RunRecord>();
  readonly decisions: Array<{ operator: string; input: DecideInput }> = [];
  private readonly listeners = new Set<(event: RequestEvent) => void>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Open a pending request (as the gate would) and announce it. */
  add(partial: NewRequest): RequestView {
    const at = this.now();
    const request: RequestView = {
      kind: 'recommendation',
      runId: 'run-1',
      subject: 'sha256:' + 'a'.repeat(64),
      capability: 'outbox',
      definition: 'outbox',
      method: 'send',
      args: { to: 'ops@example.com', subject: 'weekly digest' },
      reason: 'send the weekly digest',
      risk: { readOnly: false, destructive: false, reversible: false, openWorld: true, financial: false },
      why: 'assisted mode',
      approvalsRequired: 1,
      approvals: [],
      status: 'pending',
      createdAt: at,
      expiresAt: at + 15 * 60_000,
      ...partial,
      proposal: { args: undefined, argsDigest: '', approvedBy: [] },
    };
    request.proposal = proposalView(request);
    this.requests.set(request.id, request);
    this.emit({ type: 'created', request: view(request) });
    return request;
  }

  addGrant(grant: Grant): void {
    this.grants.set(grant.id, grant);
    this.emit({ type: 'grant', change: 'added', grant });
  }

  addRun(run: RunRecord): void {
    this.runs.set(run.id, run);
  }

  emit(event: RequestEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  async pending(operator: Operator): Promise<RequestView[]> {
    await tick();
    requireRole(operator, 'viewer');
    return [...this.requests.values()].filter((r) => r.status === 'pending').map(view);
  }

  async decide(operator: Operator, input: DecideInput): Promise<RequestView> {
    await tick(); // a real store is asynchronous; the check-and-set below is not interrupted
    requireRole(operator, 'approver');
    const request = this.requests.get(input.requestId);
    if (!request) throw new ContainedError('NOT_FOUND', `no request ${input.requestId}`);
    if (request.status !== 'pending') throw new ContainedError('ALREADY_RESOLVED', `request ${input.requestId} is already ${request.status}`);
    this.decisions.push({ operator: operator.name, input });
    const at = this.now();
    if (input.verdict === 'deny') {
      Object.assign(request, { status: 'denied', resolvedAt: at, resolvedBy: [operator.name], denyReason: input.reason });
      this.emit({ type: 'resolved', request: view(request) });
      return view(request);
    }
    // The host's rule (host/gate/proposal.ts): approvals are bound to the digest of the arguments.
    const proposal = currentProposal(request);
    if ((input.argsDigest ?? argsDigest(askedArgs(request))) !== proposal.argsDigest) {
      throw new ContainedError('STALE_REQUEST', `request ${request.id} changed since you loaded it`, { data: { argsDigest: proposal.argsDigest } });
    }
    const digest = input.args !== undefined ? argsDigest(input.args) : proposal.argsDigest;
    if (request.approvals.some((a) => a.operator === operator.name && a.argsDigest === digest)) {
      throw new ContainedError('DUPLICATE_APPROVER', `${operator.name} already approved ${request.id}; the second approval must come from someone else`);
    }
    request.approvals.push({
      operator: operator.name,
      at,
      argsDigest: digest,
      ...(input.args !== undefined ? { args: input.args } : {}),
      ...(input.span !== undefined ? { span: input.span } : {}),
      ...(input.note !== undefined ? { note: input.note } : {}),
    });
    const counted = countingApprovals(request);
    if (counted.length >= request.approvalsRequired) {
      Object.assign(request, { status: 'approved', resolvedAt: at, resolvedBy: counted.map((a) => a.operator) });
      this.emit({ type: 'resolved', request: view(request) });
    } else {
      this.emit({ type: 'updated', request: view(request) });
    }
    return view(request);
  }

  async listGrants(operator: Operator): Promise<Grant[]> {
    requireRole(operator, 'admin');
    return [...this.grants.values()];
  }

  async revokeGrant(operator: Operator, grantId: string, reason: string): Promise<Grant> {
    requireRole(operator, 'admin');
    const grant = this.grants.get(grantId);
    if (!grant) throw new ContainedError('NOT_FOUND', `no grant ${grantId}`);
    if (grant.revokedAt !== undefined) throw new ContainedError('ALREADY_RESOLVED', `grant ${grantId} is already revoked`);
    Object.assign(grant, { revokedAt: this.now(), revokedBy: operator.name, revokeReason: reason });
    this.emit({ type: 'grant', change: 'revoked', grant });
    return grant;
  }

  async listRuns(operator: Operator, limit = 50): Promise<RunRecord[]> {
    requireRole(operator, 'viewer');
    return [...this.runs.values()].sort((a, b) => b.createdAt - a.createdAt).slice(0, limit);
  }

  async cancelRun(operator: Operator, runId: string): Promise<RunRecord> {
    requireRole(operator, 'admin');
    const run = this.runs.get(runId);
    if (!run) throw new ContainedError('NOT_FOUND', `no run ${runId}`);
    if (run.status !== 'queued' && run.status !== 'running') throw new ContainedError('ALREADY_RESOLVED', `run ${runId} already ended (${run.status})`);
    Object.assign(run, { status: 'cancelled', endedAt: this.now() });
    this.emit({ type: 'run', run });
    return run;
  }

  subscribe(listener: (event: RequestEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get subscribers(): number {
    return this.listeners.size;
  }
}

function requireRole(operator: Operator, role: Exclude<Role, 'platform'>): void {
  if (!roleAtLeast(operator.role, role)) throw new ContainedError('FORBIDDEN', `role ${operator.role} cannot do this`);
}

function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Tokens for tests: token string → operator. */
export class MemoryVerifier implements TokenVerifier {
  readonly tokens = new Map<string, Operator>();
  calls = 0;

  add(token: string, name: string, role: Role): Operator {
    const operator = { tokenId: `tok-${name}`, name, role };
    this.tokens.set(token, operator);
    return operator;
  }

  async verify(token: string): Promise<Operator | undefined> {
    this.calls++;
    await tick();
    return this.tokens.get(token);
  }
}
