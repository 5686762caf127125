/**
 * The SQLite schema of the host store and its migrations. `schema_version` holds one row per
 * applied migration; opening a file applies the missing ones inside one IMMEDIATE transaction, so
 * two processes opening the same new file cannot both migrate it.
 *
 * Fails closed: a file whose schema is newer than this build (a downgrade) is refused with
 * `INTERNAL` rather than read with the wrong expectations.
 *
 * Scalars that are filtered on or compared-and-set (status, revoked_at, expires_at…) are real
 * columns; nested data (methods, scope, budgets, approvals, arguments, outcomes) is JSON text,
 * validated with the zod schemas of host/model.ts on every read (rows.ts).
 */
import type Database from 'better-sqlite3';
import { ContainedError } from '../../runtime/errors.js';

const V1 = `
CREATE TABLE grants (
  id TEXT PRIMARY KEY NOT NULL,
  subject_digest TEXT,
  subject_name TEXT,
  subject_signer TEXT,
  capability TEXT NOT NULL,
  scope TEXT,
  methods TEXT NOT NULL,
  mode TEXT NOT NULL,
  approvals INTEGER NOT NULL,
  expires_at INTEGER,
  budgets TEXT,
  request_timeout_ms INTEGER,
  review_sample REAL,
  created_by TEXT NOT NULL,
  reason TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  forced TEXT,
  revoked_at INTEGER,
  revoked_by TEXT,
  revoke_reason TEXT
) STRICT;
CREATE INDEX grants_by_digest ON grants (subject_digest);
CREATE INDEX grants_by_name ON grants (subject_name);

CREATE TABLE requests (
  id TEXT PRIMARY KEY NOT NULL,
  kind TEXT NOT NULL,
  run_id TEXT NOT NULL,
  subject TEXT,
  capability TEXT NOT NULL,
  definition TEXT,
  method TEXT,
  args TEXT,
  requested_scope TEXT,
  reason TEXT,
  risk TEXT,
  why TEXT NOT NULL,
  grant_id TEXT,
  approvals_required INTEGER NOT NULL,
  approvals TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  resolved_at INTEGER,
  resolved_by TEXT,
  deny_reason TEXT,
  execution TEXT
) STRICT;
CREATE INDEX requests_by_status ON requests (status, created_at);
CREATE INDEX requests_by_run ON requests (run_id, created_at);

CREATE TABLE runs (
  id TEXT PRIMARY KEY NOT NULL,
  subject TEXT,
  image_name TEXT,
  status TEXT NOT NULL,
  input TEXT,
  created_at INTEGER NOT NULL,
  ended_at INTEGER,
  outcome TEXT,
  submitted_by TEXT
) STRICT;
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_created ON runs (created_at);

CREATE TABLE tokens (
  id TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  created_by TEXT NOT NULL,
  revoked_at INTEGER
) STRICT;
-- Names are unique among active tokens; a revoked name may be reused.
CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at IS NULL;
`;

/**
 * v2 — audit log and trust ledger (host/audit, host/trust; docs/audit-and-trust.md). Additive only.
 * `audit_records` is the hash chain (seq is the chain order); `audit_checkpoints` holds signed
 * heads; `audit_inbox` is filled by triggers on grants and tokens in the same transaction as the
 * change (whoever makes it: host, CLI, API) and drained into the chain by the audit writer.
 */
const V2 = `
CREATE TABLE audit_records (
  seq INTEGER PRIMARY KEY NOT NULL,
  at INTEGER NOT NULL,
  type TEXT NOT NULL,
  run_id TEXT,
  subject TEXT,
  capability TEXT,
  method TEXT,
  call_id TEXT,
  data TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
) STRICT;
CREATE INDEX audit_by_call ON audit_records (call_id) WHERE call_id IS NOT NULL;
CREATE INDEX audit_by_run ON audit_records (run_id) WHERE run_id IS NOT NULL;

CREATE TABLE audit_checkpoints (
  seq INTEGER PRIMARY KEY NOT NULL,
  hash TEXT NOT NULL,
  at INTEGER NOT NULL,
  key_id TEXT NOT NULL,
  signature TEXT NOT NULL
) STRICT;

CREATE TABLE audit_inbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  ref TEXT NOT NULL
) STRICT;
CREATE TRIGGER audit_grant_added AFTER INSERT ON grants BEGIN INSERT INTO audit_inbox (kind, ref) VALUES ('grant.added', NEW.id); END;
CREATE TRIGGER audit_grant_revoked AFTER UPDATE OF revoked_at ON grants WHEN OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL
  BEGIN INSERT INTO audit_inbox (kind, ref) VALUES ('grant.revoked', NEW.id); END;
CREATE TRIGGER audit_token_created AFTER INSERT ON tokens BEGIN INSERT INTO audit_inbox (kind, ref) VALUES ('token.created', NEW.id); END;
CREATE TRIGGER audit_token_revoked AFTER UPDATE OF revoked_at ON tokens WHEN OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL
  BEGIN INSERT INTO audit_inbox (kind, ref) VALUES ('token.revoked', NEW.id); END;

CREATE TABLE reviews (
  id TEXT PRIMARY KEY NOT NULL,
  call_id TEXT NOT NULL UNIQUE,
  run_id TEXT NOT NULL,
  subject TEXT NOT NULL,
  capability TEXT NOT NULL,
  method TEXT NOT NULL,
  grant_id TEXT NOT NULL,
  action TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  marked_at INTEGER,
  marked_by TEXT,
  note TEXT
) STRICT;
CREATE INDEX reviews_by_status ON reviews (status, created_at);

CREATE TABLE trust_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ref TEXT NOT NULL UNIQUE,
  subject TEXT NOT NULL,
  capability TEXT NOT NULL,
  method TEXT NOT NULL,
  kind TEXT NOT NULL,
  at INTEGER NOT NULL,
  grant_id TEXT,
  shadow INTEGER,
  risk TEXT
) STRICT;
CREATE INDEX trust_events_by_action ON trust_events (subject, capability, method, id);

CREATE TABLE promotions (
  id TEXT PRIMARY KEY NOT NULL,
  subject TEXT NOT NULL,
  capability TEXT NOT NULL,
  method TEXT NOT NULL,
  grant_id TEXT NOT NULL,
  status TEXT NOT NULL,
  evidence TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  decided_at INTEGER,
  decided_by TEXT,
  decide_reason TEXT,
  new_grant_id TEXT,
  events_at_proposal INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX promotions_open ON promotions (subject, capability, method) WHERE status = 'proposed';
`;

/**
 * v3 — agent identities for MCP clients (host/agents.ts; docs/mcp.md). Additive only. An agent's
 * token is kept as its sha256, like an operator token; names are unique among active agents.
 */
const V3 = `
CREATE TABLE agents (
  id TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL,
  subject TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  created_by TEXT NOT NULL,
  revoked_at INTEGER
) STRICT;
CREATE UNIQUE INDEX agents_active_name ON agents (name) WHERE revoked_at IS NULL;
`;

/**
 * v4 — the notification outbox (host/store/notify-outbox.ts, host/notify/; docs/approvals.md).
 * Additive only. One row per event per target, unique per (target, event_key); delivered in
 * order per (target, order_key); the idempotency key is sent with every attempt.
 */
const V4 = `
CREATE TABLE notify_outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  target TEXT NOT NULL,
  event TEXT NOT NULL,
  event_key TEXT NOT NULL,
  order_key TEXT NOT NULL,
  payload TEXT NOT NULL,
  idempotency_key TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  next_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  delivered_at INTEGER,
  last_attempt_at INTEGER,
  last_error TEXT,
  last_status INTEGER
) STRICT;
CREATE UNIQUE INDEX notify_outbox_event ON notify_outbox (target, event_key);
CREATE INDEX notify_outbox_due ON notify_outbox (status, next_at);
CREATE INDEX notify_outbox_order ON notify_outbox (target, order_key, id);
`;

/** v5: operators' passkeys (WebAuthn credentials) for signed approvals (host/store/credentials.ts). */
const V5 = `
CREATE TABLE passkeys (
  id TEXT PRIMARY KEY NOT NULL,
  operator TEXT NOT NULL,
  public_key TEXT NOT NULL,
  counter INTEGER NOT NULL,
  transports TEXT,
  rp_id TEXT NOT NULL,
  label TEXT,
  created_at INTEGER NOT NULL,
  last_used_at INTEGER,
  revoked_at INTEGER,
  revoked_by TEXT
) STRICT;
CREATE INDEX passkeys_by_operator ON passkeys (operator, created_at);
`;

/** v6: the sensitive sources a run read (the data-flow rule, host/gate/data-flow.ts), a JSON array of labels. Additive. */
const V6 = `
ALTER TABLE runs ADD COLUMN sensitive_sources TEXT;
`;

/**
 * v7: signed approvals required by one grant (`grants.signed_approvals`, host/approvals/signed.ts),
 * and by the request raised under it (`requests.signed_approvals`, copied when it opens: a narrowing
 * or revocation later does not change what its approvals need). 1 or NULL. Additive.
 */
const V7 = `
ALTER TABLE grants ADD COLUMN signed_approvals INTEGER CHECK (signed_approvals IS NULL OR signed_approvals = 1);
ALTER TABLE requests ADD COLUMN signed_approvals INTEGER CHECK (signed_approvals IS NULL OR signed_approvals = 1);
`;

/**
 * v8: a grant that stages every run of its subject (`grants.stage_runs`, docs/changesets.md): a run
 * of that subject is staged even when it was not submitted staged. 1 or NULL. Additive.
 */
const V8 = `
ALTER TABLE grants ADD COLUMN stage_runs INTEGER CHECK (stage_runs IS NULL OR stage_runs = 1);
`;

/**
 * v9: several hosts (host/fleet.ts; docs/host-state.md). The host whose run made a request or
 * started a run (`host_id`); the hosts that used the store, with heartbeats and who reaped them;
 * console sessions and one-time secrets (WebSocket tickets, console login codes) by the sha256 of
 * their secret, so a restarted host keeps operators logged in. Additive.
 */
const V9 = `
ALTER TABLE requests ADD COLUMN host_id TEXT;
ALTER TABLE runs ADD COLUMN host_id TEXT;
CREATE INDEX requests_by_host ON requests (host_id, status);
CREATE INDEX runs_by_host ON runs (host_id, status);
CREATE TABLE hosts (
  id TEXT PRIMARY KEY NOT NULL,
  hostname TEXT NOT NULL,
  pid INTEGER NOT NULL,
  url TEXT,
  started_at INTEGER NOT NULL,
  heartbeat_at INTEGER NOT NULL,
  stopped_at INTEGER,
  reaped_at INTEGER,
  reaped_by TEXT
) STRICT;
CREATE TABLE sessions (
  key TEXT PRIMARY KEY NOT NULL,
  operator TEXT NOT NULL,
  token_hash TEXT NOT NULL,
  csrf TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) STRICT;
CREATE TABLE one_time_secrets (
  kind TEXT NOT NULL,
  hash TEXT NOT NULL,
  operator TEXT NOT NULL,
  token_hash TEXT,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (kind, hash)
) STRICT;
CREATE INDEX one_time_secrets_by_expiry ON one_time_secrets (expires_at);
`;

/**
 * v10: uploaded images in the store (host/runs/image-store.ts), so every host of a fleet runs an
 * image uploaded to any of them: the archive by digest, and which clients (the sha256 of the
 * client's name) uploaded it. Images stored as files by earlier versions are still read. Additive.
 */
const V10 = `
CREATE TABLE images (
  digest TEXT PRIMARY KEY NOT NULL,
  bytes BLOB NOT NULL,
  stored_at INTEGER NOT NULL
) STRICT;
CREATE TABLE image_clients (
  digest TEXT NOT NULL,
  client TEXT NOT NULL,
  PRIMARY KEY (digest, client)
) STRICT;
`;

/** Migration n (1-based) is MIGRATIONS[n - 1]. Append only; never edit a shipped migration. */
/**
 * v11: small durable documents by key (Store.getDocument/putDocument): capability state such as
 * the mcp kind's accepted tool versions (host/store/documents.ts), with a version for
 * compare-and-set. Additive.
 */
const V11 = `
CREATE TABLE documents (
  key TEXT PRIMARY KEY NOT NULL,
  text TEXT NOT NULL,
  version INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
`;

const MIGRATIONS: readonly string[] = [V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11];

/** The schema version this build writes. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** Bring the file up to SCHEMA_VERSION; returns the version found before migrating (0 = new file). */
export function migrate(db: Database.Database, now: number): number {
  const run = db.transaction(() => {
    db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY NOT NULL, applied_at INTEGER NOT NULL) STRICT');
    const row = db.prepare('SELECT MAX(version) AS v FROM schema_version').get() as { v: number | null } | undefined;
    const current = row?.v ?? 0;
    if (current > SCHEMA_VERSION) {
      throw new ContainedError('INTERNAL', `store: the database has schema v${current}, newer than this build (v${SCHEMA_VERSION}); refusing to open it`, {
        data: { found: current, supported: SCHEMA_VERSION },
      });
    }
    const record = db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)');
    for (let v = current + 1; v <= SCHEMA_VERSION; v++) {
      db.exec(MIGRATIONS[v - 1] ?? '');
      record.run(v, now);
    }
    return current;
  });
  return run.immediate();
}
