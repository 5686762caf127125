/**
 * The audit record and its hash. A record is `{ seq, at, type, runId?, subject?, capability?,
 * method?, callId?, data, prevHash, hash }`; `hash` is the sha256 of the record's canonical JSON
 * without `hash`, and `prevHash` is the previous record's `hash` (GENESIS for seq 1). Changing,
 * removing, inserting or moving any record therefore breaks the chain at that point.
 *
 * `data` is stored as its canonical JSON text, and the hash input is assembled from the stored text
 * directly (identical to `canonicalJson(record)` because the keys are written in sorted order), so
 * verification never has to parse `data`.
 */
import { canonicalJson, sha256Hex } from './canonical.js';

/** prevHash of the first record. */
export const GENESIS = '0'.repeat(64);

/** Every record type, with what `data` holds (docs/audit-and-trust.md has the full list). */
export const AUDIT_TYPES = [
  'call', // a capability call reached the gate: args (or their sha256), reason, risk
  'decision', // the gate's answer: allow (basis, grant, approvers and the argsDigest each approved) or deny (code, message)
  'intent', // written and durable before an allowed action is performed
  'outcome', // after the action: result sha256 + summary, or the error code
  'request.created', // a recommendation or escalation opened for a human
  'request.approval', // one approval of a multi-approver request: every approval so far with its argsDigest and whether it counts
  'request.resolved', // approved (by whom, the argsDigest that runs, every approval with its argsDigest, edited or not), denied (by whom, why), expired, run_gone
  'run.started',
  'run.ended',
  'run.sensitive', // the data-flow rule: an allowed call made the run read sensitive sources for the first time (sources, definition); its later open-world calls need a human
  'grant.added',
  'grant.revoked',
  'token.created',
  'token.revoked',
  'review.queued', // an executed action entered the review queue
  'review.marked', // ok / error / critical, by whom, note
  'promotion.proposed',
  'promotion.accepted',
  'promotion.declined',
  'promotion.withdrawn',
  'demotion',
  'audit.started', // a writer opened the log (host start, CLI), with its public key id
  'mcp.tool.accepted', // an operator accepted a new or changed tool of an mcp capability: tool, fingerprint, previous, differs, by, reason
  'mcp.tool.withdrawn', // the running host withdrew a changed tool of an mcp capability until an operator accepts it: tool, fingerprint, previous, differs, description (once per fingerprint)
  'mcp.tool.held', // the running host holds a new tool of an mcp capability until an operator accepts it: tool, fingerprint, description (once per fingerprint)
  'passkey.registered', // an operator registered a passkey for signed approvals: credentialId, operator, publicKey (COSE, base64url), rpId, origin
  'passkey.revoked', // a passkey was revoked: credentialId, operator, by
  'changeset.undone', // a committed changeset's local effects were undone: requestId, by, restored, committedAt, resources (capability, resource)
] as const;
export type AuditType = (typeof AUDIT_TYPES)[number];

/** What a caller appends; the writer adds seq, at (unless given), prevHash and hash. */
export interface AuditInput {
  type: AuditType;
  at?: number;
  runId?: string | undefined;
  subject?: string | undefined;
  capability?: string | undefined;
  method?: string | undefined;
  callId?: string | undefined;
  data: Record<string, unknown>;
}

export interface AuditRecord {
  seq: number;
  at: number;
  type: string;
  runId?: string;
  subject?: string;
  capability?: string;
  method?: string;
  callId?: string;
  data: unknown;
  prevHash: string;
  hash: string;
}

/** A record as stored: `data` is canonical JSON text; absent fields are null. */
export interface StoredRecord {
  seq: number;
  at: number;
  type: string;
  runId: string | null;
  subject: string | null;
  capability: string | null;
  method: string | null;
  callId: string | null;
  data: string;
  prevHash: string;
  hash: string;
}

/** Characters JSON.stringify escapes in a string (quotes, backslash, controls, lone surrogates). */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** JSON.stringify(text) for a string, without the call when nothing needs escaping (verify speed). */
function quote(text: string): string {
  return NEEDS_ESCAPE.test(text) ? JSON.stringify(text) : `"${text}"`;
}

function field(name: string, value: string | null): string {
  return value === null ? '' : `"${name}":${quote(value)},`;
}

/** The canonical JSON of the record without `hash` (keys in sorted order), from stored columns. */
export function hashInput(r: Omit<StoredRecord, 'hash'>): string {
  return (
    `{"at":${r.at},${field('callId', r.callId)}${field('capability', r.capability)}"data":${r.data},${field('method', r.method)}` +
    `"prevHash":${quote(r.prevHash)},${field('runId', r.runId)}"seq":${r.seq},${field('subject', r.subject)}"type":${quote(r.type)}}`
  );
}

export function hashRecord(r: Omit<StoredRecord, 'hash'>): string {
  return sha256Hex(hashInput(r));
}

/** Build the stored form of a new record at `seq` after `prevHash`. */
export function sealRecord(input: AuditInput, seq: number, at: number, prevHash: string): StoredRecord {
  const unsealed: Omit<StoredRecord, 'hash'> = {
    seq,
    at,
    type: input.type,
    runId: input.runId ?? null,
    subject: input.subject ?? null,
    capability: input.capability ?? null,
    method: input.method ?? null,
    callId: input.callId ?? null,
    data: canonicalJson(input.data),
    prevHash,
  };
  return { ...unsealed, hash: hashRecord(unsealed) };
}

/** The public fields of a stored record, without `data` (nulls dropped). */
export function publicFields(r: StoredRecord): Omit<AuditRecord, 'data'> {
  const out: Omit<AuditRecord, 'data'> = { seq: r.seq, at: r.at, type: r.type, prevHash: r.prevHash, hash: r.hash };
  if (r.runId !== null) out.runId = r.runId;
  if (r.subject !== null) out.subject = r.subject;
  if (r.capability !== null) out.capability = r.capability;
  if (r.method !== null) out.method = r.method;
  if (r.callId !== null) out.callId = r.callId;
  return out;
}

/** The public shape of a stored record (`data` parsed, nulls dropped). */
export function toAuditRecord(r: StoredRecord): AuditRecord {
  let data: unknown;
  try {
    data = JSON.parse(r.data) as unknown;
  } catch {
    // A hand-edited row: shown as it is (verify names it), never a crash of tail/query/export.
    data = { unparsable: r.data.slice(0, 200) };
  }
  return { ...publicFields(r), data };
}

/** Columns in SELECT order, so raw rows map onto StoredRecord. */
export const RECORD_COLUMNS = 'seq, at, type, run_id, subject, capability, method, call_id, data, prev_hash, hash';

export function rowToStored(row: unknown[]): StoredRecord {
  const [seq, at, type, runId, subject, capability, method, callId, data, prevHash, hash] = row as [
    number,
    number,
    string,
    string | null,
    string | null,
    string | null,
    string | null,
    string | null,
    string,
    string,
    string,
  ];
  return { seq, at, type, runId, subject, capability, method, callId, data, prevHash, hash };
}
