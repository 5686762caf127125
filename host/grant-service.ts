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
import { type AlwaysContext, buildGrant, narrowestGrantFor, type NewGrantInput } from './grants.js';
import { type Grant, type GrantEvent, grantSchema, type RequestRecord, type Role } from './model.js';
import type { Store } from './store/store.js';

export type { GrantEvent } from './model.js';

export interface GrantServiceDeps {
  store: Pick<Store, 'insertGrant' | 'getGrant' | 'listGrants' | 'revokeGrant'>;
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

  constructor(private readonly deps: GrantServiceDeps) {
    this.now = deps.now ?? Date.now;
    this.instances = deps.instances ?? new Map();
  }

  // Reading -----------------------------------------------------------------------------------

  /** Grants neither revoked nor expired at `now`, oldest first. */
  active(now: number = this.now()): Promise<Grant[]> {
    return this.deps.store.listGrants({ activeAt: now });
  }

  get(id: string): Promise<Grant | undefined> {
    return this.deps.store.getGrant(id);
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
    await this.deps.store.insertGrant(built.grant);
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
    await this.deps.store.insertGrant(built.grant);
    this.announce('added', built.grant);
    const revoked = await this.revoke(old.id, author.name, `narrowed into ${built.grant.id}: ${change.reason}`);
    return { grant: built.grant, revoked: revoked ?? old, notes: built.notes };
  }

  /** The grant an "always" answer writes (grants.ts `narrowestGrantFor`), stored and announced. */
  async always(request: RequestRecord, ctx: Omit<AlwaysContext, 'now' | 'host'>): Promise<Grant> {
    const grant = narrowestGrantFor(request, { ...ctx, now: this.now(), host: this.instance(request.capability) });
    await this.deps.store.insertGrant(grant);
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
    await this.deps.store.insertGrant(parsed.data);
    if (options.announce !== false) this.announce('added', parsed.data);
    return parsed.data;
  }

  /**
   * Revoke: stored (the first revocation's time, author and reason are kept), the attenuated
   * instance revoked, operators told. Undefined when there is no such grant.
   */
  async revoke(grantId: string, by: string, reason: string): Promise<Grant | undefined> {
    const revoked = await this.deps.store.revokeGrant(grantId, by, reason, this.now());
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
      const grant = await this.deps.store.revokeGrant(r.id, r.by, r.reason, this.now());
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
