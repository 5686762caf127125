/**
 * The host's durable state behind one interface with two implementations: the embedded SQLite
 * store (sqlite-store.ts; one host per file, the default) and PostgreSQL (pg-store.ts; several hosts
 * on one database, docs/host-state.md). Methods are async because PostgreSQL is, even where SQLite
 * is synchronous.
 *
 * Concurrency contract: `resolveRequest`, `addApproval` and `claimExecution` are compare-and-set
 * operations — the first valid caller wins and later ones learn they lost — so a decision is
 * applied exactly once and an action is never performed twice, even across a crash.
 */
import type { Approval, Grant, Operator, RequestRecord, RequestStatus, RunRecord, TokenRecord } from '../model.js';
import type { AgentRecord } from './agents.js';

/**
 * One host process of a fleet sharing a store (several hosts on one PostgreSQL). `id` is new at
 * every start; the host beats its heart while it runs. A host whose heartbeat is older than the
 * fleet's dead-host timeout is reaped by whichever live host sees it first (`reapHost`, first
 * wins): its live runs end as crashed, its pending escalations close `run_gone`, and its approved
 * recommendations stay for any host to perform (the execution claim decides who).
 */
export interface HostRecord {
  id: string;
  hostname: string;
  pid: number;
  /** The host's HTTP base URL once listening (informational). */
  url?: string;
  startedAt: number;
  heartbeatAt: number;
  /** Closed cleanly. */
  stoppedAt?: number;
  /** Declared dead by another host (or by itself at the next start, for the SQLite store). */
  reapedAt?: number;
  reapedBy?: string;
}

/**
 * A change another connection committed, pushed to watchers: what lets an operator on any host see
 * every request of the fleet and a decision on one host resume the run waiting on another. The
 * watcher reads the record from the store (the notification carries no more than ids). `resync`:
 * notifications may have been missed (the connection to the database was lost and came back);
 * whoever keeps a view re-reads what it needs.
 */
export type StoreChange =
  | { type: 'request'; id: string; status: RequestStatus; hostId?: string }
  /** A grant or token changed; `kind` and `ref` (the grant's or token's id) when the store names them. */
  | { type: 'grants'; kind?: 'grant.added' | 'grant.revoked' | 'token.created' | 'token.revoked'; ref?: string }
  | { type: 'resync' };

/** A console session (host/console/sessions.ts), kept in the store so any host (and a restarted one) knows it. */
export interface SessionRecord {
  /** sha256 (hex) of the cookie value. */
  key: string;
  operator: Operator;
  /** sha256 (hex) of the operator token, to re-check revocation. */
  tokenHash: string;
  csrf: string;
  createdAt: number;
  lastSeenAt: number;
  expiresAt: number;
}

/**
 * A single-use secret with its operator: a WebSocket connection ticket (`ticket`) or a console
 * login code (`login-code`). Stored by the sha256 of the secret, never the secret itself.
 */
export interface OneTimeSecret {
  kind: 'ticket' | 'login-code';
  /** sha256 (hex) of the secret. */
  hash: string;
  operator: Operator;
  /** For login codes: the sha256 of the token the code stands for. */
  tokenHash?: string;
  expiresAt: number;
}

export interface GrantFilter {
  /** Only grants whose subject matches this digest or name. */
  subjectDigest?: string;
  subjectName?: string;
  /** Exclude revoked and expired grants (as of `now`). */
  activeAt?: number;
}

export interface RunFilter {
  status?: RunRecord['status'];
  /** Only runs of this host (RunRecord.hostId). */
  hostId?: string;
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
  listRequests(filter: { status?: RequestStatus; runId?: string; hostId?: string; limit?: number }): Promise<RequestRecord[]>;
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

  // Hosts (several hosts on one store; the SQLite store has one at a time, see host-lock.ts)
  /** Record a starting host. */
  registerHost(host: HostRecord): Promise<void>;
  /** Beat the host's heart; false when it was reaped meanwhile (it must stop: others ended its runs). */
  heartbeat(id: string, at: number): Promise<boolean>;
  /** Closed cleanly: its runs have ended, nothing of it is left to reap. */
  stopHost(id: string, at: number): Promise<void>;
  listHosts(): Promise<HostRecord[]>;
  /** Declare a host dead; true for the one caller that does it first (false: already reaped or stopped). */
  reapHost(id: string, by: string, at: number): Promise<boolean>;

  /**
   * Changes committed by other connections, as they commit (PostgreSQL: LISTEN/NOTIFY, sent in the
   * changing transaction). Changes this store object made itself are not echoed. The SQLite store
   * has no other writer of requests (one host per file) and never calls the listener.
   * Returns the unsubscribe function.
   */
  watch(listener: (change: StoreChange) => void): () => void;

  // Images: uploaded archives by digest, and which platform clients uploaded each (host/runs/image-store.ts)
  /** Store an archive under its digest; a later upload of the same digest replaces it (same code, maybe other signatures). */
  putImage(digest: string, bytes: Uint8Array, at: number): Promise<void>;
  getImage(digest: string): Promise<Buffer | undefined>;
  /** Record that a client (the sha256 of its name) uploaded `digest`; idempotent. */
  addImageClient(digest: string, clientHash: string): Promise<void>;
  hasImageClient(digest: string, clientHash: string): Promise<boolean>;

  // Console sessions, WebSocket tickets and login codes
  insertSession(session: SessionRecord): Promise<void>;
  getSession(key: string): Promise<SessionRecord | undefined>;
  /** Refresh the idle timer; false when the session is gone. */
  touchSession(key: string, at: number): Promise<boolean>;
  deleteSession(key: string): Promise<SessionRecord | undefined>;
  listSessions(): Promise<SessionRecord[]>;
  /** Delete sessions that expired (`expiresAt <= at` or idle since `idleBefore`) and one-time secrets past expiry; returns the deleted sessions. */
  sweepSessions(at: number, idleBefore: number): Promise<SessionRecord[]>;
  insertOneTimeSecret(secret: OneTimeSecret): Promise<void>;
  /** Consume a secret once: returns it (whatever its expiry; the caller checks) and deletes it; undefined when unknown or used. */
  takeOneTimeSecret(kind: OneTimeSecret['kind'], hash: string): Promise<OneTimeSecret | undefined>;

  close(): Promise<void>;

  // Documents: small durable texts by key (capability state: the mcp kind's accepted tools; documents.ts)
  /** The document and its version (1 on the first write, +1 on each). */
  getDocument(key: string): Promise<{ text: string; version: number } | undefined>;
  /**
   * Write a document. `expect` undefined: whatever is there; null: only if there is none yet; a
   * number: only if its version is still that. False when the condition did not hold.
   */
  putDocument(key: string, text: string, at: number, expect?: number | null): Promise<boolean>;
  /** Keys starting with `prefix`, sorted. */
  listDocuments(prefix: string): Promise<string[]>;
}
