/**
 * Operators' passkeys as the store keeps them (table `passkeys`, migration v5): one row per WebAuthn
 * credential — its id (base64url), the operator who registered it, its COSE public key (base64url),
 * the signature counter last seen, the relying party id it was made for, when it was registered and
 * revoked. host/approvals/ verifies assertions against these rows; nothing else runs SQL on them.
 *
 * Kept on its own connection to the store file, like the notify outbox and the audit log: the Store
 * interface stays as it is. A registration is inserted inside the audit log's transaction
 * (`insertPasskey(db, …)` given the audit's connection), so a passkey never exists without its
 * `passkey.registered` record, which is what `contained audit verify` checks signatures with.
 *
 * Guarantees: the counter only moves up (`advanceCounter` is a compare-and-set: two approvals that
 * present the same counter cannot both pass); a revoked row stays (its approvals stay verifiable) and
 * never verifies again. Fails with INTERNAL (SQLite error as cause) or on a corrupt row.
 */
import Database from 'better-sqlite3';
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
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

/** Insert a new passkey on `db` (the audit log's connection, inside its transaction). INVALID_ARGUMENT when the id exists. */
export function insertPasskey(db: Database.Database, record: PasskeyRecord): void {
  const checked = passkeyRecordSchema.safeParse(record);
  if (!checked.success) throw new ContainedError('INVALID_ARGUMENT', `store: invalid passkey: ${checked.error.issues[0]?.message ?? 'does not match the schema'}`);
  const r = checked.data;
  try {
    db.prepare(
      'INSERT INTO passkeys (id, operator, public_key, counter, transports, rp_id, label, created_at, last_used_at, revoked_at, revoked_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)',
    ).run(r.id, r.operator, r.publicKey, r.counter, r.transports === undefined ? null : JSON.stringify(r.transports), r.rpId, r.label ?? null, r.createdAt);
  } catch (error) {
    if (error instanceof Error && /UNIQUE|PRIMARY KEY/.test(error.message)) throw new ContainedError('INVALID_ARGUMENT', 'this passkey is already registered', { cause: error });
    throw new ContainedError('INTERNAL', 'store: the passkey could not be written', { cause: error });
  }
}

/** Mark a passkey revoked on `db` (inside the audit transaction); false when unknown or already revoked. */
export function revokePasskey(db: Database.Database, id: string, by: string, at: number): boolean {
  return db.prepare('UPDATE passkeys SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL').run(at, by, id).changes === 1;
}

export interface PasskeyStore {
  get(id: string): PasskeyRecord | undefined;
  /** An operator's passkeys, oldest first (revoked ones included). */
  forOperator(operator: string): PasskeyRecord[];
  /**
   * Record a verified assertion's counter: moves `counter` up to `next` only if it is still
   * `seen` (compare-and-set), or leaves a passkey whose authenticator keeps no counter (both 0).
   * False: another assertion of this passkey was counted since (a replay, or a cloned key).
   */
  advanceCounter(id: string, seen: number, next: number, at: number): boolean;
  close(): void;
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
  const guard = <T>(what: string, f: () => T): T => {
    try {
      return f();
    } catch (error) {
      if (error instanceof ContainedError) throw error;
      throw new ContainedError('INTERNAL', `store: ${what} failed`, { cause: error });
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
    close: () => db.close(),
  };
}
