/**
 * Signed approvals, checked offline from the audit log alone (`contained audit verify`) and told
 * request by request (`contained audit show REQUEST`).
 *
 * The log holds everything needed: `passkey.registered` records carry each passkey's operator,
 * COSE public key and relying party id (the chain and the host's signed checkpoints vouch for
 * them), and every `request.approval` / `request.resolved` record carries each approval's digest
 * and, when signed, its WebAuthn assertion. For each signed approval this recomputes the challenge
 * from (request id, argsDigest, "approve"), verifies the assertion's signature with the logged
 * public key, its origin and relying party, its user-verification flag, that the passkey belonged
 * to the approver and was not revoked before, and that each passkey's counter only moved up; for
 * each approved request, that its counting signed approvals come from distinct people and
 * distinct passkeys. Fails closed: an approval it cannot check is a problem, never a pass.
 *
 * Reads through an AuditSource (source.ts): the host's SQLite file or the fleet's PostgreSQL store;
 * a SQLite connection is accepted as well.
 */
import { verifyAuthenticationResponse } from '@simplewebauthn/server';
import type { AuthenticationResponseJSON } from '@simplewebauthn/server';
import type Database from 'better-sqlite3';
import { approvalChallenge, approvalSignatureSchema } from '../approvals/challenge.js';
import { canonicalJson, sha256Hex } from './canonical.js';
import type { AuditRecord } from './record.js';
import { type AuditSource, type RecordQuery, sqliteAuditSource } from './source.js';

/** Where the records are: an AuditSource, or a SQLite connection. */
export type AuditRecords = AuditSource | Database.Database;

function sourceOf(from: AuditRecords): AuditSource {
  return 'kind' in from && typeof (from as AuditSource).find === 'function' ? (from as AuditSource) : sqliteAuditSource(from as Database.Database);
}

interface LoggedPasskey {
  seq: number;
  operator: string;
  publicKey: string;
  rpId: string;
  revokedAtSeq?: number;
}

export interface SignatureProblem {
  seq: number;
  requestId: string;
  operator?: string;
  message: string;
}

export interface CheckedApproval {
  seq: number;
  requestId: string;
  operator: string;
  argsDigest: string;
  at: number;
  counts: boolean;
  credentialId?: string;
  /** Verified offline (undefined: unsigned). */
  verified?: boolean;
  userVerified?: boolean;
  counter?: number;
  problem?: string;
}

export interface SignatureReport {
  ok: boolean;
  /** Signed approvals that verify. */
  verified: number;
  /** Approvals with no signature (allowed where the policy did not ask for one). */
  unsigned: number;
  passkeys: number;
  problems: SignatureProblem[];
  approvals: CheckedApproval[];
}

interface LoggedApproval {
  operator: string;
  at: number;
  argsDigest?: string;
  counts?: boolean;
  signature?: unknown;
}

/** `sha256:<hex>` of arguments' canonical JSON (host/gate/proposal.ts's argsDigest, recomputed here from the log). */
function argsDigestOf(args: unknown): string {
  return `sha256:${sha256Hex(canonicalJson(args === undefined ? null : args))}`;
}

function records(from: AuditRecords, q: RecordQuery): Promise<AuditRecord[]> {
  return sourceOf(from).find(q);
}

const byRequest = (requestId: string): RecordQuery['data'] => ({ path: ['requestId'], equals: requestId });

/** Verify every signed approval in the log (or only those of `requestId`). */
export async function verifySignedApprovals(db: AuditRecords, requestId?: string): Promise<SignatureReport> {
  const passkeys = new Map<string, LoggedPasskey>();
  for (const r of await records(db, { types: ['passkey.registered', 'passkey.revoked'] })) {
    const d = r.data as Record<string, unknown>;
    const id = String(d.credentialId);
    if (r.type === 'passkey.registered') passkeys.set(id, { seq: r.seq, operator: String(d.operator), publicKey: String(d.publicKey), rpId: String(d.rpId) });
    else {
      const p = passkeys.get(id);
      if (p && p.revokedAtSeq === undefined) p.revokedAtSeq = r.seq;
    }
  }
  const problems: SignatureProblem[] = [];
  const approvals: CheckedApproval[] = [];
  const seen = new Map<string, CheckedApproval>();
  const lastCounter = new Map<string, number>();
  const resolvedCounting = new Map<string, CheckedApproval[]>();
  for (const r of await records(db, { types: ['request.approval', 'request.resolved'], ...(requestId === undefined ? {} : { data: byRequest(requestId) }) })) {
    const d = r.data as { requestId?: string; status?: string; approvals?: LoggedApproval[] };
    const rid = String(d.requestId);
    for (const a of d.approvals ?? []) {
      const key = `${rid}|${a.operator}|${a.at}|${a.argsDigest}`;
      const known = seen.get(key);
      if (known) {
        // The same approval in a later record: only whether it counts may change.
        known.counts = a.counts === true;
        continue;
      }
      const checked: CheckedApproval = { seq: r.seq, requestId: rid, operator: a.operator, argsDigest: String(a.argsDigest), at: a.at, counts: a.counts === true };
      seen.set(key, checked);
      approvals.push(checked);
      if (a.signature === undefined) continue;
      const fail = (message: string): void => {
        checked.verified = false;
        checked.problem = message;
        problems.push({ seq: r.seq, requestId: rid, operator: a.operator, message });
      };
      const parsed = approvalSignatureSchema.safeParse(a.signature);
      if (!parsed.success) {
        fail('the signature on record is malformed');
        continue;
      }
      const sig = parsed.data;
      checked.credentialId = sig.credentialId;
      checked.counter = sig.counter;
      checked.userVerified = sig.userVerified;
      const passkey = passkeys.get(sig.credentialId);
      if (!passkey || passkey.seq > r.seq) {
        fail(`passkey ${sig.credentialId} has no passkey.registered record before this approval`);
        continue;
      }
      if (passkey.operator !== a.operator) {
        fail(`passkey ${sig.credentialId} was registered by ${passkey.operator}, not by ${a.operator}`);
        continue;
      }
      if (passkey.revokedAtSeq !== undefined && passkey.revokedAtSeq < r.seq) {
        fail(`passkey ${sig.credentialId} was revoked (seq ${passkey.revokedAtSeq}) before this approval`);
        continue;
      }
      if (sig.rpId !== passkey.rpId) {
        fail(`signed for relying party ${sig.rpId}, the passkey is for ${passkey.rpId}`);
        continue;
      }
      try {
        const result = await verifyAuthenticationResponse({
          response: sig.assertion as AuthenticationResponseJSON,
          expectedChallenge: approvalChallenge(rid, String(a.argsDigest), 'approve'),
          expectedOrigin: sig.origin,
          expectedRPID: passkey.rpId,
          credential: { id: sig.credentialId, publicKey: new Uint8Array(Buffer.from(passkey.publicKey, 'base64url')), counter: 0 },
          requireUserVerification: sig.userVerified,
        });
        if (!result.verified) {
          fail('the signature does not verify with the logged public key');
          continue;
        }
        if (result.authenticationInfo.newCounter !== sig.counter || result.authenticationInfo.userVerified !== sig.userVerified) {
          fail('the counter or user-verification flag on record differs from the signed authenticator data');
          continue;
        }
      } catch (error) {
        fail(`the assertion does not verify: ${error instanceof Error ? error.message : String(error)}`);
        continue;
      }
      const before = lastCounter.get(sig.credentialId);
      if (before !== undefined && !(sig.counter > before || (sig.counter === 0 && before === 0))) {
        fail(`passkey ${sig.credentialId}: counter ${sig.counter} after ${before} (a replay or a cloned key)`);
        continue;
      }
      lastCounter.set(sig.credentialId, sig.counter);
      checked.verified = true;
    }
    if (r.type === 'request.resolved' && d.status === 'approved') {
      resolvedCounting.set(rid, (d.approvals ?? []).map((a) => seen.get(`${rid}|${a.operator}|${a.at}|${a.argsDigest}`)).filter((x): x is CheckedApproval => x !== undefined && x.counts));
    }
  }
  // The counting signed approvals of an approved request: distinct people, distinct passkeys.
  for (const [rid, counted] of resolvedCounting) {
    const signedOnes = counted.filter((x) => x.credentialId !== undefined);
    if (new Set(signedOnes.map((x) => x.credentialId)).size !== signedOnes.length || new Set(counted.map((x) => x.operator)).size !== counted.length) {
      problems.push({ seq: counted[0]?.seq ?? 0, requestId: rid, message: 'two counting approvals share a person or a passkey' });
    }
  }
  const signedCount = approvals.filter((x) => x.verified === true).length;
  return { ok: problems.length === 0, verified: signedCount, unsigned: approvals.filter((x) => x.credentialId === undefined && x.verified === undefined).length, passkeys: passkeys.size, problems, approvals };
}

/** Every record about one request (its own records, and the call/decision/intent/outcome records that name it). */
export function requestRecords(db: AuditRecords, requestId: string): Promise<AuditRecord[]> {
  return records(db, { data: byRequest(requestId) });
}

/** How a grant came to be, from the log: who added it, or the promotion that made it (auto-accepted or by an admin). */
async function grantOrigin(db: AuditRecords, grantId: string): Promise<string> {
  const promoted = (await records(db, { types: ['promotion.accepted'], data: { path: ['newGrantId'], equals: grantId } }))[0];
  if (promoted) {
    const by = String((promoted.data as { by?: unknown }).by ?? '?');
    return by === 'host (autoAccept)' ? `made by a promotion the host accepted automatically (trust.autoAccept, seq ${promoted.seq})` : `made by a promotion ${by} accepted (seq ${promoted.seq})`;
  }
  const added = (await records(db, { types: ['grant.added'], data: { path: ['grant', 'id'], equals: grantId } }))[0];
  const grant = (added?.data as { grant?: { createdBy?: string; mode?: string; forced?: unknown } } | undefined)?.grant;
  return grant ? `added by ${grant.createdBy ?? '?'}${grant.forced ? ' (forced)' : ''}` : 'not in this log';
}

/** The performed action of a gate decision: its intent and outcome (by call id). */
async function performed(db: AuditRecords, callId: string): Promise<string | undefined> {
  const outcome = (await records(db, { types: ['outcome'], callId }))[0];
  if (!outcome) return (await records(db, { types: ['intent'], callId }))[0] ? 'performing (an intent without an outcome: the host stopped meanwhile)' : undefined;
  const d = outcome.data as { ok?: boolean; error?: string; summary?: string };
  return d.ok ? `performed: ok (${d.summary ?? 'result'})` : `performed: failed (${String(d.error ?? '?')})`;
}

/** `contained audit show REQUEST`: what was asked, who approved which arguments with which passkey, who decided, what ran. */
export async function showRequest(db: AuditRecords, requestId: string): Promise<string[]> {
  const recs = await requestRecords(db, requestId);
  if (recs.length === 0) return [];
  const lines: string[] = [];
  const created = recs.find((r) => r.type === 'request.created');
  const resolved = recs.find((r) => r.type === 'request.resolved');
  const c = (created?.data ?? {}) as Record<string, unknown>;
  const what = `${created?.capability ?? '?'}${created?.method ? `.${created.method}` : ''}`;
  lines.push(`request ${requestId}: ${String(c.kind ?? 'request')} ${what}${created?.runId ? ` (run ${created.runId})` : ''}`);
  if (c.why !== undefined) lines.push(`  why: ${String(c.why)}`);
  if (c.args !== undefined) lines.push(`  asked: ${JSON.stringify(c.args)} = ${argsDigestOf(c.args)}`);
  else if (c.argsSha256 !== undefined) lines.push(`  asked: ${String(c.argsBytes)} bytes of arguments (sha256 ${String(c.argsSha256)})`);
  if (c.approvalsRequired !== undefined) lines.push(`  approvals required: ${String(c.approvalsRequired)}`);
  const passkeys = new Map((await records(db, { types: ['passkey.registered'] })).map((r) => [String((r.data as { credentialId?: unknown }).credentialId), r.data as { label?: string; operator?: string }]));
  const report = await verifySignedApprovals(db, requestId);
  lines.push('  approvals:');
  if (report.approvals.length === 0) lines.push('    none');
  for (const a of report.approvals) {
    const label = a.credentialId === undefined ? undefined : passkeys.get(a.credentialId)?.label;
    const how = a.credentialId === undefined
      ? 'unsigned'
      : `passkey ${a.credentialId}${label ? ` "${label}"` : ''} (${a.verified ? 'signature verifies' : `DOES NOT VERIFY: ${a.problem}`}${a.userVerified ? ', user verified' : ''}, counter ${a.counter})`;
    lines.push(`    ${a.operator} approved ${a.argsDigest} at ${new Date(a.at).toISOString()}, ${how}${a.counts ? '' : ' — does not count (other arguments)'}`);
  }
  if (resolved) {
    const d = resolved.data as Record<string, unknown>;
    const by = Array.isArray(d.by) ? (d.by as string[]).join(' + ') : '';
    const status = String(d.status);
    const who = status === 'approved' || status === 'denied' ? `decided by people: ${by}` : status === 'cancelled' ? `withdrawn by ${by || 'the host'} (its run was cancelled)` : `closed by the host (${status})`;
    lines.push(`  ${status}${d.argsDigest ? ` with ${String(d.argsDigest)}` : ''}${d.edited ? ` (edited: ${JSON.stringify(d.editedArgs)})` : ''}: ${who}${d.denyReason ? ` — ${String(d.denyReason)}` : ''}`);
  } else lines.push('  pending');
  for (const r of recs) {
    if (r.type !== 'decision') continue;
    const d = r.data as Record<string, unknown>;
    lines.push(`  gate: ${d.allow ? 'allowed' : 'denied'} call ${r.callId ?? '?'} on ${String(d.basis ?? '?')} (seq ${r.seq})`);
    const done = r.callId === undefined ? undefined : await performed(db, r.callId);
    if (done) lines.push(`  ${done}`);
  }
  return lines;
}

/** `contained audit show CALL`: whether people (a request) or an automatic rule (a grant, possibly from an auto-accepted promotion) allowed a call. */
export async function showCall(db: AuditRecords, callId: string): Promise<string[]> {
  const lines: string[] = [];
  for (const r of await records(db, { types: ['decision'], callId })) {
    const d = r.data as Record<string, unknown>;
    const basis = String(d.basis ?? '');
    let who: string;
    if (!d.allow) who = `denied ${String(d.code ?? '')}: ${String(d.message ?? '')}`;
    else if (basis.startsWith('grant:')) who = `allowed by an automatic rule: grant ${basis.slice(6)} in mode ${String(d.mode ?? '?')}, ${await grantOrigin(db, basis.slice(6))}; no person decided this call`;
    else if (basis.startsWith('request:') || basis.startsWith('escalation:')) who = `allowed by people: ${((d.approvedBy as string[] | undefined) ?? []).join(' + ')} (request ${basis.slice(basis.indexOf(':') + 1)}: audit show it)`;
    else if (basis === 'run-allowance') who = 'allowed by an operator\'s earlier "for this run" answer';
    else who = `allowed on ${basis}`;
    lines.push(`call ${callId}: ${r.capability ?? '?'}.${r.method ?? '?'} ${who}`);
    const done = await performed(db, callId);
    if (done) lines.push(`  ${done}`);
  }
  return lines;
}
