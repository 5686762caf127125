/**
 * `contained store migrate --to postgres://…`: copy the embedded SQLite store of a data folder
 * (`<dataDir>/contained.db`, or the config's SQLite `store`) into a PostgreSQL database no host has
 * used yet, so the same host state serves a fleet (docs/host-state.md, "Moving from SQLite to
 * PostgreSQL").
 *
 * What is copied, row for row: grants (revoked ones with their revocation), tokens (hashes only,
 * as stored), agents, host records, runs, requests (approvals, resolution, execution state), and
 * the audit chain (`audit_records`, `audit_checkpoints`) verbatim, so every hash and checkpoint
 * signature still verifies. Host records go along because runs and requests name their host: a
 * host id the fleet has never seen counts as alive (fleet.ts) and what it owned would wait for it
 * forever; known, a host that stopped is dead to the fleet, and one that crashed is reaped by the
 * first live host. Grant and token changes the audit writer had not yet chained (SQLite
 * `audit_inbox`) are queued in PostgreSQL's inbox, so they are recorded there; the copies' own
 * trigger rows are dropped (the copied chain already records those grants and tokens).
 *
 * Also copied: the trust ledger, review queue, promotion proposals, passkeys, the notification
 * outbox and documents (what a fleet shares since PostgreSQL schema v3; the trust tables and
 * passkeys read back and compared after the copy), the mcp kind's accepted tool versions from
 * `<dataDir>/mcp-tools/` (a fleet keeps them in the store), and images an earlier version kept as
 * files in `<dataDir>/images` (with who uploaded them).
 *
 * Not copied: console sessions and one-time secrets (operators log in again).
 *
 * Safety:
 * - one PostgreSQL transaction: a failure anywhere leaves the database as it was;
 * - the target's tables are locked (EXCLUSIVE) and must be empty inside that transaction, so two
 *   migrations cannot both copy, and a database in use (any host record, any grant…) is refused
 *   (INVALID_ARGUMENT);
 * - the data folder's host lock is taken (DATA_DIR_IN_USE while a host runs on it: a running host
 *   would keep writing to SQLite after the copy) and the SQLite write lock is held for the copy
 *   (a `contained grant add` meanwhile waits, or fails loudly, instead of being silently left out);
 * - afterwards every record is read back through both stores and compared, and the audit chain is
 *   re-verified on PostgreSQL (hashes, links, checkpoint signatures with the keys that signed them).
 *
 * Exit codes: 0 copied and verified; 2 usage or a target that is not empty; 1 anything else
 * (DATA_DIR_IN_USE, NOT_FOUND, STORE_UNAVAILABLE, INTERNAL when the copy does not read back equal).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { ContainedError } from '../../runtime/errors.js';
import { canonicalJson } from '../audit/canonical.js';
import { type AuditKey, checkpointSignatureOk, loadVerifyKeys } from '../audit/keys.js';
import { AUDIT_LOCK_KEY, openAuditPool } from '../audit/pg.js';
import { GENESIS, hashRecord, rowToStored } from '../audit/record.js';
import { openPasskeyStore, openPgPasskeyStore } from '../store/credentials.js';
import { acquireHostLock } from '../store/host-lock.js';
import { locateState } from '../store/location.js';
import { writeMigratedMarker } from '../store/migrated-marker.js';
import { openPgStore } from '../store/pg-store.js';
import { openSqliteStore } from '../store/sqlite-store.js';
import type { Store } from '../store/store.js';
import { redactUrl } from '../store/store-location.js';
import { isPostgresUrl } from '../fleet-config.js';
import { pgTrustTables } from '../trust/pg-tables.js';
import { DEFAULT_TRUST_CONFIG } from '../trust/policy.js';
import { sqliteTrustTables } from '../trust/sqlite-tables.js';
import type { TrustTables } from '../trust/tables.js';
import { type CliIo, parseFlags, runSubcommand, STATE_FLAGS, stringFlag } from './args.js';
import { noPositionals } from './grant.js';

export const STORE_USAGE = `Usage:
  contained store migrate --to postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE
                          [--config FILE] [--data-dir DIR] [--json]

migrate copies the data folder's SQLite store (grants, tokens, agents, host records, runs,
requests and the audit chain) into a PostgreSQL database that holds no host state yet, in one
transaction, then reads everything back and verifies the audit chain there. Stop the host first. Afterwards set
"store" in the host config to the URL (or CONTAINED_STORE); the SQLite file stays as it was.
`;

/** What is copied, in this order (in one transaction: a reader sees all of it or none). */
export const MIGRATED_TABLES = [
  'grants', 'tokens', 'agents', 'hosts', 'runs', 'requests', 'images', 'image_clients', 'audit_records', 'audit_checkpoints',
  'trust_events', 'reviews', 'promotions', 'passkeys', 'notify_outbox', 'documents',
] as const;
type Table = (typeof MIGRATED_TABLES)[number];

/** How long to wait for another session's lock on the target tables before giving up. */
const LOCK_TIMEOUT = '10s';
/** PostgreSQL takes at most 65 535 parameters per statement. */
const MAX_PARAMS = 60_000;

export interface MigrateSummary {
  from: string;
  to: string;
  copied: Record<Table, number>;
  /** Grant and token changes not yet in the SQLite chain, queued in PostgreSQL's audit inbox. */
  inboxQueued: number;
  /** `signaturesChecked`: checkpoints whose signature was verified (the others are of a key not found here). */
  audit: { records: number; headSeq: number; headHash: string; checkpoints: number; signaturesChecked: number };
  elapsedMs: number;
}

export async function storeCommand(argv: string[], io: CliIo): Promise<number> {
  return runSubcommand('store', argv, io, STORE_USAGE, { migrate: storeMigrate });
}

async function storeMigrate(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(argv, { ...STATE_FLAGS, to: { type: 'string' } });
  if (values.help) {
    io.stdout(STORE_USAGE);
    return 0;
  }
  noPositionals(positionals, STORE_USAGE);
  const to = stringFlag(values, 'to');
  if (to === undefined || to.trim() === '') throw new ContainedError('USAGE', `--to is required\n\n${STORE_USAGE}`);
  if (!isPostgresUrl(to)) throw new ContainedError('USAGE', `--to takes a postgres:// URL (got ${JSON.stringify(to.slice(0, 40))})`);
  try {
    new URL(to);
  } catch (cause) {
    throw new ContainedError('INVALID_ARGUMENT', '--to: not a valid postgres:// URL', { cause, data: { path: ['to'] } });
  }
  const json = values.json === true;
  const location = await locateState({ configFlag: stringFlag(values, 'config'), dataDirFlag: stringFlag(values, 'data-dir') });
  const summary = await migrateSqliteToPostgres({
    file: location.storeFile,
    dataDir: location.dataDir,
    auditKeys: location.config?.audit,
    url: to,
    progress: json ? () => undefined : (line) => io.stdout(`${line}\n`),
  });
  if (json) {
    io.stdout(`${JSON.stringify(summary, null, 2)}\n`);
    return 0;
  }
  const { copied, audit } = summary;
  io.stdout(
    `migrated ${summary.from} to ${summary.to} in ${summary.elapsedMs} ms: ${copied.grants} grants, ${copied.tokens} tokens, ${copied.agents} agents, ${copied.hosts} hosts, ` +
      `${copied.runs} runs, ${copied.requests} requests, ${copied.images} images, ${copied.trust_events} trust events, ${copied.reviews} reviews, ${copied.promotions} proposals, ` +
      `${copied.passkeys} passkeys, ${copied.notify_outbox} notifications, ${audit.records} audit records (head ${audit.headSeq} ${audit.headHash.slice(0, 16)}…, ` +
      `${audit.checkpoints} checkpoints${signatures(audit)}); everything reads back equal\n`,
  );
  io.stdout(`next: set "store" in the host config to this URL (or CONTAINED_STORE), then start the hosts\n`);
  return 0;
}

function signatures(audit: MigrateSummary['audit']): string {
  if (audit.checkpoints === 0) return '';
  if (audit.signaturesChecked === audit.checkpoints) return ', signatures verified';
  return `, ${audit.signaturesChecked} signatures verified, ${audit.checkpoints - audit.signaturesChecked} of keys not found here unchecked`;
}

export interface MigrateOptions {
  /** The SQLite store file. */
  file: string;
  /** Its data folder: the host lock, and the audit public key for checking signatures. */
  dataDir: string;
  /** The config's `audit` section: more public keys (`keyFile`, `publicKeyFiles`) for checkpoint signatures. */
  auditKeys?: { keyFile?: string | undefined; publicKeyFiles?: readonly string[] | undefined } | undefined;
  url: string;
  progress?: (line: string) => void;
}

/** Copy, then verify. Throws ContainedError; on any failure before the commit, PostgreSQL is unchanged. */
export async function migrateSqliteToPostgres(options: MigrateOptions): Promise<MigrateSummary> {
  const t0 = Date.now();
  const progress = options.progress ?? (() => undefined);
  const shownUrl = redactUrl(options.url);
  if (!existsSync(options.file)) throw new ContainedError('NOT_FOUND', `no SQLite store at ${options.file} (pass --data-dir or --config)`);
  const lock = acquireHostLock(options.dataDir);
  try {
    // Bring the SQLite file to this build's schema (as any command that opens it would), and
    // the PostgreSQL database to its schema (openPgStore migrates it).
    const source = await openSqliteStore(options.file);
    try {
      const target = await openTarget(options.url);
      try {
        const { copied, inboxQueued } = await copy(options.file, options.dataDir, options.url, shownUrl, progress);
        progress('verifying: every record read back through both stores, the audit chain re-checked on PostgreSQL');
        await compareRecords(source, target);
        await compareHostState(options.file, options.url);
        const keys = loadVerifyKeys(options.dataDir, [], options.auditKeys) ?? [];
        const audit = await verifyTargetChain(options.url, keys, copied.audit_records, copied.audit_checkpoints);
        // From now on this folder's SQLite file is a stale copy: hosts and CLI writes on it are refused (migrated-marker.ts).
        writeMigratedMarker(options.dataDir, shownUrl, Date.now());
        return { from: options.file, to: shownUrl, copied, inboxQueued, audit, elapsedMs: Date.now() - t0 };
      } finally {
        await target.close();
      }
    } finally {
      await source.close();
    }
  } finally {
    lock.release();
  }
}

function openTarget(url: string): Promise<Store> {
  return openPgStore(url);
}

const INT8_OID = 20;

/** A client of its own: bigint as JS numbers (epoch ms and seqs are far below 2^53), like the SQLite rows. */
function pgClient(url: string): pg.Client {
  return new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: 10_000,
    application_name: 'contained-store-migrate',
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === INT8_OID ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  });
}

function unavailable(shownUrl: string, what: string, error: unknown): ContainedError {
  if (error instanceof ContainedError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown }).code;
  return new ContainedError('STORE_UNAVAILABLE', `store migrate: ${what} (${shownUrl}): ${message}`, {
    cause: error,
    data: { reason: typeof code === 'string' ? code : 'connection' },
  });
}

interface PgColumn {
  name: string;
  type: string;
  identity: boolean;
}

async function pgColumns(client: pg.Client, table: string): Promise<Map<string, PgColumn>> {
  const { rows } = await client.query<{ column_name: string; data_type: string; is_identity: string }>(
    'SELECT column_name, data_type, is_identity FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1',
    [table],
  );
  return new Map(rows.map((r) => [r.column_name, { name: r.column_name, type: r.data_type, identity: r.is_identity === 'YES' }]));
}

/** A SQLite value as PostgreSQL takes it for that column (SQLite has no booleans: 0/1). */
function toPg(value: unknown, column: PgColumn): unknown {
  if (value === null || value === undefined) return null;
  if (column.type === 'boolean' && typeof value === 'number') return value !== 0;
  return value;
}

async function copy(file: string, dataDir: string, url: string, shownUrl: string, progress: (line: string) => void): Promise<{ copied: Record<Table, number>; inboxQueued: number }> {
  const sqlite = new Database(file, { timeout: 5_000 });
  const client = pgClient(url);
  client.on('error', () => undefined); // a dropped connection surfaces as the failing query's error
  try {
    try {
      await client.connect();
    } catch (error) {
      throw unavailable(shownUrl, 'cannot connect', error);
    }
    // The SQLite write lock for the whole copy: nobody changes the source while it is read.
    sqlite.prepare('BEGIN IMMEDIATE').run();
    try {
      await client.query('BEGIN');
      try {
        await client.query(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
        // The audit chain's lock first, as every appender takes it (audit/log.ts), then the tables:
        // an appender waits for the copy instead of deadlocking with it.
        await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [AUDIT_LOCK_KEY]);
        await client.query(`LOCK TABLE ${[...MIGRATED_TABLES, 'audit_inbox'].join(', ')} IN EXCLUSIVE MODE`);
        await refuseNonEmpty(client, shownUrl);
        const plans: Plan[] = [];
        for (const table of MIGRATED_TABLES) plans.push(plan(sqlite, table, await pgColumns(client, table)));
        const copied = {} as Record<Table, number>;
        for (const p of plans) {
          copied[p.table] = await copyTable(sqlite, client, p);
          progress(`copied ${p.table}: ${copied[p.table]}`);
        }
        const tools = await copyMcpToolFiles(dataDir, client);
        if (tools > 0) {
          copied.documents += tools;
          progress(`copied ${tools} mcp tool approval file${tools === 1 ? '' : 's'} (${path.join(dataDir, 'mcp-tools')}): a fleet accepts tools once, in the store`);
        }
        const legacy = await copyLegacyImages(dataDir, client);
        if (legacy.images + legacy.clients > 0) {
          copied.images += legacy.images;
          copied.image_clients += legacy.clients;
          progress(`copied ${legacy.images} image${legacy.images === 1 ? '' : 's'} an earlier version kept as files (${legacy.clients} uploader record${legacy.clients === 1 ? '' : 's'})`);
        }
        // The copies fired the grant/token triggers: their inbox rows would chain a second
        // "grant.added" for every grant. The copied chain records them already.
        await client.query('DELETE FROM audit_inbox');
        const pending = sqlite.prepare('SELECT kind, ref FROM audit_inbox ORDER BY id').all() as Array<{ kind: string; ref: string }>;
        for (const row of pending) await client.query('INSERT INTO audit_inbox (kind, ref) VALUES ($1, $2)', [row.kind, row.ref]);
        if (pending.length > 0) progress(`queued ${pending.length} grant/token change${pending.length > 1 ? 's' : ''} not yet in the audit chain (recorded by the first host)`);
        await client.query('COMMIT');
        return { copied, inboxQueued: pending.length };
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      }
    } finally {
      sqlite.prepare('ROLLBACK').run();
    }
  } catch (error) {
    if (error instanceof ContainedError) throw error;
    const code = (error as { code?: unknown }).code;
    // 55P03: lock_timeout (another migration or a host holds the tables).
    if (code === '55P03') throw unavailable(shownUrl, `the target tables stayed locked for ${LOCK_TIMEOUT} (another migration, or a host using the database?)`, error);
    if (typeof code === 'string' && /^(08|57P)/.test(code)) throw unavailable(shownUrl, 'the connection failed during the copy; nothing was copied', error);
    throw new ContainedError('INTERNAL', `store migrate: the copy failed and was rolled back; nothing was copied (${error instanceof Error ? error.message : String(error)})`, { cause: error });
  } finally {
    sqlite.close();
    await client.end().catch(() => undefined);
  }
}

async function refuseNonEmpty(client: pg.Client, shownUrl: string): Promise<void> {
  const found: Record<string, number> = {};
  for (const table of MIGRATED_TABLES) {
    const { rows } = await client.query<{ n: number }>(`SELECT COUNT(*)::int AS n FROM ${table}`);
    const n = rows[0]?.n ?? 0;
    if (n > 0) found[table] = n;
  }
  if (Object.keys(found).length > 0) {
    throw new ContainedError(
      'INVALID_ARGUMENT',
      `store migrate: ${shownUrl} already holds host state (${Object.entries(found).map(([t, n]) => `${t} ${n}`).join(', ')}); migrate copies into a database no host has used: create a new one (CREATE DATABASE …) and pass its URL`,
      { data: { reason: 'not-empty', tables: found } },
    );
  }
}

interface Plan {
  table: Table;
  columns: string[];
  target: PgColumn[];
}

/** Every SQLite column must exist in PostgreSQL (else data would be dropped): checked before anything is written. */
function plan(sqlite: Database.Database, table: Table, target: Map<string, PgColumn>): Plan {
  if (target.size === 0) throw new ContainedError('INTERNAL', `store migrate: the PostgreSQL schema has no table ${table}`);
  const columns = (sqlite.prepare(`SELECT name FROM pragma_table_info('${table}')`).all() as Array<{ name: string }>).map((c) => c.name);
  const missing = columns.filter((c) => !target.has(c));
  if (missing.length > 0) {
    throw new ContainedError('INTERNAL', `store migrate: PostgreSQL's ${table} has no column ${missing.join(', ')}; this build's two schemas differ, nothing was copied`, {
      data: { table, missing },
    });
  }
  if (table === 'audit_records' || table === 'audit_checkpoints') {
    // The chain is hashed over the stored text: a json/jsonb column would re-serialise `data` and break every hash.
    const retyped = columns.filter((c) => !['text', 'character varying', 'bigint', 'integer'].includes((target.get(c) as PgColumn).type));
    if (retyped.length > 0) {
      throw new ContainedError('INTERNAL', `store migrate: PostgreSQL's ${table} stores ${retyped.join(', ')} as ${retyped.map((c) => target.get(c)?.type).join(', ')}; the chain would not verify there, nothing was copied`, {
        data: { table, columns: retyped },
      });
    }
  }
  return { table, columns, target: columns.map((c) => target.get(c) as PgColumn) };
}

async function copyTable(sqlite: Database.Database, client: pg.Client, p: Plan): Promise<number> {
  const perBatch = Math.max(1, Math.min(1_000, Math.floor(MAX_PARAMS / p.columns.length)));
  const overriding = p.target.some((c) => c.identity) ? ' OVERRIDING SYSTEM VALUE' : '';
  const head = `INSERT INTO ${p.table} (${p.columns.join(', ')})${overriding} VALUES `;
  // Key order: the audit chain in seq order, the rest by primary key (deterministic, resumable to read).
  const order = p.table === 'audit_records' || p.table === 'audit_checkpoints' ? 'seq' : p.table === 'images' ? 'digest' : p.table === 'image_clients' ? 'digest, client' : p.table === 'documents' ? 'key' : 'id';
  const rows = sqlite.prepare(`SELECT ${p.columns.join(', ')} FROM ${p.table} ORDER BY ${order}`).raw(true).iterate() as IterableIterator<unknown[]>;
  let count = 0;
  let batch: unknown[][] = [];
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const params: unknown[] = [];
    const tuples = batch.map((row) => `(${row.map((value, i) => `$${params.push(toPg(value, p.target[i] as PgColumn))}`).join(', ')})`);
    await client.query(head + tuples.join(', '), params);
    count += batch.length;
    batch = [];
  };
  for (const row of rows) {
    batch.push(row);
    if (batch.length >= perBatch) await flush();
  }
  await flush();
  // Identity and serial columns given explicit values: move their sequences past them.
  for (const column of p.columns) {
    const { rows: seq } = await client.query<{ s: string | null }>('SELECT pg_get_serial_sequence($1, $2) AS s', [p.table, column]);
    const name = seq[0]?.s;
    if (name && count > 0) await client.query(`SELECT setval($1, (SELECT MAX(${column}) FROM ${p.table}))`, [name]);
  }
  return count;
}

/**
 * The mcp kind's accepted and pending tool versions, kept in `<dataDir>/mcp-tools/<binding>.*.json`
 * by a host on SQLite, into the store's documents (`mcp-tools/<binding>.accepted`…), where the
 * hosts of a fleet read them (capabilities/mcp/approvals-file.ts). Read and checked as JSON first.
 */
async function copyMcpToolFiles(dataDir: string, client: pg.Client): Promise<number> {
  const dir = path.join(dataDir, 'mcp-tools');
  let copied = 0;
  for (const name of existsSync(dir) ? readdirSync(dir).sort() : []) {
    const match = /^([a-z][a-zA-Z0-9]{0,63})\.(accepted|pending)\.json$/.exec(name);
    if (!match) continue;
    const text = readFileSync(path.join(dir, name), 'utf8');
    try {
      JSON.parse(text);
    } catch (cause) {
      throw new ContainedError('INVALID_ARGUMENT', `store migrate: ${path.join(dir, name)} is not valid JSON; fix it first (nothing was copied)`, { cause });
    }
    await client.query('INSERT INTO documents (key, text, version, updated_at) VALUES ($1, $2, 1, $3)', [`mcp-tools/${match[1] as string}.${match[2] as string}`, text, Math.trunc(statSync(path.join(dir, name)).mtimeMs)]);
    copied += 1;
  }
  return copied;
}

/**
 * Images an earlier version kept as files (`<dataDir>/images/<hex>.tgz`, uploader markers under
 * `images/clients/<hex>/<hash>`; host/runs/image-store.ts), into the images tables, unless the
 * SQLite store held that digest already. Only names of the exact stored form are read.
 */
async function copyLegacyImages(dataDir: string, client: pg.Client): Promise<{ images: number; clients: number }> {
  const dir = path.join(dataDir, 'images');
  let images = 0;
  let clients = 0;
  const names = existsSync(dir) ? readdirSync(dir) : [];
  for (const name of names) {
    const match = /^([0-9a-f]{64})\.tgz$/.exec(name);
    if (!match) continue;
    const file = path.join(dir, name);
    const inserted = await client.query('INSERT INTO images (digest, bytes, stored_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING', [
      `sha256:${match[1] as string}`,
      readFileSync(file),
      Math.trunc(statSync(file).mtimeMs),
    ]);
    images += inserted.rowCount ?? 0;
  }
  const clientsDir = path.join(dir, 'clients');
  for (const hex of existsSync(clientsDir) ? readdirSync(clientsDir) : []) {
    if (!/^[0-9a-f]{64}$/.test(hex)) continue;
    for (const hash of readdirSync(path.join(clientsDir, hex))) {
      if (!/^[0-9a-f]{64}$/.test(hash)) continue;
      const inserted = await client.query('INSERT INTO image_clients (digest, client) VALUES ($1, $2) ON CONFLICT DO NOTHING', [`sha256:${hex}`, hash]);
      clients += inserted.rowCount ?? 0;
    }
  }
  return { images, clients };
}

/** Every record, through both Store implementations, equal (canonical JSON, keyed by id). */
async function compareRecords(source: Store, target: Store): Promise<void> {
  const kinds: Array<[string, (s: Store) => Promise<Array<{ id: string }>>]> = [
    ['grants', (s) => s.listGrants()],
    ['tokens', (s) => s.listTokens()],
    ['agents', (s) => s.listAgents()],
    ['hosts', (s) => s.listHosts()],
    ['runs', (s) => s.listRuns()],
    ['requests', (s) => s.listRequests({})],
  ];
  for (const [kind, list] of kinds) {
    const [from, to] = await Promise.all([list(source), list(target)]);
    const copied = new Map(to.map((r) => [r.id, canonicalJson(r)]));
    const different = from.filter((r) => copied.get(r.id) !== canonicalJson(r)).map((r) => r.id);
    if (different.length > 0 || from.length !== to.length) {
      throw new ContainedError(
        'INTERNAL',
        `store migrate: the copy was committed but ${kind} do not read back equal (${from.length} in SQLite, ${to.length} in PostgreSQL${different.length > 0 ? `; first different: ${different.slice(0, 3).join(', ')}` : ''}); drop that database and report this`,
        { data: { kind, different: different.slice(0, 20) } },
      );
    }
  }
}

/**
 * The state kept beside the chain, read back through both implementations and compared: the
 * trust ledger (every action's figures), reviews, proposals and every operator's passkeys.
 */
async function compareHostState(file: string, url: string): Promise<void> {
  const sqlite = new Database(file, { readonly: true, fileMustExist: true });
  const pool = openAuditPool(url, { max: 2 });
  try {
    const from = sqliteTrustTables(sqlite);
    const to = pgTrustTables(pool);
    const now = Date.now();
    const same = async (kind: string, read: (t: TrustTables) => Promise<unknown>): Promise<void> => {
      const [a, b] = await Promise.all([read(from), read(to)]);
      if (canonicalJson(a) !== canonicalJson(b)) {
        throw new ContainedError('INTERNAL', `store migrate: the copy was committed but ${kind} do not read back equal; drop that database and report this`, { data: { kind } });
      }
    };
    const actions = await from.actions();
    await same('trust actions', (t) => t.actions());
    for (const key of actions) await same(`the trust figures of ${key.capability}.${key.method}`, (t) => t.stats(key, now, DEFAULT_TRUST_CONFIG));
    await same('reviews', (t) => t.reviews({ status: 'all', limit: Number.MAX_SAFE_INTEGER }));
    await same('promotion proposals', (t) => t.proposals());
    const operators = sqlite.prepare('SELECT DISTINCT operator FROM passkeys ORDER BY operator').pluck().all() as string[];
    const passkeys = [openPasskeyStore(file), openPgPasskeyStore(pool)] as const;
    try {
      for (const operator of operators) {
        const [a, b] = await Promise.all(passkeys.map((p) => p.forOperator(operator)));
        if (canonicalJson(a) !== canonicalJson(b)) throw new ContainedError('INTERNAL', `store migrate: the copy was committed but the passkeys of ${operator} do not read back equal; drop that database and report this`);
      }
    } finally {
      await passkeys[0].close();
    }
  } finally {
    sqlite.close();
    await pool.end();
  }
}

/**
 * Walk the chain as PostgreSQL holds it: every record hashes to its `hash` and links to the one
 * before; every checkpoint names the hash of the record at its seq and, with the data folder's
 * public key, its signature verifies.
 */
async function verifyTargetChain(url: string, keys: readonly AuditKey[], records: number, checkpoints: number): Promise<MigrateSummary['audit']> {
  const shownUrl = redactUrl(url);
  const client = pgClient(url);
  client.on('error', () => undefined);
  const broken = (message: string): ContainedError =>
    new ContainedError('AUDIT_TAMPERED', `store migrate: the copied audit chain does not verify on PostgreSQL: ${message}; drop that database and report this`);
  try {
    try {
      await client.connect();
    } catch (error) {
      throw unavailable(shownUrl, 'cannot connect to verify the copy', error);
    }
    const { rows: cps } = await client.query<{ seq: number; hash: string; at: number; keyId: string; signature: string }>(
      'SELECT seq, hash, at, key_id AS "keyId", signature FROM audit_checkpoints ORDER BY seq',
    );
    if (cps.length !== checkpoints) throw broken(`${cps.length} checkpoints, ${checkpoints} copied`);
    const bySeq = new Map(cps.map((cp) => [Number(cp.seq), { ...cp, seq: Number(cp.seq), at: Number(cp.at) }]));
    // Signatures are checked with the keys that signed them, where known (this host's, the config's
    // audit.keyFile and audit.publicKeyFiles); a checkpoint of another key is counted unchecked.
    let signaturesChecked = 0;
    for (const cp of bySeq.values()) {
      const key = keys.find((k) => k.keyId === cp.keyId);
      if (!key) continue;
      if (!checkpointSignatureOk(key, cp)) throw broken(`the checkpoint at seq ${cp.seq} has a signature that does not verify with ${key.keyId}`);
      signaturesChecked += 1;
    }
    let prevHash = GENESIS;
    let expected = 1;
    for (;;) {
      const { rows } = await client.query({
        text: 'SELECT seq, at, type, run_id, subject, capability, method, call_id, data, prev_hash, hash FROM audit_records WHERE seq >= $1 ORDER BY seq LIMIT 5000',
        values: [expected],
        rowMode: 'array',
      });
      for (const raw of rows as unknown[][]) {
        const r = rowToStored(raw.map((v, i) => (i <= 1 ? Number(v) : v)));
        if (r.seq !== expected) throw broken(`record ${expected} is missing`);
        if (r.prevHash !== prevHash || hashRecord(r) !== r.hash) throw broken(`record ${r.seq} does not hash or link as written`);
        const cp = bySeq.get(r.seq);
        if (cp && cp.hash !== r.hash) throw broken(`the checkpoint at seq ${r.seq} names another hash than the record there`);
        prevHash = r.hash;
        expected += 1;
      }
      if (rows.length < 5000) break;
    }
    const headSeq = expected - 1;
    if (headSeq !== records) throw broken(`${headSeq} records, ${records} copied`);
    const beyond = cps.find((cp) => Number(cp.seq) > headSeq);
    if (beyond) throw broken(`a checkpoint at seq ${beyond.seq}, past the last record`);
    return { records: headSeq, headSeq, headHash: prevHash, checkpoints: cps.length, signaturesChecked };
  } finally {
    await client.end().catch(() => undefined);
  }
}
