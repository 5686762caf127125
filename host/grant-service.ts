/**
 * The grant service: the only writer of grants (test/host/grant-service.test.ts checks). Every
 * grant that is added (console, `contained grant add`, the demo), narrowed, written by an "always"
 * answer, a promotion or a demotion, and every revocation (operator channel, `contained grant
 * revoke`), goes through here, so each write does the same four things in the same order: the
 * rules (grants.ts, grant-narrowing.ts, or the trust rule that built the grant), the store, the
 * attenuated instance (a revoked grant's instance is revoked: calls in flight through it fail
 * CAPABILITY_REVOKED), and the change event to operators.
 *
 * It also keeps the attenuated instances themselves — one per grant, so a grant's budgets
 * accumulate across calls and runs — and reads the active grants the gate chooses from.
 *
 * Reads come from memory (grant-index.ts): the active grants are listed from the store once and
 * indexed by subject. Before every read the store's change counter (`changeCounter`: one step per
 * grant or token added or revoked, by any connection or process) is compared with the index's;
 * a difference nobody here explains reloads the index, so a grant another process (`contained
 * grant add`/`revoke`) wrote or revoked decides the next call. This service's own writes update the
 * index in place when the counter moved by exactly their own step (otherwise: reload).
 *
 * Fails: the rules' refusals (INVALID_ARGUMENT, GRANT_REFUSED, FORBIDDEN, INVALID_SCOPE,
 * NOT_NARROWER, ALREADY_RESOLVED) before anything is written; NOT_FOUND for a capability the host does not offer
 * or a grant it does not have; INTERNAL for a pre-built grant that does not match the schema. An
 * event listener that throws is logged, never undoes the write.
 */
import type { Logger } from 'pino';
import type { CapabilityInstance } from '../capabilities/sdk/index.js';
import { ContainedError } from '../runtime/errors.js';
import { type GrantNarrowing, narrowedGrantInput } from './grant-narrowing.js';
import { grantInstance, grantScopeCheck } from './grant-scope.js';
import { subjectMatches } from './grant-choice.js';
import { type AlwaysContext, buildGrant, narrowestGrantFor, type NewGrantInput } from './grants.js';
import { GrantIndex } from './grant-index.js';
import { type Grant, type GrantEvent, grantSchema, type RequestRecord, type Role, type RunSubject } from './model.js';
import type { Store } from './store/store.js';

export type { GrantEvent } from './model.js';

export interface GrantServiceDeps {
  /** Without `changeCounter` (a stub store) nothing is kept in memory: every read lists the store. */
  store: Pick<Store, 'insertGrant' | 'getGrant' | 'listGrants' | 'revokeGrant'> & Partial<Pick<Store, 'changeCounter'>>;
  /** The capability instances grants are checked against and performed through, by name. Default none. */
  instances?: ReadonlyMap<string, CapabilityInstance>;
  /** Tell operators (the host wires this to RequestManager.emit). */
  emit?(event: GrantEvent): void;
  now?: () => number;
  logger?: Logger;
}

/** Who adds or narrows a grant: their name is recorded, their role checked by the rules. */
export interface GrantAuthor {
  name: string;
  role: Role;
}

export class GrantService {
  /** Grant-attenuated instances, one per grant, so budgets accumulate across calls and runs. */
  private readonly attenuated = new Map<string, CapabilityInstance>();
  private readonly now: () => number;
  private readonly instances: ReadonlyMap<string, CapabilityInstance>;
  /** The active grants in memory, as of the store's change counter `index.version`; undefined: load on the next read. */
  private index: GrantIndex | undefined;

  constructor(private readonly deps: GrantServiceDeps) {
    this.now = deps.now ?? Date.now;
    this.instances = deps.instances ?? new Map();
  }

  // Reading -----------------------------------------------------------------------------------

  /** Grants neither revoked nor expired at `now`, oldest first (frozen: shared with the gate). */
  async active(now: number = this.now()): Promise<Grant[]> {
    const index = await this.current(now);
    return index ? index.active(now) : this.deps.store.listGrants({ activeAt: now });
  }

  /**
   * The active grants whose subject is the run's (its digest, or its name with one of its signers),
   * oldest first: what `chooseGrant` decides a call of that run from. The same grants, in the same
   * order, as filtering `active(now)` by `subjectMatches`.
   */
  async matching(subject: RunSubject, now: number = this.now()): Promise<Grant[]> {
    const index = await this.current(now);
    if (index) return index.matching(subject, now);
    return (await this.deps.store.listGrants({ activeAt: now })).filter((g) => subjectMatches(g.subject, subject));
  }

  /** A grant by id, revoked or expired ones too (from memory when the index is loaded and has it). */
  async get(id: string): Promise<Grant | undefined> {
    const index = this.index ? await this.current(this.now()) : undefined;
    return index?.get(id) ?? this.deps.store.getGrant(id);
  }

  /** The instance a grant's calls are performed through: `host` restricted to the grant, made once per grant. */
  instanceFor(grant: Grant, host: CapabilityInstance): CapabilityInstance {
    let instance = this.attenuated.get(grant.id);
    if (!instance) {
      instance = grantInstance(host, grant);
      this.attenuated.set(grant.id, instance);
    }
    return instance;
  }

  /** Revoke a grant's attenuated instance only (a revocation another process stored). */
  revokeInstance(grantId: string, reason: string): void {
    this.attenuated.get(grantId)?.revoke(reason);
    this.attenuated.delete(grantId);
  }

  // Writing -----------------------------------------------------------------------------------

  /** A new grant through the rules (risk policy, methods, approvals, scope) for the instance it names. */
  async add(input: NewGrantInput, author: Pick<GrantAuthor, 'role'>): Promise<{ grant: Grant; notes: string[] }> {
    const instance = this.instance(input.capability);
    const built = buildGrant(input, { methods: instance.methodNames(), risk: (m) => instance.risk(m), role: author.role, now: this.now(), checkScope: grantScopeCheck(instance) });
    await this.insert(built.grant);
    this.announce('added', built.grant);
    return built;
  }

  /**
   * Replace a grant with a narrower one (grant-narrowing.ts), through the rules again. The new grant
   * is stored first and the old one revoked after, so there is no moment with neither.
   */
  async narrow(grantId: string, change: GrantNarrowing, author: GrantAuthor): Promise<{ grant: Grant; revoked: Grant; notes: string[] }> {
    const old = await this.deps.store.getGrant(grantId);
    if (!old) throw new ContainedError('NOT_FOUND', `no grant ${grantId}`);
    const now = this.now();
    if (old.revokedAt !== undefined || (old.expiresAt !== undefined && old.expiresAt <= now)) throw new ContainedError('ALREADY_RESOLVED', `grant ${grantId} is no longer active`);
    const instance = this.instance(old.capability);
    const input = narrowedGrantInput(old, change, { instance, by: author.name, now });
    const built = buildGrant(input, { methods: instance.methodNames(), risk: (m) => instance.risk(m), role: author.role, now, checkScope: grantScopeCheck(instance) });
    await this.insert(built.grant);
    this.announce('added', built.grant);
    const revoked = await this.revoke(old.id, author.name, `narrowed into ${built.grant.id}: ${change.reason}`);
    return { grant: built.grant, revoked: revoked ?? old, notes: built.notes };
  }

  /** The grant an "always" answer writes (grants.ts `narrowestGrantFor`), stored and announced. */
  async always(request: RequestRecord, ctx: Omit<AlwaysContext, 'now' | 'host'>): Promise<Grant> {
    const grant = narrowestGrantFor(request, { ...ctx, now: this.now(), host: this.instance(request.capability) });
    await this.insert(grant);
    this.announce('added', grant);
    return grant;
  }

  /**
   * Store a grant another rule built (a promotion's executed grant, a demotion's re-issue), checked
   * against the grant schema. `announce: false` when nobody is listening yet (start-up).
   */
  async issue(grant: Grant, options: { announce?: boolean } = {}): Promise<Grant> {
    const parsed = grantSchema.safeParse(grant);
    if (!parsed.success) throw new ContainedError('INTERNAL', `grant ${grant.id} does not match the grant schema`, { cause: parsed.error });
    await this.insert(parsed.data);
    if (options.announce !== false) this.announce('added', parsed.data);
    return parsed.data;
  }

  /**
   * Revoke: stored (the first revocation's time, author and reason are kept), the attenuated
   * instance revoked, operators told. Undefined when there is no such grant.
   */
  async revoke(grantId: string, by: string, reason: string): Promise<Grant | undefined> {
    const revoked = await this.storeRevoke(grantId, by, reason);
    if (!revoked) return undefined;
    this.revokeInstance(grantId, reason);
    this.announce('revoked', revoked);
    return revoked;
  }

  /**
   * Revoke some grants and write others as one change (a demotion): every revocation first, then
   * the new grants; operators hear the revocations, then the additions.
   */
  async change(revoke: ReadonlyArray<{ id: string; by: string; reason: string }>, add: readonly Grant[]): Promise<{ revoked: Grant[]; added: Grant[] }> {
    const revoked: Grant[] = [];
    for (const r of revoke) {
      const grant = await this.storeRevoke(r.id, r.by, r.reason);
      if (!grant) continue;
      this.revokeInstance(r.id, r.reason);
      revoked.push(grant);
    }
    const added: Grant[] = [];
    for (const grant of add) added.push(await this.issue(grant, { announce: false }));
    for (const grant of revoked) this.announce('revoked', grant);
    for (const grant of added) this.announce('added', grant);
    return { revoked, added };
  }

  // The index ------------------------------------------------------------------------------------

  /** The index, current as of the store's change counter now; undefined when it cannot answer for `now`. */
  private async current(now: number): Promise<GrantIndex | undefined> {
    const counter = this.deps.store.changeCounter;
    if (!counter) return undefined;
    const version = await counter.call(this.deps.store);
    const index = this.index;
    if (index && index.version === version) return index.covers(now) ? index : undefined;
    // The counter is read before the list: a change committed in between is in the list and makes
    // the next read reload again (never the other way round: a listed state older than its label).
    // Listed as of the present (or `now` when asked about the past), so the index answers for the
    // present and later even when the first question was about the future.
    const at = Math.min(now, this.now());
    const loaded = new GrantIndex(version, at, await this.deps.store.listGrants({ activeAt: at }));
    if (!this.index || this.index.version <= version) this.index = loaded;
    return loaded.covers(now) ? loaded : undefined;
  }

  /**
   * A write of this service's, with the index kept current: `apply` changes the index the way the
   * write changed the store, when the counter moved by exactly `step(result)` (the write's own
   * triggers) from the version the index is at; anything else (a write by another process in
   * between) drops the index, to be reloaded on the next read.
   */
  private async write<T>(f: () => Promise<T>, step: (result: T, index: GrantIndex) => 0 | 1 | undefined, apply: (result: T, index: GrantIndex) => void): Promise<T> {
    const counter = this.deps.store.changeCounter?.bind(this.deps.store);
    if (!counter) return f();
    const before = await counter();
    let result: T;
    try {
      result = await f();
    } catch (error) {
      this.index = undefined;
      throw error;
    }
    const after = await counter();
    const index = this.index;
    const expected = index && index.version === before ? step(result, index) : undefined;
    if (index && expected !== undefined && after === before + expected) {
      apply(result, index);
      index.version = after;
    } else {
      this.index = undefined;
    }
    return result;
  }

  private insert(grant: Grant): Promise<void> {
    return this.write(
      () => this.deps.store.insertGrant(grant),
      () => 1,
      (_, index) => index.add(structuredClone(grant)),
    );
  }

  /**
   * The store's revocation. Its own step is 1 when the grant was active in the index (unrevoked as
   * of its version: whoever revoked it since, that is the one step), 0 when it was revoked already
   * and nobody changed anything; any other case is not told apart from a foreign write: reload.
   */
  private storeRevoke(grantId: string, by: string, reason: string): Promise<Grant | undefined> {
    return this.write(
      () => this.deps.store.revokeGrant(grantId, by, reason, this.now()),
      (revoked, index) => (revoked === undefined ? 0 : revoked.revokedAt === undefined ? undefined : index.has(grantId) ? 1 : 0),
      (_, index) => index.remove(grantId),
    );
  }

  private instance(capability: string): CapabilityInstance {
    const instance = this.instances.get(capability);
    if (!instance) throw new ContainedError('NOT_FOUND', `this host offers no capability "${capability}" (it has: ${[...this.instances.keys()].join(', ') || 'none'})`);
    return instance;
  }

  private announce(change: GrantEvent['change'], grant: Grant): void {
    try {
      this.deps.emit?.({ type: 'grant', change, grant });
    } catch (error) {
      this.deps.logger?.error({ err: error, grantId: grant.id }, 'grants: event listener failed');
    }
  }
}
