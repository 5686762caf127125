/**
 * The live table of an MCP capability's tools, and the rug-pull defence.
 *
 * Each tool an operator has accepted is remembered by its fingerprint (schema.ts) in a durable
 * `ToolApprovals` store. At the first start of a capability (nothing stored for it, or the server
 * command/URL changed) every listed tool is accepted as it is (trust on first use, recorded as
 * such). From then on, whenever the server lists its tools (`notifications/tools/list_changed`, a
 * restart, the next host start):
 *
 * - a tool whose description, schema or annotations changed is **withdrawn**: calls fail
 *   `MCP_TOOL_WITHDRAWN` until an operator accepts the new version;
 * - a tool that disappeared is withdrawn the same way;
 * - a **new** tool is not offered: it is listed as pending; once accepted it is offered from the
 *   next host start (methods are fixed when the capability is defined);
 * - an accepted change that alters the tool's risk also waits for the next host start, so the gate
 *   never judges a call by risk annotations the operator did not see applied.
 *
 * Fails closed: a tool that is malformed, has an input schema ajv cannot compile, or a name that
 * does not map to a method name is never offered.
 */
import type { RiskAnnotations } from '../sdk/risk.js';
import { ContainedError } from '../../runtime/errors.js';
import { type ArgsValidator, fingerprint, type McpToolSnapshot, SchemaCompiler, snapshotTool } from './schema.js';

export interface AcceptedTool {
  tool: McpToolSnapshot;
  fingerprint: string;
  acceptedBy: string;
  acceptedAt: number;
  reason: string;
}

export interface StoredApprovals {
  /** The server the approvals are about (command and arguments, or URL). */
  server: string;
  /** By MCP tool name. */
  tools: Record<string, AcceptedTool>;
}

/** Durable home of accepted tool versions, per capability binding. */
export interface ToolApprovals {
  load(capability: string): Promise<StoredApprovals | undefined>;
  save(capability: string, approvals: StoredApprovals): Promise<void>;
  /** Optional: where operators outside the host (the CLI) read what waits for them. */
  savePending?(capability: string, pending: readonly PendingTool[]): Promise<void>;
}

/** Approvals kept in memory (library use, tests): lost when the process ends. */
export function memoryApprovals(): ToolApprovals {
  const table = new Map<string, string>();
  return {
    load: async (capability) => {
      const text = table.get(capability);
      return text === undefined ? undefined : (JSON.parse(text) as StoredApprovals);
    },
    save: async (capability, approvals) => {
      table.set(capability, JSON.stringify(approvals));
    },
  };
}

const METHOD = /^[a-z][a-zA-Z0-9]{0,63}$/;
/** Names that would shadow what JavaScript objects (or promises) already mean. */
const RESERVED = new Set(['constructor', 'toString', 'toLocaleString', 'valueOf', 'hasOwnProperty', 'isPrototypeOf', 'propertyIsEnumerable', 'then', 'catch', 'finally', 'toJSON']);

/** `create_issue` → `createIssue`, `get-sum` → `getSum`; undefined when no method name fits. */
export function methodNameFor(tool: string): string | undefined {
  const words = tool.split(/[^A-Za-z0-9]+/).filter(Boolean);
  if (words.length === 0) return undefined;
  const [first, ...rest] = words as [string, ...string[]];
  const name = first.charAt(0).toLowerCase() + first.slice(1) + rest.map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
  return METHOD.test(name) && !RESERVED.has(name) ? name : undefined;
}

export type ToolStatus = 'active' | 'changed' | 'removed' | 'restart';

export interface ToolEntry {
  method: string;
  toolName: string;
  /** The version the capability was defined with (its docs, its risk). */
  defined: McpToolSnapshot;
  definedRisk: RiskAnnotations;
  status: ToolStatus;
  validator: ArgsValidator;
}

export interface PendingTool {
  capability: string;
  tool: string;
  /** The method it is (or would be) offered as. */
  method: string | undefined;
  change: 'new' | 'changed';
  /** What an operator accepts: the fingerprint of the version the server lists now. */
  fingerprint: string;
  acceptedFingerprint?: string;
  /** Which parts differ from the accepted version. */
  differs: string[];
  current: McpToolSnapshot;
  accepted?: McpToolSnapshot;
}

export type ToolEvent =
  | { type: 'tool.first-start'; capability: string; tools: string[] }
  | { type: 'tool.withdrawn'; capability: string; tool: string; why: 'changed' | 'removed'; fingerprint?: string }
  | { type: 'tool.new'; capability: string; tool: string; fingerprint: string }
  | { type: 'tool.accepted'; capability: string; tool: string; fingerprint: string; by: string; reason: string; effective: 'now' | 'next start' }
  | { type: 'tool.skipped'; capability: string; tool: string; why: string };

export interface ToolboxOptions {
  capability: string;
  server: string;
  approvals: ToolApprovals;
  /** MCP tool names offered at all; undefined: all. */
  allow?: readonly string[] | undefined;
  /** The risk a snapshot would be defined with (annotations + operator overrides). */
  riskOf: (tool: McpToolSnapshot) => RiskAnnotations;
  now?: () => number;
  onEvent?: (event: ToolEvent) => void;
}

function differs(a: McpToolSnapshot, b: McpToolSnapshot): string[] {
  const out: string[] = [];
  for (const k of ['title', 'description', 'inputSchema', 'outputSchema', 'annotations'] as const) {
    if (JSON.stringify(a[k] ?? null) !== JSON.stringify(b[k] ?? null)) out.push(k);
  }
  return out;
}

function sameRisk(a: RiskAnnotations, b: RiskAnnotations): boolean {
  return (Object.keys(a) as (keyof RiskAnnotations)[]).every((k) => a[k] === b[k]);
}

export class McpToolbox {
  private stored: StoredApprovals = { server: '', tools: {} };
  private current = new Map<string, McpToolSnapshot>();
  private readonly entries = new Map<string, ToolEntry>();
  private readonly compiler = new SchemaCompiler();
  private readonly now: () => number;

  constructor(private readonly options: ToolboxOptions) {
    this.now = options.now ?? Date.now;
  }

  private emit(event: ToolEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch {
      // An observer's fault never changes what is offered.
    }
  }

  /** Tell operators outside the host what waits for them (best effort: a failed write is logged by the caller's store). */
  private publish(): void {
    const save = this.options.approvals.savePending;
    if (!save) return;
    save.call(this.options.approvals, this.options.capability, this.pending()).catch(() => undefined);
  }

  private snapshots(listed: readonly unknown[]): Map<string, McpToolSnapshot> {
    const out = new Map<string, McpToolSnapshot>();
    for (const raw of listed) {
      const snap = snapshotTool(raw);
      if (!snap) continue;
      if (this.options.allow && !this.options.allow.includes(snap.name)) continue;
      if (!out.has(snap.name)) out.set(snap.name, snap);
    }
    return out;
  }

  /** At definition time: load approvals, accept everything on a first start, and build the methods. */
  async init(listed: readonly unknown[]): Promise<ToolEntry[]> {
    const { capability, server } = this.options;
    this.current = this.snapshots(listed);
    const stored = await this.options.approvals.load(capability);
    if (!stored || stored.server !== server) {
      const at = this.now();
      const tools: Record<string, AcceptedTool> = {};
      for (const snap of this.current.values()) {
        tools[snap.name] = { tool: snap, fingerprint: fingerprint(snap), acceptedBy: 'host', acceptedAt: at, reason: stored ? 'first start with this server (the configured server changed)' : 'first start (trust on first use)' };
      }
      this.stored = { server, tools };
      await this.options.approvals.save(capability, this.stored);
      this.emit({ type: 'tool.first-start', capability, tools: Object.keys(tools).sort() });
    } else {
      this.stored = stored;
    }
    const taken = new Set<string>();
    for (const name of [...this.current.keys()].sort()) {
      const snap = this.current.get(name) as McpToolSnapshot;
      const accepted = Object.prototype.hasOwnProperty.call(this.stored.tools, name) ? this.stored.tools[name] : undefined;
      if (!accepted) {
        this.emit({ type: 'tool.new', capability, tool: name, fingerprint: fingerprint(snap) });
        continue;
      }
      const method = methodNameFor(name);
      if (!method || taken.has(method)) {
        this.emit({ type: 'tool.skipped', capability, tool: name, why: method ? `its method name ${method} is taken by another tool` : 'its name does not map to a method name' });
        continue;
      }
      // Defined with the accepted version; live only while the server still lists exactly that.
      let validator: ArgsValidator;
      try {
        validator = this.compiler.compile(name, accepted.tool.inputSchema);
      } catch (error) {
        this.emit({ type: 'tool.skipped', capability, tool: name, why: (error as Error).message });
        continue;
      }
      taken.add(method);
      const active = accepted.fingerprint === fingerprint(snap);
      if (!active) this.emit({ type: 'tool.withdrawn', capability, tool: name, why: 'changed', fingerprint: fingerprint(snap) });
      this.entries.set(method, { method, toolName: name, defined: accepted.tool, definedRisk: this.options.riskOf(accepted.tool), status: active ? 'active' : 'changed', validator });
    }
    this.publish();
    return [...this.entries.values()];
  }

  /** The server listed its tools again (list_changed, restart): withdraw what changed or went. */
  update(listed: readonly unknown[]): void {
    const { capability } = this.options;
    const before = this.current;
    this.current = this.snapshots(listed);
    for (const entry of this.entries.values()) {
      const snap = this.current.get(entry.toolName);
      const accepted = this.stored.tools[entry.toolName];
      const prev = entry.status;
      if (!snap) entry.status = 'removed';
      else if (accepted && accepted.fingerprint === fingerprint(snap)) entry.status = prev === 'restart' ? 'restart' : 'active';
      else entry.status = 'changed';
      if (entry.status !== prev && (entry.status === 'changed' || entry.status === 'removed')) {
        this.emit({ type: 'tool.withdrawn', capability, tool: entry.toolName, why: entry.status, ...(snap ? { fingerprint: fingerprint(snap) } : {}) });
      }
    }
    for (const [name, snap] of this.current) {
      const known = before.has(name) && fingerprint(before.get(name) as McpToolSnapshot) === fingerprint(snap);
      if (!known && !this.stored.tools[name]) this.emit({ type: 'tool.new', capability, tool: name, fingerprint: fingerprint(snap) });
    }
    this.publish();
  }

  /**
   * Re-read the approvals (an operator accepted a change outside the host, e.g. with the CLI):
   * a withdrawn tool whose current version is now accepted comes back (or waits for the next start
   * when its risk changed). Returns the tools that came back.
   */
  async reload(): Promise<string[]> {
    const stored = await this.options.approvals.load(this.options.capability);
    if (!stored || stored.server !== this.stored.server) return [];
    this.stored = stored;
    const back: string[] = [];
    for (const entry of this.entries.values()) {
      if (entry.status !== 'changed') continue;
      const snap = this.current.get(entry.toolName);
      const accepted = stored.tools[entry.toolName];
      if (!snap || !accepted || accepted.fingerprint !== fingerprint(snap)) continue;
      if (!sameRisk(entry.definedRisk, this.options.riskOf(snap))) {
        entry.status = 'restart';
        continue;
      }
      try {
        entry.validator = this.compiler.compile(entry.toolName, snap.inputSchema);
      } catch {
        continue;
      }
      entry.status = 'active';
      back.push(entry.toolName);
    }
    this.publish();
    return back;
  }

  /** Throws MCP_TOOL_WITHDRAWN unless the method's tool is offered as accepted. */
  assertActive(method: string): ToolEntry {
    const entry = this.entries.get(method);
    if (!entry) throw new ContainedError('UNKNOWN_CAPABILITY', `${this.options.capability} has no tool for ${method}`);
    if (entry.status === 'active') return entry;
    const why =
      entry.status === 'removed'
        ? 'the server no longer lists it'
        : entry.status === 'restart'
          ? 'an accepted change to its risk takes effect when the host restarts'
          : 'it changed since an operator accepted it (description, schema or annotations); an operator must accept the change';
    throw new ContainedError('MCP_TOOL_WITHDRAWN', `${this.options.capability}.${method} is withdrawn: ${why}`, { data: { tool: entry.toolName, status: entry.status } });
  }

  validate(method: string, raw: unknown): ReturnType<ArgsValidator> {
    const entry = this.entries.get(method);
    if (!entry) return { ok: false, path: [], message: `no tool for ${method}` };
    return entry.validator(raw);
  }

  entry(method: string): ToolEntry | undefined {
    return this.entries.get(method);
  }

  /** Tools waiting for an operator: new ones, and changed ones. */
  pending(): PendingTool[] {
    const out: PendingTool[] = [];
    const methodOf = new Map([...this.entries.values()].map((e) => [e.toolName, e.method]));
    for (const [name, snap] of [...this.current].sort(([a], [b]) => a.localeCompare(b))) {
      const fp = fingerprint(snap);
      const accepted = this.stored.tools[name];
      if (accepted && accepted.fingerprint === fp) continue;
      const p: PendingTool = { capability: this.options.capability, tool: name, method: methodOf.get(name) ?? methodNameFor(name), change: accepted ? 'changed' : 'new', fingerprint: fp, differs: accepted ? differs(accepted.tool, snap) : [], current: snap };
      if (accepted) {
        p.acceptedFingerprint = accepted.fingerprint;
        p.accepted = accepted.tool;
      }
      out.push(p);
    }
    return out;
  }

  /** Every tool with its state, for operators. */
  list(): { tool: string; method?: string; status: ToolStatus | 'new'; fingerprint?: string }[] {
    const out: { tool: string; method?: string; status: ToolStatus | 'new'; fingerprint?: string }[] = [];
    for (const e of this.entries.values()) {
      const snap = this.current.get(e.toolName);
      out.push({ tool: e.toolName, method: e.method, status: e.status, ...(snap ? { fingerprint: fingerprint(snap) } : {}) });
    }
    for (const p of this.pending()) if (p.change === 'new') out.push({ tool: p.tool, status: 'new', fingerprint: p.fingerprint });
    return out.sort((a, b) => a.tool.localeCompare(b.tool));
  }

  /**
   * An operator accepts the version of `tool` the server lists now, named by its fingerprint (so a
   * tool that changed again since they looked is not accepted blindly: ALREADY_RESOLVED).
   */
  async accept(tool: string, expected: string, by: string, reason: string): Promise<{ effective: 'now' | 'next start' }> {
    const { capability } = this.options;
    const snap = this.current.get(tool);
    if (!snap) throw new ContainedError('NOT_FOUND', `${capability}: the server does not list a tool "${tool}" (offered tools only)`);
    const fp = fingerprint(snap);
    if (fp !== expected) throw new ContainedError('ALREADY_RESOLVED', `${capability}: tool "${tool}" is now ${fp}, not ${expected}; look at it again`, { data: { fingerprint: fp } });
    const accepted = this.stored.tools[tool];
    if (accepted?.fingerprint === fp) throw new ContainedError('ALREADY_RESOLVED', `${capability}: tool "${tool}" is already accepted in this version`);
    const entry = [...this.entries.values()].find((e) => e.toolName === tool);
    // Compiled before anything is stored: a schema ajv cannot compile is not accepted.
    const validator = entry ? this.compiler.compile(tool, snap.inputSchema) : undefined;
    const record: AcceptedTool = { tool: snap, fingerprint: fp, acceptedBy: by, acceptedAt: this.now(), reason };
    const next: StoredApprovals = { server: this.stored.server, tools: { ...this.stored.tools, [tool]: record } };
    await this.options.approvals.save(capability, next);
    this.stored = next;
    let effective: 'now' | 'next start' = 'next start';
    if (entry && validator) {
      if (sameRisk(entry.definedRisk, this.options.riskOf(snap))) {
        entry.validator = validator;
        entry.status = 'active';
        effective = 'now';
      } else {
        entry.status = 'restart';
      }
    }
    this.emit({ type: 'tool.accepted', capability, tool, fingerprint: fp, by, reason, effective });
    this.publish();
    return { effective };
  }
}
