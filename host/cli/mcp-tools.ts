/**
 * `contained mcp-tools list|accept`: the operator's side of the rug-pull defence of `mcp`
 * capabilities (capabilities/mcp/tools.ts, docs/mcp-capability.md). A tool whose description,
 * schema or annotations changed is withdrawn, and a new tool is held, until an operator accepts the
 * version the server lists now — named by its fingerprint, so a tool that changed again since it
 * was looked at is not accepted blindly.
 *
 * Works where the hosts publish what is pending: the data folder (`<dataDir>/mcp-tools/`), or,
 * with a PostgreSQL store, the fleet's documents in it (accepted once for every host); a running
 * host picks an acceptance up within its `approvalsPollMs`. Each acceptance
 * is appended to the audit log (`mcp.tool.accepted`, role `cli`) before it is written, so nothing
 * un-audited takes effect.
 *
 * Exit codes: 0 ok; 1 refused (NOT_FOUND, ALREADY_RESOLVED); 2 usage.
 */
import type { FileApprovals } from '../../capabilities/mcp/approvals-file.js';
import { ContainedError } from '../../runtime/errors.js';
import { loadOrCreateAuditKey } from '../audit/keys.js';
import { AuditLog } from '../audit/log.js';
import { acceptMcpToolChange, toolApprovalsFor } from '../audit/mcp-tools.js';
import { storeDocuments } from '../store/documents.js';
import type { AuditInput } from '../audit/record.js';
import { locateState, openForRead, openForWrite, type StateLocation } from '../store/location.js';
import { type CliIo, parseFlags, runSubcommand, STATE_FLAGS, stringFlag } from './args.js';
import { author, isoTime, requireFlag, table } from './grant.js';

export const MCP_TOOLS_USAGE = `Usage:
  contained mcp-tools list [BINDING] [--json] [--config FILE] [--data-dir DIR]
  contained mcp-tools accept BINDING TOOL --fingerprint sha256:… --reason TEXT [--by NAME] [--json]
                             [--config FILE] [--data-dir DIR]

'list' shows, per mcp capability, the tool changes waiting for an operator (new tools, and tools
whose description, schema or annotations changed: withdrawn until accepted) and the accepted versions.
'accept' accepts the version the server lists now; the running host offers it again within seconds
(a new tool, or a change to a tool's risk, from the next host start).
`;

const COMMON = STATE_FLAGS;

/**
 * The accepted tool versions where this data folder's hosts keep them: with a PostgreSQL store, the
 * fleet's documents in it; else the files in `<dataDir>/mcp-tools/`.
 */
async function openApprovals(location: StateLocation, mode: 'read' | 'write'): Promise<{ approvals: FileApprovals; close(): Promise<void> }> {
  if (location.store.kind !== 'postgres') return { approvals: toolApprovalsFor(location.dataDir), close: async () => undefined };
  const store = mode === 'write' ? await openForWrite(location) : await openForRead(location);
  if (!store) return { approvals: toolApprovalsFor(location.dataDir), close: async () => undefined };
  return { approvals: toolApprovalsFor(location.dataDir, storeDocuments(store)), close: () => store.close() };
}

export async function mcpToolsCommand(argv: string[], io: CliIo): Promise<number> {
  return runSubcommand('mcp-tools', argv, io, MCP_TOOLS_USAGE, { list, accept });
}

async function list(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(argv, COMMON);
  if (values.help) {
    io.stdout(MCP_TOOLS_USAGE);
    return 0;
  }
  if (positionals.length > 1) throw new ContainedError('USAGE', `unexpected argument "${positionals[1]}"\n\n${MCP_TOOLS_USAGE}`);
  const location = await locateState({ configFlag: stringFlag(values, 'config'), dataDirFlag: stringFlag(values, 'data-dir') });
  const { approvals, close } = await openApprovals(location, 'read');
  const out = [];
  try {
    const bindings = positionals[0] !== undefined ? [positionals[0]] : await approvals.bindings();
    for (const capability of bindings) {
      const stored = await approvals.load(capability);
      if (!stored) throw new ContainedError('NOT_FOUND', `no mcp capability "${capability}" has started on this host (${approvals.where})`);
      out.push({
        capability,
        pending: await approvals.loadPending(capability),
      accepted: Object.entries(stored.tools)
        .map(([tool, a]) => ({ tool, fingerprint: a.fingerprint, acceptedBy: a.acceptedBy, acceptedAt: a.acceptedAt, reason: a.reason }))
        .sort((a, b) => a.tool.localeCompare(b.tool)),
      });
    }
  } finally {
    await close();
  }
  if (values.json) {
    io.stdout(`${JSON.stringify(out, null, 2)}\n`);
    return 0;
  }
  if (out.length === 0) {
    io.stdout('no mcp capability has started on this host\n');
    return 0;
  }
  for (const c of out) {
    io.stdout(`${c.capability}: ${c.pending.length} pending, ${c.accepted.length} accepted\n`);
    if (c.pending.length > 0) {
      io.stdout(table(['TOOL', 'CHANGE', 'DIFFERS', 'FINGERPRINT'], c.pending.map((p) => [p.tool, p.change, p.differs.join(',') || '-', p.fingerprint])));
      for (const p of c.pending) io.stdout(`  ${p.tool}: ${JSON.stringify(p.current.description).slice(0, 300)}\n`);
    }
    io.stdout(table(['ACCEPTED TOOL', 'BY', 'AT', 'REASON'], c.accepted.map((a) => [a.tool, a.acceptedBy, isoTime(a.acceptedAt), a.reason])));
  }
  return 0;
}

async function accept(argv: string[], io: CliIo): Promise<number> {
  const spec = { ...COMMON, fingerprint: { type: 'string' as const }, reason: { type: 'string' as const }, by: { type: 'string' as const } };
  const { values, positionals } = parseFlags(argv, spec);
  if (values.help) {
    io.stdout(MCP_TOOLS_USAGE);
    return 0;
  }
  const [capability, tool, extra] = positionals;
  if (capability === undefined || tool === undefined) throw new ContainedError('USAGE', `accept needs BINDING and TOOL\n\n${MCP_TOOLS_USAGE}`);
  if (extra !== undefined) throw new ContainedError('USAGE', `unexpected argument "${extra}"\n\n${MCP_TOOLS_USAGE}`);
  const fingerprint = requireFlag(values, 'fingerprint', MCP_TOOLS_USAGE);
  const reason = requireFlag(values, 'reason', MCP_TOOLS_USAGE);
  const by = author(values);
  const location = await locateState({ configFlag: stringFlag(values, 'config'), dataDirFlag: stringFlag(values, 'data-dir') });
  const { approvals, close } = await openApprovals(location, 'write');
  // The log is opened only to append the record (a refused accept writes nothing), and closed after.
  const append = async (input: AuditInput): Promise<void> => {
    const audit = new AuditLog({ file: location.storeFile, ...(location.store.kind === 'postgres' ? { postgres: location.store.url } : {}), key: loadOrCreateAuditKey(location.dataDir, location.config?.audit.keyFile), role: 'cli', checkpointIntervalMs: 0, inboxPollMs: 0 });
    try {
      await audit.append(input);
      await audit.flush();
    } finally {
      await audit.close();
    }
  };
  let accepted: Awaited<ReturnType<typeof acceptMcpToolChange>>;
  try {
    accepted = await acceptMcpToolChange({ approvals, audit: { append }, now: Date.now }, { capability, tool, fingerprint, by, reason });
  } finally {
    await close();
  }
  const when = accepted.change === 'new' ? 'offered from the next host start' : 'offered again by the running host within its approvalsPollMs (a change to its risk: from the next start)';
  if (values.json) io.stdout(`${JSON.stringify({ capability, tool, fingerprint, by, reason, change: accepted.change })}\n`);
  else io.stdout(`accepted ${capability}/${tool} ${fingerprint}: ${when}\n`);
  return 0;
}
