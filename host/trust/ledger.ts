/**
 * The trust ledger: per (subject, capability.method), one row per recommendation and one per
 * executed action in `trust_events`, updated in place as the verdict arrives — a recommendation
 * goes `recommended` → `approved` | `edited` | `denied` | `expired`; an executed action goes
 * `executed` → `ok` | `error` | `critical` when (and if) it is reviewed. Counts, rolling windows
 * (last N days, last N events) and rates are SQL aggregates over that table (indexed by action).
 *
 * Synchronous (better-sqlite3) on the audit connection, so `trustFor` can answer while a request is
 * being announced, and writes can run inside an audit append (`within`): the ledger row and its
 * audit record commit together. Refs are unique (request id, call id), so replaying an event after
 * a restart never counts it twice.
 */
import type Database from 'better-sqlite3';
import type { RiskAnnotations } from '../../capabilities/sdk/risk.js';
import type { TrustConfig } from './policy.js';

export interface ActionKey {
  subject: string;
  capability: string;
  method: string;
}

export const KINDS = ['recommended', 'approved', 'edited', 'denied', 'expired', 'executed', 'ok', 'error', 'critical'] as const;
export type LedgerKind = (typeof KINDS)[number];
export type Counts = Record<LedgerKind, number>;

export interface ActionStats extends ActionKey {
  lifetime: Counts;
  /** Events of the last `windowDays` days (by the time of their latest change). */
  lastDays: Counts;
  /** The last `windowCount` events of the action. */
  lastEvents: Counts;
  /** The last `minAssistedReviews` assisted verdicts. */
  recentAssisted: { count: number; approved: number; edited: number; denied: number };
  /** The last `demoteWindow` reviews of executed actions. */
  reviewWindow: { count: number; errors: number; critical: number };
  /** Recommendations the policy would have allowed on its own when they were made, and what humans then said. */
  shadow: { wouldAllow: number; approved: number; edited: number; denied: number; pending: number };
  risk: RiskAnnotations | undefined;
  /** Grants the events were recorded under, newest first. */
  grantIds: string[];
}

function zero(): Counts {
  return { recommended: 0, approved: 0, edited: 0, denied: 0, expired: 0, executed: 0, ok: 0, error: 0, critical: 0 };
}

export function fill(rows: Array<[string, number]>): Counts {
  const out = zero();
  for (const [kind, n] of rows) if (kind in out) out[kind as LedgerKind] = n;
  return out;
}

const WHERE = 'subject = ? AND capability = ? AND method = ?';

export class Ledger {
  private readonly cache = new Map<string, Database.Statement>();

  constructor(private readonly db: Database.Database) {}

  private stmt(sql: string): Database.Statement {
    let s = this.cache.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.cache.set(sql, s);
    }
    return s;
  }

  /** Whether this ledger has an event for `ref` (a request or call id). */
  has(ref: string): boolean {
    return this.stmt('SELECT 1 FROM trust_events WHERE ref = ?').get(ref) !== undefined;
  }

  /** A recommendation was made; `shadow`: the policy would have allowed it autonomously. Idempotent. */
  recommended(ref: string, key: ActionKey, at: number, grantId: string | undefined, risk: RiskAnnotations | undefined, shadow: boolean): void {
    this.stmt('INSERT OR IGNORE INTO trust_events (ref, subject, capability, method, kind, at, grant_id, shadow, risk) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)').run(
      ref, key.subject, key.capability, key.method, 'recommended', at, grantId ?? null, shadow ? 1 : 0, risk ? JSON.stringify(risk) : null,
    );
  }

  /** A recommendation's final verdict (inserted when its creation was missed, e.g. across a crash). Returns whether it changed anything. */
  verdict(ref: string, key: ActionKey, kind: 'approved' | 'edited' | 'denied' | 'expired', at: number, grantId: string | undefined, risk: RiskAnnotations | undefined): boolean {
    return (
      this.stmt(
        `INSERT INTO trust_events (ref, subject, capability, method, kind, at, grant_id, shadow, risk) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)
         ON CONFLICT (ref) DO UPDATE SET kind = excluded.kind, at = excluded.at WHERE trust_events.kind = 'recommended'`,
      ).run(ref, key.subject, key.capability, key.method, kind, at, grantId ?? null, risk ? JSON.stringify(risk) : null).changes === 1
    );
  }

  /** An action performed in executed mode (reviewed or not). Idempotent. */
  executed(ref: string, key: ActionKey, at: number, grantId: string, risk: RiskAnnotations | undefined): void {
    this.stmt('INSERT OR IGNORE INTO trust_events (ref, subject, capability, method, kind, at, grant_id, shadow, risk) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)').run(
      ref, key.subject, key.capability, key.method, 'executed', at, grantId, risk ? JSON.stringify(risk) : null,
    );
  }

  /** The review verdict of an executed action. */
  reviewed(ref: string, verdict: 'ok' | 'error' | 'critical', at: number): void {
    this.stmt("UPDATE trust_events SET kind = ?, at = ? WHERE ref = ? AND kind = 'executed'").run(verdict, at, ref);
  }

  /** Assisted verdicts so far (lifetime). */
  assistedCount(key: ActionKey): number {
    return this.stmt(`SELECT COUNT(*) FROM trust_events WHERE ${WHERE} AND kind IN ('approved', 'edited', 'denied')`).pluck().get(key.subject, key.capability, key.method) as number;
  }

  stats(key: ActionKey, now: number, config: TrustConfig): ActionStats {
    const p = [key.subject, key.capability, key.method];
    const grouped = (sql: string, ...extra: unknown[]): Counts => fill(this.stmt(sql).raw(true).all(...p, ...extra) as Array<[string, number]>);
    const lifetime = grouped(`SELECT kind, COUNT(*) FROM trust_events WHERE ${WHERE} GROUP BY kind`);
    const lastDays = grouped(`SELECT kind, COUNT(*) FROM trust_events WHERE ${WHERE} AND at >= ? GROUP BY kind`, now - config.windowDays * 86_400_000);
    const lastEvents = grouped(`SELECT kind, COUNT(*) FROM (SELECT kind FROM trust_events WHERE ${WHERE} ORDER BY id DESC LIMIT ?) GROUP BY kind`, config.windowCount);
    const recent = grouped(
      `SELECT kind, COUNT(*) FROM (SELECT kind FROM trust_events WHERE ${WHERE} AND kind IN ('approved', 'edited', 'denied') ORDER BY id DESC LIMIT ?) GROUP BY kind`,
      config.minAssistedReviews,
    );
    const window = grouped(
      `SELECT kind, COUNT(*) FROM (SELECT kind FROM trust_events WHERE ${WHERE} AND kind IN ('ok', 'error', 'critical') ORDER BY id DESC LIMIT ?) GROUP BY kind`,
      config.demoteWindow,
    );
    const shadow = grouped(`SELECT kind, COUNT(*) FROM trust_events WHERE ${WHERE} AND shadow = 1 GROUP BY kind`);
    const riskText = this.stmt(`SELECT risk FROM trust_events WHERE ${WHERE} AND risk IS NOT NULL ORDER BY id DESC LIMIT 1`).pluck().get(...p) as string | undefined;
    const grantIds = this.stmt(`SELECT grant_id FROM trust_events WHERE ${WHERE} AND grant_id IS NOT NULL GROUP BY grant_id ORDER BY MAX(id) DESC LIMIT 20`).pluck().all(...p) as string[];
    return statsFrom(key, { lifetime, lastDays, lastEvents, recent, window, shadow, riskText, grantIds });
  }

  /** Every action in the ledger (optionally of one subject). */
  actions(subject?: string): ActionKey[] {
    const rows = subject === undefined
      ? this.stmt('SELECT DISTINCT subject, capability, method FROM trust_events ORDER BY subject, capability, method').all()
      : this.stmt('SELECT DISTINCT subject, capability, method FROM trust_events WHERE subject = ? ORDER BY capability, method').all(subject);
    return rows as ActionKey[];
  }
}

/** The grouped counts the stats are made of (the same queries on either store). */
export interface StatsParts {
  lifetime: Counts;
  lastDays: Counts;
  lastEvents: Counts;
  recent: Counts;
  window: Counts;
  shadow: Counts;
  riskText: string | undefined | null;
  grantIds: string[];
}

export function statsFrom(key: ActionKey, parts: StatsParts): ActionStats {
  const { lifetime, lastDays, lastEvents, recent, window, shadow, riskText, grantIds } = parts;
  return {
    subject: key.subject,
    capability: key.capability,
    method: key.method,
    lifetime,
    lastDays,
    lastEvents,
    recentAssisted: { count: recent.approved + recent.edited + recent.denied, approved: recent.approved, edited: recent.edited, denied: recent.denied },
    reviewWindow: { count: window.ok + window.error + window.critical, errors: window.error + window.critical, critical: window.critical },
    shadow: { wouldAllow: Object.values(shadow).reduce((a, b) => a + b, 0), approved: shadow.approved, edited: shadow.edited, denied: shadow.denied, pending: shadow.recommended },
    risk: riskText ? (JSON.parse(riskText) as RiskAnnotations) : undefined,
    grantIds,
  };
}
