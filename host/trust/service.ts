/**
 * The trust service: turns gate and request events into ledger rows, queues executed actions for
 * review, applies review verdicts (and demotes at once on a critical review or an error rate over
 * the threshold), and proposes promotions exactly when an action meets the bar (promotions.ts).
 *
 * Every state change commits together with its audit record (AuditLog.append `within`); grant
 * changes go through the grant service (grant-service.ts, the only writer of grants) and are
 * audited by the store's triggers as well as by the `demotion` / `promotion.accepted` records.
 * Operators hear about each change as a TrustEvent.
 *
 * The ledger, reviews and proposals are TrustTables (tables.ts): in the SQLite store file, or in a
 * PostgreSQL store shared by several hosts, where every host's verdicts count towards one record.
 * Figures shown with a request are read asynchronously: RequestManager awaits `prepareFigures`
 * before it announces or lists requests, and `trustFor` answers from that cache.
 *
 * Figures read the active grants through the grant service, current as of the store's change
 * counter (a write on any host or CLI shows at the next read).
 *
 * Fails: NOT_FOUND / ALREADY_RESOLVED for unknown or already decided reviews and proposals,
 * INVALID_ARGUMENT for an error or critical verdict without a note, PROMOTION_REFUSED for a
 * promotion the policy does not allow, AUDIT_FAILED when the audit log cannot commit (nothing
 * changed then). Event handlers never throw: failures are logged.
 */
import type { Logger } from 'pino';
import type { RiskAnnotations } from '../../capabilities/sdk/risk.js';
import { ContainedError } from '../../runtime/errors.js';
import type { CallOutcome, GateCall } from '../../runtime/gate.js';
import { argsForAudit, resultSummary } from '../audit/canonical.js';
import type { AuditLog } from '../audit/log.js';
import { GrantService } from '../grant-service.js';
import type { Grant, RequestRecord } from '../model.js';
import type { RequestEvent } from '../gate/events.js';
import type { Store } from '../store/store.js';
import { actionFigures, compactFigures, type FigureSources, phaseForSubject } from './figures.js';
import { actionGrants, demotionPlan } from './grant-changes.js';
import type { ActionKey } from './ledger.js';
import { type Demotion, newId, type Review, type ReviewVerdict, type TrustOutEvent } from './model.js';
import { evaluateDemotion, type TrustConfig } from './policy.js';
import { PromotionFlow } from './promotions.js';
import { type ReviewFilter, sampled } from './reviews.js';
import { chain, type TrustTables } from './tables.js';
import { trustTablesFor } from './tables-for.js';
import { assistedReviews } from '../changesets/service.js';

export type { TrustOutEvent } from './model.js';

export interface TrustServiceDeps {
  audit: AuditLog;
  store: Store;
  /**
   * The host's grant service (it revokes the gate's attenuated instances and tells operators).
   * Default: one over `store` that announces through `emit` (the CLI, tests).
   */
  grants?: GrantService;
  config: TrustConfig;
  /** Risk of a method as the host offers it (used when the ledger has none recorded). */
  riskOf?(capability: string, method: string): RiskAnnotations | undefined;
  /** Methods of a capability instance (expands `*` grants on demotion). */
  methodsOf?(capability: string): readonly string[] | undefined;
  /** Tell operators (the host wires this to RequestManager.emit). */
  emit?(event: TrustOutEvent): void;
  now?: () => number;
  logger?: Logger;
  /** Where the ledger, reviews and proposals are (default: with the audit chain, tables-for.ts). */
  tables?: TrustTables;
}

/** Figures shown with requests are cached this long (ms); own writes invalidate at once. */
const FIGURES_TTL_MS = 1000;

export class TrustService {
  readonly tables: TrustTables;
  readonly promotions: PromotionFlow;
  readonly sources: FigureSources;
  readonly grants: GrantService;
  private readonly now: () => number;
  /** Figures by action: `at` 0 once stale (an own write); the value stays until recomputed. */
  private readonly cache = new Map<string, { at: number; value: Record<string, unknown> }>();
  private readonly computing = new Map<string, Promise<void>>();
  /** Per request: its ledger steps in order (a verdict never lands before its recommendation). */
  private readonly byRef = new Map<string, Promise<void>>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly deps: TrustServiceDeps) {
    this.now = deps.now ?? Date.now;
    this.tables = deps.tables ?? trustTablesFor(deps.audit);
    this.sources = { grants: (now) => this.grants.active(now), tables: this.tables, config: deps.config, ...(deps.riskOf ? { riskOf: deps.riskOf } : {}) };
    this.grants = deps.grants ?? new GrantService({ store: deps.store, now: this.now, emit: (event) => this.emit(event), ...(deps.logger ? { logger: deps.logger } : {}) });
    this.promotions = new PromotionFlow({
      tables: this.tables,
      sources: this.sources,
      grants: this.grants,
      audit: deps.audit,
      config: deps.config,
      logger: deps.logger,
      emit: (event) => this.emit(event),
      serial: (f) => this.serial(f),
      now: this.now,
    });
  }

  /** Run `f` after every earlier grant-changing step (reviews, proposals, demotions never interleave). */
  serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f, f);
    this.queue = run.catch(() => undefined);
    return run;
  }

  emit(event: TrustOutEvent): void {
    this.stale();
    try {
      this.deps.emit?.(event);
    } catch (error) {
      this.deps.logger?.error({ err: error }, 'trust: event listener failed');
    }
  }

  // Figures -----------------------------------------------------------------------------------

  /** Mark every cached figure stale (an own write changed the ledger or the grants). */
  private stale(): void {
    for (const entry of this.cache.values()) entry.at = 0;
  }

  /**
   * The trust figures an approver sees with a request (undefined for requests naming no method),
   * as last computed: request views are built synchronously, so RequestManager awaits
   * `prepareFigures` before it announces or lists requests; a view built without that gets the
   * last figures of the action (and starts a refresh).
   */
  trustFor(request: RequestRecord): Record<string, unknown> | undefined {
    const key = keyOf(request);
    if (!key) return undefined;
    const hit = this.cache.get(JSON.stringify(key));
    if (!hit || this.now() - hit.at >= FIGURES_TTL_MS) void this.compute(key);
    return hit?.value;
  }

  /** The figures of one request, brought up to date first (the API and tests; views use `trustFor`). */
  async figuresFor(request: RequestRecord): Promise<Record<string, unknown> | undefined> {
    await this.prepareFigures([request]);
    return this.trustFor(request);
  }

  /** Bring the figures of these requests' actions up to date (stale or older than the cache TTL). */
  async prepareFigures(requests: readonly RequestRecord[]): Promise<void> {
    const now = this.now();
    const keys = new Map<string, ActionKey>();
    for (const request of requests) {
      const key = keyOf(request);
      if (!key) continue;
      const id = JSON.stringify(key);
      const hit = this.cache.get(id);
      if (!hit || now - hit.at >= FIGURES_TTL_MS) keys.set(id, key);
    }
    await Promise.all([...keys.values()].map((key) => this.compute(key)));
  }

  /** Compute one action's figures into the cache (one computation per action at a time; failures logged). */
  private compute(key: ActionKey): Promise<void> {
    const id = JSON.stringify(key);
    const running = this.computing.get(id);
    if (running) return running;
    const started = this.now();
    const run = (async () => {
      try {
        const grants = await this.sources.grants(started);
        const [figures, phase] = await Promise.all([actionFigures(this.sources, key, started, grants), phaseForSubject(this.sources, key.subject, started, grants)]);
        this.cache.set(id, { at: started, value: compactFigures(figures, phase) });
      } catch (error) {
        this.deps.logger?.error({ err: error }, 'trust: figures failed');
      } finally {
        this.computing.delete(id);
      }
    })();
    this.computing.set(id, run);
    return run;
  }

  // Assisted: recommendations and their verdicts ------------------------------------------------

  onRequestEvent(event: RequestEvent): void {
    if (event.type !== 'created' && event.type !== 'resolved') return;
    // A changeset review counts as one assisted review of each action type in it (host/changesets/).
    for (const request of assistedReviews(event.request)) {
      const step = () => (event.type === 'created' ? this.recommended(request) : this.resolved(request));
      this.inOrder(request.id, step).catch((error: unknown) => this.deps.logger?.error({ err: error, requestId: request.id }, 'trust: recording a recommendation failed'));
    }
  }

  /** Run `f` after the earlier steps of the same request. */
  private inOrder(ref: string, f: () => Promise<void>): Promise<void> {
    const run = (this.byRef.get(ref) ?? Promise.resolve()).then(f, f);
    const tail = run.catch(() => undefined);
    this.byRef.set(ref, tail);
    void tail.then(() => {
      if (this.byRef.get(ref) === tail) this.byRef.delete(ref);
    });
    return run;
  }

  /** Record a new recommendation with its shadow verdict: would the policy have allowed it on its own? */
  async recommended(request: RequestRecord): Promise<void> {
    const key = keyOf(request);
    if (!key) return;
    const figures = await actionFigures(this.sources, key, this.now());
    // Rides along with the next audit batch (the request.created record is in it too).
    await this.deps.audit.transact(this.tables.recommended(request.id, key, request.createdAt, request.grantId, request.risk ?? figures.risk, figures.wouldAllow), { soon: true });
    this.stale();
  }

  /** Record a recommendation's verdict, then propose a promotion if the action now meets the bar. */
  async resolved(request: RequestRecord): Promise<void> {
    const key = keyOf(request);
    if (!key) return;
    const kind = request.status === 'approved' ? (request.approvals.some((a) => a.args !== undefined) ? 'edited' : 'approved') : request.status === 'denied' ? 'denied' : request.status === 'expired' ? 'expired' : undefined;
    if (!kind) return;
    const risk = request.risk ?? this.deps.riskOf?.(key.capability, key.method);
    const changed = await this.deps.audit.transact(this.tables.verdict(request.id, key, kind, request.resolvedAt ?? this.now(), request.grantId, risk), { soon: true });
    this.stale();
    if (changed && kind !== 'expired') await this.serial(() => this.promotions.check(key));
  }

  // Executed: the review queue ----------------------------------------------------------------

  /** An action performed in executed mode: into the ledger, and into the review queue when sampled. */
  async onExecuted(call: GateCall, grant: Grant, outcome: CallOutcome): Promise<void> {
    const key = { subject: call.subject ?? 'unknown', capability: call.capability, method: call.method };
    const at = this.now();
    this.stale();
    if (!sampled(call.callId, grant.reviewSample)) {
      await this.deps.audit.transact(this.tables.executed(call.callId, key, at, grant.id, call.risk), { soon: true });
      return;
    }
    const review: Review = {
      id: newId('rev'),
      callId: call.callId,
      runId: call.runId,
      ...key,
      grantId: grant.id,
      action: {
        ...argsForAudit(call.args),
        ...(call.reason === undefined ? {} : { reason: call.reason }),
        outcome: outcome.ok ? { ok: true, ...resultSummary(outcome.value) } : { ok: false, error: outcome.error.code },
      },
      status: 'pending',
      createdAt: at,
    };
    await this.deps.audit.append(
      { type: 'review.queued', runId: call.runId, ...key, callId: call.callId, data: { reviewId: review.id, grantId: grant.id, reviewSample: grant.reviewSample ?? 1 } },
      chain(this.tables.executed(call.callId, key, at, grant.id, call.risk), this.tables.queueReview(review)),
      { soon: true },
    );
    this.emit({ type: 'review', change: 'queued', review });
  }

  listReviews(filter: ReviewFilter = {}): Promise<Review[]> {
    return this.tables.reviews(filter);
  }

  /** Mark a review; a critical verdict (or the error rate) demotes the action back to assisted at once. */
  markReview(by: string, reviewId: string, verdict: ReviewVerdict, note?: string): Promise<{ review: Review; demotion?: Demotion }> {
    return this.serial(async () => {
      const text = note?.trim() === '' ? undefined : note?.trim();
      if (verdict !== 'ok' && text === undefined) throw new ContainedError('INVALID_ARGUMENT', `an ${verdict} verdict needs a note saying what went wrong`);
      const existing = await this.tables.review(reviewId);
      if (!existing) throw new ContainedError('NOT_FOUND', `no review ${reviewId}`);
      const at = this.now();
      const { value: review } = await this.deps.audit.appendWith(
        {
          type: 'review.marked',
          runId: existing.runId,
          subject: existing.subject,
          capability: existing.capability,
          method: existing.method,
          callId: existing.callId,
          data: { reviewId, verdict, by, ...(text === undefined ? {} : { note: text }), grantId: existing.grantId },
        },
        chain(this.tables.reviewed(existing.callId, verdict, at), this.tables.markReview(reviewId, verdict, by, text, at)),
      );
      this.emit({ type: 'review', change: 'marked', review });
      const key = { subject: review.subject, capability: review.capability, method: review.method };
      const window = (await this.tables.stats(key, at, this.deps.config)).reviewWindow;
      const verdictOf = evaluateDemotion({ verdict, windowReviews: window.count, windowErrors: window.errors }, this.deps.config);
      if (!verdictOf.demote) return { review };
      const demotion = await this.demote(key, verdictOf.trigger, `${verdictOf.reason}${text ? `: ${text}` : ''}`, by, review);
      return demotion ? { review, demotion } : { review };
    });
  }

  /** Move the action back to assisted (call inside `serial`). Undefined when it was not executed. */
  async demote(key: ActionKey, trigger: Demotion['trigger'], reason: string, by: string, review?: Review, onlyGrantId?: string): Promise<Demotion | undefined> {
    const now = this.now();
    const stats = await this.tables.stats(key, now, this.deps.config);
    const { covering } = actionGrants(await this.sources.grants(now), key, now, [...stats.grantIds, ...(review ? [review.grantId] : [])]);
    const executed = covering.filter((g) => g.mode === 'executed' && (onlyGrantId === undefined || g.id === onlyGrantId));
    await this.promotions.withdrawOpen(key, by, `demoted: ${reason}`);
    if (executed.length === 0) return undefined;
    const why = `demoted to assisted: ${reason}${review ? ` (review ${review.id})` : ''}`;
    const plan = demotionPlan(executed, covering.filter((g) => g.mode === 'assisted'), key, {
      by,
      reason: why,
      now,
      risk: stats.risk ?? this.deps.riskOf?.(key.capability, key.method),
      ...(this.deps.methodsOf ? { methodsOf: this.deps.methodsOf } : {}),
    });
    const change = await this.grants.change(
      plan.revoke.map((g) => ({ id: g.id, by, reason: why })),
      plan.add,
    );
    this.stale();
    const demotion: Demotion = {
      ...key,
      trigger,
      reason,
      ...(review ? { reviewId: review.id } : {}),
      revokedGrants: change.revoked.map((g) => g.id),
      addedGrants: change.added.map((g) => g.id),
      by,
      at: now,
    };
    await this.deps.audit.append({ type: 'demotion', ...key, ...(review ? { runId: review.runId } : {}), data: { ...demotion } });
    this.emit({ type: 'demotion', demotion });
    this.deps.logger?.warn({ ...key, trigger, by }, 'trust: action demoted to assisted');
    return demotion;
  }

  /**
   * After a restart: verdicts of recommendations resolved while the host was down or crashing,
   * critical reviews whose demotion did not happen, accepted promotions whose grant was not written.
   */
  async reconcile(): Promise<{ verdicts: number; demotions: number; grants: number }> {
    // All in one audit batch (each step idempotent): one commit however many requests there are.
    const steps: Array<Promise<boolean>> = [];
    for (const status of ['approved', 'denied'] as const) {
      for (const request of await this.deps.store.listRequests({ status })) {
        const key = keyOf(request);
        if (!key || request.kind !== 'recommendation') continue;
        const kind = status === 'denied' ? 'denied' : request.approvals.some((a) => a.args !== undefined) ? 'edited' : 'approved';
        steps.push(this.deps.audit.transact(this.tables.verdict(request.id, key, kind, request.resolvedAt ?? this.now(), request.grantId, request.risk)));
      }
    }
    const verdicts = (await Promise.all(steps)).filter(Boolean).length;
    // Only the grant the critical review was made under: an executed grant an admin wrote since is their decision.
    let demotions = 0;
    for (const review of await this.tables.criticalReviews()) {
      const grant = await this.grants.get(review.grantId);
      if (!grant || grant.mode !== 'executed' || grant.revokedAt !== undefined) continue;
      const key = { subject: review.subject, capability: review.capability, method: review.method };
      const reason = `a critical review (re-applied at start-up)${review.note ? `: ${review.note}` : ''}`;
      const done = await this.serial(() => this.demote(key, 'critical', reason, review.markedBy ?? 'host', review, review.grantId));
      if (done) demotions += 1;
    }
    const grants = await this.serial(() => this.promotions.restoreAcceptedGrants());
    this.stale();
    return { verdicts, demotions, grants };
  }
}

function keyOf(request: RequestRecord): ActionKey | undefined {
  if (request.method === undefined || request.subject === undefined) return undefined;
  return { subject: request.subject, capability: request.capability, method: request.method };
}
