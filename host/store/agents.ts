/**
 * Agent identities as the store keeps them (the `agents` table, migration v3): an agent is a
 * subject an operator created for an MCP client (host/agents.ts, docs/mcp.md), with a token shown
 * once and kept only as its sha256. Rows are validated on every read and write, like tokens.
 */
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';

export const agentRecordSchema = z.strictObject({
  id: z.string().min(1),
  name: z.string().min(1),
  /** The grant subject the agent's runs carry: `sha256:<hex>` or `<name>@sha256:<signer key id>`. */
  subject: z.string().min(1),
  /** sha256 of the agent token, hex. */
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.number().int(),
  createdBy: z.string().min(1),
  revokedAt: z.number().int().optional(),
});
export type AgentRecord = z.infer<typeof agentRecordSchema>;

export const AGENT_INSERT_SQL = 'INSERT INTO agents (id, name, subject, hash, created_at, created_by, revoked_at) VALUES (@id, @name, @subject, @hash, @created_at, @created_by, @revoked_at)';

export function agentToRow(agent: AgentRecord): Record<string, unknown> {
  const checked = agentRecordSchema.safeParse(agent);
  if (!checked.success) throw new ContainedError('INVALID_ARGUMENT', `store: invalid agent: ${checked.error.issues[0]?.message ?? 'does not match the schema'}`);
  const a = checked.data;
  return { id: a.id, name: a.name, subject: a.subject, hash: a.hash, created_at: a.createdAt, created_by: a.createdBy, revoked_at: a.revokedAt ?? null };
}

export function rowToAgent(row: Record<string, unknown>): AgentRecord {
  const value: Record<string, unknown> = { id: row.id, name: row.name, subject: row.subject, hash: row.hash, createdAt: row.created_at, createdBy: row.created_by };
  if (row.revoked_at !== null && row.revoked_at !== undefined) value.revokedAt = row.revoked_at;
  const parsed = agentRecordSchema.safeParse(value);
  if (!parsed.success) throw new ContainedError('INTERNAL', `store: corrupt row in agents (${String(row.id)}): ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return parsed.data;
}
