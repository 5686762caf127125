/**
 * The audit log writer: appends hash-chained records to the host's SQLite file with group commit,
 * writes signed checkpoints, drains the grant/token inbox, and emits every committed record as a
 * pino line (`{ audit: true, … }`).
 *
 * Durability: `append` resolves only after the transaction holding its record has committed with
 * `synchronous=FULL` (fsynced to the WAL). Appends made in the same tick share one IMMEDIATE
 * transaction (group commit); the chain head is read inside that transaction, so several writers
 * (the host, a CLI marking a review) can append to one chain safely.
 *
 * `append(input, within)` runs `within` in the same transaction, in a savepoint just before the
 * record is inserted: state changes that must never exist without their audit record (a review
 * verdict, a ledger event, a passkey) and the record commit or vanish together. When `within`
 * throws, only that append rejects (with its error); the batch goes on. A `Within` has a form per
 * database (`sqlite`, `pg`): it runs on whichever holds the chain, so the trust tables and passkeys,
 * kept beside the chain on either store, commit with their records (`appendWith` and `transact`
 * return its value).
 *
 * Appends nobody waits on before acting (`{ soon: true }`: call, decision, outcome, request and run
 * records, ledger rows) wait up to `lazyFlushMs` for company, or ride along with the next urgent
 * append (an intent, which flushes at once): one fsync per allowed call instead of one per record.
 * A host killed meanwhile loses at most that window of such records; never an intent.
 *
 * Fails closed: a batch that cannot commit (disk full, lock timeout, closed log) rejects every
 * append in it with AUDIT_FAILED; the gate then refuses the action it was about to perform.
 *
 * PostgreSQL (`postgres: url`, the fleet's shared store; docs/audit-and-trust.md "Several hosts"):
 * the records and checkpoints live in PostgreSQL, one chain for every host. A batch is one
 * PostgreSQL transaction that first takes `pg_advisory_xact_lock(AUDIT_LOCK_KEY)` (appenders on
 * every host queue there), then reads the head, drains `audit_inbox` (filled by PostgreSQL's own
 * triggers, whoever changed a grant or token), inserts the records, signs a checkpoint when due
 * with this host's key, and commits; an append resolves after COMMIT (durable with PostgreSQL's
 * synchronous_commit). A `pg` step runs on the batch's own connection in a savepoint, so it commits
 * with the records. A bare function (a SQLite-only step) still runs on the host's own SQLite file
 * (`file`): in a local transaction opened before the records are inserted and committed right after
 * PostgreSQL commits, a crash between the two keeping the records and losing those local rows.
 * Nothing of the host uses that any more; it stays for callers outside it.
 * A server that cannot be reached fails the batch with AUDIT_FAILED within the connect timeout
 * (`busyTimeoutMs`), and so does waiting longer than that for another host's batch (lock_timeout).
 */
import Database from 'better-sqlite3';
import type pg from 'pg';
import type { Logger } from 'pino';
import { ContainedError } from '../../runtime/errors.js';
import { formatSubject } from '../grants.js';
import { rowToGrant, type Row } from '../store/rows.js';
import { migrate } from '../store/schema.js';
import { type WalSync, walSyncFor } from '../store/wal-sync.js';
import type { Within } from '../store/within.js';
import { AUDIT_CONFIG_DEFAULTS } from './config.js';
import { type AuditKey, type Checkpoint, signCheckpoint } from './keys.js';
import { AUDIT_LOCK_KEY, checkout, openAuditPool } from './pg.js';
import { type AuditInput, type AuditRecord, GENESIS, publicFields, type StoredRecord, sealRecord } from './record.js';
import { type AuditSource, pgAuditSource, sqliteAuditSource } from './source.js';

export interface AuditLogOptions {
  /**
   * The host store file (`<dataDir>/contained.db`). With `postgres`, the host's own SQLite file,
   * where bare-function `within` callbacks run.
   */
  file: string;
  /** A `postgres://` URL: the records and checkpoints go to that database (the fleet's one chain). */
  postgres?: string | undefined;
  key: AuditKey;
  logger?: Logger;
  now?: () => number;
  /** Sign a checkpoint every this many records (default 1000). */
  checkpointEvery?: number;
  /** …and at least this often while records arrive, in ms (default 60 000; 0 disables the timer). */
  checkpointIntervalMs?: number;
  /** Most records per transaction (default 10 000); the rest go in the next one. */
  maxBatch?: number;
  /** `full` (default) fsyncs every commit; `normal` survives process death but not power loss. */
  synchronous?: 'full' | 'normal';
  /** ms to wait for another process's write lock (default 5000). */
  busyTimeoutMs?: number;
  /** Poll the grant/token inbox this often, in ms (default 1000; 0: only when appending). */
  inboxPollMs?: number;
  /** Who opened the log, recorded in the `audit.started` record (`host`, `cli`…); none when undefined. */
  role?: string;
  /** Longest wait, in ms, of a `{ soon: true }` append for an urgent one to share its commit (default 10). */
  lazyFlushMs?: number;
}

export interface AppendOptions {
  /** Nobody waits on this record before acting: commit with the next batch, within `lazyFlushMs`. */
  soon?: boolean;
}

export type { Within } from '../store/within.js';

interface Pending {
  /** Absent: a `transact` item (state change only, no record). */
  input: AuditInput | undefined;
  at: number;
  within: { sqlite?: ((db: Database.Database) => unknown) | undefined; pg?: ((client: pg.PoolClient) => Promise<unknown>) | undefined } | undefined;
  resolve: (done: { record: AuditRecord | undefined; value: unknown }) => void;
  reject: (error: unknown) => void;
}

interface Sealed {
  item: Pending;
  record?: StoredRecord | undefined;
  value?: unknown;
  error?: unknown;
}

const INBOX_BATCH = 500;

export class AuditLog {
  /** The SQLite connection `within` callbacks get (with `postgres`: the host's own file, not the records). */
  readonly db: Database.Database;
  /** Where the records are read from (SQLite or PostgreSQL): tail, query, verify. */
  readonly source: AuditSource;
  private readonly pool: pg.Pool | undefined;
  /** The PostgreSQL batch in flight (one at a time per process; hosts queue on the advisory lock). */
  private committing: Promise<void> | undefined;
  private forceCheckpoint = false;
  private closing = false;
  private readonly now: () => number;
  private readonly log: Logger | undefined;
  private queue: Pending[] = [];
  private scheduled = false;
  private lazy: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly idle = new Set<() => void>();
  private readonly stmts: Record<'head' | 'insert' | 'lastCheckpoint' | 'insertCheckpoint' | 'inbox' | 'inboxAny', Database.Statement>;
  /** The file's group commit: a batch commit fsyncs the WAL, so it covers the store's deferred commits made before it. */
  private readonly walSync: WalSync | undefined;

  constructor(private readonly options: AuditLogOptions) {
    this.now = options.now ?? Date.now;
    this.log = options.logger?.child({ audit: true });
    try {
      this.db = new Database(options.file, { timeout: options.busyTimeoutMs ?? AUDIT_CONFIG_DEFAULTS.busyTimeoutMs });
      this.db.pragma('journal_mode = WAL');
      this.db.pragma(`synchronous = ${options.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`);
      this.db.pragma('trusted_schema = OFF');
      migrate(this.db, this.now());
    } catch (error) {
      if (error instanceof ContainedError) throw error;
      throw new ContainedError('AUDIT_FAILED', `audit: cannot open ${options.file}: ${(error as Error).message}`, { cause: error });
    }
    if (options.postgres !== undefined) {
      this.pool = openAuditPool(options.postgres, { logger: this.log, connectTimeoutMs: options.busyTimeoutMs ?? AUDIT_CONFIG_DEFAULTS.busyTimeoutMs });
      this.source = pgAuditSource(this.pool, options.postgres, { ownsPool: false });
    } else this.source = sqliteAuditSource(this.db);
    // The WAL group commit covers the SQLite store's deferred commits; with PostgreSQL there are none here.
    this.walSync = options.synchronous === 'normal' || this.pool ? undefined : walSyncFor(options.file);
    this.stmts = {
      head: this.db.prepare('SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1').raw(true),
      insert: this.db.prepare(
        'INSERT INTO audit_records (seq, at, type, run_id, subject, capability, method, call_id, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      lastCheckpoint: this.db.prepare('SELECT MAX(seq) FROM audit_checkpoints').pluck(),
      insertCheckpoint: this.db.prepare('INSERT OR IGNORE INTO audit_checkpoints (seq, hash, at, key_id, signature) VALUES (?, ?, ?, ?, ?)'),
      inbox: this.db.prepare(`SELECT id, kind, ref FROM audit_inbox ORDER BY id LIMIT ${INBOX_BATCH}`).raw(true),
      inboxAny: this.db.prepare('SELECT 1 FROM audit_inbox LIMIT 1').pluck(),
    };
    const interval = options.checkpointIntervalMs ?? AUDIT_CONFIG_DEFAULTS.checkpointIntervalMs;
    if (interval > 0) this.timers.push(setInterval(() => this.safely(() => this.checkpoint()), interval));
    const poll = options.inboxPollMs ?? AUDIT_CONFIG_DEFAULTS.inboxPollMs;
    if (poll > 0) this.timers.push(setInterval(() => (this.pool ? this.pollPgInbox() : this.safely(() => this.stmts.inboxAny.get() !== undefined && this.schedule())), poll));
    for (const t of this.timers) t.unref();
    if (options.role !== undefined) {
      void this.append({ type: 'audit.started', data: { role: options.role, keyId: options.key.keyId, pid: process.pid } }).catch((error: unknown) =>
        this.log?.error({ err: error }, 'audit: could not record the start'),
      );
    }
  }

  /** Which database holds the chain (and runs `Within` callbacks): `pg` with a PostgreSQL store. */
  get backend(): 'sqlite' | 'pg' {
    return this.pool ? 'pg' : 'sqlite';
  }

  /** The PostgreSQL pool of the chain (undefined with SQLite): readers of the tables that commit with it. */
  get pgPool(): pg.Pool | undefined {
    return this.pool;
  }

  /** Append one record; resolves once it is committed (durable), with its seq and hash. */
  async append(input: AuditInput, within?: Within<unknown>, options: AppendOptions = {}): Promise<AuditRecord> {
    return (await this.enqueue(input, within, options)).record as AuditRecord;
  }

  /** Append one record with a state change; resolves with the record and what `within` returned. */
  async appendWith<T>(input: AuditInput, within: Within<T>, options: AppendOptions = {}): Promise<{ record: AuditRecord; value: T }> {
    const done = await this.enqueue(input, within, options);
    return { record: done.record as AuditRecord, value: done.value as T };
  }

  /** Run `within` in the next batch transaction, with no record of its own (ledger rows that follow a record). */
  async transact<T = void>(within: Within<T>, options: AppendOptions = {}): Promise<T> {
    return (await this.enqueue(undefined, within, options)).value as T;
  }

  private enqueue(input: AuditInput | undefined, within: Within<unknown> | undefined, options: AppendOptions): Promise<{ record: AuditRecord | undefined; value: unknown }> {
    if (this.closed || this.closing) return Promise.reject(new ContainedError('AUDIT_FAILED', 'audit: the log is closed'));
    const steps = within === undefined ? undefined : typeof within === 'function' ? { sqlite: within } : within;
    return new Promise((resolve, reject) => {
      this.queue.push({ input, at: input?.at ?? this.now(), within: steps, resolve, reject });
      if (options.soon && (this.options.lazyFlushMs ?? AUDIT_CONFIG_DEFAULTS.lazyFlushMs) > 0) this.scheduleSoon();
      else this.schedule();
    });
  }

  /** Resolves when everything appended so far has been committed (or failed). */
  flush(): Promise<void> {
    if (this.closed) return Promise.resolve();
    // Grant/token changes waiting in the inbox are part of "so far" too (in PostgreSQL: one batch reads it).
    if (this.queue.length > 0 || this.pool || this.stmts.inboxAny.get() !== undefined) this.schedule();
    if (this.queue.length === 0 && !this.scheduled && !this.committing) return Promise.resolve();
    return new Promise((resolve) => this.idle.add(resolve));
  }

  /**
   * Sign the current head now if it is not signed yet; returns the checkpoint written, if any.
   * With PostgreSQL the checkpoint is written by the next batch (scheduled now): undefined.
   */
  checkpoint(): Checkpoint | undefined {
    if (this.closed) return undefined;
    if (this.pool) {
      this.forceCheckpoint = true;
      this.schedule();
      return undefined;
    }
    return this.db.transaction(() => this.checkpointIfDue(1)).immediate();
  }

  async close(): Promise<void> {
    if (this.closed || this.closing) return;
    for (const t of this.timers) clearInterval(t);
    if (this.lazy) clearTimeout(this.lazy);
    if (this.pool) {
      this.closing = true;
      // Everything queued, then a final checkpoint (best effort: the server may be gone).
      while (this.queue.length > 0 || this.committing) await this.pgCycle();
      this.forceCheckpoint = true;
      await this.pgCycle();
      this.closed = true;
      await this.pool.end().catch((error: unknown) => this.log?.warn({ err: (error as Error).message }, 'audit: closing the PostgreSQL pool failed'));
      this.db.close();
      this.settleIdle();
      return;
    }
    while (this.queue.length > 0) this.commitBatch();
    this.safely(() => this.checkpoint());
    this.closed = true;
    this.db.close();
    this.settleIdle();
  }

  /** Flush within `lazyFlushMs` unless something urgent flushes first. */
  private scheduleSoon(): void {
    if (this.scheduled || this.lazy || this.closed) return;
    this.lazy = setTimeout(() => {
      this.lazy = undefined;
      this.schedule();
    }, this.options.lazyFlushMs ?? AUDIT_CONFIG_DEFAULTS.lazyFlushMs);
  }

  private schedule(): void {
    if (this.lazy) {
      clearTimeout(this.lazy);
      this.lazy = undefined;
    }
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    // setImmediate, not a microtask: every append made while this I/O phase runs joins the batch.
    if (this.pool) {
      setImmediate(() => void this.pgScheduled());
      return;
    }
    setImmediate(() => {
      this.scheduled = false;
      if (!this.closed) this.commitBatch();
      if (this.queue.length > 0) this.schedule();
      else this.settleIdle();
    });
  }

  /**
   * Seal each pending append with `put`, in order; one with a SQLite `within` runs it in a savepoint
   * of the SQLite transaction just before its record, so a throwing `within` drops only its own
   * record (its error goes to that append).
   */
  private sealAll(results: Sealed[], put: (input: AuditInput, at: number) => StoredRecord): void {
    for (const result of results) {
      const { item } = result;
      const input = item.input;
      if (item.within === undefined) {
        if (input) result.record = put(input, item.at);
        continue;
      }
      const step = item.within.sqlite;
      if (step === undefined) {
        result.error = new ContainedError('INTERNAL', 'audit: this state change has no SQLite form');
        continue;
      }
      try {
        this.db.transaction(() => {
          result.value = step(this.db);
          result.record = input ? put(input, item.at) : undefined;
        })();
      } catch (error) {
        result.record = undefined;
        result.error = error;
      }
    }
  }

  /**
   * PostgreSQL: as sealAll, with each `pg` step in a savepoint of the batch's own transaction (it
   * commits with the chain). A bare SQLite step runs on the host's own file (`local`, opened by the
   * caller). A savepoint that cannot be rolled back (the connection broke) fails the whole batch.
   */
  private async sealAllPg(results: Sealed[], put: (input: AuditInput, at: number) => StoredRecord, client: pg.PoolClient): Promise<void> {
    for (const result of results) {
      const step = result.item.within?.pg;
      if (step === undefined) {
        this.sealAll([result], put);
        continue;
      }
      const input = result.item.input;
      await client.query('SAVEPOINT within_step');
      try {
        result.value = await step(client);
        await client.query('RELEASE SAVEPOINT within_step');
      } catch (error) {
        await client.query('ROLLBACK TO SAVEPOINT within_step');
        result.error = error;
        continue;
      }
      if (input) result.record = put(input, result.item.at);
    }
  }

  private commitBatch(): void {
    const batch = this.queue.splice(0, this.options.maxBatch ?? AUDIT_CONFIG_DEFAULTS.maxBatch);
    const results: Sealed[] = batch.map((item) => ({ item }));
    let written: StoredRecord[] = [];
    let inserted = false;
    const covered = this.walSync?.commit();
    try {
      written = this.db
        .transaction(() => {
          const out: StoredRecord[] = [];
          const head = this.stmts.head.get() as [number, string] | undefined;
          let seq = head?.[0] ?? 0;
          let prev = head?.[1] ?? GENESIS;
          const put = (input: AuditInput, at: number): StoredRecord => {
            const r = sealRecord(input, seq + 1, at, prev);
            this.stmts.insert.run(r.seq, r.at, r.type, r.runId, r.subject, r.capability, r.method, r.callId, r.data, r.prevHash, r.hash);
            seq = r.seq;
            prev = r.hash;
            out.push(r);
            return r;
          };
          for (const input of this.drainInbox()) put(input, input.at ?? this.now());
          this.sealAll(results, put);
          this.checkpointIfDue(this.options.checkpointEvery ?? AUDIT_CONFIG_DEFAULTS.checkpointEvery);
          inserted = out.length > 0;
          return out;
        })
        .immediate();
      // A commit that wrote frames fsynced the WAL (synchronous=FULL): the store's deferred commits
      // before it are durable now, and those waiting for them learn it before this batch's appends do.
      if (inserted) covered?.();
    } catch (error) {
      const failure = new ContainedError('AUDIT_FAILED', `audit: the batch could not be committed: ${(error as Error).message}`, { cause: error });
      this.log?.error({ err: error, records: batch.length }, 'audit: commit failed');
      for (const { item } of results) item.reject(failure);
      return;
    }
    for (const r of written) this.emit(r);
    settle(results);
  }

  /** PostgreSQL: run one batch (or join the one in flight), then go on while appends wait. */
  private async pgScheduled(): Promise<void> {
    this.scheduled = false;
    if (!this.closed) await this.pgCycle();
    if (this.queue.length > 0 && !this.closed) this.schedule();
    else if (!this.scheduled && !this.committing) this.settleIdle();
  }

  private pgCycle(): Promise<void> {
    this.committing ??= this.commitPgBatch().finally(() => {
      this.committing = undefined;
    });
    return this.committing;
  }

  private pollPgInbox(): void {
    if (!this.pool || this.closed || this.closing || this.scheduled || this.committing) return;
    this.pool.query('SELECT 1 FROM audit_inbox LIMIT 1').then(
      (r) => {
        if (r.rows.length > 0) this.schedule();
      },
      (error: unknown) => this.log?.warn({ err: (error as Error).message }, 'audit: cannot read the grant/token inbox'),
    );
  }

  /** One batch in one PostgreSQL transaction under the chain's advisory lock (see the top comment). */
  /**
   * A connection with an open transaction. A pooled connection may have died with the server (a
   * restart, a failover) before the pool noticed: nothing but BEGIN was sent on it, so it is
   * dropped and one fresh connection tried before the batch fails.
   */
  private async beginPg(pool: pg.Pool): Promise<Awaited<ReturnType<typeof checkout>>> {
    for (let attempt = 1; ; attempt++) {
      const conn = await checkout(pool, this.log);
      try {
        await conn.client.query('BEGIN');
        return conn;
      } catch (error) {
        conn.release(true);
        if (attempt >= 2) throw error;
      }
    }
  }

  private async commitPgBatch(): Promise<void> {
    const pool = this.pool as pg.Pool;
    const batch = this.queue.splice(0, this.options.maxBatch ?? AUDIT_CONFIG_DEFAULTS.maxBatch);
    const force = this.forceCheckpoint;
    this.forceCheckpoint = false;
    const results: Sealed[] = batch.map((item) => ({ item }));
    const written: StoredRecord[] = [];
    let conn: Awaited<ReturnType<typeof checkout>> | undefined;
    let local = false;
    try {
      conn = await this.beginPg(pool);
      const { client } = conn;
      // Waiting for another host's batch is bounded like SQLite's busy timeout.
      await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.trunc(this.options.busyTimeoutMs ?? AUDIT_CONFIG_DEFAULTS.busyTimeoutMs))}`);
      await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [AUDIT_LOCK_KEY]);
      const head = (await client.query<{ seq: number; hash: string }>('SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1')).rows[0];
      let seq = head?.seq ?? 0;
      let prev = head?.hash ?? GENESIS;
      const put = (input: AuditInput, at: number): StoredRecord => {
        const r = sealRecord(input, seq + 1, at, prev);
        seq = r.seq;
        prev = r.hash;
        written.push(r);
        return r;
      };
      for (const input of await this.drainPgInbox(client)) put(input, input.at ?? this.now());
      if (results.some((r) => r.item.within !== undefined && r.item.within.pg === undefined)) {
        // Held until PostgreSQL commits: the local rows and their records stand or fall together.
        this.db.exec('BEGIN IMMEDIATE');
        local = true;
      }
      await this.sealAllPg(results, put, client);
      await insertRecords(client, written);
      const last = ((await client.query<{ m: number | null }>('SELECT MAX(seq) AS m FROM audit_checkpoints')).rows[0]?.m) ?? 0;
      if (seq > 0 && seq - last >= (force ? 1 : (this.options.checkpointEvery ?? AUDIT_CONFIG_DEFAULTS.checkpointEvery))) {
        // Under the lock and after MAX(seq): no other host can have signed this seq.
        const cp = signCheckpoint(this.options.key, seq, prev, this.now());
        await client.query('INSERT INTO audit_checkpoints (seq, hash, at, key_id, signature) VALUES ($1, $2, $3, $4, $5)', [cp.seq, cp.hash, cp.at, cp.keyId, cp.signature]);
      }
      await client.query('COMMIT');
      conn.release();
      conn = undefined;
    } catch (error) {
      if (conn) {
        await conn.client.query('ROLLBACK').catch(() => undefined);
        conn.release(true);
      }
      if (local) this.safely(() => this.db.exec('ROLLBACK'));
      const failure = new ContainedError('AUDIT_FAILED', `audit: the batch could not be committed to PostgreSQL: ${(error as Error).message}`, { cause: error });
      this.log?.error({ err: (error as Error).message, records: batch.length }, 'audit: commit failed');
      for (const { item } of results) item.reject(failure);
      return;
    }
    if (local) {
      try {
        this.db.exec('COMMIT');
      } catch (error) {
        // The records are in the chain; the local rows are not (the window the top comment names).
        this.safely(() => this.db.inTransaction && this.db.exec('ROLLBACK'));
        this.log?.error({ err: error }, 'audit: the records committed, the local state change did not');
        const failure = new ContainedError('AUDIT_FAILED', `audit: the local state change could not be committed after its record: ${(error as Error).message}`, { cause: error });
        for (const result of results) if (result.item.within !== undefined && result.item.within.pg === undefined && result.error === undefined) result.error = failure;
      }
    }
    for (const r of written) this.emit(r);
    settle(results);
  }

  /** PostgreSQL: grant and token changes the triggers queued (on any host or CLI), as records. */
  private async drainPgInbox(client: pg.PoolClient): Promise<AuditInput[]> {
    const rows = (await client.query<{ id: number; kind: string; ref: string }>(`SELECT id, kind, ref FROM audit_inbox ORDER BY id LIMIT ${INBOX_BATCH}`)).rows;
    if (rows.length === 0) return [];
    const out: AuditInput[] = [];
    for (const { kind, ref } of rows) {
      const grant = kind.startsWith('grant.');
      const row = (await client.query(grant ? 'SELECT * FROM grants WHERE id = $1' : 'SELECT id, name, role, created_at, created_by, revoked_at FROM tokens WHERE id = $1', [ref])).rows[0] as Row | undefined;
      out.push(inboxRecord(kind, ref, row === undefined ? undefined : sqliteShaped(row)));
    }
    // By id, not `<=`: a trigger row of a transaction still open may have a smaller id; it is drained later.
    await client.query('DELETE FROM audit_inbox WHERE id = ANY($1::bigint[])', [rows.map((r) => r.id)]);
    if (rows.length === INBOX_BATCH) setImmediate(() => this.schedule());
    return out;
  }

  /** Inside a write transaction: sign the head when `every` records have passed since the last checkpoint. */
  private checkpointIfDue(every: number): Checkpoint | undefined {
    const head = this.stmts.head.get() as [number, string] | undefined;
    if (!head) return undefined;
    const last = (this.stmts.lastCheckpoint.get() as number | null) ?? 0;
    if (head[0] - last < every) return undefined;
    const cp = signCheckpoint(this.options.key, head[0], head[1], this.now());
    this.stmts.insertCheckpoint.run(cp.seq, cp.hash, cp.at, cp.keyId, cp.signature);
    return cp;
  }

  /** Grant and token changes the triggers queued (by whoever made them), as records. */
  private drainInbox(): AuditInput[] {
    const rows = this.stmts.inbox.all() as Array<[number, string, string]>;
    if (rows.length === 0) return [];
    const out: AuditInput[] = [];
    for (const [, kind, ref] of rows) out.push(this.inboxRecord(kind, ref));
    this.db.prepare('DELETE FROM audit_inbox WHERE id <= ?').run(rows[rows.length - 1]?.[0] ?? 0);
    if (rows.length === INBOX_BATCH) this.schedule();
    return out;
  }

  private inboxRecord(kind: string, ref: string): AuditInput {
    const row = kind.startsWith('grant.')
      ? (this.db.prepare('SELECT * FROM grants WHERE id = ?').get(ref) as Row | undefined)
      : (this.db.prepare('SELECT id, name, role, created_at, created_by, revoked_at FROM tokens WHERE id = ?').get(ref) as Row | undefined);
    return inboxRecord(kind, ref, row);
  }

  private emit(r: StoredRecord): void {
    if (!this.log?.isLevelEnabled('info')) return;
    const { data, ...rest } = r;
    this.log.info({ ...publicFields({ ...rest, data }), data: JSON.parse(data) as unknown }, `audit ${r.type}`);
  }

  private settleIdle(): void {
    const waiting = [...this.idle];
    this.idle.clear();
    for (const done of waiting) done();
  }

  private safely(f: () => unknown): void {
    try {
      f();
    } catch (error) {
      this.log?.error({ err: error }, 'audit: background step failed');
    }
  }
}


/** Resolve each append with its record and its `within` value, or reject it with its own error. */
function settle(results: readonly Sealed[]): void {
  for (const { item, record, value, error } of results) {
    if (error !== undefined) item.reject(error);
    else item.resolve({ record: record && item.input ? { ...publicFields(record), data: item.input.data } : undefined, value });
  }
}

/** The record of one inbox row, from the grant or token row it names (read in the same transaction). */
function inboxRecord(kind: string, ref: string, row: Row | undefined): AuditInput {
  if (kind === 'grant.added' || kind === 'grant.revoked') {
    if (!row) return { type: kind, data: { grantId: ref, missing: true } };
    const grant = rowToGrant(row);
    const common = { subject: formatSubject(grant.subject), capability: grant.capability };
    if (kind === 'grant.added') return { type: kind, at: grant.createdAt, ...common, data: { grant } };
    return { type: kind, at: grant.revokedAt, ...common, data: { grantId: grant.id, by: grant.revokedBy, reason: grant.revokeReason, mode: grant.mode, methods: grant.methods } };
  }
  const token = row as { id: string; name: string; role: string; created_at: number; created_by: string; revoked_at: number | null } | undefined;
  const type = kind === 'token.created' ? 'token.created' : 'token.revoked';
  if (!token) return { type, data: { tokenId: ref, missing: true } };
  // Never the hash: name, role and who made it.
  if (type === 'token.created') return { type, at: token.created_at, data: { tokenId: token.id, name: token.name, role: token.role, createdBy: token.created_by } };
  return { type, ...(token.revoked_at === null ? {} : { at: token.revoked_at }), data: { tokenId: token.id, name: token.name, role: token.role } };
}

/** A PostgreSQL row in the shape rows.ts reads from SQLite: JSON as text, flags as 1/NULL. */
function sqliteShaped(row: Row): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(row)) {
    out[k] = v === true ? 1 : v === false ? null : v !== null && typeof v === 'object' && !(v instanceof Date) && !Buffer.isBuffer(v) ? JSON.stringify(v) : v instanceof Date ? v.getTime() : v;
  }
  return out;
}

/** Insert sealed records, a few hundred per statement. */
async function insertRecords(client: pg.PoolClient, records: readonly StoredRecord[]): Promise<void> {
  const CHUNK = 500;
  for (let i = 0; i < records.length; i += CHUNK) {
    const chunk = records.slice(i, i + CHUNK);
    const params: unknown[] = [];
    const rows = chunk.map((r) => {
      const base = params.length;
      params.push(r.seq, r.at, r.type, r.runId, r.subject, r.capability, r.method, r.callId, r.data, r.prevHash, r.hash);
      return `(${Array.from({ length: 11 }, (_, j) => `$${base + j + 1}`).join(', ')})`;
    });
    await client.query(`INSERT INTO audit_records (seq, at, type, run_id, subject, capability, method, call_id, data, prev_hash, hash) VALUES ${rows.join(', ')}`, params);
  }
}
