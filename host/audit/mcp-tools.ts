/**
 * The host's side of the rug-pull defence of `mcp` capabilities (capabilities/mcp/tools.ts,
 * docs/mcp-capability.md): what operators see and accept, and the audit records of it.
 *
 * - `list()`: per configured mcp capability, the tool changes waiting for an operator (new tools
 *   held; changed tools withdrawn, with the accepted and the current version) and the accepted
 *   versions — read where the running capability publishes them (`toolApprovalsFor`: files in
 *   `<dataDir>/mcp-tools/`, or the fleet's store, so a tool is accepted once for every host).
 * - `accept()` / `acceptMcpToolChange()`: an operator accepts the version the server lists now,
 *   named by its fingerprint (a tool that changed again since is refused `ALREADY_RESOLVED`); the
 *   `mcp.tool.accepted` record is appended before the acceptance is written, so nothing un-audited
 *   takes effect. The CLI (`contained mcp-tools accept`) and the console use the same function.
 * - a watcher: each tool the running host withdraws (`mcp.tool.withdrawn`) or holds
 *   (`mcp.tool.held`) is audited once per capability, tool and fingerprint — not on every poll,
 *   not again after a restart (the records already in the log are read at start) — and then
 *   handed to `onChange` (the host's `mcp.tool.pending` notifications).
 *
 * Fails: NOT_FOUND (no such mcp capability, or nothing pending for that tool), ALREADY_RESOLVED
 * (stale fingerprint, or already accepted). A pending document the watcher cannot read is logged and
 * tried again at the next poll; an audit append that fails is tried again too.
 */
import type { Logger } from 'pino';
import { acceptPendingTool, documentApprovals, type FileApprovals, fileApprovals, STORE_PREFIX } from '../../capabilities/mcp/approvals-file.js';
import { mcpToolsFolder } from '../../capabilities/mcp/plugin.js';
import type { PendingTool } from '../../capabilities/mcp/tools.js';
import type { CapabilityDocuments } from '../../capabilities/plugin.js';
import { ContainedError } from '../../runtime/errors.js';
import type { AuditLog } from './log.js';
import type { AuditInput } from './record.js';

/** How often the host reads what its mcp capabilities published, ms. */
export const MCP_TOOL_WATCH_MS = 1000;

/** One accepted tool version, as operators see it. */
export interface AcceptedToolView {
  tool: string;
  title?: string;
  description: string;
  fingerprint: string;
  acceptedBy: string;
  acceptedAt: number;
  reason: string;
}

/** One mcp capability's tool changes and accepted versions. */
export interface McpToolsView {
  capability: string;
  /** Waiting for an operator: `new` (held, offered from the next start once accepted) or `changed` (withdrawn until accepted). */
  pending: PendingTool[];
  accepted: AcceptedToolView[];
}

export interface McpToolAcceptance {
  capability: string;
  tool: string;
  fingerprint: string;
  change: 'new' | 'changed';
  by: string;
  reason: string;
  /** When the running host offers it: a changed tool within its approvalsPollMs (unless its risk changed), a new one from the next start. */
  effective: 'running host' | 'next start';
}

/**
 * Accept a pending tool change: checked against what is pending, audited (`mcp.tool.accepted`),
 * then written. `audit.append` must resolve only once the record is durable.
 */
export async function acceptMcpToolChange(
  deps: { approvals: FileApprovals; audit: { append(input: AuditInput): Promise<unknown> }; now: () => number },
  input: { capability: string; tool: string; fingerprint: string; by: string; reason: string },
): Promise<McpToolAcceptance> {
  const { capability, tool, fingerprint, by, reason } = input;
  const stored = await deps.approvals.load(capability);
  if (stored?.tools[tool]?.fingerprint === fingerprint) throw new ContainedError('ALREADY_RESOLVED', `${capability}: tool "${tool}" is already accepted in version ${fingerprint}`);
  const pending = (await deps.approvals.loadPending(capability)).find((p) => p.tool === tool);
  if (!pending) throw new ContainedError('NOT_FOUND', `${capability}: no change of tool "${tool}" is pending (contained mcp-tools list)`);
  if (pending.fingerprint !== fingerprint) {
    throw new ContainedError('ALREADY_RESOLVED', `${capability}: tool "${tool}" is pending as ${pending.fingerprint}, not ${fingerprint}; look at it again`, { data: { fingerprint: pending.fingerprint } });
  }
  if (!stored) throw new ContainedError('NOT_FOUND', `${capability}: no accepted tools are stored yet (has the host started it?)`);
  // Audited first: nothing un-audited takes effect.
  await deps.audit.append({
    type: 'mcp.tool.accepted',
    capability,
    data: { tool, fingerprint, change: pending.change, differs: pending.differs, previous: pending.acceptedFingerprint ?? null, by, reason },
  });
  await acceptPendingTool(deps.approvals, { capability, tool, fingerprint, by, reason, at: deps.now() });
  return { capability, tool, fingerprint, change: pending.change, by, reason, effective: pending.change === 'new' ? 'next start' : 'running host' };
}

/**
 * Where a host's mcp capabilities keep their accepted tool versions: the store's documents when the
 * host gives them to its capabilities (a fleet on PostgreSQL), else files in `<dataDir>/mcp-tools/`.
 */
export function toolApprovalsFor(dataDir: string, documents?: CapabilityDocuments): FileApprovals {
  return documents ? documentApprovals(documents, STORE_PREFIX, 'the host store') : fileApprovals(mcpToolsFolder(dataDir));
}

export interface McpToolChangesOptions {
  /** The host's data folder (`<dataDir>/mcp-tools/`). */
  dataDir: string;
  /** The store's documents, when the capabilities keep their approvals there (toolApprovalsFor). */
  documents?: CapabilityDocuments | undefined;
  /** The mcp capabilities this host runs (binding names). */
  bindings: readonly string[];
  audit: Pick<AuditLog, 'append' | 'source'>;
  logger?: Logger | undefined;
  now?: () => number;
  /** Default MCP_TOOL_WATCH_MS. */
  watchMs?: number;
  /** Called once per audited change (after its record is durable): the host sends `mcp.tool.pending` notifications. */
  onChange?: (change: McpToolChangeNotice) => void;
}

/** What `onChange` hears: a tool withdrawn (`changed`) or held (`new`). */
export interface McpToolChangeNotice {
  capability: string;
  tool: string;
  method?: string;
  change: 'new' | 'changed';
  fingerprint: string;
  previous: string | null;
  differs: string[];
  description: string;
}

export interface McpToolChanges {
  /** Per mcp capability of this host, in binding order. */
  list(): Promise<McpToolsView[]>;
  /** An operator (by name) accepts a pending change; NOT_FOUND for a capability this host does not run. */
  accept(input: { capability: string; tool: string; fingerprint: string; reason: string }, by: string): Promise<McpToolAcceptance>;
  /** Audit what is withdrawn or held now; the watcher calls it every `watchMs`. */
  scan(): Promise<void>;
  close(): void;
}

const WATCHED = ['mcp.tool.withdrawn', 'mcp.tool.held'] as const;
const keyOf = (capability: string, tool: string, fingerprint: string): string => JSON.stringify([capability, tool, fingerprint]);

/** The mcp tool changes of a host, and the watcher that audits withdrawals (started at once when the host runs any mcp capability). */
export function openMcpToolChanges(options: McpToolChangesOptions): McpToolChanges {
  const approvals = toolApprovalsFor(options.dataDir, options.documents);
  const bindings = [...options.bindings];
  const now = options.now ?? Date.now;
  const audited = new Set<string>();
  // What is already in the log (SQLite or the fleet's PostgreSQL chain), read before the first scan.
  let loaded: Promise<void> | undefined;
  const load = (): Promise<void> =>
    (loaded ??= (async () => {
      for (const r of await options.audit.source.find({ types: WATCHED })) {
        const data = r.data as { tool?: unknown; fingerprint?: unknown };
        if (r.capability !== undefined && typeof data.tool === 'string' && typeof data.fingerprint === 'string') audited.add(keyOf(r.capability, data.tool, data.fingerprint));
      }
    })().catch((error: unknown) => {
      loaded = undefined; // read again at the next poll
      throw error;
    }));
  /** Per capability: the pending document's stamp last read, so an unchanged one is not parsed again. */
  const seen = new Map<string, string>();
  const warned = new Set<string>();
  let scanning: Promise<void> | undefined;
  /** Acceptances one at a time: each reads, then rewrites, the capability's accepted file. */
  let accepting: Promise<unknown> = Promise.resolve();
  let closed = false;

  function known(capability: string): void {
    if (!bindings.includes(capability)) throw new ContainedError('NOT_FOUND', `this host runs no mcp capability "${capability}"${bindings.length > 0 ? ` (it runs: ${bindings.join(', ')})` : ''}`);
  }

  async function scanOne(capability: string): Promise<void> {
    let stamp: string | undefined;
    let pending: PendingTool[];
    try {
      stamp = await approvals.pendingStamp(capability);
      if (stamp === undefined || seen.get(capability) === stamp) return; // nothing published yet, or nothing new
      pending = await approvals.loadPending(capability);
      warned.delete(capability);
    } catch (error) {
      if (!warned.has(capability)) options.logger?.warn({ capability, err: (error as Error).message }, 'mcp: cannot read the pending tool changes');
      warned.add(capability);
      return;
    }
    let complete = true;
    for (const p of pending) {
      const key = keyOf(capability, p.tool, p.fingerprint);
      if (audited.has(key) || closed) continue;
      audited.add(key);
      const data = { tool: p.tool, fingerprint: p.fingerprint, previous: p.acceptedFingerprint ?? null, differs: p.differs, description: p.current.description };
      try {
        await options.audit.append({ type: p.change === 'new' ? 'mcp.tool.held' : 'mcp.tool.withdrawn', capability, ...(p.method !== undefined ? { method: p.method } : {}), data });
      } catch (error) {
        audited.delete(key);
        complete = false;
        if (!closed) options.logger?.error({ capability, tool: p.tool, err: (error as Error).message }, 'mcp: could not audit a tool change (tried again at the next poll)');
        continue;
      }
      try {
        options.onChange?.({ capability, ...(p.method !== undefined ? { method: p.method } : {}), change: p.change, ...data });
      } catch (error) {
        options.logger?.error({ capability, tool: p.tool, err: (error as Error).message }, 'mcp: a tool change listener failed');
      }
    }
    if (complete) seen.set(capability, stamp);
  }

  const scan = (): Promise<void> => {
    scanning ??= (async () => {
      try {
        try {
          await load();
        } catch (error) {
          if (!closed) options.logger?.error({ err: (error as Error).message }, 'mcp: cannot read the audited tool changes (tried again at the next poll)');
          return;
        }
        for (const capability of bindings) await scanOne(capability);
      } finally {
        scanning = undefined;
      }
    })();
    return scanning;
  };

  let timer: NodeJS.Timeout | undefined;
  if (bindings.length > 0) {
    timer = setInterval(() => void scan(), options.watchMs ?? MCP_TOOL_WATCH_MS);
    timer.unref();
    void scan();
  }

  return {
    async list() {
      const out: McpToolsView[] = [];
      for (const capability of bindings) {
        const stored = await approvals.load(capability);
        const tools = stored?.tools ?? {};
        out.push({
          capability,
          // An acceptance the running host has not re-read yet is no longer pending.
          pending: (await approvals.loadPending(capability)).filter((p) => tools[p.tool]?.fingerprint !== p.fingerprint),
          accepted: Object.entries(tools)
            .map(([tool, a]) => ({ tool, ...(a.tool.title !== undefined ? { title: a.tool.title } : {}), description: a.tool.description, fingerprint: a.fingerprint, acceptedBy: a.acceptedBy, acceptedAt: a.acceptedAt, reason: a.reason }))
            .sort((a, b) => a.tool.localeCompare(b.tool)),
        });
      }
      return out;
    },
    async accept(input, by) {
      known(input.capability);
      const done = accepting.then(() => acceptMcpToolChange({ approvals, audit: options.audit, now }, { ...input, by }));
      accepting = done.catch(() => undefined);
      return done;
    },
    scan,
    close() {
      closed = true;
      if (timer) clearInterval(timer);
    },
  };
}
