/**
 * Conversion between host records (host/model.ts) and SQLite rows (schema.ts). Every row read back
 * is validated with a zod schema before it leaves the store.
 *
 * Defends against a corrupt or hand-edited database: a row whose JSON does not parse, whose fields
 * do not match the schema, or whose subject columns are inconsistent fails with
 * `ContainedError('INTERNAL')` naming the table and id — never a crash, never a half-typed object
 * reaching the gate.
 */
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import {
  type Grant,
  grantSchema,
  type RequestRecord,
  requestSchema,
  roleSchema,
  type RunRecord,
  runRecordSchema,
  type TokenRecord,
} from '../model.js';
import type { HostRecord, OneTimeSecret, SessionRecord } from './store.js';

export type Row = Record<string, unknown>;

/** One column: its SQL name, the record key, and whether it holds JSON text or a flag (INTEGER 1, absent when not set). */
interface Column {
  col: string;
  key: string;
  json?: true;
  flag?: true;
}

function columns(spec: Array<[col: string, key: string, kind?: 'json' | 'flag']>): Column[] {
  return spec.map(([col, key, kind]) => (kind === 'json' ? { col, key, json: true } : kind === 'flag' ? { col, key, flag: true } : { col, key }));
}

export const GRANT_COLUMNS = columns([
  ['id', 'id'],
  ['capability', 'capability'],
  ['scope', 'scope', 'json'],
  ['methods', 'methods', 'json'],
  ['mode', 'mode'],
  ['approvals', 'approvals'],
  ['expires_at', 'expiresAt'],
  ['budgets', 'budgets', 'json'],
  ['request_timeout_ms', 'requestTimeoutMs'],
  ['review_sample', 'reviewSample'],
  ['created_by', 'createdBy'],
  ['reason', 'reason'],
  ['created_at', 'createdAt'],
  ['forced', 'forced', 'json'],
  ['revoked_at', 'revokedAt'],
  ['revoked_by', 'revokedBy'],
  ['revoke_reason', 'revokeReason'],
  ['signed_approvals', 'signedApprovals', 'flag'],
  ['stage_runs', 'stageRuns', 'flag'],
]);

export const REQUEST_COLUMNS = columns([
  ['id', 'id'],
  ['kind', 'kind'],
  ['run_id', 'runId'],
  ['subject', 'subject'],
  ['capability', 'capability'],
  ['definition', 'definition'],
  ['method', 'method'],
  ['args', 'args', 'json'],
  ['requested_scope', 'requestedScope', 'json'],
  ['reason', 'reason'],
  ['risk', 'risk', 'json'],
  ['why', 'why'],
  ['grant_id', 'grantId'],
  ['approvals_required', 'approvalsRequired'],
  ['approvals', 'approvals', 'json'],
  ['status', 'status'],
  ['created_at', 'createdAt'],
  ['expires_at', 'expiresAt'],
  ['resolved_at', 'resolvedAt'],
  ['resolved_by', 'resolvedBy', 'json'],
  ['deny_reason', 'denyReason'],
  ['execution', 'execution', 'json'],
  ['signed_approvals', 'signedApprovals', 'flag'],
  ['host_id', 'hostId'],
]);

export const RUN_COLUMNS = columns([
  ['id', 'id'],
  ['subject', 'subject'],
  ['image_name', 'imageName'],
  ['status', 'status'],
  ['input', 'input', 'json'],
  ['created_at', 'createdAt'],
  ['ended_at', 'endedAt'],
  ['outcome', 'outcome', 'json'],
  ['submitted_by', 'submittedBy'],
  ['sensitive_sources', 'sensitiveSources', 'json'],
  ['host_id', 'hostId'],
]);

export const TOKEN_COLUMNS = columns([
  ['id', 'id'],
  ['name', 'name'],
  ['role', 'role'],
  ['hash', 'hash'],
  ['created_at', 'createdAt'],
  ['created_by', 'createdBy'],
  ['revoked_at', 'revokedAt'],
]);

/** `LIMIT n` for a whole number ≥ 0; INVALID_ARGUMENT otherwise (it is interpolated, so it is checked). */
export function limitClause(limit: number | undefined): string {
  if (limit === undefined) return '';
  if (!Number.isSafeInteger(limit) || limit < 0) throw new ContainedError('INVALID_ARGUMENT', `store: limit must be a whole number >= 0 (got ${String(limit)})`);
  return ` LIMIT ${limit}`;
}

/** SQL column name for a record key (for dynamic UPDATEs), or undefined. */
export function columnFor(table: Column[], key: string): Column | undefined {
  return table.find((c) => c.key === key);
}

/** A record value as SQLite stores it: undefined → NULL, JSON columns as text. */
export function toSql(column: Column, value: unknown): unknown {
  if (value === undefined) return null;
  if (column.flag) return value === true ? 1 : null;
  if (column.json) return JSON.stringify(value) ?? null;
  return value;
}

function toRow(record: Record<string, unknown>, table: Column[]): Row {
  const row: Row = {};
  for (const c of table) row[c.col] = toSql(c, record[c.key]);
  return row;
}

function corrupt(table: string, id: unknown, why: string, cause?: unknown): ContainedError {
  const shownId = typeof id === 'string' ? id.slice(0, 100) : String(id);
  return new ContainedError('INTERNAL', `store: ${table} row "${shownId}" is corrupt (${why})`, {
    data: { table, id: shownId },
    ...(cause === undefined ? {} : { cause }),
  });
}

function fromRow(row: Row, table: Column[], tableName: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const c of table) {
    const value = row[c.col];
    if (value === null || value === undefined) continue;
    if (c.flag) {
      if (value !== 1) throw corrupt(tableName, row.id, `${c.col} is not 1 or NULL`);
      out[c.key] = true;
    } else if (c.json) {
      if (typeof value !== 'string') throw corrupt(tableName, row.id, `${c.col} is not JSON text`);
      try {
        out[c.key] = JSON.parse(value) as unknown;
      } catch (error) {
        throw corrupt(tableName, row.id, `${c.col} is not valid JSON`, error);
      }
    } else {
      out[c.key] = value;
    }
  }
  return out;
}

function validate<T>(schema: z.ZodType<T>, value: unknown, tableName: string, id: unknown): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw corrupt(tableName, id, `${issue?.path.join('.') || 'row'}: ${issue?.message ?? 'does not match the schema'}`, parsed.error);
  }
  return parsed.data;
}

/** Validate a record before writing it; a bad record is the caller's bug: INVALID_ARGUMENT. */
function checkWrite<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const at = issue?.path.map(String) ?? [];
    throw new ContainedError('INVALID_ARGUMENT', `store: invalid ${what}${at.length ? ` at ${at.join('.')}` : ''}: ${issue?.message ?? ''}`, {
      data: { path: at },
    });
  }
  return parsed.data;
}

// Grants -------------------------------------------------------------------------------------

export function grantToRow(grant: Grant): Row {
  const g = checkWrite(grantSchema, grant, 'grant');
  const row = toRow(g, GRANT_COLUMNS);
  row.subject_digest = 'digest' in g.subject ? g.subject.digest : null;
  row.subject_name = 'name' in g.subject ? g.subject.name : null;
  row.subject_signer = 'signer' in g.subject ? g.subject.signer : null;
  return row;
}

export function rowToGrant(row: Row): Grant {
  const out = fromRow(row, GRANT_COLUMNS, 'grants');
  const { subject_digest: digest, subject_name: name, subject_signer: signer } = row;
  if (digest !== null && digest !== undefined) {
    if (name !== null || signer !== null) throw corrupt('grants', row.id, 'both a digest and a name subject');
    out.subject = { digest };
  } else {
    out.subject = { name, signer };
  }
  return validate(grantSchema, out, 'grants', row.id);
}

// Requests -----------------------------------------------------------------------------------

export function requestToRow(request: RequestRecord): Row {
  return toRow(checkWrite(requestSchema, request, 'request'), REQUEST_COLUMNS);
}

export function rowToRequest(row: Row): RequestRecord {
  return validate(requestSchema, fromRow(row, REQUEST_COLUMNS, 'requests'), 'requests', row.id);
}

// Runs ---------------------------------------------------------------------------------------


function toRunRecord(r: z.infer<typeof runRecordSchema>): RunRecord {
  const { subject, imageName, endedAt, outcome, submittedBy, sensitiveSources, hostId, ...rest } = r;
  return {
    ...rest,
    subject,
    imageName,
    ...(endedAt === undefined ? {} : { endedAt }),
    ...(outcome === undefined ? {} : { outcome }),
    ...(submittedBy === undefined ? {} : { submittedBy }),
    ...(sensitiveSources === undefined ? {} : { sensitiveSources }),
    ...(hostId === undefined ? {} : { hostId }),
  };
}

/** Drop keys whose value is undefined (RunRecord keeps `subject: undefined` as a key). */
function defined(record: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined));
}

export function runToRow(run: RunRecord): Row {
  return toRow(checkWrite(runRecordSchema, defined(run), 'run'), RUN_COLUMNS);
}

export function rowToRun(row: Row): RunRecord {
  return toRunRecord(validate(runRecordSchema, fromRow(row, RUN_COLUMNS, 'runs'), 'runs', row.id));
}

/** The run schema's fields, each optional, no id: built once, on first use (building it costs ~0.3 ms). */
let runPatchSchema: z.ZodType<unknown> | undefined;

/** Validate a run patch (the keys it sets) against the run schema's fields. */
export function checkRunPatch(patch: Record<string, unknown>): Record<string, unknown> {
  const clean = defined(patch);
  if ('id' in clean) throw new ContainedError('INVALID_ARGUMENT', 'store: a run patch cannot change the id');
  runPatchSchema ??= runRecordSchema.omit({ id: true }).partial();
  checkWrite(runPatchSchema, clean, 'run patch');
  return clean;
}

// Tokens -------------------------------------------------------------------------------------

export const tokenRecordSchema = z.strictObject({
  id: z.string().min(1),
  name: z.string().min(1),
  role: roleSchema,
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.number().int(),
  createdBy: z.string().min(1),
  revokedAt: z.number().int().optional(),
});

export function tokenToRow(token: TokenRecord): Row {
  return toRow(checkWrite(tokenRecordSchema, defined(token), 'token'), TOKEN_COLUMNS);
}

export function rowToToken(row: Row): TokenRecord {
  return validate(tokenRecordSchema, fromRow(row, TOKEN_COLUMNS, 'tokens'), 'tokens', row.id);
}

// Hosts, console sessions, one-time secrets (several hosts; schema v9) ------------------------

export const HOST_COLUMNS = columns([
  ['id', 'id'],
  ['hostname', 'hostname'],
  ['pid', 'pid'],
  ['url', 'url'],
  ['started_at', 'startedAt'],
  ['heartbeat_at', 'heartbeatAt'],
  ['stopped_at', 'stoppedAt'],
  ['reaped_at', 'reapedAt'],
  ['reaped_by', 'reapedBy'],
]);

const hostRecordSchema = z.strictObject({
  id: z.string().min(1),
  hostname: z.string(),
  pid: z.number().int(),
  url: z.string().optional(),
  startedAt: z.number().int(),
  heartbeatAt: z.number().int(),
  stoppedAt: z.number().int().optional(),
  reapedAt: z.number().int().optional(),
  reapedBy: z.string().optional(),
});

export function hostToRow(host: HostRecord): Row {
  return toRow(checkWrite(hostRecordSchema, defined(host), 'host'), HOST_COLUMNS);
}

export function rowToHost(row: Row): HostRecord {
  return validate(hostRecordSchema, fromRow(row, HOST_COLUMNS, 'hosts'), 'hosts', row.id) as HostRecord;
}

// `consoleSession`: a console's ticket tags its operator with the session, so logging out closes its sockets.
const operatorSchema = z.strictObject({ tokenId: z.string(), name: z.string(), role: roleSchema, consoleSession: z.string().optional() });

export const SESSION_COLUMNS = columns([
  ['key', 'key'],
  ['operator', 'operator', 'json'],
  ['token_hash', 'tokenHash'],
  ['csrf', 'csrf'],
  ['created_at', 'createdAt'],
  ['last_seen_at', 'lastSeenAt'],
  ['expires_at', 'expiresAt'],
]);

const sessionRecordSchema = z.strictObject({
  key: z.string().min(1),
  operator: operatorSchema,
  tokenHash: z.string().min(1),
  csrf: z.string().min(1),
  createdAt: z.number().int(),
  lastSeenAt: z.number().int(),
  expiresAt: z.number().int(),
});

export function sessionToRow(session: SessionRecord): Row {
  return toRow(checkWrite(sessionRecordSchema, session, 'session'), SESSION_COLUMNS);
}

export function rowToSession(row: Row): SessionRecord {
  return validate(sessionRecordSchema, fromRow(row, SESSION_COLUMNS, 'sessions'), 'sessions', row.key);
}

export const SECRET_COLUMNS = columns([
  ['kind', 'kind'],
  ['hash', 'hash'],
  ['operator', 'operator', 'json'],
  ['token_hash', 'tokenHash'],
  ['expires_at', 'expiresAt'],
]);

const secretSchema = z.strictObject({
  kind: z.enum(['ticket', 'login-code']),
  hash: z.string().min(1),
  operator: operatorSchema,
  tokenHash: z.string().min(1).optional(),
  expiresAt: z.number().int(),
});

export function secretToRow(secret: OneTimeSecret): Row {
  return toRow(checkWrite(secretSchema, defined(secret), 'one-time secret'), SECRET_COLUMNS);
}

export function rowToSecret(row: Row): OneTimeSecret {
  return validate(secretSchema, fromRow(row, SECRET_COLUMNS, 'one_time_secrets'), 'one_time_secrets', row.hash) as OneTimeSecret;
}
