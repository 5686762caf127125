/**
 * The host's durable state behind one small interface, so a PostgreSQL store can be added for
 * several hosts later. The embedded implementation is SQLite (sqlite-store.ts). Methods are async
 * for that reason even where SQLite is synchronous.
 *
 * Concurrency contract: `resolveRequest`, `addApproval` and `claimExecution` are compare-and-set
 * operations — the first valid caller wins and later ones learn they lost — so a decision is
 * applied exactly once and an action is never performed twice, even across a crash.
 */
import type { Approval, Grant, RequestRecord, RequestStatus, RunRecord, TokenRecord } from '../model.js';
import type { AgentRecord } from './agents.js';

export interface GrantFilter {
  /** Only grants whose subject matches this digest or name. */
  subjectDigest?: string;
  subjectName?: string;
  /** Exclude revoked and expired grants (as of `now`). */
  activeAt?: number;
}

export interface RunFilter {
  status?: RunRecord['status'];
  limit?: number;
}

export type ApprovalResult =
  | { ok: true; request: RequestRecord }
  | { ok: false; code: 'NOT_FOUND' | 'ALREADY_RESOLVED' | 'DUPLICATE_APPROVER' | 'STALE_REQUEST'; request?: RequestRecord };

export type ResolveResult = { ok: true; request: RequestRecord } | { ok: false; code: 'NOT_FOUND' | 'ALREADY_RESOLVED'; request?: RequestRecord };

export interface Resolution {
  status: Exclude<RequestStatus, 'pending'>;
  at: number;
  by?: string[];
  denyReason?: string;
}

export interface Store {
  // Grants
  insertGrant(grant: Grant): Promise<void>;
  getGrant(id: string): Promise<Grant | undefined>;
  listGrants(filter?: GrantFilter): Promise<Grant[]>;
  /** Marks revoked; NOT_FOUND if unknown, idempotent if already revoked. */
  revokeGrant(id: string, by: string, reason: string, at: number): Promise<Grant | undefined>;
  /**
   * A number that grows by exactly one with every committed grant added, grant revoked, token
   * created and token revoked, by any connection or process (and by nothing else): what in-memory
   * views of grants and tokens check, cheaply, before they answer (grant-service.ts, tokens.ts).
   */
  changeCounter(): Promise<number>;

  // Requests
  /** `deferSync`: commit without an fsync of its own; durable once `synced()` resolves (see `synced`). */
  insertRequest(request: RequestRecord, options?: { deferSync?: boolean }): Promise<void>;
  getRequest(id: string): Promise<RequestRecord | undefined>;
  listRequests(filter: { status?: RequestStatus; runId?: string; limit?: number }): Promise<RequestRecord[]>;
  /**
   * Append an approval to a pending request (refuses a second approval by the same operator of the
   * same `argsDigest`; with `expectApprovals`, refuses STALE_REQUEST when the request no longer has
   * that many approvals, i.e. another landed since the caller read it). Approvals count per
   * `argsDigest`: with `resolve`, the approval that brings its digest's count to the required one
   * also moves the request to `approved` (by those approvers) in the same transaction.
   */
  addApproval(id: string, approval: Approval, options?: { resolve?: boolean; expectApprovals?: number; deferSync?: boolean }): Promise<ApprovalResult>;
  /**
   * Group commit: resolves when every commit made so far with `deferSync` is durable (an fsync of
   * the write-ahead log has covered it, made by whichever commit came first: another connection's
   * fully synchronous commit, such as the audit log's next batch, or the store's own). A deferred
   * commit survives the death of the process as soon as it returns; nobody may be told of it, and
   * nothing may be done because of it, before this resolves. Rejects when the fsync failed.
   * `withinMs`: nobody waits on it soon; another commit may cover it for up to that long before
   * the store syncs on its own.
   */
  synced(options?: { withinMs?: number }): Promise<void>;
  /** Move a pending request to a final status; only the first call wins. */
  resolveRequest(id: string, resolution: Resolution): Promise<ResolveResult>;
  /** Claim the right to perform an approved recommendation; false if already claimed or done. */
  claimExecution(id: string, at: number): Promise<boolean>;
  /** Record the outcome of a claimed execution. */
  completeExecution(id: string, outcome: { ok: boolean; result?: unknown; error?: { code: string; message: string } }, at: number): Promise<void>;
  /** Record that a committed changeset was undone; ALREADY_RESOLVED when it was not committed or is already undone. */
  markUndone(id: string, undone: { at: number; by: string; restored: number }): Promise<void>;

  // Runs
  insertRun(run: RunRecord): Promise<void>;
  updateRun(id: string, patch: Partial<Omit<RunRecord, 'id'>>): Promise<void>;
  getRun(id: string): Promise<RunRecord | undefined>;
  listRuns(filter?: RunFilter): Promise<RunRecord[]>;

  // Tokens
  insertToken(token: TokenRecord): Promise<void>;
  findTokenByHash(hash: string): Promise<TokenRecord | undefined>;
  listTokens(): Promise<TokenRecord[]>;
  revokeToken(id: string, at: number): Promise<TokenRecord | undefined>;

  // Agents (MCP clients; host/agents.ts)
  insertAgent(agent: AgentRecord): Promise<void>;
  findAgentByHash(hash: string): Promise<AgentRecord | undefined>;
  listAgents(): Promise<AgentRecord[]>;
  /** Idempotent (the first revocation time is kept); undefined when unknown. */
  revokeAgent(id: string, at: number): Promise<AgentRecord | undefined>;

  close(): Promise<void>;
}
