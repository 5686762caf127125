/**
 * A trust service on a real SQLite store in a temp folder (no sandboxes, no sockets) and helpers
 * that script recommendations and reviews the way the host reports them. With `shared`, as one
 * host of a fleet: grants and requests in that PostgreSQL store, audit records in its database,
 * the trust tables in the temp folder's own SQLite file.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { RiskAnnotations } from '../../capabilities/sdk/risk.js';
import { loadOrCreateAuditKey } from '../../host/audit/keys.js';
import { AuditLog } from '../../host/audit/log.js';
import type { Grant, RequestRecord } from '../../host/model.js';
import { defaultStorePath, openSqliteStore } from '../../host/store/sqlite-store.js';
import type { Store } from '../../host/store/store.js';
import type { ActionKey } from '../../host/trust/ledger.js';
import { type TrustConfig, trustConfigSchema } from '../../host/trust/policy.js';
import { type TrustOutEvent, TrustService } from '../../host/trust/service.js';
import { chain } from '../../host/trust/tables.js';

export const SUBJECT = `sha256:${'5'.repeat(64)}`;

export const RISK: Record<'lowStakes' | 'destructive' | 'financial' | 'irreversible', RiskAnnotations> = {
  lowStakes: { readOnly: false, destructive: false, reversible: true, openWorld: false, financial: false },
  destructive: { readOnly: false, destructive: true, reversible: false, openWorld: false, financial: false },
  financial: { readOnly: false, destructive: false, reversible: true, openWorld: true, financial: true },
  irreversible: { readOnly: false, destructive: false, reversible: false, openWorld: true, financial: false },
};

export interface TrustHarness {
  dir: string;
  store: Store;
  audit: AuditLog;
  trust: TrustService;
  events: TrustOutEvent[];
  clock: { now: number };
  /** An active grant for the subject (default assisted). */
  grant(capability: string, methods: string[], mode?: Grant['mode'], extra?: Partial<Grant>): Promise<Grant>;
  /** One recommendation of `key` made and resolved with this verdict. */
  verdict(key: ActionKey, verdict: 'approved' | 'edited' | 'denied', risk: RiskAnnotations, grantId?: string): Promise<RequestRecord>;
  /** A critical review from an earlier executed period, straight into the ledger. */
  critical(key: ActionKey, risk: RiskAnnotations): Promise<void>;
  close(): Promise<void>;
}

let counter = 0;

export async function startTrust(config: Partial<TrustConfig> = {}, shared?: { url: string; store: Store }): Promise<TrustHarness> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-trust-'));
  const file = defaultStorePath(dir);
  const store = shared?.store ?? (await openSqliteStore(file, { synchronous: 'normal' }));
  const clock = { now: 1_900_000_000_000 };
  const audit = new AuditLog({ file, ...(shared ? { postgres: shared.url } : {}), key: loadOrCreateAuditKey(dir), checkpointIntervalMs: 0, inboxPollMs: 0, synchronous: 'normal', lazyFlushMs: 0, now: () => clock.now });
  const events: TrustOutEvent[] = [];
  const trust = new TrustService({ audit, store, config: trustConfigSchema.parse(config), now: () => clock.now, emit: (e) => events.push(e) });
  const grants = new Map<string, Grant>();
  return {
    dir,
    store,
    audit,
    trust,
    events,
    clock,
    async grant(capability, methods, mode = 'assisted', extra = {}) {
      const grant: Grant = { id: `grt_${(counter++).toString(16).padStart(16, '0')}`, subject: { digest: SUBJECT }, capability, methods, mode, approvals: 1, createdBy: 'test', reason: 'test', createdAt: clock.now, ...extra };
      await store.insertGrant(grant);
      grants.set(capability, grant);
      return grant;
    },
    async verdict(key, verdict, risk, grantId) {
      clock.now += 1000;
      const id = `req-${counter++}`;
      const base: RequestRecord = {
        id,
        kind: 'recommendation',
        runId: 'run',
        subject: key.subject,
        capability: key.capability,
        method: key.method,
        args: { n: counter },
        risk,
        why: 'assisted mode',
        ...(grantId ?? grants.get(key.capability)?.id ? { grantId: grantId ?? grants.get(key.capability)?.id } : {}),
        approvalsRequired: 1,
        approvals: [],
        status: 'pending',
        createdAt: clock.now,
        expiresAt: clock.now + 60_000,
      };
      // In order, as the host's event handler runs them (TrustService.onRequestEvent).
      await trust.recommended(base);
      clock.now += 1000;
      const resolved: RequestRecord =
        verdict === 'denied'
          ? { ...base, status: 'denied', resolvedAt: clock.now, resolvedBy: ['alice'], denyReason: 'no' }
          : { ...base, status: 'approved', resolvedAt: clock.now, resolvedBy: ['alice'], approvals: [{ operator: 'alice', at: clock.now, ...(verdict === 'edited' ? { args: { n: -1 } } : {}) }] };
      await trust.resolved(resolved);
      return resolved;
    },
    async critical(key, risk) {
      const ref = `call-${counter++}`;
      await audit.transact(chain(trust.tables.executed(ref, key, clock.now, 'grt_old', risk), trust.tables.reviewed(ref, 'critical', clock.now)));
    },
    async close() {
      await audit.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
