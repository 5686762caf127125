/**
 * `defineCapability`: the typed description of a capability — its scope schema, how two scopes
 * intersect (attenuation), and its methods with argument/result schemas, risk annotations, a pure
 * scope check and an implementation; optional hooks tell grants how to narrow it (`reframe`,
 * `methodUsable`, `narrowestScope`). Definitions are data; instances (instance.ts) bind them to a
 * scope and to host resources.
 */
import type { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import { resolveRisk, type RiskAnnotations } from './risk.js';
import type { CapabilityStaging, MethodStaging } from './staging.js';

/** Result of a pure scope check. Deny on anything the check cannot understand. */
export type ScopeCheck = { ok: true } | { ok: false; code: 'OUT_OF_SCOPE'; message: string };

export const IN_SCOPE: ScopeCheck = Object.freeze({ ok: true }) as ScopeCheck;
export function outOfScope(message: string): ScopeCheck {
  return { ok: false, code: 'OUT_OF_SCOPE', message };
}

export interface MethodContext<S, D> {
  /** The scope of the instance the call came through (already the attenuated one). */
  scope: S;
  /** Host-side resources the instance was created with (folders, databases, secrets…). */
  deps: D;
  /** The binding name the agent used (`caps.<name>`). */
  capability: string;
  runId: string;
  /** Aborted when the run ends or is cancelled; long work should stop. */
  signal: AbortSignal;
}

export interface MethodDefinition<S = any, D = any, A = any, R = any> {
  /** One line, written for the model that will call it. */
  description: string;
  /** Schema of the single argument. Use strict objects: unknown keys must fail. */
  args: z.ZodType<A>;
  /** Name of the single argument in the generated docs (`read(path: string)`); default `args`. */
  argName?: string;
  /** Schema of the result; the result is validated before it is copied into the sandbox. */
  result: z.ZodType<R>;
  /** Unset annotations take the worst case (see risk.ts). */
  risk?: Partial<RiskAnnotations>;
  /**
   * Refuse arguments no scope could ever allow (e.g. a SQL PRAGMA), with a typed error of the
   * method's choosing. Runs in `parseArgs` (before the gate) and again in `invoke`; must be pure.
   */
  precheck?: (args: A) => void;
  /** Pure check of the (validated) argument against the scope. Absent: every valid call is in scope. */
  inScope?: (args: A, scope: S) => ScopeCheck;
  /** Bytes charged to a `maxBytes` budget; default: the JSON length of argument plus result. */
  bytes?: (args: A, result: R) => number;
  /** The implementation. It must re-check anything that can change between check and use. */
  run: (args: A, ctx: MethodContext<S, D>) => Promise<R> | R;
  /**
   * How the method behaves in a staged run (staging.ts). Absent: a read-only method runs for real;
   * any other method is not stageable (`NOT_STAGEABLE` in a staged run).
   */
  staging?: MethodStaging<S, D, A, R>;
}

export interface CapabilityDefinitionInput<S, D> {
  /** Default binding name and the name in docs, e.g. `fs`. Lower camel case. */
  name: string;
  description: string;
  scope: z.ZodType<S>;
  /**
   * The intersection of a parent scope and a requested narrower one: everything the result allows
   * must be allowed by both. Throw `ContainedError('INVALID_SCOPE')` when they cannot intersect.
   * Answer in one canonical form (two scopes that allow the same thing give the same answer, e.g.
   * a default left unset rather than spelled out): the SDK compares answers to decide what is
   * narrower (narrowing.ts), so a non-canonical answer makes an equal scope look wider.
   */
  intersect: (parent: S, narrower: S) => S;
  /** The scope in words, for operators and for the agent-facing docs. */
  describeScope: (scope: S) => string;
  /**
   * Optional. `narrower` rewritten so that arguments mean for it what they mean for `parent`.
   * Grants and capability requests narrow the binding an agent already holds (`restrict`), so its
   * arguments must keep their meaning; `attenuate` hands out a new binding and does not reframe.
   * Absent: `narrower` as is — right for every capability whose arguments do not depend on the
   * scope (keys, URLs, table names). fs uses it: a subfolder `root` becomes `paths: [subfolder]`
   * under the parent's root, so a path the agent passes still starts at the parent's root.
   */
  reframe?: (parent: S, narrower: S) => S;
  /**
   * Optional, pure. Can `method` do anything at all under `scope`? (A read-only scope: only the
   * read-only methods.) Grants written for a requested scope cover only these methods, and the
   * approvals a capability request needs follow from their risk. Absent: every method.
   */
  methodUsable?: (scope: S, method: { name: string; risk: RiskAnnotations }) => boolean;
  /**
   * Optional, pure. The narrowest scope, in the same frame as `scope`, that still admits this one
   * call (fs: `list("sub")` → only `sub`); an operator's "always" answer grants that. Absent, or
   * `undefined`: the instance's scope. Ignored unless it is within `scope` and admits the call.
   */
  narrowestScope?: (scope: S, method: string, args: unknown) => S | undefined;
  /**
   * Optional, pure but for reading the host's file system (a real path). Could calls through
   * instances of scopes `a` and `b` reach the same data (the same folder, table, key prefix)? The
   * run-level data-flow rule (host/gate/data-flow.ts) asks it once at host start, for a sensitive
   * source and each instance of the same kind: every instance that may reach the source counts as
   * reading it. Answer `true` when unsure; a throw counts as `true`. Absent: every two instances of
   * the kind overlap (coarse, never a missed source).
   */
  overlaps?: (a: S, b: S) => boolean;
  methods: Record<string, MethodDefinition<S, D>>;
  /** Optional: fingerprints, before-images and restore for the local resources staged effects change (staging.ts). */
  staging?: CapabilityStaging<S, D>;
}

export interface ResolvedMethod<S = any, D = any> extends MethodDefinition<S, D> {
  name: string;
  riskResolved: RiskAnnotations;
}

export interface CapabilityDefinition<S = any, D = any> extends Omit<CapabilityDefinitionInput<S, D>, 'methods'> {
  readonly kind: 'capability-definition';
  methods: Readonly<Record<string, ResolvedMethod<S, D>>>;
}

const NAME = /^[a-z][a-zA-Z0-9]{0,63}$/;

/** Typed helper so a method's `run` sees the argument type inferred from its schema. */
export function method<AS extends z.ZodType, RS extends z.ZodType, S = any, D = any>(
  m: Omit<MethodDefinition<S, D, z.output<AS>, z.input<RS>>, 'args' | 'result'> & { args: AS; result: RS },
): MethodDefinition<S, D> {
  return m as unknown as MethodDefinition<S, D>;
}

export function defineCapability<S, D = unknown>(input: CapabilityDefinitionInput<S, D>): CapabilityDefinition<S, D> {
  if (!NAME.test(input.name)) {
    throw new ContainedError('INVALID_ARGUMENT', `capability name "${input.name}" must be lower camel case (${NAME})`);
  }
  const methods: Record<string, ResolvedMethod<S, D>> = {};
  for (const [name, m] of Object.entries(input.methods)) {
    if (!NAME.test(name)) {
      throw new ContainedError('INVALID_ARGUMENT', `method name "${input.name}.${name}" must be lower camel case`);
    }
    methods[name] = Object.freeze({ ...m, name, riskResolved: resolveRisk(m.risk) });
  }
  if (Object.keys(methods).length === 0) {
    throw new ContainedError('INVALID_ARGUMENT', `capability "${input.name}" has no methods`);
  }
  return Object.freeze({ ...input, kind: 'capability-definition' as const, methods: Object.freeze(methods) });
}
