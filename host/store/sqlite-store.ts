/**
 * The embedded Store: one SQLite file (better-sqlite3) in the host's data folder.
 *
 * Durability: WAL journal with `synchronous=FULL` by default — every committed transaction is
 * fsynced to the WAL before the call returns, so a decision, once acknowledged, survives SIGKILL
 * of the host *and* a power cut or kernel panic. (`NORMAL` also survives SIGKILL — the WAL is in
 * the OS page cache — but can lose the last commits on power loss; an approved payment whose
 * `claimExecution` was lost could then be performed twice. Measured cost of FULL on this ext4:
 * ~0.2 ms per commit, against a human decision that takes seconds.) `busy_timeout` lets a CLI
 * (`contained grant add`) write while the host runs.
 *
 * Group commit (wal-sync.ts): `insertRequest` and `addApproval` can be asked to commit without an
 * fsync of their own (`deferSync`); such a commit survives SIGKILL at once and a power cut once
 * `synced()` resolves, which its caller awaits before anyone is told or anything is done. The
 * request manager uses it so that an escalation pays one fsync (the call's intent, in the audit
 * log's batch, covers the approval written just before it) instead of three.
 *
 * Concurrency: `addApproval`, `resolveRequest`, `claimExecution`, `completeExecution` and the
 * revocations run in IMMEDIATE transactions (write lock taken before the read), so across
 * processes as well as within one, the first caller wins and the others learn they lost.
 *
 * Failure: every error is a ContainedError — `INTERNAL` for a corrupt row, a closed store or a
 * SQLite failure (the SQLite error is the `cause`), `INVALID_ARGUMENT` for a record that does not
 * match its schema or an id/name that already exists, `NOT_FOUND` where a method names a row that
 * does not exist and has no other way to say so.
 */
import { chmodSync, existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { ContainedError } from '../../runtime/errors.js';
import type { Approval, Grant, RequestRecord, RequestStatus, RunRecord, TokenRecord } from '../model.js';
import {
  checkRunPatch,
  columnFor,
  GRANT_COLUMNS,
  grantToRow,
  limitClause,
  HOST_COLUMNS,
  hostToRow,
  rowToHost,
  rowToSecret,
  rowToSession,
  SECRET_COLUMNS,
  secretToRow,
  SESSION_COLUMNS,
  sessionToRow,
  REQUEST_COLUMNS,
  requestToRow,
  type Row,
  RUN_COLUMNS,
  rowToGrant,
  rowToRequest,
  rowToRun,
  rowToToken,
  runToRow,
  TOKEN_COLUMNS,
  tokenToRow,
  toSql,
} from './rows.js';
import { AGENT_INSERT_SQL, type AgentRecord, agentToRow, rowToAgent } from './agents.js';
import { migrate } from './schema.js';
import { type WalSync, walSyncFor } from './wal-sync.js';
import type { ApprovalResult, GrantFilter, HostRecord, OneTimeSecret, Resolution, ResolveResult, RunFilter, SessionRecord, Store, StoreChange } from './store.js';

/** The host's data folder when none is configured. */
export const DEFAULT_DATA_DIR = './.contained';
/** File name of the store inside the data folder. */
export const STORE_FILE_NAME = 'contained.db';

/** `<dataDir>/contained.db`. */
export function defaultStorePath(dataDir: string = DEFAULT_DATA_DIR): string {
  return path.join(dataDir, STORE_FILE_NAME);
}

export interface SqliteStoreOptions {
  /** `full` (default): fsync every commit; `normal`: survives process death, not power loss. */
  synchronous?: 'full' | 'normal';
  /** Milliseconds to wait for another connection's write lock before failing. Default 5000. */
  busyTimeoutMs?: number;
  /** Clock for `schema_version.applied_at` (epoch ms). */
  now?: () => number;
}

function insertSql(table: string, cols: Array<{ col: string }>): string {
  return `INSERT INTO ${table} (${cols.map((c) => c.col).join(', ')}) VALUES (${cols.map((c) => `@${c.col}`).join(', ')})`;
}

const GRANT_INSERT_COLUMNS = [...GRANT_COLUMNS, { col: 'subject_digest' }, { col: 'subject_name' }, { col: 'subject_signer' }];

function toRow(names: readonly string[], values: readonly unknown[]): Row {
  const row: Row = {};
  for (let i = 0; i < names.length; i++) row[names[i] as string] = values[i];
  return row;
}

/** Open (creating folder, file and schema when missing) the store at `file`. */
export async function openSqliteStore(file: string, options: SqliteStoreOptions = {}): Promise<Store> {
  return SqliteStore.open(file, options);
}

export class SqliteStore implements Store {
  private closed = false;
  private readonly statements = new Map<string, Database.Statement>();
  private readonly readers = new Map<string, { statement: Database.Statement; names: string[] }>();

  /** The file's group commit (shared with the audit log); undefined when commits are not fsynced anyway (`synchronous=NORMAL`). */
  private readonly walSync: WalSync | undefined;

  private constructor(
    private readonly db: Database.Database,
    file: string,
    synchronous: 'full' | 'normal',
  ) {
    this.walSync = synchronous === 'full' ? walSyncFor(file) : undefined;
  }

  /**
   * Run a write transaction without an fsync of its own (synchronous=NORMAL for it: the WAL is
   * written, not synced), then count it with the file's group commit; `synced()` tells when it is
   * durable. Only where the caller waits for `synced()` before anyone learns of the write.
   */
  private deferred<T>(defer: boolean | undefined, f: () => T): T {
    const walSync = this.walSync;
    if (!defer || !walSync) return f();
    this.stmt('PRAGMA synchronous = NORMAL').run();
    let result: T;
    try {
      result = f();
    } finally {
      this.stmt('PRAGMA synchronous = FULL').run();
    }
    walSync.deferred();
    return result;
  }

  async synced(options: { withinMs?: number } = {}): Promise<void> {
    if (this.closed) throw new ContainedError('INTERNAL', 'store: synced on a closed store');
    await this.walSync?.durable(options.withinMs);
  }

  /** Prepared once per SQL text. */
  private stmt(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  /**
   * A reading statement in raw mode plus its column names: rows come back as arrays and become
   * objects here, which is several times faster than better-sqlite3 building wide row objects
   * (the operator snapshot reads every pending request).
   */
  private reader(sql: string): { statement: Database.Statement; names: string[] } {
    let reader = this.readers.get(sql);
    if (!reader) {
      const statement = this.db.prepare(sql).raw(true);
      reader = { statement, names: statement.columns().map((c) => c.name) };
      this.readers.set(sql, reader);
    }
    return reader;
  }

  static open(file: string, options: SqliteStoreOptions = {}): SqliteStore {
    const now = options.now ?? Date.now;
    // A data folder passed where the file is expected would otherwise be a confusing CANTOPEN.
    if (existsSync(file) && statSync(file).isDirectory()) {
      throw new ContainedError('INTERNAL', `store: ${file} is a folder; open the file inside it (defaultStorePath(dataDir) = ${defaultStorePath(file)})`);
    }
    const isNew = !existsSync(file);
    let db: Database.Database;
    try {
      // Owner-only: the store holds token hashes and every decision.
      mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 });
      db = new Database(file, { timeout: options.busyTimeoutMs ?? 5000 });
    } catch (error) {
      throw new ContainedError('INTERNAL', `store: cannot open ${file}: ${(error as Error).message}`, { cause: error });
    }
    try {
      if (isNew) chmodSync(file, 0o600);
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (String(mode).toLowerCase() !== 'wal') throw new ContainedError('INTERNAL', `store: ${file} cannot use WAL mode (got ${String(mode)})`);
      db.pragma(`synchronous = ${options.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`);
      // The schema is ours; nothing in the file may run code or widen itself.
      db.pragma('trusted_schema = OFF');
      migrate(db, now());
    } catch (error) {
      db.close();
      if (error instanceof ContainedError) throw error;
      throw new ContainedError('INTERNAL', `store: cannot prepare ${file}: ${(error as Error).message}`, { cause: error });
    }
    return new SqliteStore(db, file, options.synchronous ?? 'full');
  }

  /** Run `f` with SQLite errors turned into ContainedErrors. */
  private guard<T>(op: string, f: () => T): T {
    if (this.closed) throw new ContainedError('INTERNAL', `store: ${op} on a closed store`);
    try {
      return f();
    } catch (error) {
      if (error instanceof ContainedError) throw error;
      const code = (error as { code?: unknown }).code;
      if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new ContainedError('INVALID_ARGUMENT', `store: ${op}: already exists (${(error as Error).message})`, {
          cause: error,
          data: { reason: 'duplicate' },
        });
      }
      throw new ContainedError('INTERNAL', `store: ${op} failed${typeof code === 'string' ? ` (${code})` : ''}`, { cause: error });
    }
  }

  private get<T>(sql: string, params: unknown[], map: (row: Row) => T): T | undefined {
    const { statement, names } = this.reader(sql);
    const values = statement.get(...params) as unknown[] | undefined;
    return values === undefined ? undefined : map(toRow(names, values));
  }

  private all<T>(sql: string, params: unknown[], map: (row: Row) => T): T[] {
    const { statement, names } = this.reader(sql);
    return (statement.all(...params) as unknown[][]).map((values) => map(toRow(names, values)));
  }

  // Grants -----------------------------------------------------------------------------------

  async insertGrant(grant: Grant): Promise<void> {
    this.guard('insertGrant', () => {
      this.stmt(insertSql('grants', GRANT_INSERT_COLUMNS)).run(grantToRow(grant));
    });
  }

  async getGrant(id: string): Promise<Grant | undefined> {
    return this.guard('getGrant', () => this.get('SELECT * FROM grants WHERE id = ?', [id], rowToGrant));
  }

  async listGrants(filter: GrantFilter = {}): Promise<Grant[]> {
    return this.guard('listGrants', () => {
      const where: string[] = [];
      const params: unknown[] = [];
      const subject: string[] = [];
      if (filter.subjectDigest !== undefined) {
        subject.push('subject_digest = ?');
        params.push(filter.subjectDigest);
      }
      if (filter.subjectName !== undefined) {
        subject.push('subject_name = ?');
        params.push(filter.subjectName);
      }
      if (subject.length > 0) where.push(`(${subject.join(' OR ')})`);
      if (filter.activeAt !== undefined) {
        where.push('revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)');
        params.push(filter.activeAt);
      }
      const clause = where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '';
      return this.all(`SELECT * FROM grants${clause} ORDER BY created_at, id`, params, rowToGrant);
    });
  }

  async revokeGrant(id: string, by: string, reason: string, at: number): Promise<Grant | undefined> {
    return this.guard('revokeGrant', () =>
      this.db
        .transaction(() => {
          // Idempotent: the first revocation's time, author and reason are kept.
          this.stmt('UPDATE grants SET revoked_at = ?, revoked_by = ?, revoke_reason = ? WHERE id = ? AND revoked_at IS NULL').run(at, by, reason, id);
          return this.get('SELECT * FROM grants WHERE id = ?', [id], rowToGrant);
        })
        .immediate(),
    );
  }

  /**
   * The `audit_inbox` AUTOINCREMENT sequence: the schema's triggers (schema.ts, v2) insert one inbox
   * row in the same transaction as every grant insert, grant revocation, token insert and token
   * revocation, whoever makes it, and nothing else inserts there; the audit writer deletes the rows
   * it drains, which leaves the sequence alone. One indexed read of a tiny table (~1 µs).
   */
  async changeCounter(): Promise<number> {
    return this.guard('changeCounter', () => {
      const seq = this.stmt("SELECT seq FROM sqlite_sequence WHERE name = 'audit_inbox'").pluck().get() as number | undefined;
      return seq ?? 0;
    });
  }

  // Requests ---------------------------------------------------------------------------------

  async insertRequest(request: RequestRecord, options: { deferSync?: boolean } = {}): Promise<void> {
    this.guard('insertRequest', () => {
      const row = requestToRow(request);
      this.deferred(options.deferSync, () => this.stmt(insertSql('requests', REQUEST_COLUMNS)).run(row));
    });
  }

  async getRequest(id: string): Promise<RequestRecord | undefined> {
    return this.guard('getRequest', () => this.get('SELECT * FROM requests WHERE id = ?', [id], rowToRequest));
  }

  async listRequests(filter: { status?: RequestStatus; runId?: string; hostId?: string; limit?: number }): Promise<RequestRecord[]> {
    return this.guard('listRequests', () => {
      const where: string[] = [];
      const params: unknown[] = [];
      if (filter.status !== undefined) {
        where.push('status = ?');
        params.push(filter.status);
      }
      if (filter.runId !== undefined) {
        where.push('run_id = ?');
        params.push(filter.runId);
      }
      if (filter.hostId !== undefined) {
        where.push('host_id = ?');
        params.push(filter.hostId);
      }
      const clause = where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '';
      const limit = limitClause(filter.limit);
      return this.all(`SELECT * FROM requests${clause} ORDER BY created_at, id${limit}`, params, rowToRequest);
    });
  }

  /**
   * First-wins append. Refused with ALREADY_RESOLVED when the request is no longer pending or is
   * past its `expiresAt` (as of `approval.at`, even before anyone marked it expired), and with
   * DUPLICATE_APPROVER when this operator already approved the same `argsDigest`, with
   * STALE_REQUEST when `expectApprovals` is given and other approvals landed since the caller read
   * the request. Approvals count per `argsDigest`: `resolve` approves the request when those of the
   * new approval's digest reach `approvalsRequired`, and `resolvedBy` names just them. Approvals
   * beyond that are accepted (so a request left pending with enough approvals by a crash before
   * `resolveRequest` can still be completed); the first `resolveRequest` decides.
   */
  async addApproval(id: string, approval: Approval, options: { resolve?: boolean; expectApprovals?: number; deferSync?: boolean } = {}): Promise<ApprovalResult> {
    return this.guard('addApproval', () =>
      this.deferred(options.deferSync, () => this.db
        .transaction((): ApprovalResult => {
          const request = this.get('SELECT * FROM requests WHERE id = ?', [id], rowToRequest);
          if (!request) return { ok: false, code: 'NOT_FOUND' };
          if (request.status !== 'pending' || approval.at >= request.expiresAt) {
            return { ok: false, code: 'ALREADY_RESOLVED', request };
          }
          if (options.expectApprovals !== undefined && request.approvals.length !== options.expectApprovals) return { ok: false, code: 'STALE_REQUEST', request };
          const same = (a: Approval): boolean => a.argsDigest === approval.argsDigest;
          if (request.approvals.some((a) => a.operator === approval.operator && same(a))) return { ok: false, code: 'DUPLICATE_APPROVER', request };
          const approvals = [...request.approvals, approval];
          const updated = { ...request, approvals };
          requestToRow(updated); // validates the approval before it is written
          this.stmt("UPDATE requests SET approvals = ? WHERE id = ? AND status = 'pending'").run(JSON.stringify(approvals), id);
          const counted = approvals.filter(same);
          if (options.resolve === true && counted.length >= request.approvalsRequired) {
            const by = counted.map((a) => a.operator);
            this.stmt("UPDATE requests SET status = 'approved', resolved_at = ?, resolved_by = ? WHERE id = ? AND status = 'pending'").run(approval.at, JSON.stringify(by), id);
            const resolved = this.get('SELECT * FROM requests WHERE id = ?', [id], rowToRequest);
            return { ok: true, request: resolved ?? updated };
          }
          return { ok: true, request: updated };
        })
        .immediate()),
    );
  }

  /**
   * First-wins transition out of `pending`. `approved` and `denied` are refused (ALREADY_RESOLVED)
   * once `resolution.at` is past the request's `expiresAt`; `expired` and `run_gone` are not.
   */
  async resolveRequest(id: string, resolution: Resolution): Promise<ResolveResult> {
    return this.guard('resolveRequest', () =>
      this.db
        .transaction((): ResolveResult => {
          const late = resolution.status === 'approved' || resolution.status === 'denied' ? resolution.at : Number.MIN_SAFE_INTEGER;
          const changed = this
            .stmt(
              "UPDATE requests SET status = ?, resolved_at = ?, resolved_by = ?, deny_reason = ? WHERE id = ? AND status = 'pending' AND expires_at > ?",
            )
            .run(
              resolution.status,
              resolution.at,
              resolution.by === undefined ? null : JSON.stringify(resolution.by),
              resolution.denyReason ?? null,
              id,
              late,
            ).changes;
          const request = this.get('SELECT * FROM requests WHERE id = ?', [id], rowToRequest);
          if (!request) return { ok: false, code: 'NOT_FOUND' };
          return changed === 1 ? { ok: true, request } : { ok: false, code: 'ALREADY_RESOLVED', request };
        })
        .immediate(),
    );
  }

  /** First-wins claim of an approved request's action; false when unknown, not approved, claimed or done. */
  async claimExecution(id: string, at: number): Promise<boolean> {
    return this.guard('claimExecution', () => {
      const execution = JSON.stringify({ state: 'claimed', at });
      const changed = this.stmt("UPDATE requests SET execution = ? WHERE id = ? AND status = 'approved' AND execution IS NULL")
        .run(execution, id).changes;
      return changed === 1;
    });
  }

  /** Record the outcome of a claimed execution; NOT_FOUND if unknown, ALREADY_RESOLVED if not claimed or already done. */
  async completeExecution(id: string, outcome: { ok: boolean; result?: unknown; error?: { code: string; message: string } }, at: number): Promise<void> {
    this.guard('completeExecution', () =>
      this.db
        .transaction(() => {
          const request = this.get('SELECT * FROM requests WHERE id = ?', [id], rowToRequest);
          if (!request) throw new ContainedError('NOT_FOUND', `request ${id} does not exist`);
          if (request.execution?.state !== 'claimed') {
            throw new ContainedError('ALREADY_RESOLVED', `request ${id}: execution is ${request.execution?.state ?? 'not claimed'}`);
          }
          const execution = {
            state: 'done' as const,
            at,
            ok: outcome.ok,
            ...(outcome.result === undefined ? {} : { result: outcome.result }),
            ...(outcome.error === undefined ? {} : { error: { code: outcome.error.code, message: outcome.error.message } }),
          };
          requestToRow({ ...request, execution });
          this.stmt('UPDATE requests SET execution = ? WHERE id = ?').run(JSON.stringify(execution), id);
        })
        .immediate(),
    );
  }

  async markUndone(id: string, undone: { at: number; by: string; restored: number }): Promise<void> {
    this.guard('markUndone', () =>
      this.db
        .transaction(() => {
          const request = this.get('SELECT * FROM requests WHERE id = ?', [id], rowToRequest);
          if (!request) throw new ContainedError('NOT_FOUND', `request ${id} does not exist`);
          const execution = request.execution;
          if (execution?.state !== 'done' || execution.ok !== true) throw new ContainedError('ALREADY_RESOLVED', `request ${id} was not committed`);
          if (execution.undone !== undefined) throw new ContainedError('ALREADY_RESOLVED', `request ${id} was already undone by ${execution.undone.by}`);
          const next = { ...execution, undone: { at: undone.at, by: undone.by, restored: undone.restored } };
          requestToRow({ ...request, execution: next });
          this.stmt('UPDATE requests SET execution = ? WHERE id = ?').run(JSON.stringify(next), id);
        })
        .immediate(),
    );
  }

  // Runs -------------------------------------------------------------------------------------

  async insertRun(run: RunRecord): Promise<void> {
    this.guard('insertRun', () => {
      this.stmt(insertSql('runs', RUN_COLUMNS)).run(runToRow(run));
    });
  }

  /** Set the fields present in `patch` (keys whose value is undefined are left alone); NOT_FOUND if unknown. */
  async updateRun(id: string, patch: Partial<Omit<RunRecord, 'id'>>): Promise<void> {
    this.guard('updateRun', () => {
      const clean = checkRunPatch(patch as Record<string, unknown>);
      const sets: string[] = [];
      const params: unknown[] = [];
      for (const [key, value] of Object.entries(clean)) {
        const column = columnFor(RUN_COLUMNS, key);
        if (!column) throw new ContainedError('INVALID_ARGUMENT', `store: runs have no field "${key}"`);
        sets.push(`${column.col} = ?`);
        params.push(toSql(column, value));
      }
      const sql = sets.length > 0 ? `UPDATE runs SET ${sets.join(', ')} WHERE id = ?` : 'UPDATE runs SET id = id WHERE id = ?';
      if (this.stmt(sql).run(...params, id).changes !== 1) throw new ContainedError('NOT_FOUND', `run ${id} does not exist`);
    });
  }

  async getRun(id: string): Promise<RunRecord | undefined> {
    return this.guard('getRun', () => this.get('SELECT * FROM runs WHERE id = ?', [id], rowToRun));
  }

  /** Newest first. */
  async listRuns(filter: RunFilter = {}): Promise<RunRecord[]> {
    return this.guard('listRuns', () => {
      const params: unknown[] = [];
      const where: string[] = [];
      if (filter.status !== undefined) {
        where.push('status = ?');
        params.push(filter.status);
      }
      if (filter.hostId !== undefined) {
        where.push('host_id = ?');
        params.push(filter.hostId);
      }
      const clause = where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '';
      const limit = limitClause(filter.limit);
      return this.all(`SELECT * FROM runs${clause} ORDER BY created_at DESC, id DESC${limit}`, params, rowToRun);
    });
  }

  // Tokens -----------------------------------------------------------------------------------

  /** INVALID_ARGUMENT (`data.reason: 'duplicate'`) when the id, the hash, or the name of an active token exists. */
  async insertToken(token: TokenRecord): Promise<void> {
    this.guard('insertToken', () => {
      this.stmt(insertSql('tokens', TOKEN_COLUMNS)).run(tokenToRow(token));
    });
  }

  /** The token with this hash, revoked or not (the verifier refuses revoked ones). */
  async findTokenByHash(hash: string): Promise<TokenRecord | undefined> {
    return this.guard('findTokenByHash', () => this.get('SELECT * FROM tokens WHERE hash = ?', [hash], rowToToken));
  }

  async listTokens(): Promise<TokenRecord[]> {
    return this.guard('listTokens', () => this.all('SELECT * FROM tokens ORDER BY created_at, id', [], rowToToken));
  }

  /** Idempotent (the first revocation time is kept); undefined when unknown. */
  async revokeToken(id: string, at: number): Promise<TokenRecord | undefined> {
    return this.guard('revokeToken', () =>
      this.db
        .transaction(() => {
          this.stmt('UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(at, id);
          return this.get('SELECT * FROM tokens WHERE id = ?', [id], rowToToken);
        })
        .immediate(),
    );
  }

  // Agents -----------------------------------------------------------------------------------

  /** INVALID_ARGUMENT (`data.reason: 'duplicate'`) when the id, the hash, or the name of an active agent exists. */
  async insertAgent(agent: AgentRecord): Promise<void> {
    this.guard('insertAgent', () => {
      this.stmt(AGENT_INSERT_SQL).run(agentToRow(agent));
    });
  }

  /** The agent with this token hash, revoked or not (the verifier refuses revoked ones). */
  async findAgentByHash(hash: string): Promise<AgentRecord | undefined> {
    return this.guard('findAgentByHash', () => this.get('SELECT * FROM agents WHERE hash = ?', [hash], rowToAgent));
  }

  async listAgents(): Promise<AgentRecord[]> {
    return this.guard('listAgents', () => this.all('SELECT * FROM agents ORDER BY created_at, id', [], rowToAgent));
  }

  async revokeAgent(id: string, at: number): Promise<AgentRecord | undefined> {
    return this.guard('revokeAgent', () =>
      this.db
        .transaction(() => {
          this.stmt('UPDATE agents SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(at, id);
          return this.get('SELECT * FROM agents WHERE id = ?', [id], rowToAgent);
        })
        .immediate(),
    );
  }

  // Hosts ------------------------------------------------------------------------------------

  async registerHost(host: HostRecord): Promise<void> {
    this.guard('registerHost', () => {
      this.stmt(insertSql('hosts', HOST_COLUMNS)).run(hostToRow(host));
    });
  }

  async heartbeat(id: string, at: number): Promise<boolean> {
    return this.guard('heartbeat', () => this.stmt('UPDATE hosts SET heartbeat_at = ? WHERE id = ? AND reaped_at IS NULL AND stopped_at IS NULL').run(at, id).changes === 1);
  }

  async stopHost(id: string, at: number): Promise<void> {
    this.guard('stopHost', () => {
      this.stmt('UPDATE hosts SET stopped_at = ? WHERE id = ? AND stopped_at IS NULL AND reaped_at IS NULL').run(at, id);
    });
  }

  async listHosts(): Promise<HostRecord[]> {
    return this.guard('listHosts', () => this.all('SELECT * FROM hosts ORDER BY started_at, id', [], rowToHost));
  }

  async reapHost(id: string, by: string, at: number): Promise<boolean> {
    return this.guard('reapHost', () => this.stmt('UPDATE hosts SET reaped_at = ?, reaped_by = ? WHERE id = ? AND reaped_at IS NULL AND stopped_at IS NULL').run(at, by, id).changes === 1);
  }

  /**
   * Never calls the listener: one host per SQLite file (host-lock.ts), so there is no other host
   * whose changes to tell; CLI writes (grants, tokens) are caught by `changeCounter` instead.
   */
  watch(_listener: (change: StoreChange) => void): () => void {
    return () => {};
  }

  // Images -----------------------------------------------------------------------------------

  async getDocument(key: string): Promise<{ text: string; version: number } | undefined> {
    return this.guard('getDocument', () => this.stmt('SELECT text, version FROM documents WHERE key = ?').get(key) as { text: string; version: number } | undefined);
  }

  async putDocument(key: string, text: string, at: number, expect?: number | null): Promise<boolean> {
    return this.guard('putDocument', () => {
      const changes =
        expect === undefined
          ? this.stmt('INSERT INTO documents (key, text, version, updated_at) VALUES (?, ?, 1, ?) ON CONFLICT (key) DO UPDATE SET text = excluded.text, version = documents.version + 1, updated_at = excluded.updated_at').run(key, text, at).changes
          : expect === null
            ? this.stmt('INSERT INTO documents (key, text, version, updated_at) VALUES (?, ?, 1, ?) ON CONFLICT (key) DO NOTHING').run(key, text, at).changes
            : this.stmt('UPDATE documents SET text = ?, version = version + 1, updated_at = ? WHERE key = ? AND version = ?').run(text, at, key, expect).changes;
      return changes === 1;
    });
  }

  async listDocuments(prefix: string): Promise<string[]> {
    return this.guard('listDocuments', () => this.stmt('SELECT key FROM documents WHERE substr(key, 1, length(?)) = ? ORDER BY key').pluck().all(prefix, prefix) as string[]);
  }

  async putImage(digest: string, bytes: Uint8Array, at: number): Promise<void> {
    this.guard('putImage', () => {
      this.stmt('INSERT INTO images (digest, bytes, stored_at) VALUES (?, ?, ?) ON CONFLICT (digest) DO UPDATE SET bytes = excluded.bytes, stored_at = excluded.stored_at').run(digest, Buffer.from(bytes), at);
    });
  }

  async getImage(digest: string): Promise<Buffer | undefined> {
    return this.guard('getImage', () => this.stmt('SELECT bytes FROM images WHERE digest = ?').pluck().get(digest) as Buffer | undefined);
  }

  async addImageClient(digest: string, clientHash: string): Promise<void> {
    this.guard('addImageClient', () => {
      this.stmt('INSERT OR IGNORE INTO image_clients (digest, client) VALUES (?, ?)').run(digest, clientHash);
    });
  }

  async hasImageClient(digest: string, clientHash: string): Promise<boolean> {
    return this.guard('hasImageClient', () => this.stmt('SELECT 1 FROM image_clients WHERE digest = ? AND client = ?').pluck().get(digest, clientHash) !== undefined);
  }

  // Console sessions and one-time secrets ----------------------------------------------------

  async insertSession(session: SessionRecord): Promise<void> {
    this.guard('insertSession', () => {
      this.stmt(insertSql('sessions', SESSION_COLUMNS)).run(sessionToRow(session));
    });
  }

  async getSession(key: string): Promise<SessionRecord | undefined> {
    return this.guard('getSession', () => this.get('SELECT * FROM sessions WHERE key = ?', [key], rowToSession));
  }

  async touchSession(key: string, at: number): Promise<boolean> {
    return this.guard('touchSession', () => this.stmt('UPDATE sessions SET last_seen_at = MAX(last_seen_at, ?) WHERE key = ?').run(at, key).changes === 1);
  }

  async deleteSession(key: string): Promise<SessionRecord | undefined> {
    return this.guard('deleteSession', () =>
      this.db
        .transaction(() => {
          const session = this.get('SELECT * FROM sessions WHERE key = ?', [key], rowToSession);
          if (session) this.stmt('DELETE FROM sessions WHERE key = ?').run(key);
          return session;
        })
        .immediate(),
    );
  }

  async listSessions(): Promise<SessionRecord[]> {
    return this.guard('listSessions', () => this.all('SELECT * FROM sessions ORDER BY created_at, key', [], rowToSession));
  }

  async sweepSessions(at: number, idleBefore: number): Promise<SessionRecord[]> {
    return this.guard('sweepSessions', () =>
      this.db
        .transaction(() => {
          const gone = this.all('SELECT * FROM sessions WHERE expires_at <= ? OR last_seen_at < ? ORDER BY created_at, key', [at, idleBefore], rowToSession);
          this.stmt('DELETE FROM sessions WHERE expires_at <= ? OR last_seen_at < ?').run(at, idleBefore);
          this.stmt('DELETE FROM one_time_secrets WHERE expires_at <= ?').run(at);
          return gone;
        })
        .immediate(),
    );
  }

  async insertOneTimeSecret(secret: OneTimeSecret): Promise<void> {
    this.guard('insertOneTimeSecret', () => {
      this.stmt(insertSql('one_time_secrets', SECRET_COLUMNS)).run(secretToRow(secret));
    });
  }

  async takeOneTimeSecret(kind: OneTimeSecret['kind'], hash: string): Promise<OneTimeSecret | undefined> {
    return this.guard('takeOneTimeSecret', () =>
      this.db
        .transaction(() => {
          const secret = this.get('SELECT * FROM one_time_secrets WHERE kind = ? AND hash = ?', [kind, hash], rowToSecret);
          if (secret) this.stmt('DELETE FROM one_time_secrets WHERE kind = ? AND hash = ?').run(kind, hash);
          return secret;
        })
        .immediate(),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
