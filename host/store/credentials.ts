/**
 * Operators' passkeys as the store keeps them (table `passkeys`, SQLite migration v5, PostgreSQL
 * v3): one row per WebAuthn credential — its id (base64url), the operator who registered it, its
 * COSE public key (base64url), the signature counter last seen, the relying party id it was made
 * for, when it was registered and revoked. host/approvals/ verifies assertions against these rows;
 * nothing else runs SQL on them.
 *
 * Two implementations of one async PasskeyStore: the SQLite store file (its own connection, as the
 * audit log has) and the fleet's PostgreSQL database (the audit log's pool), so with several hosts
 * an operator registers a passkey once and signs approvals through any host. A registration or
 * revocation is a `Within` step of its audit record (host/audit/log.ts): it runs in the audit
 * batch's transaction, on the database that holds the chain, so a passkey never exists without its
 * `passkey.registered` record, which is what `contained audit verify` checks signatures with.
 *
 * Guarantees: the counter only moves up (`advanceCounter` is a compare-and-set: two approvals that
 * present the same counter cannot both pass, on one host or two); a revoked row stays (its
 * approvals stay verifiable) and never verifies again. Fails with INTERNAL (the driver error as
 * cause) or on a corrupt row, STORE_UNAVAILABLE when PostgreSQL cannot be reached.
 */
import Database from 'better-sqlite3';
import type pg from 'pg';
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import type { Within } from './within.js';
import { unavailableReason } from './pg-store.js';
import { migrate } from './schema.js';

const B64URL = /^[A-Za-z0-9_-]+$/;

export const passkeyRecordSchema = z.strictObject({
  /** The credential id, base64url (as WebAuthn's `rawId`). */
  id: z.string().min(1).max(1024).regex(B64URL),
  operator: z.string().min(1),
  /** The COSE public key, base64url. */
  publicKey: z.string().min(1).max(8192).regex(B64URL),
  counter: z.number().int().min(0),
  transports: z.array(z.string().max(32)).max(8).optional(),
  /** The relying party id it was registered for (the console's host name). */
  rpId: z.string().min(1),
  /** The operator's name for it ("laptop", "YubiKey 5"). */
  label: z.string().max(100).optional(),
  createdAt: z.number().int(),
  lastUsedAt: z.number().int().optional(),
  revokedAt: z.number().int().optional(),
  revokedBy: z.string().optional(),
});
export type PasskeyRecord = z.infer<typeof passkeyRecordSchema>;

function checked(record: PasskeyRecord): PasskeyRecord {
  const parsed = passkeyRecordSchema.safeParse(record);
  if (!parsed.success) throw new ContainedError('INVALID_ARGUMENT', `store: invalid passkey: ${parsed.error.issues[0]?.message ?? 'does not match the schema'}`);
  return parsed.data;
}

const INSERT_COLUMNS = '(id, operator, public_key, counter, transports, rp_id, label, created_at, last_used_at, revoked_at, revoked_by)';
const insertParams = (r: PasskeyRecord): unknown[] => [r.id, r.operator, r.publicKey, r.counter, r.transports === undefined ? null : JSON.stringify(r.transports), r.rpId, r.label ?? null, r.createdAt];
const duplicate = (error: unknown): ContainedError => new ContainedError('INVALID_ARGUMENT', 'this passkey is already registered', { cause: error });

/** Insert a new passkey on `db` (the audit log's connection, inside its transaction). INVALID_ARGUMENT when the id exists. */
export function insertPasskey(db: Database.Database, record: PasskeyRecord): void {
  const r = checked(record);
  try {
    db.prepare(`INSERT INTO passkeys ${INSERT_COLUMNS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)`).run(...insertParams(r));
  } catch (error) {
    if (error instanceof Error && /UNIQUE|PRIMARY KEY/.test(error.message)) throw duplicate(error);
    throw new ContainedError('INTERNAL', 'store: the passkey could not be written', { cause: error });
  }
}

/** Mark a passkey revoked on `db` (inside the audit transaction); false when unknown or already revoked. */
export function revokePasskey(db: Database.Database, id: string, by: string, at: number): boolean {
  return db.prepare('UPDATE passkeys SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL').run(at, by, id).changes === 1;
}

export interface PasskeyStore {
  get(id: string): Promise<PasskeyRecord | undefined>;
  /** An operator's passkeys, oldest first (revoked ones included). */
  forOperator(operator: string): Promise<PasskeyRecord[]>;
  /**
   * Record a verified assertion's counter: moves `counter` up to `next` only if it is still
   * `seen` (compare-and-set), or leaves a passkey whose authenticator keeps no counter (both 0).
   * False: another assertion of this passkey was counted since (a replay, or a cloned key).
   */
  advanceCounter(id: string, seen: number, next: number, at: number): Promise<boolean>;
  /** The step that stores a new passkey with its audit record (INVALID_ARGUMENT when the id exists). */
  insert(record: PasskeyRecord): Within<void>;
  /** The step that revokes it with its audit record; false when unknown or already revoked. */
  revoke(id: string, by: string, at: number): Within<boolean>;
  close(): Promise<void>;
}

function rowToPasskey(row: Record<string, unknown>): PasskeyRecord {
  const value: Record<string, unknown> = {
    id: row.id,
    operator: row.operator,
    publicKey: row.public_key,
    counter: row.counter,
    rpId: row.rp_id,
    createdAt: row.created_at,
  };
  if (typeof row.transports === 'string') value.transports = JSON.parse(row.transports) as unknown;
  if (row.label !== null && row.label !== undefined) value.label = row.label;
  if (row.last_used_at !== null && row.last_used_at !== undefined) value.lastUsedAt = row.last_used_at;
  if (row.revoked_at !== null && row.revoked_at !== undefined) value.revokedAt = row.revoked_at;
  if (row.revoked_by !== null && row.revoked_by !== undefined) value.revokedBy = row.revoked_by;
  const parsed = passkeyRecordSchema.safeParse(value);
  if (!parsed.success) throw new ContainedError('INTERNAL', `store: corrupt row in passkeys (${String(row.id)}): ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return parsed.data;
}

/** Open the passkey table of the store file at `file` (migrating it if needed). */
export function openPasskeyStore(file: string, options: { busyTimeoutMs?: number } = {}): PasskeyStore {
  let db: Database.Database;
  try {
    db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
    migrate(db, Date.now());
  } catch (error) {
    throw new ContainedError('INTERNAL', `store: cannot open the passkeys in ${file}`, { cause: error });
  }
  const guard = <T>(what: string, f: () => T): Promise<T> => {
    try {
      return Promise.resolve(f());
    } catch (error) {
      if (error instanceof ContainedError) return Promise.reject(error);
      return Promise.reject(new ContainedError('INTERNAL', `store: ${what} failed`, { cause: error }));
    }
  };
  const getStmt = db.prepare('SELECT * FROM passkeys WHERE id = ?');
  const byOperator = db.prepare('SELECT * FROM passkeys WHERE operator = ? ORDER BY created_at, id');
  const advance = db.prepare('UPDATE passkeys SET counter = ?, last_used_at = ? WHERE id = ? AND revoked_at IS NULL AND counter = ? AND (? > counter OR (? = 0 AND counter = 0))');
  return {
    get: (id) => guard('reading a passkey', () => {
      const row = getStmt.get(id) as Record<string, unknown> | undefined;
      return row ? rowToPasskey(row) : undefined;
    }),
    forOperator: (operator) => guard('listing passkeys', () => (byOperator.all(operator) as Array<Record<string, unknown>>).map(rowToPasskey)),
    advanceCounter: (id, seen, next, at) => guard('recording a passkey counter', () => advance.run(next, at, id, seen, next, next).changes === 1),
    // The audit log's connection to the same file runs these, inside its batch.
    insert: (record) => ({ sqlite: (audit) => insertPasskey(audit, record) }),
    revoke: (id, by, at) => ({ sqlite: (audit) => revokePasskey(audit, id, by, at) }),
    close: async () => {
      db.close();
    },
  };
}

/** The passkeys of the fleet's PostgreSQL database, read through `pool` (the audit log's: the same database as the chain). */
export function openPgPasskeyStore(pool: pg.Pool): PasskeyStore {
  const typed = (what: string, error: unknown): ContainedError => {
    if (error instanceof ContainedError) return error;
    const reason = unavailableReason(error);
    if (reason !== undefined) return new ContainedError('STORE_UNAVAILABLE', `store: ${what} failed: the PostgreSQL store cannot be reached`, { cause: error, data: { reason } });
    return new ContainedError('INTERNAL', `store: ${what} failed`, { cause: error });
  };
  const query = async (what: string, sql: string, params: unknown[]): Promise<pg.QueryResult> => {
    try {
      return await pool.query(sql, params);
    } catch (error) {
      throw typed(what, error);
    }
  };
  return {
    async get(id) {
      const row = (await query('reading a passkey', 'SELECT * FROM passkeys WHERE id = $1', [id])).rows[0] as Record<string, unknown> | undefined;
      return row ? rowToPasskey(row) : undefined;
    },
    async forOperator(operator) {
      return ((await query('listing passkeys', 'SELECT * FROM passkeys WHERE operator = $1 ORDER BY created_at, id', [operator])).rows as Array<Record<string, unknown>>).map(rowToPasskey);
    },
    async advanceCounter(id, seen, next, at) {
      const r = await query(
        'recording a passkey counter',
        'UPDATE passkeys SET counter = $1, last_used_at = $2 WHERE id = $3 AND revoked_at IS NULL AND counter = $4 AND ($1 > counter OR ($1 = 0 AND counter = 0))',
        [next, at, id, seen],
      );
      return r.rowCount === 1;
    },
    insert: (record) => ({
      pg: async (client) => {
        const r = checked(record);
        try {
          await client.query(`INSERT INTO passkeys ${INSERT_COLUMNS} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, NULL)`, insertParams(r));
        } catch (error) {
          if ((error as { code?: unknown }).code === '23505') throw duplicate(error);
          throw typed('writing the passkey', error);
        }
      },
    }),
    revoke: (id, by, at) => ({
      pg: async (client) => {
        try {
          return (await client.query('UPDATE passkeys SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked_at IS NULL', [at, by, id])).rowCount === 1;
        } catch (error) {
          throw typed('revoking the passkey', error);
        }
      },
    }),
    close: () => Promise.resolve(),
  };
}
