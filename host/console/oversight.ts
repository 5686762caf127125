/**
 * Read-only views the operator protocol has no message for: the trust ledger's figures per agent
 * and action (mode, phase, counts, rates, the promotion bar), an audit search, and the audit
 * chain's verification status. They call the host's own functions (host/trust figures — the same
 * ones `trustFor` shows approvers — and host/audit `tailAudit` / `verifyAudit`); nothing here
 * writes. Reviews and promotion decisions go over the operator channel (`review.*`, `promotion.*`).
 *
 * Verification reads the whole chain on the host's thread, so its result is cached for
 * `VERIFY_CACHE_MS`; a very large log is better verified with `contained audit verify`.
 * Fails: NOT_FOUND when the host has no audit log / trust ledger; INVALID_ARGUMENT for bad filters.
 */
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import { loadVerifyKey } from '../audit/keys.js';
import { tailAudit } from '../audit/query.js';
import { verifyAudit, type VerifyReport } from '../audit/verify.js';
import type { Host } from '../host.js';
import { actionFigures, compactFigures, phaseForSubject } from '../trust/figures.js';
import { activeGrants } from '../trust/grant-changes.js';
import type { ActionKey } from '../trust/ledger.js';

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

type Oversight = Pick<Host, 'audit' | 'trust' | 'instances'>;

function trustOf(host: Oversight): NonNullable<Host['trust']> {
  if (!host.trust) throw new ContainedError('NOT_FOUND', 'this host has no trust ledger');
  return host.trust;
}

/** Every subject with ledger events or an active digest grant, with the figures of each action. */
export function trustReport(host: Oversight, now: number, subject?: string): TrustRow[] {
  const trust = trustOf(host);
  const src = trust.sources;
  const grants = activeGrants(src.db, now);
  const keys = new Map<string, ActionKey>();
  const add = (k: ActionKey): void => void keys.set(`${k.subject}\u0000${k.capability}\u0000${k.method}`, k);
  for (const k of trust.ledger.actions(subject)) add(k);
  for (const g of grants) {
    if (!('digest' in g.subject) || (subject !== undefined && g.subject.digest !== subject)) continue;
    const methods = g.methods.includes('*') ? (host.instances.get(g.capability)?.methodNames() ?? []) : g.methods;
    for (const method of methods) add({ subject: g.subject.digest, capability: g.capability, method });
  }
  const bySubject = new Map<string, ActionKey[]>();
  for (const k of keys.values()) bySubject.set(k.subject, [...(bySubject.get(k.subject) ?? []), k]);
  return [...bySubject].map(([s, list]) => {
    const phase = phaseForSubject(src, s, now, grants);
    const actions = list
      .sort((a, b) => `${a.capability}.${a.method}`.localeCompare(`${b.capability}.${b.method}`))
      .map((k) => compactFigures(actionFigures(src, k, now, grants), phase, src.config));
    return { subject: s, phase: { phase: phase.phase, why: phase.why }, actions };
  });
}

export function auditSearch(host: Oversight, query: z.output<typeof auditQuerySchema>): ReturnType<typeof tailAudit> {
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
  return tailAudit(host.audit.db, query.limit ?? 100, filter).reverse();
}

/** Chain verification, cached; `checkedAt` says how fresh it is. */
export function createVerifier(host: Oversight, dataDir: string, now: () => number): () => VerifyReport & { checkedAt: number } {
  let cached: (VerifyReport & { checkedAt: number }) | undefined;
  return () => {
    if (!host.audit) throw new ContainedError('NOT_FOUND', 'this host has no audit log');
    if (cached && now() - cached.checkedAt < VERIFY_CACHE_MS) return cached;
    cached = { ...verifyAudit(host.audit.db, loadVerifyKey(dataDir)), checkedAt: now() };
    return cached;
  };
}
