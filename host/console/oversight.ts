/**
 * Read-only views the operator protocol has no message for: the trust ledger's figures per agent
 * and action (mode, phase, counts, rates, the promotion bar), an audit search, and the audit
 * chain's verification status. They call the host's own functions (host/trust/report.ts — the
 * report `contained trust report` prints, in the compact figures `trustFor` shows approvers — and
 * host/audit `tailAudit` / `verifyAudit`); nothing here writes. They take the audit log and the
 * trust service, never the whole host. Reviews and promotion decisions go over the operator channel (`review.*`, `promotion.*`).
 *
 * Verification reads the whole chain on the host's thread, so its result is cached for
 * `VERIFY_CACHE_MS`; a very large log is better verified with `contained audit verify`.
 *
 * With a PostgreSQL store (a fleet) the records are the fleet's one chain, read through the audit
 * log's `source`: the search and the verification then return promises (SQLite stays synchronous),
 * and checkpoints are checked with this host's key plus `audit.keyFile` / `audit.publicKeyFiles`.
 * Fails: NOT_FOUND when the host has no audit log / trust ledger; INVALID_ARGUMENT for bad filters.
 */
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import type { AuditConfig } from '../audit/config.js';
import { loadVerifyKeys } from '../audit/keys.js';
import { tailAudit } from '../audit/query.js';
import type { AuditLog } from '../audit/log.js';
import type { AuditRecord } from '../audit/record.js';
import { verifyAudit, verifyAuditSource, type VerifyReport } from '../audit/verify.js';
import { compactFigures } from '../trust/figures.js';
import { trustFigures } from '../trust/report.js';
import type { TrustService } from '../trust/service.js';

/** How long a verification result is reused, ms. */
export const VERIFY_CACHE_MS = 30_000;
/** Most audit records one search returns. */
export const MAX_AUDIT_RESULTS = 500;

const text = z.string().trim().min(1).max(200);
const time = z.coerce.number().int().nonnegative();
export const auditQuerySchema = z.strictObject({
  run: text.optional(),
  subject: text.optional(),
  capability: text.optional(),
  type: text.optional(),
  since: time.optional(),
  until: time.optional(),
  limit: z.coerce.number().int().min(1).max(MAX_AUDIT_RESULTS).optional(),
});

export interface TrustRow {
  subject: string;
  phase: { phase: number; why: string };
  actions: Array<Record<string, unknown>>;
}

/** What these views read: the audit log and the trust service (either may be absent: NOT_FOUND). */
export interface Oversight {
  readonly audit?: Pick<AuditLog, 'db' | 'source'> | undefined;
  readonly trust?: Pick<TrustService, 'sources'> | undefined;
}

/**
 * The trust report (host/trust/report.ts, the same subjects and actions as `contained trust
 * report`), each action in the compact figures approvers see with a request.
 */
export async function trustReport(host: Oversight, now: number, subject?: string): Promise<TrustRow[]> {
  if (!host.trust) throw new ContainedError('NOT_FOUND', 'this host has no trust ledger');
  const src = host.trust.sources;
  return (await trustFigures(src, now, subject)).map((s) => ({
    subject: s.subject,
    phase: { phase: s.phase.phase, why: s.phase.why },
    actions: s.actions.map((f) => compactFigures(f, s.phase, src.config)),
  }));
}

/** Newest first. A promise when the records are in PostgreSQL. */
export function auditSearch(host: Oversight, query: z.output<typeof auditQuerySchema>): AuditRecord[] | Promise<AuditRecord[]> {
  if (!host.audit) throw new ContainedError('NOT_FOUND', 'this host has no audit log');
  const filter = {
    ...(query.run !== undefined ? { runId: query.run } : {}),
    ...(query.subject !== undefined ? { subject: query.subject } : {}),
    ...(query.capability !== undefined ? { capability: query.capability } : {}),
    ...(query.type !== undefined ? { type: query.type } : {}),
    ...(query.since !== undefined ? { since: query.since } : {}),
    ...(query.until !== undefined ? { until: query.until } : {}),
  };
  // Newest first: the operator looks for what just happened.
  if (host.audit.source.kind === 'postgres') return host.audit.source.tail(query.limit ?? 100, filter).then((r) => r.reverse());
  return tailAudit(host.audit.db, query.limit ?? 100, filter).reverse();
}

type Checked = VerifyReport & { checkedAt: number };

/** Chain verification, cached; `checkedAt` says how fresh it is. A promise when the records are in PostgreSQL. */
export function createVerifier(host: Oversight, dataDir: string, now: () => number, auditConfig?: Pick<AuditConfig, 'keyFile' | 'publicKeyFiles'>): () => Checked | Promise<Checked> {
  let cached: Checked | undefined;
  let running: Promise<Checked> | undefined;
  return () => {
    const audit = host.audit;
    if (!audit) throw new ContainedError('NOT_FOUND', 'this host has no audit log');
    if (cached && now() - cached.checkedAt < VERIFY_CACHE_MS) return cached;
    const keys = loadVerifyKeys(dataDir, [], auditConfig);
    if (audit.source.kind !== 'postgres') {
      cached = { ...verifyAudit(audit.db, keys), checkedAt: now() };
      return cached;
    }
    // One walk at a time over the fleet's chain, however many pages ask.
    running ??= verifyAuditSource(audit.source, keys)
      .then((report) => (cached = { ...report, checkedAt: now() }))
      .finally(() => {
        running = undefined;
      });
    return running;
  };
}
