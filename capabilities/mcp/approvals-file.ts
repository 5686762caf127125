/**
 * Accepted tool versions, durable, as two JSON documents per capability binding:
 *
 * - `<binding>.accepted` — `{ server, tools: { <tool>: { tool, fingerprint, acceptedBy,
 *   acceptedAt, reason } } }`; written by the host at a first start (trust on first use) and by
 *   whoever accepts a change (`contained mcp-tools accept`, the console); the host re-reads it
 *   while it runs;
 * - `<binding>.pending` — the tools waiting for an operator, as the host last saw the server;
 *   written by the host only, read by `contained mcp-tools list` and the console.
 *
 * Where the documents live (`CapabilityDocuments`, capabilities/plugin.ts): files in one folder
 * (`<dataDir>/mcp-tools/<binding>.accepted.json`, the default, each write a temporary file renamed
 * over the old one, so a reader never sees half a file), or the host's store when it gives one (a
 * fleet on PostgreSQL: every host reads and writes the same acceptances, so a tool is accepted once
 * for the fleet). An acceptance is a compare-and-set on the accepted document (two operators
 * accepting two tools at once both land). A document that does not parse is refused (`INTERNAL`),
 * never read as "nothing accepted" — that would silently re-trust every tool.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import type { CapabilityDocuments } from '../plugin.js';
import type { PendingTool, StoredApprovals, ToolApprovals } from './tools.js';

const BINDING = /^[a-z][a-zA-Z0-9]{0,63}$/;
const json = z.json();
const snapshotSchema = z.strictObject({
  name: z.string(),
  title: z.string().optional(),
  description: z.string(),
  inputSchema: z.record(z.string(), json),
  outputSchema: z.record(z.string(), json).optional(),
  annotations: z.record(z.string(), json).optional(),
});
const acceptedSchema = z.strictObject({
  server: z.string(),
  tools: z.record(z.string(), z.strictObject({ tool: snapshotSchema, fingerprint: z.string(), acceptedBy: z.string(), acceptedAt: z.number(), reason: z.string() })),
});
const pendingSchema = z.array(
  z.strictObject({
    capability: z.string(),
    tool: z.string(),
    method: z.string().optional(),
    change: z.enum(['new', 'changed']),
    fingerprint: z.string(),
    acceptedFingerprint: z.string().optional(),
    differs: z.array(z.string()),
    current: snapshotSchema,
    accepted: snapshotSchema.optional(),
  }),
);

export interface FileApprovals extends ToolApprovals {
  savePending(capability: string, pending: readonly PendingTool[]): Promise<void>;
  loadPending(capability: string): Promise<PendingTool[]>;
  /** A stamp that changes with every write of the pending document (undefined: none yet). */
  pendingStamp(capability: string): Promise<string | undefined>;
  /** Bindings with an accepted document. */
  bindings(): Promise<string[]>;
  /** Write the accepted document only if it is still at `stamp` (from `loadWithStamp`); false otherwise. */
  saveIf(capability: string, approvals: StoredApprovals, stamp: string): Promise<boolean>;
  loadWithStamp(capability: string): Promise<{ approvals: StoredApprovals; stamp: string } | undefined>;
  /** Where they are kept, for messages (a folder, or "the host store"). */
  readonly where: string;
}

function checkBinding(capability: string): string {
  if (!BINDING.test(capability)) throw new ContainedError('INVALID_ARGUMENT', `mcp: "${capability}" is not a capability binding name`);
  return capability;
}

function parse<T>(text: string, where: string, schema: z.ZodType<T>): T {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (cause) {
    throw new ContainedError('INTERNAL', `mcp: ${where} is not valid JSON; fix or remove it (removing it re-trusts every tool)`, { cause });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new ContainedError('INTERNAL', `mcp: ${where} does not match its schema: ${parsed.error.issues[0]?.message ?? ''}`);
  return parsed.data;
}

/** Documents as files `<folder>/<key>.json` (one machine; compare-and-set by the file's stamp, for one writer process at a time). */
export function folderDocuments(folder: string): CapabilityDocuments {
  const fileOf = (key: string): string => path.join(folder, `${key}.json`);
  const stampOf = (file: string): string | undefined => {
    try {
      const s = statSync(file);
      return `${s.ino}:${s.mtimeMs}:${s.size}`;
    } catch {
      return undefined;
    }
  };
  return {
    async get(key) {
      const file = fileOf(key);
      const stamp = stampOf(file);
      if (stamp === undefined) return undefined;
      try {
        return { text: readFileSync(file, 'utf8'), stamp };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw new ContainedError('INTERNAL', `mcp: cannot read ${file}`, { cause: error });
      }
    },
    async put(key, text, expect) {
      const file = fileOf(key);
      if (expect !== undefined && (stampOf(file) ?? null) !== expect) return false;
      mkdirSync(folder, { recursive: true, mode: 0o700 });
      const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
      writeFileSync(tmp, text, { mode: 0o600 });
      renameSync(tmp, file);
      return true;
    },
    async keys(prefix) {
      try {
        return readdirSync(folder)
          .filter((f) => f.endsWith('.json') && f.startsWith(prefix))
          .map((f) => f.slice(0, -'.json'.length))
          .sort();
      } catch {
        return [];
      }
    },
  };
}

/**
 * The approvals of every `mcp` capability in `docs`, under `prefix` (`where` names them in messages).
 * The accepted versions are one document per binding, shared; what is pending is what each host
 * saw of its server, so with a `writer` each host keeps its own pending document
 * (`<binding>.pending.<writer>`) and readers see them all, merged — one host's server that did not
 * change does not hide another's that did.
 */
export function documentApprovals(docs: CapabilityDocuments, prefix: string, where: string, writer: string | undefined = docs.writer): FileApprovals {
  const keyOf = (capability: string, suffix: 'accepted' | 'pending'): string => `${prefix}${checkBinding(capability)}.${suffix}`;
  const serialise = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;
  const loadWithStamp = async (capability: string): Promise<{ approvals: StoredApprovals; stamp: string } | undefined> => {
    const key = keyOf(capability, 'accepted');
    const doc = await docs.get(key);
    return doc === undefined ? undefined : { approvals: parse(doc.text, `${where}: ${key}`, acceptedSchema) as StoredApprovals, stamp: doc.stamp };
  };
  /** Every pending document of the binding (one per writer, or the one of a single host). */
  const pendingDocs = async (capability: string): Promise<Array<{ key: string; text: string; stamp: string }>> => {
    const base = keyOf(capability, 'pending');
    const keys = (await docs.keys(base)).filter((k) => k === base || k.startsWith(`${base}.`));
    const out: Array<{ key: string; text: string; stamp: string }> = [];
    for (const key of keys) {
      const doc = await docs.get(key);
      if (doc) out.push({ key, ...doc });
    }
    return out;
  };
  return {
    where,
    load: async (capability) => (await loadWithStamp(capability))?.approvals,
    loadWithStamp,
    save: async (capability, approvals) => {
      await docs.put(keyOf(capability, 'accepted'), serialise(approvals));
    },
    saveIf: (capability, approvals, stamp) => docs.put(keyOf(capability, 'accepted'), serialise(approvals), stamp),
    savePending: async (capability, pending) => {
      await docs.put(writer === undefined ? keyOf(capability, 'pending') : `${keyOf(capability, 'pending')}.${writer}`, serialise(pending));
    },
    loadPending: async (capability) => {
      const merged = new Map<string, PendingTool>();
      for (const doc of await pendingDocs(capability)) {
        for (const p of parse(doc.text, `${where}: ${doc.key}`, pendingSchema) as PendingTool[]) {
          const id = `${p.tool}\u0000${p.fingerprint}`;
          if (!merged.has(id)) merged.set(id, p);
        }
      }
      return [...merged.values()];
    },
    pendingStamp: async (capability) => {
      const found = await pendingDocs(capability);
      return found.length === 0 ? undefined : found.map((d) => `${d.key}@${d.stamp}`).join(',');
    },
    bindings: async () =>
      (await docs.keys(prefix))
        .filter((k) => k.endsWith('.accepted'))
        .map((k) => k.slice(prefix.length, -'.accepted'.length))
        .filter((b) => BINDING.test(b))
        .sort(),
  };
}

/** The approvals of every `mcp` capability in `folder` (files). */
export function fileApprovals(folder: string): FileApprovals {
  return documentApprovals(folderDocuments(folder), '', folder);
}

/** The key prefix of the mcp kind's documents in a host's store. */
export const STORE_PREFIX = 'mcp-tools/';

/**
 * Accept a pending tool version from outside the host (the CLI): it must be pending with exactly
 * this fingerprint (`NOT_FOUND` if the tool is not pending, `ALREADY_RESOLVED` if it changed again
 * or was accepted meanwhile). The running host picks the acceptance up at its next re-read.
 */
export async function acceptPendingTool(
  approvals: FileApprovals,
  input: { capability: string; tool: string; fingerprint: string; by: string; reason: string; at: number },
): Promise<PendingTool> {
  // Compare-and-set on the accepted document: an acceptance of another tool landing meanwhile is read and kept.
  for (let attempt = 1; ; attempt++) {
    const pending = (await approvals.loadPending(input.capability)).find((p) => p.tool === input.tool);
    const stored = await approvals.loadWithStamp(input.capability);
    if (stored?.approvals.tools[input.tool]?.fingerprint === input.fingerprint) {
      throw new ContainedError('ALREADY_RESOLVED', `${input.capability}: tool "${input.tool}" is already accepted in version ${input.fingerprint}`);
    }
    if (!pending) throw new ContainedError('NOT_FOUND', `${input.capability}: no change of tool "${input.tool}" is pending (contained mcp-tools list)`);
    if (pending.fingerprint !== input.fingerprint) {
      throw new ContainedError('ALREADY_RESOLVED', `${input.capability}: tool "${input.tool}" is pending as ${pending.fingerprint}, not ${input.fingerprint}; look at it again`, { data: { fingerprint: pending.fingerprint } });
    }
    if (!stored) throw new ContainedError('NOT_FOUND', `${input.capability}: no accepted tools are stored yet (has the host started it?)`);
    const next: StoredApprovals = {
      server: stored.approvals.server,
      tools: { ...stored.approvals.tools, [input.tool]: { tool: pending.current, fingerprint: pending.fingerprint, acceptedBy: input.by, acceptedAt: input.at, reason: input.reason } },
    };
    if (await approvals.saveIf(input.capability, next, stored.stamp)) return pending;
    if (attempt >= 5) throw new ContainedError('ALREADY_RESOLVED', `${input.capability}: the accepted tools kept changing while "${input.tool}" was accepted; try again`);
  }
}
