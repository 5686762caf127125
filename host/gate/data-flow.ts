/**
 * The run-level data-flow rule (docs/data-flow.md). Some sources are sensitive (the host config's
 * `dataFlow.sensitive`: a capability instance, or part of its scope, and the methods that read it).
 * Once a run has been allowed a call that reads one, the run is tainted for the rest of its life:
 * every later call of that run to an open-world method (`openWorld` risk: email, HTTP, an
 * open-world MCP tool) needs a human whatever its grant's mode says, or is refused
 * `DATA_FLOW_DENIED` when the host is configured so (`afterSensitive: "deny"`).
 *
 * What it defends: sensitive data leaving through the world-facing methods of a run that has seen
 * it, whatever the agent does in between — the taint is on the run, so copying the data through
 * kv, files, logs or variables, catching errors, or reading it through another binding (every
 * instance whose scope may reach the source counts: the definition's `overlaps`, decided once at
 * host start) cannot drop it. A run is tainted when the sensitive call is allowed, before it is
 * performed, so the result can never reach the agent first; a sensitive call that then fails
 * still counts (its error may carry data).
 *
 * Fails closed: a source naming a capability or method this host does not offer, or a scope wider
 * than its instance, is refused at host start (`INVALID_ARGUMENT`, `INVALID_SCOPE`).
 * The gate (policy-gate.ts) asks `check` before it decides a call and tells `received` every
 * allowed call; nothing else reads or writes the taint.
 */
import type { CapabilityInstance } from '../../capabilities/sdk/index.js';
import { ContainedError } from '../../runtime/errors.js';
import type { GateCall } from '../../runtime/gate.js';
import type { DataFlowConfig } from './data-flow-config.js';

/** A sensitive source as one capability instance reaches it. */
interface Reach {
  label: string;
  /** Methods whose results count; undefined: every method. */
  methods: ReadonlySet<string> | undefined;
}

/** What an open-world call of a tainted run must do. */
export interface DataFlowVerdict {
  action: 'escalate' | 'deny';
  /** The sensitive sources the run read, in the order it first read them. */
  sources: readonly string[];
  /** For operators and the agent: "this run read customers (sensitive) before this call". */
  reason: string;
}

export class DataFlowRule {
  /** Per run (the gate's live-run object, so it goes when the run goes): labels read, first read first. */
  private readonly reads = new WeakMap<object, string[]>();

  constructor(
    /** Binding name → the sensitive sources calls through it may read. */
    private readonly reaches: ReadonlyMap<string, readonly Reach[]>,
    readonly afterSensitive: 'escalate' | 'deny',
  ) {}

  /** The labels of the sensitive sources a call to `capability.method` reads (none: empty). */
  sourcesOf(capability: string, method: string): string[] {
    const out: string[] = [];
    for (const r of this.reaches.get(capability) ?? []) {
      if ((r.methods === undefined || r.methods.has(method)) && !out.includes(r.label)) out.push(r.label);
    }
    return out;
  }

  /**
   * The gate allowed `call` for `run` and is about to perform it: when it reads a sensitive
   * source, the run is tainted from now on. Returns the labels the run had not read before.
   */
  received(run: object, call: Pick<GateCall, 'capability' | 'method'>): string[] {
    const labels = this.sourcesOf(call.capability, call.method);
    if (labels.length === 0) return [];
    let read = this.reads.get(run);
    if (!read) this.reads.set(run, (read = []));
    const fresh = labels.filter((l) => !read.includes(l));
    read.push(...fresh);
    return fresh;
  }

  /** The sensitive sources `run` has read so far, first read first. */
  readsOf(run: object): readonly string[] {
    return this.reads.get(run) ?? [];
  }

  /** For an open-world call of a run that has read a sensitive source: what it must do; otherwise undefined. */
  check(run: object, call: Pick<GateCall, 'risk'>): DataFlowVerdict | undefined {
    if (!call.risk.openWorld) return undefined;
    const sources = this.reads.get(run);
    if (!sources || sources.length === 0) return undefined;
    return { action: this.afterSensitive, sources: [...sources], reason: `this run read ${sources.join(', ')} (sensitive) before this call` };
  }
}

/**
 * The rule for a host's instances: each configured source is put in its instance's scope
 * (`restrict`: a scope wider than the instance is refused), then every instance of the same kind
 * whose scope may reach it (`overlaps`; absent or throwing: yes) is recorded as reaching it.
 */
export function compileDataFlow(config: DataFlowConfig, instances: ReadonlyMap<string, CapabilityInstance>): DataFlowRule {
  const reaches = new Map<string, Reach[]>();
  config.sensitive.forEach((source, i) => {
    const at = `dataFlow.sensitive.${i}`;
    const home = instances.get(source.capability);
    if (!home) {
      throw new ContainedError('INVALID_ARGUMENT', `${at}.capability: this host offers no capability "${source.capability}"`, { data: { path: ['dataFlow', 'sensitive', String(i), 'capability'] } });
    }
    const definition = home.definition;
    for (const m of source.methods ?? []) {
      if (!Object.prototype.hasOwnProperty.call(definition.methods, m)) {
        throw new ContainedError('INVALID_ARGUMENT', `${at}.methods: ${source.capability} (${definition.name}) has no method "${m}"`, { data: { path: ['dataFlow', 'sensitive', String(i), 'methods'] } });
      }
    }
    let region: unknown;
    try {
      region = source.scope === undefined ? home.scope : home.restrict(source.scope).scope;
    } catch (error) {
      const why = error instanceof ContainedError ? error.message : 'invalid scope';
      throw new ContainedError('INVALID_SCOPE', `${at}.scope: ${why}`, { cause: error, data: { path: ['dataFlow', 'sensitive', String(i), 'scope'] } });
    }
    const methods = source.methods === undefined ? undefined : new Set(source.methods);
    for (const [name, instance] of instances) {
      if (instance.definition.name !== definition.name || !mayOverlap(instance, region)) continue;
      const list = reaches.get(name) ?? [];
      list.push({ label: source.label, methods });
      reaches.set(name, list);
    }
  });
  return new DataFlowRule(reaches, config.afterSensitive);
}

/** The definition's `overlaps` answer; absent or throwing: it may. */
function mayOverlap(instance: CapabilityInstance, region: unknown): boolean {
  const overlaps = instance.definition.overlaps;
  if (!overlaps) return true;
  try {
    return overlaps(instance.scope, region);
  } catch {
    return true;
  }
}
