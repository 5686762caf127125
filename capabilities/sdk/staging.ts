/**
 * The staging contract: how a capability method behaves in a **staged run**, where nothing but
 * reads is performed and every other call is recorded into the run's changeset and answered from
 * a staged view, so the program runs to completion as if its writes had happened.
 *
 * A method says how it stages in its definition (`staging`):
 * - read-only methods run for real, unless they give a `stage` hook that answers from the view
 *   (fs `read` after a staged `write` sees the new content);
 * - stageable methods give `stage(args, ctx)`: update the view, `ctx.record` the effect, answer as
 *   the real call would (or with a placeholder the method documents, e.g. `{ staged: true }`);
 * - any other method is not stageable: in a staged run it fails `NOT_STAGEABLE` (the default for a
 *   method that is not read-only and has no `stage` hook — worst case, as for risk annotations).
 *
 * A capability whose effects change local resources gives `staging.observe` (a fingerprint of a
 * resource's current state: the commit's precondition), `snapshot` and `restore` (before-images for
 * a failed commit's rollback and for undo). Resources are strings the capability chooses (fs: a
 * root-relative path; kv: a key), always in the frame of the host's instance.
 *
 * Fails closed: a staged run never reaches a method's `run` for a call that is not read-only; a
 * changeset past `maxEffects` or `maxBytes` fails the call `STAGING_LIMIT` (the run's program sees it).
 */
import { ContainedError } from '../../runtime/errors.js';
import { jsonLength } from './json.js';
import type { RiskAnnotations } from './risk.js';

/** One recorded effect of a staged run: what will be performed at commit, and what must still hold then. */
export interface StagedEffect {
  /** Order within the run, from 0. */
  seq: number;
  /** The binding the agent called (`caps.<capability>`): the host instance the commit performs through. */
  capability: string;
  /** The definition behind it (fs, kv, outbox…). */
  definition: string;
  method: string;
  /** The validated argument; the commit performs exactly this call. */
  args: unknown;
  risk: RiskAnnotations;
  /** One line for operators ("write notes/a.txt (12 bytes)"). */
  summary: string;
  /** What operators review: a diff, a kv change, an email, an HTTP request (capability-defined JSON). */
  detail?: unknown;
  /** Resource → fingerprint of its real state when the run first changed it; checked before anything is applied. */
  preconditions: Record<string, string>;
  /** Resources the effect changes (their before-images are taken at commit, for rollback and undo). */
  resources: string[];
  /**
   * Optional: the state each resource must have after the effect (`staging.restore` images). When
   * given, the commit writes these instead of performing the call again — exactly the rows an SQL
   * statement changed when it was staged, never rows a replay would match later.
   */
  after?: Record<string, unknown>;
}

/** What a `stage` hook receives: the method context, the run's staged view, and a way to record. */
export interface StageContext<S = any, D = any> {
  scope: S;
  deps: D;
  capability: string;
  runId: string;
  signal: AbortSignal;
  /** This binding's view for the run (created by `init` on first use): the capability's overlay. */
  view<T>(init: () => T): T;
  /** Perform a read-only method of this instance for real (same scope, budgets, re-checks). */
  real(method: string, args: unknown): Promise<unknown>;
  /**
   * Record this call as an effect. `resources` are what it changes; the first time the run changes
   * one, its real state's fingerprint (`staging.observe`) becomes the commit's precondition.
   */
  record(effect: { summary: string; detail?: unknown; resources?: string[]; preconditions?: Record<string, string>; after?: Record<string, unknown> }): Promise<void>;
  /** Run `cleanup` when the staged run ends (e.g. remove a scratch copy); errors are ignored. */
  defer(cleanup: () => Promise<void> | void): void;
}

/** A method's staging (see the module comment). */
export interface MethodStaging<S = any, D = any, A = any, R = any> {
  stage(args: A, ctx: StageContext<S, D>): Promise<R> | R;
}

/** What a capability gives for changesets over local resources. All pure of the run: only scope and deps. */
export interface CapabilityStaging<S = any, D = any> {
  /** A fingerprint of the resource's real state now (e.g. `sha256:…`, `absent`). Equal fingerprints: unchanged. */
  observe(resource: string, ctx: { scope: S; deps: D }): Promise<string>;
  /** The resource's real state, as JSON, for rollback and undo. */
  snapshot(resource: string, ctx: { scope: S; deps: D }): Promise<unknown>;
  /** Put a snapshot back. */
  restore(resource: string, image: unknown, ctx: { scope: S; deps: D }): Promise<void>;
  /**
   * Optional: put several back atomically (sql: one transaction), in order. Absent: `restore`
   * one by one. The commit, its rollback and undo use it for each run of resources of one binding.
   */
  restoreAll?(entries: ReadonlyArray<readonly [string, unknown]>, ctx: { scope: S; deps: D }): Promise<void>;
}

/** Most effects one staged run may record (default for `StagingSession`). */
export const DEFAULT_MAX_STAGED_EFFECTS = 1000;
/** Most bytes (JSON of arguments and details) one staged run's changeset may hold: 8 MiB. */
export const DEFAULT_MAX_STAGED_BYTES = 8 * 1024 * 1024;

export interface StagingLimits {
  /** Effects per run; more fail the call `STAGING_LIMIT`. */
  maxEffects?: number;
  /** Bytes of the changeset (JSON of each effect); more fail the call `STAGING_LIMIT`. */
  maxBytes?: number;
}

/**
 * One staged run's changeset and views. Kept by the host for the live run; the capability SDK
 * writes into it through staged instances (`CapabilityInstance.staged`).
 */
export class StagingSession {
  readonly effects: StagedEffect[] = [];
  private readonly views = new Map<string, unknown>();
  private readonly touched = new Set<string>();
  private readonly cleanups: Array<() => Promise<void> | void> = [];
  private bytes = 0;
  private readonly maxEffects: number;
  private readonly maxBytes: number;

  constructor(readonly runId: string, limits: StagingLimits = {}) {
    this.maxEffects = limits.maxEffects ?? DEFAULT_MAX_STAGED_EFFECTS;
    this.maxBytes = limits.maxBytes ?? DEFAULT_MAX_STAGED_BYTES;
  }

  /** The view of one binding (`init` on first use). */
  view<T>(capability: string, init: () => T): T {
    if (!this.views.has(capability)) this.views.set(capability, init());
    return this.views.get(capability) as T;
  }

  /** Whether the run already changed this resource (its precondition is recorded). */
  hasTouched(capability: string, resource: string): boolean {
    return this.touched.has(`${capability}\0${resource}`);
  }

  /** Run `cleanup` at `close`. */
  defer(cleanup: () => Promise<void> | void): void {
    this.cleanups.push(cleanup);
  }

  /** The run ended: run the deferred cleanups (last first); their errors are ignored. */
  async close(): Promise<void> {
    for (const cleanup of this.cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch {
        // A scratch copy left behind is the operating system's temp folder's to clear.
      }
    }
  }

  /**
   * Append an effect; preconditions come from `observe` (or the capability's own, when it knows the
   * state it staged against) for resources this run had not changed yet.
   */
  async record(
    fields: Omit<StagedEffect, 'seq' | 'preconditions' | 'resources'> & { resources?: string[]; preconditions?: Record<string, string> },
    observe: ((resource: string) => Promise<string>) | undefined,
  ): Promise<void> {
    if (this.effects.length >= this.maxEffects) {
      throw new ContainedError('STAGING_LIMIT', `staged run: more than ${this.maxEffects} effects`, { data: { limit: 'maxEffects' } });
    }
    const { preconditions: known, ...rest } = fields;
    const resources = fields.resources ?? [];
    const preconditions: Record<string, string> = {};
    for (const resource of resources) {
      if (this.hasTouched(fields.capability, resource)) continue;
      const given = known?.[resource];
      if (given !== undefined) {
        preconditions[resource] = given;
        continue;
      }
      if (observe === undefined) throw new ContainedError('INTERNAL', `${fields.capability}: staged resources without staging.observe`);
      preconditions[resource] = await observe(resource);
    }
    const effect: StagedEffect = { ...rest, seq: this.effects.length, preconditions, resources };
    const size = jsonLength(effect);
    if (this.bytes + size > this.maxBytes) {
      throw new ContainedError('STAGING_LIMIT', `staged run: the changeset would exceed ${this.maxBytes} bytes`, { data: { limit: 'maxBytes' } });
    }
    for (const resource of resources) this.touched.add(`${fields.capability}\0${resource}`);
    this.bytes += size;
    this.effects.push(effect);
  }
}
