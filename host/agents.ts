/**
 * Agent identities: an agent is a subject an operator creates for an MCP client (`contained agent
 * create --name N --subject SUBJECT`). Grants are given to that subject as to any other; every
 * run the MCP server starts for the agent carries it. The agent's token (`cta_` + 32 random bytes,
 * base64url) is shown once; the store keeps only its sha256, as for operator tokens (tokens.ts).
 *
 * Defends against: token guessing (256 bits), timing probes (lookup by the hash of the presented
 * token, then `timingSafeEqual` over the hash bytes), revoked agents (refused), malformed input
 * (refused before the store is touched), an operator token presented as an agent token (another
 * prefix: it never matches the shape), two active agents with one name (the store's unique index).
 *
 * Fails: `verify` answers undefined for anything that is not a valid, active agent token, never
 * throws for bad input; `createAgent` throws INVALID_ARGUMENT for a bad name or subject, or a name
 * an active agent holds.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ContainedError } from '../runtime/errors.js';
import { formatSubject, parseSubject } from './grants.js';
import type { RunSubject, Subject } from './model.js';
import type { AgentRecord } from './store/agents.js';
import type { Store } from './store/store.js';

export type { AgentRecord } from './store/agents.js';

export const AGENT_TOKEN_PREFIX = 'cta_';
const AGENT_TOKEN_PATTERN = /^cta_[A-Za-z0-9_-]{43}$/;
/** Agent names: letters, digits, `.`, `_`, `-`; 1–64 characters, starting with a letter or digit. */
export const AGENT_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** An authenticated agent: who it is and the subject its runs carry. */
export interface Agent {
  id: string;
  name: string;
  subject: Subject;
}

function hashAgentToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Cheap shape check before any lookup. */
export function looksLikeAgentToken(value: unknown): value is string {
  return typeof value === 'string' && AGENT_TOKEN_PATTERN.test(value);
}

/** The run subject grants see for the agent's runs. */
export function agentRunSubject(subject: Subject): RunSubject {
  return 'digest' in subject ? { digest: subject.digest, name: undefined, signers: [] } : { digest: undefined, name: subject.name, signers: [subject.signer] };
}

function toAgent(record: AgentRecord): Agent {
  return { id: record.id, name: record.name, subject: parseSubject(record.subject) };
}

export interface CreateAgentInput {
  name: string;
  /** `sha256:<hex>` or `<name>@sha256:<signer key id>` (what `contained grant add --subject` takes). */
  subject: string;
  createdBy: string;
}

type AgentStore = Pick<Store, 'insertAgent' | 'listAgents' | 'findAgentByHash'>;

/** Create and store an agent; the returned `token` is the only copy there will ever be. */
export async function createAgent(input: CreateAgentInput, store: AgentStore, options: { now?: () => number } = {}): Promise<{ token: string; record: AgentRecord }> {
  if (typeof input.name !== 'string' || !AGENT_NAME_PATTERN.test(input.name)) {
    throw new ContainedError('INVALID_ARGUMENT', `agent name "${String(input.name).slice(0, 80)}": 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit`, {
      data: { field: 'name' },
    });
  }
  const subject = formatSubject(parseSubject(String(input.subject)));
  if (typeof input.createdBy !== 'string' || input.createdBy === '') throw new ContainedError('INVALID_ARGUMENT', 'an agent needs its creator', { data: { field: 'createdBy' } });
  const active = (await store.listAgents()).find((a) => a.name === input.name && a.revokedAt === undefined);
  if (active) {
    throw new ContainedError('INVALID_ARGUMENT', `an active agent named "${input.name}" exists (${active.id}); revoke it first or choose another name`, {
      data: { field: 'name', reason: 'duplicate' },
    });
  }
  const token = AGENT_TOKEN_PREFIX + randomBytes(32).toString('base64url');
  const record: AgentRecord = {
    id: `agt_${randomBytes(8).toString('hex')}`,
    name: input.name,
    subject,
    hash: hashAgentToken(token),
    createdAt: (options.now ?? Date.now)(),
    createdBy: input.createdBy,
  };
  await store.insertAgent(record);
  return { token, record };
}

/** The active agent with this name, or undefined (stdio: the identity comes from the command line). */
export async function findActiveAgent(store: Pick<Store, 'listAgents'>, name: string): Promise<Agent | undefined> {
  const record = (await store.listAgents()).find((a) => a.name === name && a.revokedAt === undefined);
  return record ? toAgent(record) : undefined;
}

/** Authenticates agent bearer tokens. */
export interface AgentVerifier {
  verify(token: string): Promise<Agent | undefined>;
}

export function createAgentVerifier(store: Pick<Store, 'findAgentByHash'>): AgentVerifier {
  return {
    async verify(token: string): Promise<Agent | undefined> {
      if (!looksLikeAgentToken(token)) return undefined;
      const presented = Buffer.from(hashAgentToken(token), 'hex');
      const record = await store.findAgentByHash(presented.toString('hex'));
      if (!record) return undefined;
      const stored = Buffer.from(record.hash, 'hex');
      if (stored.length !== presented.length || !timingSafeEqual(stored, presented)) return undefined;
      if (record.revokedAt !== undefined) return undefined;
      return toAgent(record);
    },
  };
}
