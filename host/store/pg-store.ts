/**
 * The shared Store: one PostgreSQL database several hosts use at once (docs/host-state.md,
 * "Several hosts"). Schema, migrations and triggers are in pg/schema.ts; rows are mapped and
 * validated by the same code as SQLite's (rows.ts, agents.ts), so a corrupt row is INTERNAL with
 * `data: { table, id }` here too.
 *
 * Durability: a call returns after PostgreSQL's COMMIT, which (with the server's default
 * `synchronous_commit = on`) has flushed the WAL. So `insertRequest`/`addApproval` ignore
 * `deferSync` and `synced()` resolves at once: there is no deferred commit to wait for.
 *
 * Concurrency: each store object has its own pool; several hosts (and CLIs) have several pools on
 * one database. Compare-and-set operations are single conditional `UPDATE … RETURNING` statements
 * (`resolveRequest`, `claimExecution`, `heartbeat`, `reapHost`, revocations) or transactions that
 * read the row with `SELECT … FOR UPDATE` first (`addApproval`, `completeExecution`, `markUndone`);
 * under READ COMMITTED a racer blocks on the row lock and then re-checks the winner's committed
 * row, so exactly one caller wins across every host. `takeOneTimeSecret` is a
 * `DELETE … RETURNING`: one taker. `changeCounter` reads a one-row counter the grant/token
 * triggers increment in the changing transaction (exactly one per committed change, any writer).
 *
 * Notifications (`watch`): the triggers send `pg_notify('contained_changes', …)` in the changing
 * transaction (delivered on COMMIT) for every request inserted or updated and every grant/token
 * change, tagged with the `contained.origin` setting each store object sets on its own connections
 * (a random id), so a store object never hears its own changes. One dedicated connection LISTENs,
 * from the first `watch` on; when it drops it reconnects with backoff (100 ms doubling to 2 s) and,
 * once listening again, tells every listener `resync` (notifications in the gap are lost).
 *
 * Failure: connection failures (refused, reset, server shutting down, `08xxx`, `57P0x`, the pool's
 * connect timeout, a statement or query timeout) are `STORE_UNAVAILABLE` with `data.reason` —
 * never a hang: connecting gives up after `connectTimeoutMs`, a statement after `queryTimeoutMs`.
 * Connections the server closed are dropped by the pool (its `error` event is handled, so an idle
 * connection's termination never crashes the process) and new ones are made on the next call.
 * A call whose connection broke *after* it was made (a restart mid-call) is finished once on a new
 * connection: reads and idempotent writes are repeated; other writes first read back whether they
 * landed before the break (an insert's row, this resolution, this approval, this reap…) and are
 * made again only if not — `claimExecution` too: each claim writes a claim id of its own
 * (`requests.claim_id`, never shown), so reading it back tells a claim that landed from another
 * host's, and the action is performed exactly once. A refused or timed-out connect is not retried: the server is down, the caller hears so at once.
 * `INVALID_ARGUMENT` (`data.reason: 'duplicate'`) for an id/name/hash that exists; `INTERNAL` for a
 * closed store or anything else the server refused (its error is the `cause`).
 *
 * Beside this store, in the same database: the audit chain (host/audit/log.ts), the trust tables
 * (host/trust/pg-tables.ts), passkeys (credentials.ts) and the notification outbox.
 */
import { randomBytes } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import pg from 'pg';
import type { Logger } from 'pino';
import { ContainedError } from '../../runtime/errors.js';
import type { Approval, Grant, RequestRecord, RequestStatus, RunRecord, TokenRecord } from '../model.js';
import { type AgentRecord, agentToRow, rowToAgent } from './agents.js';
import { CHANGES_CHANNEL, migratePg, ORIGIN_SETTING } from './pg/schema.js';
import {
  checkRunPatch,
  columnFor,
  GRANT_COLUMNS,
  grantToRow,
  limitClause,
  HOST_COLUMNS,
  hostToRow,
  REQUEST_COLUMNS,
  requestToRow,
  type Row,
  rowToGrant,
  rowToHost,
  rowToRequest,
  rowToRun,
  rowToSecret,
  rowToSession,
  rowToToken,
  RUN_COLUMNS,
  runToRow,
  SECRET_COLUMNS,
  secretToRow,
  SESSION_COLUMNS,
  sessionToRow,
  TOKEN_COLUMNS,
  tokenToRow,
  toSql,
} from './rows.js';
import { redactUrl } from './store-location.js';
import type { ApprovalResult, GrantFilter, HostRecord, OneTimeSecret, Resolution, ResolveResult, RunFilter, SessionRecord, Store, StoreChange } from './store.js';

export interface PgStoreOptions {
  /** Clock for `schema_version.applied_at` (epoch ms). */
  now?: () => number;
  /** Connections in this store object's pool. Default 10. */
  poolSize?: number;
  logger?: Logger;
  /** Give up connecting after this long (STORE_UNAVAILABLE). Default 5 000. */
  connectTimeoutMs?: number;
  /** Give up on a statement after this long (server `statement_timeout` and client timeout; STORE_UNAVAILABLE). Default 30 000. */
  queryTimeoutMs?: number;
}

const INT8_OID = 20;

/** BIGINT (epoch ms, counters: far below 2^53) as JS numbers, like SQLite's rows; per pool, not global. */
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

const RECONNECT_FIRST_MS = 100;
const RECONNECT_MAX_MS = 2_000;

/** Driver error codes and messages that mean "the database cannot be reached", not "it refused". */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED',
  // too many connections; cannot connect now (server starting, in recovery); the database does not exist; authentication refused
  '53300', '57P03', '3D000', '28000', '28P01',
]);
const CONNECTION_MESSAGES = [/timeout exceeded when trying to connect/i, /connection terminated/i, /query read timeout/i, /not queryable/i, /connection timeout/i, /Client was closed/i];

/** `data.reason` of a connection failure, or undefined when the error is not one. */
export function unavailableReason(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string') {
    if (code === '57014') return 'timeout';
    if (CONNECTION_CODES.has(code) || /^08/.test(code) || /^57P0[123]$/.test(code)) return code;
  }
  const message = error instanceof Error ? error.message : '';
  if (/timeout exceeded when trying to connect|connection timeout/i.test(message)) return 'connect-timeout';
  if (/query read timeout/i.test(message)) return 'timeout';
  if (CONNECTION_MESSAGES.some((re) => re.test(message))) return 'connection-lost';
  return undefined;
}

const GRANT_CHANGE_KINDS = ['grant.added', 'grant.revoked', 'token.created', 'token.revoked'] as const;

const insertSql = (table: string, cols: readonly string[]): string => `INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')})`;
const colNames = (cols: Array<{ col: string }>): string[] => cols.map((c) => c.col);

const GRANT_INSERT = colNames([...GRANT_COLUMNS, { col: 'subject_digest' }, { col: 'subject_name' }, { col: 'subject_signer' }]);
const AGENT_INSERT = ['id', 'name', 'subject', 'hash', 'created_at', 'created_by', 'revoked_at'];

/** WHERE clause builder with PostgreSQL's numbered parameters. */
class Where {
  readonly parts: string[] = [];
  readonly params: unknown[] = [];
  /** `sql` with `?` standing for `value`. */
  add(sql: string, ...values: unknown[]): void {
    this.parts.push(sql.replace(/\?/g, () => `$${this.params.push(values.shift())}`));
  }
  get clause(): string {
    return this.parts.length > 0 ? ` WHERE ${this.parts.join(' AND ')}` : '';
  }
}

/** Equal as stored: a value read back against the one written (key order and undefined members aside). */
function sameJson(stored: unknown, written: unknown): boolean {
  return isDeepStrictEqual(stored, written === undefined ? undefined : JSON.parse(JSON.stringify(written)));
}

type Query = (sql: string, params?: unknown[]) => Promise<Row[]>;

/** Open (creating or migrating the schema) the PostgreSQL store at `url`. */
export async function openPgStore(url: string, options: PgStoreOptions = {}): Promise<Store> {
  return PgStore.open(url, options);
}

export class PgStore implements Store {
  private closing: Promise<void> | undefined;
  private readonly listeners = new Set<(change: StoreChange) => void>();
  private listener: pg.Client | undefined;
  private listening = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectDelay = RECONNECT_FIRST_MS;
  /** The LISTEN connection was lost or could not be made since `watch` began: the next LISTEN owes the listeners a `resync`. */
  private owesResync = false;
  /** Errors of calls whose connection broke after it was made (`call` may finish them). */
  private readonly lostMidway = new WeakSet<ContainedError>();
  /** Claims made by this object (part of each claim id). */
  private claims = 0;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly config: pg.ClientConfig,
    /** This store object's changes carry it (`contained.origin`); its listener skips them. */
    readonly origin: string,
    private readonly shownUrl: string,
    private readonly log: Logger | undefined,
  ) {}

  static async open(url: string, options: PgStoreOptions = {}): Promise<PgStore> {
    const now = options.now ?? Date.now;
    const shownUrl = redactUrl(url);
    const origin = randomBytes(12).toString('hex');
    const queryTimeoutMs = options.queryTimeoutMs ?? 30_000;
    const config: pg.ClientConfig = {
      connectionString: url,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
      query_timeout: queryTimeoutMs + 1_000,
      statement_timeout: queryTimeoutMs,
      // A connection a network failure left half-open is noticed within about a minute.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      application_name: 'contained-host',
      types: TYPES,
    };
    const pool = new pg.Pool({ ...config, max: options.poolSize ?? 10, idleTimeoutMillis: 30_000 });
    // A connection the server closes while idle (restart, failover) is dropped by the pool and
    // reported here; unhandled, the event would crash the process.
    pool.on('error', (error) => options.logger?.warn({ err: error.message, store: shownUrl }, 'store: a PostgreSQL connection failed'));
    // Every connection of this object tags the changes it makes (the triggers read the setting,
    // pg/schema.ts). Queued before any query of the caller that asked for the connection.
    pool.on('connect', (client) => {
      client.query('SELECT set_config($1, $2, false)', [ORIGIN_SETTING, origin]).catch(() => undefined);
    });
    const store = new PgStore(pool, config, origin, shownUrl, options.logger);
    try {
      await store.withClient('open', async (client) => {
        await migratePg(client, now());
      });
    } catch (error) {
      await pool.end().catch(() => undefined);
      throw error;
    }
    return store;
  }

  /** A driver error as a ContainedError (see the top comment). */
  private toError(op: string, error: unknown): ContainedError {
    if (error instanceof ContainedError) return error;
    const code = (error as { code?: unknown }).code;
    const message = error instanceof Error ? error.message : String(error);
    if (code === '23505') {
      return new ContainedError('INVALID_ARGUMENT', `store: ${op}: already exists (${message})`, { cause: error, data: { reason: 'duplicate' } });
    }
    const reason = unavailableReason(error);
    if (reason !== undefined) {
      return new ContainedError('STORE_UNAVAILABLE', `store: ${op}: PostgreSQL unavailable (${this.shownUrl}): ${message}`, { cause: error, data: { reason } });
    }
    return new ContainedError('INTERNAL', `store: ${op} failed${typeof code === 'string' ? ` (${code})` : ''}: ${message}`, { cause: error });
  }

  private checkOpen(op: string): void {
    if (this.closing) throw new ContainedError('INTERNAL', `store: ${op} on a closed store`);
  }

  /** One statement on any pooled connection (autocommit). */
  private q(op: string, sql: string, params: unknown[] = []): Promise<Row[]> {
    return this.withClient(op, async (client) => (await client.query(sql, params)).rows as Row[]);
  }

  /**
   * Run `attempt`; when it fails because a connection broke after it was made (a pooled connection
   * the server had closed, a restart mid-call — not a refused or timed-out connect), finish it
   * once on a new connection as `recovery` says:
   * - `retry`: the call is safe to repeat (reads, idempotent writes);
   * - a read-back: whether the write landed before the connection broke (its result if so, else
   *   it is made again);
   * - `fail`: the outcome is unknown and must not be guessed.
   */
  private async call<T>(op: string, recovery: 'retry' | 'fail' | (() => Promise<{ value: T } | undefined>), attempt: () => Promise<T>): Promise<T> {
    try {
      return await attempt();
    } catch (error) {
      if (!(error instanceof ContainedError) || !this.lostMidway.has(error) || recovery === 'fail' || this.closing) throw error;
      this.log?.warn({ err: error.message, op, store: this.shownUrl }, 'store: a PostgreSQL connection broke during a call; finishing it on a new one');
      if (typeof recovery === 'function') {
        const landed = await recovery();
        if (landed) return landed.value;
      }
      return attempt();
    }
  }

  /** `call` for an insert: landed when the row read back maps to the same row. */
  private insertOnce<R>(op: string, table: string, cols: readonly string[], row: Row, readBack: () => Promise<R | undefined>, toRow: (record: R) => Row): Promise<void> {
    return this.call(op, async () => {
      const found = await readBack();
      return found !== undefined && isDeepStrictEqual(toRow(found), row) ? { value: undefined } : undefined;
    }, () => this.insert(op, table, cols, row));
  }

  /** `f` with a connection of its own; a connection that failed is destroyed, not reused. */
  private async withClient<T>(op: string, f: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    this.checkOpen(op);
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw this.toError(op, error);
    }
    // Errors while checked out also arrive as events; the failing query reports them.
    const onError = (error: Error): void => this.log?.warn({ err: error.message, store: this.shownUrl }, 'store: a PostgreSQL connection failed');
    client.on('error', onError);
    let broken: Error | undefined;
    try {
      return await f(client);
    } catch (error) {
      const reason = unavailableReason(error);
      if (reason === undefined) throw this.toError(op, error);
      broken = error as Error;
      const failure = this.toError(op, error);
      // A timeout is the server being slow, not gone: not retried (call), it would only add load.
      if (reason !== 'timeout') this.lostMidway.add(failure);
      throw failure;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  /** `f` in one transaction (READ COMMITTED; rows it must decide on are read FOR UPDATE). */
  private tx<T>(op: string, f: (query: Query) => Promise<T>): Promise<T> {
    return this.withClient(op, async (client) => {
      const query: Query = async (sql, params = []) => (await client.query(sql, params)).rows as Row[];
      await client.query('BEGIN');
      try {
        const result = await f(query);
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      }
    });
  }

  private async one<T>(op: string, sql: string, params: unknown[], map: (row: Row) => T): Promise<T | undefined> {
    const [row] = await this.q(op, sql, params);
    return row === undefined ? undefined : map(row);
  }

  private async all<T>(op: string, sql: string, params: unknown[], map: (row: Row) => T): Promise<T[]> {
    return (await this.q(op, sql, params)).map(map);
  }

  private async insert(op: string, table: string, cols: readonly string[], row: Row): Promise<void> {
    await this.q(op, insertSql(table, cols), cols.map((c) => row[c] ?? null));
  }

  // Grants -----------------------------------------------------------------------------------

  async insertGrant(grant: Grant): Promise<void> {
    this.checkOpen('insertGrant');
    await this.insertOnce('insertGrant', 'grants', GRANT_INSERT, grantToRow(grant), () => this.getGrant(grant.id), grantToRow);
  }

  async getGrant(id: string): Promise<Grant | undefined> {
    return this.call('getGrant', 'retry', () => this.one('getGrant', 'SELECT * FROM grants WHERE id = $1', [id], rowToGrant));
  }

  async listGrants(filter: GrantFilter = {}): Promise<Grant[]> {
    const where = new Where();
    const subject: string[] = [];
    if (filter.subjectDigest !== undefined) subject.push(`subject_digest = $${where.params.push(filter.subjectDigest)}`);
    if (filter.subjectName !== undefined) subject.push(`subject_name = $${where.params.push(filter.subjectName)}`);
    if (subject.length > 0) where.parts.push(`(${subject.join(' OR ')})`);
    if (filter.activeAt !== undefined) where.add('revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)', filter.activeAt);
    return this.call('listGrants', 'retry', () => this.all('listGrants', `SELECT * FROM grants${where.clause} ORDER BY created_at, id`, where.params, rowToGrant));
  }

  /** Idempotent: the first revocation's time, author and reason are kept (the UPDATE waits for a concurrent one, then finds it done). */
  async revokeGrant(id: string, by: string, reason: string, at: number): Promise<Grant | undefined> {
    return this.call('revokeGrant', 'retry', async () => {
      await this.q('revokeGrant', 'UPDATE grants SET revoked_at = $1, revoked_by = $2, revoke_reason = $3 WHERE id = $4 AND revoked_at IS NULL', [at, by, reason, id]);
      return this.one('revokeGrant', 'SELECT * FROM grants WHERE id = $1', [id], rowToGrant);
    });
  }

  /** The one-row counter the grant/token triggers increment (pg/schema.ts). */
  async changeCounter(): Promise<number> {
    return this.call('changeCounter', 'retry', async () => {
      const [row] = await this.q('changeCounter', 'SELECT value FROM change_counter WHERE id = 1');
      return Number(row?.value ?? 0);
    });
  }

  // Requests ---------------------------------------------------------------------------------

  /** `deferSync` is ignored: a PostgreSQL COMMIT is durable when it returns. */
  async insertRequest(request: RequestRecord, _options: { deferSync?: boolean } = {}): Promise<void> {
    this.checkOpen('insertRequest');
    await this.insertOnce('insertRequest', 'requests', colNames(REQUEST_COLUMNS), requestToRow(request), () => this.getRequest(request.id), requestToRow);
  }

  async getRequest(id: string): Promise<RequestRecord | undefined> {
    return this.call('getRequest', 'retry', () => this.one('getRequest', 'SELECT * FROM requests WHERE id = $1', [id], rowToRequest));
  }

  async listRequests(filter: { status?: RequestStatus; runId?: string; hostId?: string; limit?: number }): Promise<RequestRecord[]> {
    this.checkOpen('listRequests');
    const where = new Where();
    if (filter.status !== undefined) where.add('status = ?', filter.status);
    if (filter.runId !== undefined) where.add('run_id = ?', filter.runId);
    if (filter.hostId !== undefined) where.add('host_id = ?', filter.hostId);
    const limit = limitClause(filter.limit);
    return this.call('listRequests', 'retry', () => this.all('listRequests', `SELECT * FROM requests${where.clause} ORDER BY created_at, id${limit}`, where.params, rowToRequest));
  }

  /** Every commit is durable at COMMIT (see the top comment): nothing to wait for. */
  async synced(_options: { withinMs?: number } = {}): Promise<void> {
    this.checkOpen('synced');
  }

  /**
   * As SqliteStore.addApproval, the request read FOR UPDATE: racing approvals queue on its row
   * lock and each decides on the committed row. Landed (after a broken connection) when the
   * request holds this very approval.
   */
  async addApproval(id: string, approval: Approval, options: { resolve?: boolean; expectApprovals?: number; deferSync?: boolean } = {}): Promise<ApprovalResult> {
    const landed = async (): Promise<{ value: ApprovalResult } | undefined> => {
      const request = await this.getRequest(id);
      return request?.approvals.some((a) => sameJson(a, approval)) ? { value: { ok: true, request } } : undefined;
    };
    return this.call('addApproval', landed, () =>
      this.tx('addApproval', async (query): Promise<ApprovalResult> => {
        const [row] = await query('SELECT * FROM requests WHERE id = $1 FOR UPDATE', [id]);
        if (!row) return { ok: false, code: 'NOT_FOUND' };
        const request = rowToRequest(row);
        if (request.status !== 'pending' || approval.at >= request.expiresAt) return { ok: false, code: 'ALREADY_RESOLVED', request };
        if (options.expectApprovals !== undefined && request.approvals.length !== options.expectApprovals) return { ok: false, code: 'STALE_REQUEST', request };
        const same = (a: Approval): boolean => a.argsDigest === approval.argsDigest;
        if (request.approvals.some((a) => a.operator === approval.operator && same(a))) return { ok: false, code: 'DUPLICATE_APPROVER', request };
        const approvals = [...request.approvals, approval];
        const updated = { ...request, approvals };
        requestToRow(updated); // validates the approval before it is written
        const counted = approvals.filter(same);
        if (options.resolve === true && counted.length >= request.approvalsRequired) {
          // The completing approval and the resolution in one statement, one commit.
          const by = counted.map((a) => a.operator);
          const [resolved] = await query("UPDATE requests SET approvals = $1, status = 'approved', resolved_at = $2, resolved_by = $3 WHERE id = $4 RETURNING *", [
            JSON.stringify(approvals),
            approval.at,
            JSON.stringify(by),
            id,
          ]);
          return { ok: true, request: resolved ? rowToRequest(resolved) : updated };
        }
        await query('UPDATE requests SET approvals = $1 WHERE id = $2', [JSON.stringify(approvals), id]);
        return { ok: true, request: updated };
      }),
    );
  }

  /**
   * First-wins transition out of `pending` in one conditional UPDATE: a racer blocks on the
   * winner's row lock, re-checks the committed row and changes nothing. `approved` and `denied`
   * are refused once `resolution.at` is past `expiresAt`; `expired` and `run_gone` are not.
   */
  async resolveRequest(id: string, resolution: Resolution): Promise<ResolveResult> {
    const late = resolution.status === 'approved' || resolution.status === 'denied' ? resolution.at : Number.MIN_SAFE_INTEGER;
    const landed = async (): Promise<{ value: ResolveResult } | undefined> => {
      const request = await this.getRequest(id);
      const ours =
        request !== undefined &&
        request.status === resolution.status &&
        request.resolvedAt === resolution.at &&
        sameJson(request.resolvedBy, resolution.by) &&
        request.denyReason === resolution.denyReason;
      return ours ? { value: { ok: true, request } } : undefined;
    };
    return this.call('resolveRequest', landed, async (): Promise<ResolveResult> => {
      const [changed] = await this.q(
        'resolveRequest',
        "UPDATE requests SET status = $1, resolved_at = $2, resolved_by = $3, deny_reason = $4 WHERE id = $5 AND status = 'pending' AND expires_at > $6 RETURNING *",
        [resolution.status, resolution.at, resolution.by === undefined ? null : JSON.stringify(resolution.by), resolution.denyReason ?? null, id, late],
      );
      if (changed) return { ok: true, request: rowToRequest(changed) };
      const request = await this.one('resolveRequest', 'SELECT * FROM requests WHERE id = $1', [id], rowToRequest);
      if (!request) return { ok: false, code: 'NOT_FOUND' };
      return { ok: false, code: 'ALREADY_RESOLVED', request };
    });
  }

  /**
   * First-wins claim in one conditional UPDATE. Never retried nor read back after a broken
   * connection: the claim may have landed, and a claim that cannot be told apart from another
   * host's must count as lost (the action is then not performed here; never twice).
   */
  async claimExecution(id: string, at: number): Promise<boolean> {
    // A claim id of this call only: after a connection broke mid-call, reading it back says
    // whether this claim landed (won), another did (lost), or none did (claim again).
    const claimId = `${this.origin}.${(++this.claims).toString(36)}`;
    const landed = async (): Promise<{ value: boolean } | undefined> => {
      const [row] = await this.q('claimExecution', 'SELECT execution IS NOT NULL AS claimed, claim_id FROM requests WHERE id = $1', [id]);
      if (!row || row.claimed !== true) return undefined;
      return { value: row.claim_id === claimId };
    };
    return this.call('claimExecution', landed, async () => {
      const rows = await this.q('claimExecution', "UPDATE requests SET execution = $1, claim_id = $3 WHERE id = $2 AND status = 'approved' AND execution IS NULL RETURNING id", [
        JSON.stringify({ state: 'claimed', at }),
        id,
        claimId,
      ]);
      return rows.length === 1;
    });
  }

  async completeExecution(id: string, outcome: { ok: boolean; result?: unknown; error?: { code: string; message: string } }, at: number): Promise<void> {
    const execution = {
      state: 'done' as const,
      at,
      ok: outcome.ok,
      ...(outcome.result === undefined ? {} : { result: outcome.result }),
      ...(outcome.error === undefined ? {} : { error: { code: outcome.error.code, message: outcome.error.message } }),
    };
    const landed = async (): Promise<{ value: void } | undefined> => {
      const stored = (await this.getRequest(id))?.execution;
      return stored?.state === 'done' && stored.at === at && stored.ok === outcome.ok && stored.undone === undefined ? { value: undefined } : undefined;
    };
    await this.call('completeExecution', landed, () =>
      this.tx('completeExecution', async (query) => {
        const [row] = await query('SELECT * FROM requests WHERE id = $1 FOR UPDATE', [id]);
        if (!row) throw new ContainedError('NOT_FOUND', `request ${id} does not exist`);
        const request = rowToRequest(row);
        if (request.execution?.state !== 'claimed') throw new ContainedError('ALREADY_RESOLVED', `request ${id}: execution is ${request.execution?.state ?? 'not claimed'}`);
        requestToRow({ ...request, execution });
        await query('UPDATE requests SET execution = $1 WHERE id = $2', [JSON.stringify(execution), id]);
      }),
    );
  }

  async markUndone(id: string, undone: { at: number; by: string; restored: number }): Promise<void> {
    const mark = { at: undone.at, by: undone.by, restored: undone.restored };
    const landed = async (): Promise<{ value: void } | undefined> => {
      const stored = (await this.getRequest(id))?.execution;
      return stored?.state === 'done' && sameJson(stored.undone, mark) ? { value: undefined } : undefined;
    };
    await this.call('markUndone', landed, () =>
      this.tx('markUndone', async (query) => {
        const [row] = await query('SELECT * FROM requests WHERE id = $1 FOR UPDATE', [id]);
        if (!row) throw new ContainedError('NOT_FOUND', `request ${id} does not exist`);
        const request = rowToRequest(row);
        const execution = request.execution;
        if (execution?.state !== 'done' || execution.ok !== true) throw new ContainedError('ALREADY_RESOLVED', `request ${id} was not committed`);
        if (execution.undone !== undefined) throw new ContainedError('ALREADY_RESOLVED', `request ${id} was already undone by ${execution.undone.by}`);
        const next = { ...execution, undone: mark };
        requestToRow({ ...request, execution: next });
        await query('UPDATE requests SET execution = $1 WHERE id = $2', [JSON.stringify(next), id]);
      }),
    );
  }

  // Runs -------------------------------------------------------------------------------------

  async insertRun(run: RunRecord): Promise<void> {
    this.checkOpen('insertRun');
    await this.insertOnce('insertRun', 'runs', colNames(RUN_COLUMNS), runToRow(run), () => this.getRun(run.id), runToRow);
  }

  /** Set the fields present in `patch` (keys whose value is undefined are left alone); NOT_FOUND if unknown. */
  async updateRun(id: string, patch: Partial<Omit<RunRecord, 'id'>>): Promise<void> {
    this.checkOpen('updateRun');
    const clean = checkRunPatch(patch as Record<string, unknown>);
    const sets: string[] = [];
    const params: unknown[] = [];
    for (const [key, value] of Object.entries(clean)) {
      const column = columnFor(RUN_COLUMNS, key);
      if (!column) throw new ContainedError('INVALID_ARGUMENT', `store: runs have no field "${key}"`);
      sets.push(`${column.col} = $${params.push(toSql(column, value))}`);
    }
    const sql = `UPDATE runs SET ${sets.length > 0 ? sets.join(', ') : 'id = id'} WHERE id = $${params.push(id)} RETURNING id`;
    // Setting the same values again is harmless: retried.
    const rows = await this.call('updateRun', 'retry', () => this.q('updateRun', sql, params));
    if (rows.length !== 1) throw new ContainedError('NOT_FOUND', `run ${id} does not exist`);
  }

  async getRun(id: string): Promise<RunRecord | undefined> {
    return this.call('getRun', 'retry', () => this.one('getRun', 'SELECT * FROM runs WHERE id = $1', [id], rowToRun));
  }

  /** Newest first. */
  async listRuns(filter: RunFilter = {}): Promise<RunRecord[]> {
    this.checkOpen('listRuns');
    const where = new Where();
    if (filter.status !== undefined) where.add('status = ?', filter.status);
    if (filter.hostId !== undefined) where.add('host_id = ?', filter.hostId);
    const limit = limitClause(filter.limit);
    return this.call('listRuns', 'retry', () => this.all('listRuns', `SELECT * FROM runs${where.clause} ORDER BY created_at DESC, id DESC${limit}`, where.params, rowToRun));
  }

  // Tokens -----------------------------------------------------------------------------------

  /** INVALID_ARGUMENT (`data.reason: 'duplicate'`) when the id, the hash, or the name of an active token exists. */
  async insertToken(token: TokenRecord): Promise<void> {
    this.checkOpen('insertToken');
    const readBack = (): Promise<TokenRecord | undefined> => this.one('insertToken', 'SELECT * FROM tokens WHERE id = $1', [token.id], rowToToken);
    await this.insertOnce('insertToken', 'tokens', colNames(TOKEN_COLUMNS), tokenToRow(token), readBack, tokenToRow);
  }

  async findTokenByHash(hash: string): Promise<TokenRecord | undefined> {
    return this.call('findTokenByHash', 'retry', () => this.one('findTokenByHash', 'SELECT * FROM tokens WHERE hash = $1', [hash], rowToToken));
  }

  async listTokens(): Promise<TokenRecord[]> {
    return this.call('listTokens', 'retry', () => this.all('listTokens', 'SELECT * FROM tokens ORDER BY created_at, id', [], rowToToken));
  }

  /** Idempotent (the first revocation time is kept); undefined when unknown. */
  async revokeToken(id: string, at: number): Promise<TokenRecord | undefined> {
    return this.call('revokeToken', 'retry', async () => {
      await this.q('revokeToken', 'UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL', [at, id]);
      return this.one('revokeToken', 'SELECT * FROM tokens WHERE id = $1', [id], rowToToken);
    });
  }

  // Agents -----------------------------------------------------------------------------------

  async insertAgent(agent: AgentRecord): Promise<void> {
    this.checkOpen('insertAgent');
    const readBack = (): Promise<AgentRecord | undefined> => this.one('insertAgent', 'SELECT * FROM agents WHERE id = $1', [agent.id], rowToAgent);
    await this.insertOnce('insertAgent', 'agents', AGENT_INSERT, agentToRow(agent), readBack, agentToRow);
  }

  async findAgentByHash(hash: string): Promise<AgentRecord | undefined> {
    return this.call('findAgentByHash', 'retry', () => this.one('findAgentByHash', 'SELECT * FROM agents WHERE hash = $1', [hash], rowToAgent));
  }

  async listAgents(): Promise<AgentRecord[]> {
    return this.call('listAgents', 'retry', () => this.all('listAgents', 'SELECT * FROM agents ORDER BY created_at, id', [], rowToAgent));
  }

  async revokeAgent(id: string, at: number): Promise<AgentRecord | undefined> {
    return this.call('revokeAgent', 'retry', async () => {
      await this.q('revokeAgent', 'UPDATE agents SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL', [at, id]);
      return this.one('revokeAgent', 'SELECT * FROM agents WHERE id = $1', [id], rowToAgent);
    });
  }

  // Images -----------------------------------------------------------------------------------

  /** An upsert: repeating it after a lost connection is harmless. */
  async getDocument(key: string): Promise<{ text: string; version: number } | undefined> {
    return this.call('getDocument', 'retry', async () => {
      const row = (await this.q('getDocument', 'SELECT text, version FROM documents WHERE key = $1', [key]))[0];
      return row === undefined ? undefined : { text: row.text as string, version: row.version as number };
    });
  }

  async putDocument(key: string, text: string, at: number, expect?: number | null): Promise<boolean> {
    // A write whose connection broke is read back: landed when the text is there (a compare-and-set
    // that landed bumped the version past `expect`).
    const landed = async (): Promise<{ value: boolean } | undefined> => {
      const found = await this.getDocument(key);
      return found?.text === text && found.version > (expect ?? 0) ? { value: true } : undefined;
    };
    return this.call('putDocument', landed, async () => {
      const rows =
        expect === undefined
          ? await this.q('putDocument', 'INSERT INTO documents (key, text, version, updated_at) VALUES ($1, $2, 1, $3) ON CONFLICT (key) DO UPDATE SET text = EXCLUDED.text, version = documents.version + 1, updated_at = EXCLUDED.updated_at RETURNING key', [key, text, at])
          : expect === null
            ? await this.q('putDocument', 'INSERT INTO documents (key, text, version, updated_at) VALUES ($1, $2, 1, $3) ON CONFLICT (key) DO NOTHING RETURNING key', [key, text, at])
            : await this.q('putDocument', 'UPDATE documents SET text = $2, version = version + 1, updated_at = $3 WHERE key = $1 AND version = $4 RETURNING key', [key, text, at, expect]);
      return rows.length === 1;
    });
  }

  async listDocuments(prefix: string): Promise<string[]> {
    return this.call('listDocuments', 'retry', async () =>
      (await this.q('listDocuments', 'SELECT key FROM documents WHERE left(key, length($1)) = $1 ORDER BY key', [prefix])).map((r) => r.key as string),
    );
  }

  async putImage(digest: string, bytes: Uint8Array, at: number): Promise<void> {
    await this.call('putImage', 'retry', () =>
      this.q('putImage', 'INSERT INTO images (digest, bytes, stored_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO UPDATE SET bytes = EXCLUDED.bytes, stored_at = EXCLUDED.stored_at', [digest, Buffer.from(bytes), at]),
    );
  }

  async getImage(digest: string): Promise<Buffer | undefined> {
    return this.call('getImage', 'retry', async () => {
      const row = (await this.q('getImage', 'SELECT bytes FROM images WHERE digest = $1', [digest]))[0];
      return row === undefined ? undefined : (row.bytes as Buffer);
    });
  }

  async addImageClient(digest: string, clientHash: string): Promise<void> {
    await this.call('addImageClient', 'retry', () => this.q('addImageClient', 'INSERT INTO image_clients (digest, client) VALUES ($1, $2) ON CONFLICT DO NOTHING', [digest, clientHash]));
  }

  async hasImageClient(digest: string, clientHash: string): Promise<boolean> {
    return this.call('hasImageClient', 'retry', async () => (await this.q('hasImageClient', 'SELECT 1 FROM image_clients WHERE digest = $1 AND client = $2', [digest, clientHash])).length === 1);
  }

  // Hosts ------------------------------------------------------------------------------------

  async registerHost(host: HostRecord): Promise<void> {
    this.checkOpen('registerHost');
    const readBack = (): Promise<HostRecord | undefined> => this.one('registerHost', 'SELECT * FROM hosts WHERE id = $1', [host.id], rowToHost);
    await this.insertOnce('registerHost', 'hosts', colNames(HOST_COLUMNS), hostToRow(host), readBack, hostToRow);
  }

  async heartbeat(id: string, at: number): Promise<boolean> {
    return this.call('heartbeat', 'retry', async () =>
      (await this.q('heartbeat', 'UPDATE hosts SET heartbeat_at = $1 WHERE id = $2 AND reaped_at IS NULL AND stopped_at IS NULL RETURNING id', [at, id])).length === 1,
    );
  }

  async stopHost(id: string, at: number): Promise<void> {
    await this.call('stopHost', 'retry', () => this.q('stopHost', 'UPDATE hosts SET stopped_at = $1 WHERE id = $2 AND stopped_at IS NULL AND reaped_at IS NULL', [at, id]));
  }

  async listHosts(): Promise<HostRecord[]> {
    return this.call('listHosts', 'retry', () => this.all('listHosts', 'SELECT * FROM hosts ORDER BY started_at, id', [], rowToHost));
  }

  /** First caller wins: the conditional UPDATE of a racer waits for the winner's commit, then matches nothing. */
  async reapHost(id: string, by: string, at: number): Promise<boolean> {
    const landed = async (): Promise<{ value: boolean } | undefined> => {
      const [row] = await this.q('reapHost', 'SELECT reaped_at, reaped_by FROM hosts WHERE id = $1', [id]);
      return row?.reaped_by === by && row.reaped_at === at ? { value: true } : undefined;
    };
    return this.call('reapHost', landed, async () =>
      (await this.q('reapHost', 'UPDATE hosts SET reaped_at = $1, reaped_by = $2 WHERE id = $3 AND reaped_at IS NULL AND stopped_at IS NULL RETURNING id', [at, by, id])).length === 1,
    );
  }

  // Watch ------------------------------------------------------------------------------------

  watch(listener: (change: StoreChange) => void): () => void {
    this.checkOpen('watch');
    this.listeners.add(listener);
    if (!this.listener && !this.reconnectTimer) void this.listen();
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Whether the dedicated LISTEN connection is up (for tests and health checks). */
  get isListening(): boolean {
    return this.listening;
  }

  private emit(change: StoreChange): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch (error) {
        this.log?.error({ err: error }, 'store: a change listener threw');
      }
    }
  }

  /** Connect the LISTEN connection; on failure or loss, try again with backoff. */
  private async listen(): Promise<void> {
    if (this.closing) return;
    const client = new pg.Client({ ...this.config, application_name: 'contained-host-listen' });
    this.listener = client;
    let lost = false;
    const onLost = (error?: Error): void => {
      if (lost) return;
      lost = true;
      if (this.listener === client) {
        this.listener = undefined;
        this.listening = false;
      }
      client.removeAllListeners('notification');
      client.end().catch(() => undefined);
      if (this.closing) return;
      this.owesResync = true;
      this.log?.warn({ err: error?.message, store: this.shownUrl, retryInMs: this.reconnectDelay }, 'store: the PostgreSQL change listener lost its connection; reconnecting');
      const delay = this.reconnectDelay;
      this.reconnectDelay = Math.min(this.reconnectDelay * 2, RECONNECT_MAX_MS);
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = undefined;
        void this.listen();
      }, delay);
      this.reconnectTimer.unref?.();
    };
    client.on('error', onLost);
    client.on('end', () => onLost());
    client.on('notification', (message) => {
      if (message.channel === CHANGES_CHANNEL) this.onNotification(message.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGES_CHANNEL}`);
    } catch (error) {
      onLost(error as Error);
      return;
    }
    if (lost || this.closing) return;
    this.listening = true;
    this.reconnectDelay = RECONNECT_FIRST_MS;
    // Changes committed while no connection listened were not heard: whoever keeps a view re-reads.
    if (this.owesResync) {
      this.owesResync = false;
      this.emit({ type: 'resync' });
    }
  }

  private onNotification(payload: string | undefined): void {
    let message: { type?: unknown; id?: unknown; status?: unknown; hostId?: unknown; origin?: unknown; kind?: unknown; ref?: unknown };
    try {
      message = JSON.parse(payload ?? '') as typeof message;
    } catch {
      return;
    }
    if (message.origin === this.origin) return;
    if (message.type === 'grants') {
      const kind = GRANT_CHANGE_KINDS.find((k) => k === message.kind);
      this.emit({ type: 'grants', ...(kind !== undefined && typeof message.ref === 'string' ? { kind, ref: message.ref } : {}) });
    }
    else if (message.type === 'request' && typeof message.id === 'string' && typeof message.status === 'string') {
      this.emit({ type: 'request', id: message.id, status: message.status as RequestStatus, ...(typeof message.hostId === 'string' ? { hostId: message.hostId } : {}) });
    }
  }

  // Console sessions and one-time secrets ----------------------------------------------------

  async insertSession(session: SessionRecord): Promise<void> {
    this.checkOpen('insertSession');
    const readBack = (): Promise<SessionRecord | undefined> => this.one('insertSession', 'SELECT * FROM sessions WHERE key = $1', [session.key], rowToSession);
    await this.insertOnce('insertSession', 'sessions', colNames(SESSION_COLUMNS), sessionToRow(session), readBack, sessionToRow);
  }

  async getSession(key: string): Promise<SessionRecord | undefined> {
    return this.call('getSession', 'retry', () => this.one('getSession', 'SELECT * FROM sessions WHERE key = $1', [key], rowToSession));
  }

  async touchSession(key: string, at: number): Promise<boolean> {
    return this.call('touchSession', 'retry', async () =>
      (await this.q('touchSession', 'UPDATE sessions SET last_seen_at = GREATEST(last_seen_at, $1) WHERE key = $2 RETURNING key', [at, key])).length === 1,
    );
  }

  /** Retried after a broken connection: a delete that had landed then answers undefined (the session is gone either way). */
  async deleteSession(key: string): Promise<SessionRecord | undefined> {
    return this.call('deleteSession', 'retry', () => this.one('deleteSession', 'DELETE FROM sessions WHERE key = $1 RETURNING *', [key], rowToSession));
  }

  async listSessions(): Promise<SessionRecord[]> {
    return this.call('listSessions', 'retry', () => this.all('listSessions', 'SELECT * FROM sessions ORDER BY created_at, key', [], rowToSession));
  }

  async sweepSessions(at: number, idleBefore: number): Promise<SessionRecord[]> {
    const rows = await this.call('sweepSessions', 'retry', () =>
      this.tx('sweepSessions', async (query) => {
        const gone = await query('DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at < $2 RETURNING *', [at, idleBefore]);
        await query('DELETE FROM one_time_secrets WHERE expires_at <= $1', [at]);
        return gone;
      }),
    );
    return rows.map(rowToSession).sort((a, b) => a.createdAt - b.createdAt || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async insertOneTimeSecret(secret: OneTimeSecret): Promise<void> {
    this.checkOpen('insertOneTimeSecret');
    const readBack = (): Promise<OneTimeSecret | undefined> =>
      this.one('insertOneTimeSecret', 'SELECT * FROM one_time_secrets WHERE kind = $1 AND hash = $2', [secret.kind, secret.hash], rowToSecret);
    await this.insertOnce('insertOneTimeSecret', 'one_time_secrets', colNames(SECRET_COLUMNS), secretToRow(secret), readBack, secretToRow);
  }

  /**
   * One DELETE … RETURNING: of racing takers, one gets the row. Retried after a broken
   * connection: a take that had landed then answers undefined (fails closed: a new ticket or code).
   */
  async takeOneTimeSecret(kind: OneTimeSecret['kind'], hash: string): Promise<OneTimeSecret | undefined> {
    return this.call('takeOneTimeSecret', 'retry', () =>
      this.one('takeOneTimeSecret', 'DELETE FROM one_time_secrets WHERE kind = $1 AND hash = $2 RETURNING *', [kind, hash], rowToSecret),
    );
  }

  // Close ------------------------------------------------------------------------------------

  /** Idempotent: ends the pool (after calls in flight) and the LISTEN connection, clears timers. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
      this.listeners.clear();
      const listener = this.listener;
      this.listener = undefined;
      this.listening = false;
      await Promise.all([listener?.end().catch(() => undefined), this.pool.end().catch(() => undefined)]);
    })();
    return this.closing;
  }
}
