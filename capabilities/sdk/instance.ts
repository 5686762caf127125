/**
 * A capability instance: a definition bound to a scope and to host resources, under a binding name,
 * with optional method subset, budgets and expiry. Instances form a tree through `attenuate`: a
 * child's scope is the intersection with its parent's, its calls are checked against every
 * ancestor and charged to every ancestor's budget, and revoking a parent revokes the child.
 * `restrict` is the exact narrowing grants use: a scope wider than the instance is refused.
 *
 * Fails closed: an unknown method, an argument that does not parse, a scope check that throws, a
 * revoked or expired instance, or a used-up budget all refuse the call with a typed error.
 */
import { ContainedError } from '../../runtime/errors.js';
import { type Budget, BudgetMeter, budgetSchema } from './budget.js';
import type { CapabilityDefinition, MethodContext, ResolvedMethod, ScopeCheck } from './define.js';
import { deepFreeze, jsonLength } from './json.js';
import { checkedIntersect, checkWithin, mergeScopeFields, type WithinCheck } from './narrowing.js';
import type { RiskAnnotations } from './risk.js';
import type { StageContext, StagingSession } from './staging.js';

export interface InstanceOptions {
  /** The name the agent sees (`caps.<name>`); defaults to the definition's name. */
  name?: string;
  /** Only these methods are exposed; default all. */
  methods?: readonly string[];
  /** Per-method budgets. */
  budgets?: Readonly<Record<string, Budget>>;
  /** Epoch milliseconds after which every call fails `CAPABILITY_EXPIRED`. */
  expiresAt?: number;
  /** Injected clock (ms), for budgets and expiry. */
  now?: () => number;
  /** A staged run's session: calls are staged, not performed (see `staged`, staging.ts). */
  staging?: StagingSession;
}

export interface InvokeContext {
  runId: string;
  signal: AbortSignal;
}

export interface MethodDescription {
  name: string;
  description: string;
  /** Name of the argument in docs. */
  argName: string;
  /** The tightest budget along the attenuation chain, when any. */
  budget?: Budget;
  risk: RiskAnnotations;
  args: ResolvedMethod['args'];
  result: ResolvedMethod['result'];
}

export interface CapabilityDescription {
  name: string;
  capability: string;
  description: string;
  scope: string;
  expiresAt?: number;
  methods: MethodDescription[];
}

const NAME = /^[a-z][a-zA-Z0-9]{0,63}$/;

export class CapabilityInstance<S = any, D = any> {
  readonly name: string;
  private readonly methodSet: ReadonlySet<string>;
  private readonly meters = new Map<string, BudgetMeter>();
  private readonly now: () => number;
  private revokedReason: string | undefined;

  constructor(
    readonly definition: CapabilityDefinition<S, D>,
    readonly scope: S,
    private readonly deps: D,
    private readonly options: InstanceOptions = {},
    private readonly parent?: CapabilityInstance<S, D>,
  ) {
    // Frozen, so neither an implementation nor a caller holding the instance can widen it later.
    this.scope = deepFreeze(scope);
    this.name = options.name ?? definition.name;
    if (!NAME.test(this.name)) {
      throw new ContainedError('INVALID_ARGUMENT', `binding name "${this.name}" must be lower camel case`);
    }
    const all = Object.keys(definition.methods);
    const wanted = options.methods ?? parent?.methodNames() ?? all;
    for (const m of wanted) {
      if (!all.includes(m)) throw new ContainedError('INVALID_ARGUMENT', `${definition.name} has no method "${m}"`);
      if (parent && !parent.methodSet.has(m)) {
        throw new ContainedError('INVALID_SCOPE', `cannot widen: parent "${parent.name}" does not expose "${m}"`);
      }
    }
    this.methodSet = new Set(wanted);
    this.now = options.now ?? parent?.now ?? Date.now;
    for (const [m, b] of Object.entries(options.budgets ?? {})) {
      if (!this.methodSet.has(m)) throw new ContainedError('INVALID_ARGUMENT', `budget for unknown method "${m}"`);
      this.meters.set(m, new BudgetMeter(budgetSchema.parse(b), `${this.name}.${m}`, this.now));
    }
    if (parent?.options.expiresAt !== undefined && (options.expiresAt ?? Infinity) > parent.options.expiresAt) {
      this.options = { ...options, expiresAt: parent.options.expiresAt };
    }
  }

  methodNames(): string[] {
    return [...this.methodSet];
  }

  hasMethod(method: string): boolean {
    return this.methodSet.has(method);
  }

  risk(method: string): RiskAnnotations {
    return this.method(method).riskResolved;
  }

  get expiresAt(): number | undefined {
    return this.options.expiresAt;
  }

  /** Revoke this instance and, through the tree, every instance attenuated from it. */
  revoke(reason = 'revoked'): void {
    this.revokedReason ??= reason;
  }

  /** `null` when live; otherwise the error a call would fail with. */
  liveness(): ContainedError | null {
    for (let node: CapabilityInstance<S, D> | undefined = this; node; node = node.parent) {
      if (node.revokedReason !== undefined) {
        return new ContainedError('CAPABILITY_REVOKED', `capability "${this.name}" was revoked: ${node.revokedReason}`);
      }
      const exp = node.options.expiresAt;
      if (exp !== undefined && this.now() >= exp) {
        return new ContainedError('CAPABILITY_EXPIRED', `capability "${this.name}" expired at ${new Date(exp).toISOString()}`);
      }
    }
    return null;
  }

  /** Validate a raw (already copied-out) argument; throws `INVALID_ARGUMENT` with the zod issue path. */
  parseArgs(method: string, raw: unknown): unknown {
    const m = this.method(method);
    const parsed = m.args.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const path = issue?.path.map(String) ?? [];
      throw new ContainedError(
        'INVALID_ARGUMENT',
        `${this.name}.${method}: invalid argument${path.length ? ` at ${path.join('.')}` : ''}: ${issue?.message ?? 'does not match the schema'}`,
        { data: { path, issues: parsed.error.issues.map((i) => ({ path: i.path.map(String), message: i.message })) } },
      );
    }
    this.precheck(m, method, parsed.data);
    return parsed.data;
  }

  private precheck(m: ResolvedMethod<S, D>, method: string, args: unknown): void {
    if (!m.precheck) return;
    try {
      m.precheck(args);
    } catch (error) {
      if (error instanceof ContainedError) throw error;
      throw new ContainedError('INVALID_ARGUMENT', `${this.name}.${method}: invalid argument`, { cause: error });
    }
  }

  /** Pure scope check against this instance and every ancestor. Fails closed if a check throws. */
  checkScope(method: string, args: unknown): ScopeCheck {
    for (let node: CapabilityInstance<S, D> | undefined = this; node; node = node.parent) {
      const m = node.method(method);
      if (!m.inScope) continue;
      let verdict: ScopeCheck;
      try {
        verdict = m.inScope(args, node.scope);
      } catch {
        verdict = { ok: false, code: 'OUT_OF_SCOPE', message: `${this.name}.${method}: scope check failed` };
      }
      if (!verdict.ok) return verdict;
    }
    return { ok: true };
  }

  /**
   * Perform a call whose argument was produced by `parseArgs`. Re-checks liveness and scope (the
   * gate may have held the call for minutes), charges budgets, runs, validates the result.
   */
  async invoke(method: string, args: unknown, ctx: InvokeContext): Promise<unknown> {
    const m = this.method(method);
    const dead = this.liveness();
    if (dead) throw dead;
    this.precheck(m, method, args);
    const check = this.checkScope(method, args);
    if (!check.ok) throw new ContainedError('OUT_OF_SCOPE', check.message);
    const argBytes = m.bytes ? 0 : jsonLength(args);
    this.chargeChain(method, (meter) => meter.check(argBytes));
    this.chargeChain(method, (meter) => meter.take(argBytes));
    let result: unknown;
    const staging = this.options.staging;
    try {
      const mctx = { scope: this.scope, deps: this.rootDeps(), capability: this.name, runId: ctx.runId, signal: ctx.signal };
      // In a staged run only read-only methods without a staged view reach `run`.
      result = staging !== undefined && (!m.riskResolved.readOnly || m.staging !== undefined) ? await this.stage(m, method, args, mctx, staging) : await m.run(args, mctx);
    } catch (error) {
      if (error instanceof ContainedError) throw error;
      const code = (error as { code?: unknown } | null)?.code;
      throw new ContainedError('CAPABILITY_FAILED', `${this.name}.${method} failed${typeof code === 'string' ? ` (${code})` : ''}`, {
        cause: error,
      });
    }
    const out = m.result.safeParse(result);
    if (!out.success) {
      throw new ContainedError('INTERNAL', `${this.name}.${method} returned a result that does not match its schema`, { cause: out.error });
    }
    const resultBytes = m.bytes ? m.bytes(args, out.data) : jsonLength(out.data);
    this.chargeChain(method, (meter) => meter.charge(resultBytes));
    return out.data;
  }

  /**
   * The same instance for a staged run: its calls are staged into `session` (the method's
   * `staging`), read-only ones without a staged view run for real; scope, budgets, revocation and
   * expiry apply as to this instance.
   */
  staged(session: StagingSession): CapabilityInstance<S, D> {
    return new CapabilityInstance(this.definition, this.scope, this.deps, { name: this.name, staging: session }, this);
  }

  /** The top of the attenuation chain: the host's instance, in whose frame staged resources are named and committed. */
  private top(): CapabilityInstance<S, D> {
    let node: CapabilityInstance<S, D> = this;
    while (node.parent) node = node.parent;
    return node;
  }

  /** The capability's `staging` hooks bound to the top instance's scope; undefined when it gives none. */
  resourceHooks():
    | {
        observe(r: string): Promise<string>;
        snapshot(r: string): Promise<unknown>;
        restore(r: string, image: unknown): Promise<void>;
        /** Several at once, atomically where the capability can (its `restoreAll`), else one by one. */
        restoreAll(entries: ReadonlyArray<readonly [string, unknown]>): Promise<void>;
      }
    | undefined {
    const hooks = this.definition.staging;
    if (hooks === undefined) return undefined;
    const ctx = { scope: this.top().scope, deps: this.rootDeps() };
    return {
      observe: (r) => hooks.observe(r, ctx),
      snapshot: (r) => hooks.snapshot(r, ctx),
      restore: (r, image) => hooks.restore(r, image, ctx),
      restoreAll: async (entries) => {
        if (hooks.restoreAll) return hooks.restoreAll(entries, ctx);
        for (const [r, image] of entries) await hooks.restore(r, image, ctx);
      },
    };
  }

  private async stage(m: ResolvedMethod<S, D>, method: string, args: unknown, mctx: MethodContext<S, D>, session: StagingSession): Promise<unknown> {
    if (m.staging === undefined) {
      throw new ContainedError('NOT_STAGEABLE', `${this.name}.${method} cannot be staged: it is not read-only and its real result is needed; nothing was performed`);
    }
    const hooks = this.resourceHooks();
    const ctx: StageContext<S, D> = {
      ...mctx,
      view: (init) => session.view(this.name, init),
      real: async (other, raw) => {
        const om = this.method(other);
        if (!om.riskResolved.readOnly) throw new ContainedError('INTERNAL', `${this.name}.${other}: staging may only read for real`);
        const a = this.parseArgs(other, raw);
        const check = this.checkScope(other, a);
        if (!check.ok) throw new ContainedError('OUT_OF_SCOPE', check.message);
        return om.run(a, mctx);
      },
      record: (effect) =>
        session.record({ capability: this.name, definition: this.definition.name, method, args, risk: m.riskResolved, ...effect }, hooks?.observe),
      defer: (cleanup) => session.defer(cleanup),
    };
    return m.staging.stage(args, ctx);
  }

  /**
   * A new instance whose scope is the intersection of this scope and `narrower` — never wider
   * (asking for more gets the intersection; the definition's answer is checked, see narrowing.ts).
   * The child may also drop methods, add budgets and an earlier expiry.
   */
  attenuate(narrower: unknown, options: InstanceOptions = {}): CapabilityInstance<S, D> {
    const scope = checkedIntersect(this.definition, this.scope, this.parseScope(narrower));
    return new CapabilityInstance(this.definition, scope, this.deps, { name: this.name, ...options }, this);
  }

  /**
   * The narrowing grants and capability requests use: the agent keeps its binding, so
   * - `narrower` may be written as the fields it changes (the rest is this instance's scope);
   * - it is put in this instance's frame (the definition's `reframe`), so arguments keep their meaning;
   * - it must lie within this instance exactly: anything wider is refused `INVALID_SCOPE` with
   *   `data.fields` naming the fields that ask for more, never intersected away. With
   *   `{ exact: false }` it is intersected instead (a stored grant whose host instance has since
   *   been narrowed keeps working, with less).
   */
  restrict(narrower: unknown, options: InstanceOptions = {}, how: { exact?: boolean } = {}): CapabilityInstance<S, D> {
    let scope: S;
    if (how.exact === false) {
      scope = checkedIntersect(this.definition, this.scope, this.frame(narrower));
    } else {
      const verdict = this.checkRestriction(narrower);
      if (!verdict.ok) throw new ContainedError('INVALID_SCOPE', verdict.message, { data: { fields: verdict.fields } });
      scope = verdict.scope;
    }
    return new CapabilityInstance(this.definition, scope, this.deps, { name: this.name, ...options }, this);
  }

  /** `restrict`'s verdict without creating anything: the scope it would get, or why not. Pure. */
  checkRestriction(narrower: unknown): WithinCheck<S> {
    let framed: S;
    try {
      framed = this.frame(narrower);
    } catch (error) {
      const message = error instanceof ContainedError ? error.message : `invalid scope for ${this.definition.name}`;
      return { ok: false, code: 'INVALID_SCOPE', message, fields: [] };
    }
    return checkWithin(this.definition, this.scope, framed);
  }

  /** The methods that can do anything under this scope and every ancestor's (`methodUsable`). */
  usableMethods(): string[] {
    return this.methodNames().filter((name) => {
      for (let node: CapabilityInstance<S, D> | undefined = this; node; node = node.parent) {
        const usable = node.definition.methodUsable;
        if (!usable) continue;
        try {
          if (!usable(node.scope, { name, risk: this.method(name).riskResolved })) return false;
        } catch {
          return false;
        }
      }
      return true;
    });
  }

  /**
   * The narrowest scope that still admits this call (the definition's `narrowestScope`), or
   * `undefined` when there is none narrower — or the hook's answer is not within this instance,
   * does not admit the call, or throws.
   */
  narrowestScopeFor(method: string, args: unknown): S | undefined {
    const hook = this.definition.narrowestScope;
    if (!hook) return undefined;
    try {
      const proposed = hook(this.scope, method, args);
      if (proposed === undefined) return undefined;
      const verdict = this.checkRestriction(proposed);
      if (!verdict.ok) return undefined;
      const child = new CapabilityInstance(this.definition, verdict.scope, this.deps, { name: this.name }, this);
      return child.checkScope(method, args).ok ? verdict.scope : undefined;
    } catch {
      return undefined;
    }
  }

  private parseScope(narrower: unknown): S {
    const parsed = this.definition.scope.safeParse(narrower);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new ContainedError('INVALID_SCOPE', `invalid scope for ${this.definition.name}${issue?.path.length ? ` at ${issue.path.join('.')}` : ''}: ${issue?.message ?? ''}`);
    }
    return parsed.data;
  }

  /** Fields over this scope, parsed, then in this instance's frame. Throws INVALID_SCOPE. */
  private frame(narrower: unknown): S {
    const parsed = this.parseScope(mergeScopeFields(this.scope, narrower));
    const reframe = this.definition.reframe;
    if (!reframe) return parsed;
    try {
      return this.parseScope(reframe(this.scope, parsed));
    } catch (error) {
      if (error instanceof ContainedError && error.code === 'INVALID_SCOPE') throw error;
      throw new ContainedError('INVALID_SCOPE', `${this.definition.name}: the scope cannot be put in its parent's frame`, { cause: error });
    }
  }

  /** What this instance offers, for agent-facing docs and for operators. */
  describe(): CapabilityDescription {
    const d: CapabilityDescription = {
      name: this.name,
      capability: this.definition.name,
      description: this.definition.description,
      scope: this.definition.describeScope(this.scope),
      methods: this.methodNames().map((name) => {
        const m = this.method(name);
        const md: MethodDescription = {
          name,
          description: m.description,
          argName: m.argName ?? 'args',
          risk: m.riskResolved,
          args: m.args,
          result: m.result,
        };
        const budget = this.effectiveBudget(name);
        if (budget) md.budget = budget;
        return md;
      }),
    };
    if (this.options.expiresAt !== undefined) d.expiresAt = this.options.expiresAt;
    return d;
  }

  /** The tightest of every budget along the chain for one method (each field its minimum). */
  effectiveBudget(method: string): Budget | undefined {
    let out: Budget | undefined;
    for (let node: CapabilityInstance<S, D> | undefined = this; node; node = node.parent) {
      const b = node.options.budgets?.[method];
      if (!b) continue;
      out ??= {};
      for (const key of ['maxCalls', 'perSecond', 'maxBytes'] as const) {
        const v = b[key];
        if (v !== undefined) out[key] = Math.min(out[key] ?? Infinity, v);
      }
    }
    return out;
  }

  /** Budget usage per method, for run usage reports. */
  usage(): Record<string, { calls: number; bytes: number }> {
    return Object.fromEntries([...this.meters].map(([m, meter]) => [m, meter.usage()]));
  }

  private method(method: string): ResolvedMethod<S, D> {
    const m = Object.prototype.hasOwnProperty.call(this.definition.methods, method) ? this.definition.methods[method] : undefined;
    if (!m || !this.methodSet.has(method)) {
      throw new ContainedError('UNKNOWN_CAPABILITY', `capability "${this.name}" has no method "${method}"`);
    }
    return m;
  }

  private chargeChain(method: string, f: (meter: BudgetMeter) => void): void {
    const meters: BudgetMeter[] = [];
    for (let node: CapabilityInstance<S, D> | undefined = this; node; node = node.parent) {
      const meter = node.meters.get(method);
      if (meter) meters.push(meter);
    }
    for (const meter of meters) f(meter);
  }

  private rootDeps(): D {
    return this.deps;
  }
}

/**
 * Bind a definition to a scope and host resources. The scope is validated here, at creation, and
 * only here: a factory whose resources (or options) depend on the scope — fs opens its root, http
 * exposes only `get` for a read-only scope — passes a function of the parsed scope instead of the
 * value. (So deps that are themselves a function must be wrapped in an object.)
 */
export function createInstance<S, D>(
  definition: CapabilityDefinition<S, D>,
  scope: unknown,
  deps: D | ((scope: S) => D),
  options: InstanceOptions | ((scope: S) => InstanceOptions) = {},
): CapabilityInstance<S, D> {
  const parsed = definition.scope.safeParse(scope);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ContainedError('INVALID_SCOPE', `invalid scope for ${definition.name}${issue ? ` at ${issue.path.join('.') || '(root)'}: ${issue.message}` : ''}`);
  }
  // The one parse of a scope: resources and options that depend on it are computed from its result.
  const resources = typeof deps === 'function' ? (deps as (scope: S) => D)(parsed.data) : deps;
  return new CapabilityInstance(definition, parsed.data, resources, typeof options === 'function' ? options(parsed.data) : options);
}
