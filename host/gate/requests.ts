/**
 * Requests waiting for a human: recommendations (assisted actions) and escalations (calls outside
 * every grant, `requestCapability`). The manager persists each request before anyone can see it,
 * fans events out to operators, applies decisions exactly once (the store's compare-and-set), runs
 * the two-person rule, expires requests, and after a restart offers pending requests again.
 *
 * A recommendation stands on its own: approved after its run has gone (or after a restart), the
 * host still performs it — exactly once, guarded by `claimExecution` — and records the outcome.
 * Views say `runEnded` so nobody approves one thinking its agent still waits. Except when its run
 * was cancelled: then it is withdrawn (`withdrawForRun`, closed as `cancelled`, never performed),
 * including one opened in the race after the cancel. An escalation whose run has gone is closed
 * as `run_gone`.
 *
 * Approvals are bound to arguments (proposal.ts): each records the digest of the arguments it
 * approved; an edit is a new proposal and approvals of other digests stop counting; the request is
 * approved when enough distinct operators approved the current proposal. An approval names the
 * digest its approver saw (none: what the agent asked); if the proposal moved since, it is refused
 * STALE_REQUEST. The store appends an approval only if no other landed since this one was judged
 * (`expectApprovals`), so the judgement and the write cannot be split by a concurrent edit.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { ContainedError } from '../../runtime/errors.js';
import { createEventHub, type EventHub } from '../event-hub.js';
import type { AssertionJSON } from '../approvals/challenge.js';
import type { Approval, GrantSpan, Operator, RequestRecord } from '../model.js';
import { roleAtLeast, roleWithArticle } from '../model.js';
import type { DecideInput, RequestEvent, RequestView } from './events.js';
import type { Store, StoreChange } from '../store/store.js';
import { agreedSpan, ARGS_DIGEST_PATTERN, argsDigest, askedArgs, countingApprovals, currentProposal, proposalView } from './proposal.js';

/** Times `decide` judges an approval again when other approvals landed while it was judging. */
const MAX_DECIDE_ATTEMPTS = 5;

export type FinalDecision =
  | {
      status: 'approved';
      request: RequestRecord;
      args: unknown;
      span: GrantSpan;
      /**
       * Resolves when the approval is durable (group commit: the store's `synced`); whoever acts on
       * the decision awaits it first. The gate awaits it after the call's intent is committed, whose
       * fsync covers it, so it costs nothing more there.
       */
      durable?: Promise<void>;
    }
  | { status: 'denied'; request: RequestRecord; reason: string }
  | { status: 'expired'; request: RequestRecord }
  | { status: 'run_gone'; request: RequestRecord };

export type ExecutionOutcome = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } };

export interface RequestManagerOptions {
  store: Store;
  /** Where `emit` and `subscribe` go (startHost shares one with grants, trust and runs); default a private one. */
  events?: EventHub<RequestEvent>;
  now?: () => number;
  logger?: Logger;
  /** Re-validate an operator's edited arguments; throws a ContainedError when they do not fit. */
  validateEdit(request: RequestRecord, args: unknown): Promise<unknown>;
  /** Perform an approved recommendation nobody is waiting for (run gone, host restarted). */
  performDetached(request: RequestRecord, args: unknown): Promise<ExecutionOutcome>;
  /** Trust figures shown with a request (the ledger fills this in when it exists). */
  trustFor?(request: RequestRecord): Record<string, unknown> | undefined;
  /** Bring `trustFor`'s figures of these requests up to date (awaited before they are announced or listed). */
  prepareTrust?(requests: readonly RequestRecord[]): Promise<void>;
  /**
   * Fault-injection seam for crash tests: called after a decision is durable and before anyone
   * acts on it (`contained host` wires it to CONTAINED_FAULT=kill-after-decision).
   */
  afterDecision?(request: RequestRecord): void;
  /** Audit: the intent of a detached perform, durable before the action (throws AUDIT_FAILED: not performed). */
  beforeDetached?(request: RequestRecord, args: unknown): Promise<void>;
  /** Audit: the outcome of a detached perform. */
  afterDetached?(request: RequestRecord, outcome: ExecutionOutcome): Promise<void>;
  /** Whether the run that made a request is still live (views carry `runEnded`; absent: not said). */
  runLive?(runId: string): boolean;
  /** Whether a run's pending recommendations are to be withdrawn because it was cancelled. */
  withdrawsOnCancel?(runId: string): Promise<boolean>;
  /**
   * Signed approvals (host/approvals/signed.ts): verify the passkey assertion of an approval of
   * `argsDigest` before it counts, and return what the approval keeps of it (undefined: unsigned and
   * not required). Throws SIGNATURE_REQUIRED or SIGNATURE_INVALID; nothing is counted then.
   */
  verifySignature?(operator: Operator, request: RequestRecord, argsDigest: string, assertion: AssertionJSON | undefined): Promise<Approval['signature']>;
  /**
   * Several hosts on one store (host/fleet.ts): this host's id, stamped on the requests its runs
   * open; absent: the only host (SQLite).
   */
  hostId?: string;
  /**
   * Whether the host that owns a request (whose run opened it) still runs. An approved
   * recommendation nobody here waits for is performed here only when its owner is this host or
   * gone; a live owner performs it itself (its run's gate waits for it, or it performs it detached
   * when it hears of the decision), so an agent never finds its own approved action taken by
   * another host.
   */
  ownerAlive?(hostId: string): boolean;
}

export type OpenRequest = Omit<RequestRecord, 'id' | 'status' | 'approvals' | 'createdAt' | 'expiresAt'> & { timeoutMs: number };

export class RequestManager {
  private readonly waiters = new Map<string, (decision: FinalDecision) => void>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly events: EventHub<RequestEvent>;
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly options: RequestManagerOptions) {
    this.now = options.now ?? Date.now;
    this.events = options.events ?? createEventHub((error) => options.logger?.error({ err: error }, 'request event listener failed'));
  }

  /**
   * Persist a request nobody waits for — a staged run's changeset, opened when its run ended — and
   * announce it. Approved, it is performed detached, exactly once (`claimExecution`), as an
   * approved recommendation whose run has gone is.
   */
  async file(input: OpenRequest): Promise<RequestRecord> {
    const { timeoutMs, ...fields } = input;
    const createdAt = this.now();
    const request: RequestRecord = { ...fields, ...this.owner(), id: randomUUID(), status: 'pending', approvals: [], createdAt, expiresAt: createdAt + timeoutMs };
    // Figures beside the insert (they depend on the action, not on the stored request); the
    // announcement follows both at once.
    await Promise.all([this.prepare([request]), this.options.store.insertRequest(request)]);
    this.schedule(request);
    this.emit({ type: 'created', request: this.view(request) });
    return request;
  }

  /** Persist a request, announce it, and wait for its final decision (or the run's end). */
  async open(input: OpenRequest, signal: AbortSignal): Promise<FinalDecision> {
    const { timeoutMs, ...fields } = input;
    const createdAt = this.now();
    const request: RequestRecord = { ...fields, ...this.owner(), id: randomUUID(), status: 'pending', approvals: [], createdAt, expiresAt: createdAt + timeoutMs };
    // One fsync per decision (docs/performance.md): the request is written without one of its own
    // (it survives the host's death at once) and made durable by the next commit of the file —
    // the decision's, or the audit log's batch holding `request.created` (within its 10 ms), or
    // the store's own sync 20 ms from now, whichever comes first. Nothing is decided or done on it
    // before then: a decision waits for its own durability, which covers the request too.
    await Promise.all([this.prepare([request]), this.options.store.insertRequest(request, { deferSync: true })]);
    this.options.store.synced({ withinMs: 20 }).catch((error: unknown) => this.options.logger?.error({ err: error, requestId: request.id }, 'a request could not be made durable'));
    const decided = new Promise<FinalDecision>((resolve) => this.waiters.set(request.id, resolve));
    this.schedule(request);
    this.emit({ type: 'created', request: this.view(request) });
    const onAbort = (): void => {
      this.runEnded(request.id).catch((error: unknown) => this.options.logger?.error({ err: error, requestId: request.id }, 'closing a request of an ended run failed'));
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    try {
      return await decided;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  async decide(operator: Operator, input: DecideInput): Promise<RequestView> {
    if (!roleAtLeast(operator.role, 'approver')) {
      throw new ContainedError('FORBIDDEN', `${operator.name} is ${roleWithArticle(operator.role)}: only approvers and admins decide`);
    }
    const request = await this.options.store.getRequest(input.requestId);
    if (!request) throw new ContainedError('NOT_FOUND', `no request ${input.requestId}`);
    if (request.status !== 'pending') throw alreadyResolved(request);
    if (input.verdict === 'deny') {
      if (typeof input.reason !== 'string' || input.reason.trim() === '') throw new ContainedError('INVALID_ARGUMENT', 'a denial needs a reason');
      const resolved = await this.options.store.resolveRequest(request.id, { status: 'denied', at: this.now(), by: [operator.name], denyReason: input.reason });
      if (!resolved.ok) throw new ContainedError(resolved.code, `request ${request.id} is already resolved`);
      this.finish(resolved.request, { status: 'denied', request: resolved.request, reason: input.reason });
      return this.view(resolved.request);
    }
    const span: GrantSpan = request.kind === 'escalation' ? (input.span ?? 'once') : 'once';
    if (input.args !== undefined && request.kind !== 'recommendation' && request.method === undefined) {
      throw new ContainedError('INVALID_ARGUMENT', 'a capability request has no arguments to edit');
    }
    if (input.argsDigest !== undefined && !ARGS_DIGEST_PATTERN.test(input.argsDigest)) {
      throw new ContainedError('INVALID_ARGUMENT', 'argsDigest must be "sha256:" and 64 lower-case hex digits (the request view\'s proposal.argsDigest)', { data: { path: 'argsDigest' } });
    }
    // Validate an edit once: the arguments do not depend on who else approved meanwhile.
    const edited = input.args === undefined ? undefined : await this.options.validateEdit(request, input.args);
    // A signature covers the digest this approval approves: the edit's, else the proposal its approver saw.
    const signature = await this.options.verifySignature?.(operator, request, edited === undefined ? (input.argsDigest ?? argsDigest(askedArgs(request))) : argsDigest(edited), input.assertion);
    for (let attempt = 1, seen = request; ; attempt++) {
      const approval = this.approvalFor(operator, seen, input, span, edited);
      if (signature !== undefined) approval.signature = signature;
      const approvals = [...seen.approvals, approval];
      const completes = countingApprovals({ ...seen, approvals }).length >= seen.approvalsRequired;
      const added = await this.options.store.addApproval(seen.id, approval, { resolve: completes, expectApprovals: seen.approvals.length, deferSync: true });
      if (!added.ok) {
        if (added.code === 'STALE_REQUEST' && added.request?.status === 'pending' && attempt < MAX_DECIDE_ATTEMPTS) {
          // Someone else's approval landed while this one was judged: judge it again against theirs.
          seen = added.request;
          continue;
        }
        if (added.code === 'DUPLICATE_APPROVER') {
          throw new ContainedError('DUPLICATE_APPROVER', `${operator.name} already approved these arguments of request ${seen.id}; a second, different approver is needed`);
        }
        if (added.code === 'STALE_REQUEST') throw staleRequest(added.request ?? seen);
        if (added.request && added.request.status !== 'pending') throw alreadyResolved(added.request);
        throw new ContainedError(added.code === 'NOT_FOUND' ? 'NOT_FOUND' : 'ALREADY_RESOLVED', `request ${seen.id} is ${added.code === 'NOT_FOUND' ? 'gone' : 'already resolved'}`);
      }
      const current = added.request;
      // The approval was committed without its own fsync: nobody hears of it before it is durable.
      const durable = this.options.store.synced();
      if (current.status !== 'approved') {
        await durable;
        await this.prepare([current]);
        this.emit({ type: 'updated', request: this.view(current) });
        return this.view(current);
      }
      // The completing approval resolved the request in the same commit. Whoever waits (the gate)
      // may go on at once: it awaits `durable` before acting, after committing the call's intent,
      // whose fsync covers this commit too (one fsync per decision). Operators hear of it, and the
      // approver gets the answer, once it is durable.
      const waiter = this.settle(current, { status: 'approved', request: current, args: effectiveArgs(current), span: agreedSpan(countingApprovals(current)), durable });
      durable.catch(() => {}); // the waiter (or the await below) handles a failure
      await durable;
      this.emit({ type: 'resolved', request: this.view(current) });
      if (!waiter && current.kind !== 'escalation' && this.performsHere(current)) void this.performDetached(current);
      return this.view(current);
    }
  }

  /**
   * The approval `input` makes of `request` as it stands: refused STALE_REQUEST when the proposal
   * its approver saw (`argsDigest`; none: what the agent asked) is no longer the current one. An
   * edit (`edited`, already validated) approves its own arguments, a new proposal.
   */
  private approvalFor(operator: Operator, request: RequestRecord, input: DecideInput & { verdict: 'approve' }, span: GrantSpan, edited: unknown): Approval {
    const proposal = currentProposal(request);
    const seen = input.argsDigest ?? argsDigest(askedArgs(request));
    if (seen !== proposal.argsDigest) throw staleRequest(request);
    const approval: Approval = { operator: operator.name, at: this.now(), span, argsDigest: proposal.argsDigest };
    if (input.note !== undefined) approval.note = input.note;
    if (input.args !== undefined) {
      approval.args = edited;
      approval.argsDigest = argsDigest(edited);
    }
    return approval;
  }

  /** Claim the right to perform an approved recommendation (false: already performed or claimed). */
  claim(id: string): Promise<boolean> {
    return this.options.store.claimExecution(id, this.now());
  }

  async complete(id: string, outcome: ExecutionOutcome): Promise<void> {
    await this.options.store.completeExecution(id, outcome.ok ? { ok: true, result: outcome.result } : { ok: false, error: outcome.error }, this.now());
    const request = await this.options.store.getRequest(id);
    if (request) this.emit({ type: 'updated', request: this.view(request) });
  }

  /**
   * Withdraw the pending recommendations of a cancelled run: each closes as `cancelled` (first wins
   * against a concurrent decision), operators get `resolved`, the audit records `by`; nothing is
   * performed. (Its escalations close as `run_gone` when the run ends, as for any run.)
   */
  async withdrawForRun(runId: string, by: string): Promise<RequestRecord[]> {
    const withdrawn: RequestRecord[] = [];
    for (const request of await this.options.store.listRequests({ status: 'pending', runId })) {
      if (request.kind !== 'recommendation') continue;
      const closed = await this.withdraw(request.id, by);
      if (closed) withdrawn.push(closed);
    }
    return withdrawn;
  }

  async pending(): Promise<RequestView[]> {
    return this.views(await this.options.store.listRequests({ status: 'pending' }));
  }

  /** Views of several requests, their trust figures brought up to date first. */
  private async views(requests: RequestRecord[]): Promise<RequestView[]> {
    await this.prepare(requests);
    return requests.map((r) => this.view(r));
  }

  /** `prepareTrust`, never failing the caller (a view without fresh figures beats no view). */
  private async prepare(requests: readonly RequestRecord[]): Promise<void> {
    if (!this.options.prepareTrust || requests.length === 0) return;
    try {
      await this.options.prepareTrust(requests);
    } catch (error) {
      this.options.logger?.warn({ err: error }, 'trust figures could not be prepared');
    }
  }

  subscribe(listener: (event: RequestEvent) => void): () => void {
    return this.events.subscribe(listener);
  }

  emit(event: RequestEvent): void {
    this.events.emit(event);
  }

  /** The views of a run's requests, in the store's order (an event stream's rebuild, the console's run page). */
  async viewsForRun(runId: string, options: { limit?: number } = {}): Promise<RequestView[]> {
    return this.views(await this.options.store.listRequests({ runId, ...(options.limit !== undefined ? { limit: options.limit } : {}) }));
  }

  /**
   * After a restart: no run from before is alive. Escalations close as `run_gone`; recommendations
   * stay pending (re-offered, with their expiry timers); approved recommendations that were never
   * performed are performed now, once.
   *
   * With several hosts, only the requests of hosts that are gone (`gone`: the owner's id, or
   * undefined for requests stored before hosts had ids) are closed or performed — the fleet calls
   * this for each host it reaps — while every pending request of the fleet gets an expiry timer here.
   */
  async recover(gone: (hostId: string | undefined) => boolean = () => true): Promise<{ pending: number; closed: number; performed: number }> {
    let closed = 0;
    let performed = 0;
    let left = 0;
    for (const request of await this.options.store.listRequests({ status: 'pending' })) {
      if (!gone(request.hostId)) {
        if (!this.timers.has(request.id)) this.schedule(request);
        continue;
      }
      const counted = countingApprovals(request);
      if (request.kind !== 'escalation' && counted.length >= request.approvalsRequired) {
        // The host died between the last approval and the resolution: finish the resolution.
        const resolved = await this.options.store.resolveRequest(request.id, { status: 'approved', at: this.now(), by: counted.map((a) => a.operator) });
        if (resolved.ok) closed += 1;
        continue;
      }
      if (request.kind === 'escalation') {
        const resolved = await this.options.store.resolveRequest(request.id, { status: 'run_gone', at: this.now() });
        if (resolved.ok) {
          closed += 1;
          // Operators (here and, through the store, on every host) see it close.
          if (this.options.hostId !== undefined) this.emit({ type: 'resolved', request: this.view(resolved.request) });
        }
      } else {
        left += 1;
        if (!this.timers.has(request.id)) this.schedule(request);
      }
    }
    for (const request of await this.options.store.listRequests({ status: 'approved' })) {
      if (request.kind !== 'escalation' && request.execution === undefined && gone(request.hostId)) {
        await this.performDetached(request);
        performed += 1;
      }
    }
    return { pending: left, closed, performed };
  }

  close(): void {
    this.closed = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.waiters.clear();
  }

  view(request: RequestRecord): RequestView {
    const trust = this.options.trustFor?.(request);
    const runEnded = this.runHasEnded(request);
    return { ...request, proposal: proposalView(request), ...(trust ? { trust } : {}), ...(runEnded === undefined ? {} : { runEnded }) };
  }

  /** Whether the request's run has ended, when this host can tell: its own runs; another host's only once that host is gone. */
  private runHasEnded(request: RequestRecord): boolean | undefined {
    const owner = request.hostId;
    if (owner !== undefined && this.options.hostId !== undefined && owner !== this.options.hostId) return this.options.ownerAlive?.(owner) === false ? true : undefined;
    return this.options.runLive === undefined ? undefined : !this.options.runLive(request.runId);
  }

  private schedule(request: RequestRecord): void {
    const delay = Math.max(0, request.expiresAt - this.now());
    // setTimeout caps at ~24.8 days; longer expiries re-arm.
    const timer = setTimeout(() => void this.expire(request.id), Math.min(delay, 2 ** 31 - 1));
    timer.unref();
    this.timers.set(request.id, timer);
  }

  private async expire(id: string): Promise<void> {
    this.timers.delete(id);
    if (this.closed) return;
    const request = await this.options.store.getRequest(id);
    if (!request || request.status !== 'pending') return;
    if (request.expiresAt > this.now()) {
      this.schedule(request);
      return;
    }
    const resolved = await this.options.store.resolveRequest(id, { status: 'expired', at: this.now() });
    if (resolved.ok) this.finish(resolved.request, { status: 'expired', request: resolved.request });
  }

  /**
   * The run that opened the request ended: escalations close, recommendations stand — unless the
   * run was cancelled (one opened after `withdrawForRun` looked, in the race, is withdrawn here).
   */
  private async runEnded(id: string): Promise<void> {
    const waiter = this.waiters.get(id);
    this.waiters.delete(id);
    if (this.closed) return;
    const request = await this.options.store.getRequest(id);
    if (!request || request.status !== 'pending') return;
    if (request.kind === 'escalation') {
      const resolved = await this.options.store.resolveRequest(id, { status: 'run_gone', at: this.now() });
      if (resolved.ok) this.finish(resolved.request, { status: 'run_gone', request: resolved.request });
    } else if (await this.options.withdrawsOnCancel?.(request.runId)) {
      await this.withdraw(id, 'host');
    }
    waiter?.({ status: 'run_gone', request });
  }

  private async withdraw(id: string, by: string): Promise<RequestRecord | undefined> {
    const resolved = await this.options.store.resolveRequest(id, { status: 'cancelled', at: this.now(), by: [by] });
    if (!resolved.ok) return undefined;
    // Whoever waits (the gate, for a live run) learns the run is gone; nothing is performed.
    this.finish(resolved.request, { status: 'run_gone', request: resolved.request });
    return resolved.request;
  }

  /**
   * A decision made with a deferred commit: the fault seam, the timer, and whoever waits (told at
   * once: it awaits `decision.durable` before acting). The caller announces it once it is durable.
   * Returns the waiter that was told, if any.
   */
  private settle(request: RequestRecord, decision: FinalDecision): ((decision: FinalDecision) => void) | undefined {
    this.options.afterDecision?.(request);
    const timer = this.timers.get(request.id);
    if (timer) clearTimeout(timer);
    this.timers.delete(request.id);
    const waiter = this.waiters.get(request.id);
    this.waiters.delete(request.id);
    waiter?.(decision);
    return waiter;
  }

  private finish(request: RequestRecord, decision: FinalDecision): void {
    this.options.afterDecision?.(request);
    const timer = this.timers.get(request.id);
    if (timer) clearTimeout(timer);
    this.timers.delete(request.id);
    this.emit({ type: 'resolved', request: this.view(request) });
    const waiter = this.waiters.get(request.id);
    this.waiters.delete(request.id);
    if (waiter) waiter(decision);
    else if (decision.status === 'approved' && request.kind !== 'escalation' && this.performsHere(request)) void this.performDetached(request);
  }

  /** `{ hostId }` of this host, for a new request; nothing when there is one host. */
  private owner(): { hostId?: string } {
    return this.options.hostId === undefined ? {} : { hostId: this.options.hostId };
  }

  /** An approved recommendation nobody here waits for: perform it here (its owner is this host, or gone)? */
  private performsHere(request: RequestRecord): boolean {
    const owner = request.hostId;
    if (owner === undefined || this.options.hostId === undefined || owner === this.options.hostId) return true;
    return !(this.options.ownerAlive?.(owner) ?? false);
  }

  // Several hosts ------------------------------------------------------------------------------

  /**
   * A change another host committed (Store.watch): operators here hear of it as of a local one
   * (events marked `fromFleet`, which the audit log, the trust ledger and notifications skip: the
   * host that made the change records and notifies it); a decision on a request this host's run
   * waits for resumes the run; an approved recommendation whose run has ended here is performed
   * here. `resync` (notifications may have been lost): every waiting request is read again.
   */
  async onStoreChange(change: StoreChange): Promise<void> {
    if (this.closed) return;
    if (change.type === 'resync') {
      for (const id of [...this.waiters.keys()]) {
        const request = await this.options.store.getRequest(id);
        if (request && request.status !== 'pending') this.remoteResolved(request);
      }
      for (const request of await this.options.store.listRequests({ status: 'pending' })) {
        if (!this.timers.has(request.id)) {
          this.schedule(request);
          await this.prepare([request]);
          this.emitFleet({ type: 'created', request: this.view(request) });
        }
      }
      return;
    }
    if (change.type === 'grants') {
      // A grant another host or a CLI added or revoked: operators here see it as they see their own.
      if ((change.kind === 'grant.added' || change.kind === 'grant.revoked') && change.ref !== undefined) {
        const grant = await this.options.store.getGrant(change.ref);
        if (grant && !this.closed) this.emitFleet({ type: 'grant', change: change.kind === 'grant.added' ? 'added' : 'revoked', grant });
      }
      return;
    }
    if (change.type !== 'request') return;
    const request = await this.options.store.getRequest(change.id);
    if (!request || this.closed) return;
    if (request.status === 'pending') {
      const known = this.timers.has(request.id);
      // Every host keeps an expiry timer: whichever fires first expires it (compare-and-set), so a
      // request expires on time even when the host that opened it has died.
      if (!known) this.schedule(request);
      await this.prepare([request]);
      this.emitFleet({ type: known ? 'updated' : 'created', request: this.view(request) });
      return;
    }
    if (request.execution !== undefined) {
      this.emitFleet({ type: 'updated', request: this.view(request) });
      return;
    }
    this.remoteResolved(request);
  }

  private remoteResolved(request: RequestRecord): void {
    const timer = this.timers.get(request.id);
    if (timer) clearTimeout(timer);
    this.timers.delete(request.id);
    this.emitFleet({ type: 'resolved', request: this.view(request) });
    const waiter = this.waiters.get(request.id);
    this.waiters.delete(request.id);
    const decision = finalDecision(request);
    if (waiter) waiter(decision);
    else if (decision.status === 'approved' && request.kind !== 'escalation' && request.hostId === this.options.hostId && this.options.hostId !== undefined) {
      // Decided on another host after this host's run had ended: the owner performs it (claimed once).
      void this.performDetached(request);
    }
  }

  private emitFleet(event: RequestEvent): void {
    FLEET_EVENTS.add(event);
    this.events.emit(event);
  }

  private async performDetached(request: RequestRecord): Promise<void> {
    if (!(await this.claim(request.id))) return;
    let outcome: ExecutionOutcome;
    try {
      await this.options.beforeDetached?.(request, effectiveArgs(request));
    } catch (error) {
      // No intent on record: not performed, and recorded as such.
      this.options.logger?.error({ err: error, requestId: request.id }, 'the intent could not be audited; the recommendation was not performed');
      await this.complete(request.id, { ok: false, error: { code: 'AUDIT_FAILED', message: 'the audit log could not record the intent; not performed' } });
      return;
    }
    try {
      outcome = await this.options.performDetached(request, effectiveArgs(request));
    } catch (error) {
      outcome = { ok: false, error: error instanceof ContainedError ? { code: error.code, message: error.message } : { code: 'INTERNAL', message: 'the action failed in the host' } };
    }
    await this.options.afterDetached?.(request, outcome);
    await this.complete(request.id, outcome);
  }
}

/** Events about changes another host made (RequestManager.onStoreChange): operators hear them; recorders skip them. */
const FLEET_EVENTS = new WeakSet<object>();

/** True for an event that reports another host's change: the audit log, trust ledger and notifications leave it to that host. */
export function fromFleet(event: RequestEvent): boolean {
  return FLEET_EVENTS.has(event);
}

/** The decision a resolved request stands for (read back from the store: made on another host). */
function finalDecision(request: RequestRecord): FinalDecision {
  switch (request.status) {
    case 'approved':
      return { status: 'approved', request, args: effectiveArgs(request), span: agreedSpan(countingApprovals(request)) };
    case 'denied':
      return { status: 'denied', request, reason: request.denyReason ?? 'denied' };
    case 'expired':
      return { status: 'expired', request };
    default:
      // run_gone, cancelled (withdrawn): the run learns it is not to go on.
      return { status: 'run_gone', request };
  }
}

/** The arguments to perform with: the current proposal (the latest edit, else what the agent asked). */
export function effectiveArgs(request: RequestRecord): unknown {
  return currentProposal(request).args;
}

/** STALE_REQUEST: the approval named arguments that are no longer the current proposal. */
function staleRequest(request: RequestRecord): ContainedError {
  const proposal = currentProposal(request);
  const who = proposal.by === undefined ? 'the arguments are what the agent asked' : `${proposal.by} edited the arguments`;
  return new ContainedError(
    'STALE_REQUEST',
    `request ${request.id} changed since you loaded it (${who}; now ${proposal.argsDigest}): review the current arguments and approve those`,
    { data: { argsDigest: proposal.argsDigest, ...(proposal.by === undefined ? {} : { proposedBy: proposal.by }) } },
  );
}

function alreadyResolved(request: RequestRecord): ContainedError {
  return new ContainedError(
    'ALREADY_RESOLVED',
    request.status === 'cancelled' ? `request ${request.id} was withdrawn: its run was cancelled` : `request ${request.id} is already ${request.status}`,
  );
}
