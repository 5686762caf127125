/**
 * The PostgreSQL schema of the shared host store (pg-store.ts) and its migrations.
 *
 * The tables mirror SQLite's (schema.ts) column for column, so rows.ts maps and validates rows of
 * either store and `contained store migrate` (host/cli/store.ts) copies SQLite rows in by column
 * name: epoch-ms times and counters are BIGINT (parsed back to JS numbers by the store's pool),
 * flags are INTEGER 1 or NULL, nested data is JSON *text* (not jsonb: the audit chain is hashed over
 * the stored text, and the other JSON columns round-trip byte for byte like SQLite's).
 *
 * What is here: grants, tokens, agents, requests and runs (with `host_id`), hosts, console sessions,
 * one-time secrets, the audit chain (`audit_records`, `audit_checkpoints`, `audit_inbox`) and the
 * one-row `change_counter`; since v3 also the trust ledger (`trust_events`), the review queue
 * (`reviews`), promotions, passkeys and the notification outbox.
 *
 * Triggers do what must happen in the same transaction as the change, whoever makes it (a host, a
 * CLI, hand-written SQL):
 * - a grant added or revoked, a token created or revoked: one `audit_inbox` row (drained into the
 *   chain by the audit writer, host/audit/log.ts), `change_counter` + 1, and a `grants` notification;
 * - a request inserted or updated: a `request` notification with its id, status and host.
 * Notifications go to channel `contained_changes` as JSON, delivered on COMMIT (never for a rolled
 * back change), with `origin` = the session's `contained.origin` setting (each store object sets its
 * own on its connections, so it can ignore its own changes; NULL from other writers).
 *
 * Migrating: `schema_version` holds one row per applied migration; `migratePg` applies the missing
 * ones in one transaction holding `pg_advisory_xact_lock(MIGRATE_LOCK_KEY)`, so hosts starting at
 * once on a new database never both migrate (the others wait, then find it done). A database whose
 * version is newer than this build is refused with STORE_SCHEMA_NEWER.
 */
import type pg from 'pg';
import { ContainedError } from '../../../runtime/errors.js';

/** pg_advisory_xact_lock key of schema migrations ("contained schema"; fixed for every host and version, distinct from the audit chain's). */
export const MIGRATE_LOCK_KEY = 0x636f6e7473636865n.toString();

/** The channel every change notification is sent on. */
export const CHANGES_CHANNEL = 'contained_changes';

/** The session setting (a custom GUC) naming the store object whose change a notification carries. */
export const ORIGIN_SETTING = 'contained.origin';

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
  expires_at BIGINT,
  budgets TEXT,
  request_timeout_ms BIGINT,
  review_sample DOUBLE PRECISION,
  created_by TEXT NOT NULL,
  reason TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  forced TEXT,
  revoked_at BIGINT,
  revoked_by TEXT,
  revoke_reason TEXT,
  signed_approvals INTEGER CHECK (signed_approvals IS NULL OR signed_approvals = 1),
  stage_runs INTEGER CHECK (stage_runs IS NULL OR stage_runs = 1)
);
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
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  resolved_at BIGINT,
  resolved_by TEXT,
  deny_reason TEXT,
  execution TEXT,
  signed_approvals INTEGER CHECK (signed_approvals IS NULL OR signed_approvals = 1),
  host_id TEXT
);
CREATE INDEX requests_by_status ON requests (status, created_at);
CREATE INDEX requests_by_run ON requests (run_id, created_at);
CREATE INDEX requests_by_host ON requests (host_id, status);

CREATE TABLE runs (
  id TEXT PRIMARY KEY NOT NULL,
  subject TEXT,
  image_name TEXT,
  status TEXT NOT NULL,
  input TEXT,
  created_at BIGINT NOT NULL,
  ended_at BIGINT,
  outcome TEXT,
  submitted_by TEXT,
  sensitive_sources TEXT,
  host_id TEXT
);
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_created ON runs (created_at);
CREATE INDEX runs_by_host ON runs (host_id, status);

CREATE TABLE tokens (
  id TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL,
  created_by TEXT NOT NULL,
  revoked_at BIGINT
);
-- Names are unique among active tokens; a revoked name may be reused.
CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at IS NULL;

CREATE TABLE agents (
  id TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL,
  subject TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL,
  created_by TEXT NOT NULL,
  revoked_at BIGINT
);
CREATE UNIQUE INDEX agents_active_name ON agents (name) WHERE revoked_at IS NULL;

CREATE TABLE hosts (
  id TEXT PRIMARY KEY NOT NULL,
  hostname TEXT NOT NULL,
  pid INTEGER NOT NULL,
  url TEXT,
  started_at BIGINT NOT NULL,
  heartbeat_at BIGINT NOT NULL,
  stopped_at BIGINT,
  reaped_at BIGINT,
  reaped_by TEXT
);

CREATE TABLE sessions (
  key TEXT PRIMARY KEY NOT NULL,
  operator TEXT NOT NULL,
  token_hash TEXT NOT NULL,
  csrf TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  last_seen_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);

CREATE TABLE one_time_secrets (
  kind TEXT NOT NULL,
  hash TEXT NOT NULL,
  operator TEXT NOT NULL,
  token_hash TEXT,
  expires_at BIGINT NOT NULL,
  PRIMARY KEY (kind, hash)
);
CREATE INDEX one_time_secrets_by_expiry ON one_time_secrets (expires_at);

-- The audit chain (host/audit; docs/audit-and-trust.md). seq is the chain order; data is the
-- JSON text the record was hashed over, kept verbatim.
CREATE TABLE audit_records (
  seq BIGINT PRIMARY KEY NOT NULL,
  at BIGINT NOT NULL,
  type TEXT NOT NULL,
  run_id TEXT,
  subject TEXT,
  capability TEXT,
  method TEXT,
  call_id TEXT,
  data TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX audit_by_call ON audit_records (call_id) WHERE call_id IS NOT NULL;
CREATE INDEX audit_by_run ON audit_records (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX audit_by_hash ON audit_records (hash);
CREATE INDEX audit_by_type ON audit_records (type, seq);

CREATE TABLE audit_checkpoints (
  seq BIGINT PRIMARY KEY NOT NULL,
  hash TEXT NOT NULL,
  at BIGINT NOT NULL,
  key_id TEXT NOT NULL,
  signature TEXT NOT NULL
);

CREATE TABLE audit_inbox (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind TEXT NOT NULL,
  ref TEXT NOT NULL
);

-- One row: grows by exactly one per committed grant added or revoked, token created or revoked
-- (the triggers below; a rolled back change rolls its increment back, unlike a sequence).
CREATE TABLE change_counter (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  value BIGINT NOT NULL
);
INSERT INTO change_counter (id, value) VALUES (1, 0);

-- TG_ARGV[0]: the inbox kind ('grant.added', 'grant.revoked', 'token.created', 'token.revoked').
CREATE FUNCTION contained_grants_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO audit_inbox (kind, ref) VALUES (TG_ARGV[0], NEW.id);
  UPDATE change_counter SET value = value + 1 WHERE id = 1;
  PERFORM pg_notify('${CHANGES_CHANNEL}', json_build_object('type', 'grants', 'origin', current_setting('${ORIGIN_SETTING}', true))::text);
  RETURN NULL;
END
$fn$;
CREATE TRIGGER audit_grant_added AFTER INSERT ON grants FOR EACH ROW EXECUTE FUNCTION contained_grants_changed('grant.added');
CREATE TRIGGER audit_grant_revoked AFTER UPDATE OF revoked_at ON grants FOR EACH ROW
  WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL) EXECUTE FUNCTION contained_grants_changed('grant.revoked');
CREATE TRIGGER audit_token_created AFTER INSERT ON tokens FOR EACH ROW EXECUTE FUNCTION contained_grants_changed('token.created');
CREATE TRIGGER audit_token_revoked AFTER UPDATE OF revoked_at ON tokens FOR EACH ROW
  WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL) EXECUTE FUNCTION contained_grants_changed('token.revoked');

CREATE FUNCTION contained_request_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pg_notify('${CHANGES_CHANNEL}', json_build_object('type', 'request', 'id', NEW.id, 'status', NEW.status, 'hostId', NEW.host_id,
    'origin', current_setting('${ORIGIN_SETTING}', true))::text);
  RETURN NULL;
END
$fn$;
CREATE TRIGGER requests_changed AFTER INSERT OR UPDATE ON requests FOR EACH ROW EXECUTE FUNCTION contained_request_changed();
`;

/** v2: uploaded images by digest and which clients uploaded them (as SQLite's v10): any host of the fleet runs an image uploaded to another. */
const V2 = `
CREATE TABLE images (
  digest TEXT PRIMARY KEY NOT NULL,
  bytes BYTEA NOT NULL,
  stored_at BIGINT NOT NULL
);
CREATE TABLE image_clients (
  digest TEXT NOT NULL,
  client TEXT NOT NULL,
  PRIMARY KEY (digest, client)
);
`;

/**
 * v3: the host state that was still each host's own SQLite file (as SQLite's v2, v4, v5): the trust
 * ledger (`trust_events`), the review queue (`reviews`), promotion proposals (`promotions`),
 * operators' passkeys (`passkeys`) and the notification outbox (`notify_outbox`, with a delivery
 * lease — `claimed_by`, `claimed_until` — so one host of the fleet sends each row at a time).
 * The trust tables and passkeys are written inside the audit batch's transaction (host/audit/log.ts
 * `Within`), so each commits with its audit record on the fleet's one chain. `requests.claim_id`:
 * the id of the execution claim that won (pg-store.ts), so a claim whose connection broke mid-call
 * is confirmed, not guessed. Grant and token notifications carry their kind and id, so each host
 * tells its operators of a grant another host (or a CLI) changed. `documents` (as SQLite's v11):
 * capability state shared by the fleet, such as the mcp kind's accepted tool versions.
 */
const V3 = `
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
  created_at BIGINT NOT NULL,
  marked_at BIGINT,
  marked_by TEXT,
  note TEXT
);
CREATE INDEX reviews_by_status ON reviews (status, created_at);

CREATE TABLE trust_events (
  id BIGSERIAL PRIMARY KEY,
  ref TEXT NOT NULL UNIQUE,
  subject TEXT NOT NULL,
  capability TEXT NOT NULL,
  method TEXT NOT NULL,
  kind TEXT NOT NULL,
  at BIGINT NOT NULL,
  grant_id TEXT,
  shadow INTEGER,
  risk TEXT
);
CREATE INDEX trust_events_by_action ON trust_events (subject, capability, method, id);

CREATE TABLE promotions (
  id TEXT PRIMARY KEY NOT NULL,
  subject TEXT NOT NULL,
  capability TEXT NOT NULL,
  method TEXT NOT NULL,
  grant_id TEXT NOT NULL,
  status TEXT NOT NULL,
  evidence TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  decided_at BIGINT,
  decided_by TEXT,
  decide_reason TEXT,
  new_grant_id TEXT,
  events_at_proposal BIGINT NOT NULL
);
CREATE UNIQUE INDEX promotions_open ON promotions (subject, capability, method) WHERE status = 'proposed';

CREATE TABLE passkeys (
  id TEXT PRIMARY KEY NOT NULL,
  operator TEXT NOT NULL,
  public_key TEXT NOT NULL,
  counter BIGINT NOT NULL,
  transports TEXT,
  rp_id TEXT NOT NULL,
  label TEXT,
  created_at BIGINT NOT NULL,
  last_used_at BIGINT,
  revoked_at BIGINT,
  revoked_by TEXT
);
CREATE INDEX passkeys_by_operator ON passkeys (operator, created_at);

CREATE TABLE notify_outbox (
  id BIGSERIAL PRIMARY KEY,
  target TEXT NOT NULL,
  event TEXT NOT NULL,
  event_key TEXT NOT NULL,
  order_key TEXT NOT NULL,
  payload TEXT NOT NULL,
  idempotency_key TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  next_at BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  delivered_at BIGINT,
  last_attempt_at BIGINT,
  last_error TEXT,
  last_status INTEGER,
  claimed_by TEXT,
  claimed_until BIGINT
);
CREATE UNIQUE INDEX notify_outbox_event ON notify_outbox (target, event_key);
CREATE INDEX notify_outbox_due ON notify_outbox (status, next_at);
CREATE INDEX notify_outbox_order ON notify_outbox (target, order_key, id);

ALTER TABLE requests ADD COLUMN claim_id TEXT;

CREATE TABLE documents (
  key TEXT PRIMARY KEY NOT NULL,
  text TEXT NOT NULL,
  version BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);

-- Grant and token notifications name the change and the row, so every host can tell its operators.
CREATE OR REPLACE FUNCTION contained_grants_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO audit_inbox (kind, ref) VALUES (TG_ARGV[0], NEW.id);
  UPDATE change_counter SET value = value + 1 WHERE id = 1;
  PERFORM pg_notify('${CHANGES_CHANNEL}', json_build_object('type', 'grants', 'kind', TG_ARGV[0], 'ref', NEW.id,
    'origin', current_setting('${ORIGIN_SETTING}', true))::text);
  RETURN NULL;
END
$fn$;
`;

/** Migration n (1-based) is PG_MIGRATIONS[n - 1]. Append only; never edit a shipped migration. */
const PG_MIGRATIONS: readonly string[] = [V1, V2, V3];

/** The schema version this build writes. */
export const PG_SCHEMA_VERSION = PG_MIGRATIONS.length;

/**
 * Bring the database up to PG_SCHEMA_VERSION on `client` (a connection of its own, not in a
 * transaction); returns the version found before migrating (0 = new database).
 */
export async function migratePg(client: pg.ClientBase, now: number, supported: number = PG_SCHEMA_VERSION): Promise<number> {
  await client.query('BEGIN');
  try {
    // First, before anything reads or creates: whoever holds it migrates, the others wait and find it done.
    await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [MIGRATE_LOCK_KEY]);
    await client.query('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY NOT NULL, applied_at BIGINT NOT NULL)');
    const current = Number((await client.query<{ v: number | string | null }>('SELECT MAX(version) AS v FROM schema_version')).rows[0]?.v ?? 0);
    if (current > supported) {
      throw new ContainedError('STORE_SCHEMA_NEWER', `store: the PostgreSQL database has schema v${current}, newer than this build (v${supported}); refusing to use it (upgrade this host)`, {
        data: { found: current, supported },
      });
    }
    for (let v = current + 1; v <= supported; v++) {
      await client.query(PG_MIGRATIONS[v - 1] ?? '');
      await client.query('INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)', [v, now]);
    }
    await client.query('COMMIT');
    return current;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}
