/**
 * Accepted tool versions, durable, as two JSON files per capability binding in one folder
 * (`<dataDir>/mcp-tools/` for the host):
 *
 * - `<binding>.accepted.json` — `{ server, tools: { <tool>: { tool, fingerprint, acceptedBy,
 *   acceptedAt, reason } } }`; written by the host at a first start (trust on first use) and by
 *   whoever accepts a change (`contained mcp-tools accept`); the host re-reads it while it runs;
 * - `<binding>.pending.json` — the tools waiting for an operator, as the host last saw the server;
 *   written by the host only, read by `contained mcp-tools list`.
 *
 * Each write goes to a temporary file that is renamed over the old one, so a reader never sees half
 * a file. A file that does not parse is refused (`INTERNAL`), never read as "nothing accepted" —
 * that would silently re-trust every tool.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
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
  loadPending(capability: string): PendingTool[];
  /** Bindings with an accepted file in the folder. */
  bindings(): string[];
  readonly folder: string;
}

function fileFor(folder: string, capability: string, suffix: string): string {
  if (!BINDING.test(capability)) throw new ContainedError('INVALID_ARGUMENT', `mcp: "${capability}" is not a capability binding name`);
  return path.join(folder, `${capability}.${suffix}.json`);
}

function readJson<T>(file: string, schema: z.ZodType<T>): T | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ContainedError('INTERNAL', `mcp: cannot read ${file}`, { cause: error });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (cause) {
    throw new ContainedError('INTERNAL', `mcp: ${file} is not valid JSON; fix or remove it (removing it re-trusts every tool)`, { cause });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new ContainedError('INTERNAL', `mcp: ${file} does not match its schema: ${parsed.error.issues[0]?.message ?? ''}`);
  return parsed.data;
}

function writeAtomic(file: string, value: unknown): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

/** The approvals of every `mcp` capability in `folder`. */
export function fileApprovals(folder: string): FileApprovals {
  return {
    folder,
    load: async (capability) => readJson(fileFor(folder, capability, 'accepted'), acceptedSchema) as StoredApprovals | undefined,
    save: async (capability, approvals) => writeAtomic(fileFor(folder, capability, 'accepted'), approvals),
    savePending: async (capability, pending) => writeAtomic(fileFor(folder, capability, 'pending'), pending),
    loadPending: (capability) => (readJson(fileFor(folder, capability, 'pending'), pendingSchema) ?? []) as PendingTool[],
    bindings: () => {
      try {
        return readdirSync(folder)
          .filter((f) => f.endsWith('.accepted.json'))
          .map((f) => f.slice(0, -'.accepted.json'.length))
          .filter((b) => BINDING.test(b))
          .sort();
      } catch {
        return [];
      }
    },
  };
}

/**
 * Accept a pending tool version from outside the host (the CLI): it must be pending with exactly
 * this fingerprint (`NOT_FOUND` if the tool is not pending, `ALREADY_RESOLVED` if it changed again
 * or was accepted meanwhile). The running host picks the acceptance up at its next re-read.
 */
export async function acceptPendingTool(
  approvals: FileApprovals,
  input: { capability: string; tool: string; fingerprint: string; by: string; reason: string; at: number },
): Promise<PendingTool> {
  const pending = approvals.loadPending(input.capability).find((p) => p.tool === input.tool);
  const stored = await approvals.load(input.capability);
  if (stored?.tools[input.tool]?.fingerprint === input.fingerprint) {
    throw new ContainedError('ALREADY_RESOLVED', `${input.capability}: tool "${input.tool}" is already accepted in version ${input.fingerprint}`);
  }
  if (!pending) throw new ContainedError('NOT_FOUND', `${input.capability}: no change of tool "${input.tool}" is pending (contained mcp-tools list)`);
  if (pending.fingerprint !== input.fingerprint) {
    throw new ContainedError('ALREADY_RESOLVED', `${input.capability}: tool "${input.tool}" is pending as ${pending.fingerprint}, not ${input.fingerprint}; look at it again`, { data: { fingerprint: pending.fingerprint } });
  }
  if (!stored) throw new ContainedError('NOT_FOUND', `${input.capability}: no accepted tools are stored yet (has the host started it?)`);
  const next: StoredApprovals = {
    server: stored.server,
    tools: { ...stored.tools, [input.tool]: { tool: pending.current, fingerprint: pending.fingerprint, acceptedBy: input.by, acceptedAt: input.at, reason: input.reason } },
  };
  await approvals.save(input.capability, next);
  return pending;
}
