/**
 * One fsync per escalation (group commit, host/store/wal-sync.ts), and no durability lost for it:
 *
 * - the request and the approval are committed without an fsync of their own; the call's intent,
 *   committed by the audit log with an fsync after them, covers them (the same write-ahead log);
 * - nobody hears of an approval (the approver's answer, the `resolved` event) and the gate does not
 *   return (so nothing is performed) before an fsync has covered it — with an audit log (its
 *   intent's commit) and without one (the store's own fdatasync);
 * - a deferred commit survives the death of the process at once (SIGKILL right after it).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFs } from '../../capabilities/fs/index.js';
import { createGateAudit } from '../../host/audit/gate-audit.js';
import { loadOrCreateAuditKey } from '../../host/audit/keys.js';
import { AuditLog } from '../../host/audit/log.js';
import { PolicyGate } from '../../host/gate/policy-gate.js';
import { RequestManager } from '../../host/gate/requests.js';
import { GrantService } from '../../host/grant-service.js';
import type { RunSubject } from '../../host/model.js';
import { openSqliteStore } from '../../host/store/sqlite-store.js';
import type { Store } from '../../host/store/store.js';
import { WalSync, walSyncFor } from '../../host/store/wal-sync.js';
import type { GateCall, GateContext } from '../../runtime/gate.js';
import { DIGEST, request as requestFixture } from './store-fixtures.js';

const OPERATOR = { tokenId: 'tok1', name: 'alice', role: 'approver' } as const;

let dir: string;
let file: string;
let store: Store;
let audit: AuditLog | undefined;
let timeline: string[];
const restore: Array<() => void> = [];

/** Record, on the file's WalSync, each deferred commit, each commit that covered them, and each own fdatasync. */
function watch(sync: WalSync): void {
  const proto = WalSync.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  const target = sync as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const name of ['deferred', 'reached', 'sync'] as const) {
    const original = proto[name] as (...args: unknown[]) => unknown;
    target[name] = function (this: unknown, ...args: unknown[]) {
      const before = (sync as unknown as { synced: number }).synced;
      const result = original.apply(this, args);
      if (name === 'deferred') timeline.push(`deferred ${String(result)}`);
      if (name === 'sync') timeline.push('fdatasync');
      if (name === 'reached' && (sync as unknown as { synced: number }).synced > before) timeline.push(`durable ${String(args[0])}`);
      return result;
    };
    restore.push(() => delete target[name]);
  }
}

/** The mark of the last `deferred` before `event` in the timeline, and whether a `durable ≥ mark` came between. */
function coveredBefore(event: string): boolean {
  const at = timeline.indexOf(event);
  expect(at).toBeGreaterThan(-1);
  const marks = timeline.slice(0, at).filter((e) => e.startsWith('deferred ')).map((e) => Number(e.slice(9)));
  const last = Math.max(0, ...marks);
  return timeline.slice(0, at).some((e) => e.startsWith('durable ') && Number(e.slice(8)) >= last);
}

beforeEach(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'group-commit-'));
  file = path.join(dir, 'contained.db');
  store = await openSqliteStore(file);
  timeline = [];
  watch(walSyncFor(file));
});
afterEach(async () => {
  for (const f of restore.splice(0)) f();
  await audit?.close();
  audit = undefined;
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function gateFor(withAudit: boolean): { gate: PolicyGate; requests: RequestManager; call: GateCall } {
  mkdirSync(path.join(dir, 'notes'), { recursive: true });
  writeFileSync(path.join(dir, 'notes', 'a.txt'), 'alpha');
  const notes = createFs({ root: path.join(dir, 'notes') });
  const instances = new Map([['notes', notes]]);
  let hooks: ReturnType<typeof createGateAudit> | undefined;
  if (withAudit) {
    audit = new AuditLog({ file, key: loadOrCreateAuditKey(dir) });
    hooks = createGateAudit({ audit, store });
  }
  const requests = new RequestManager({
    store,
    validateEdit: async (_r, args) => args,
    performDetached: async () => ({ ok: true, result: null }),
    ...(hooks ? { beforeDetached: hooks.beforeDetached, afterDetached: hooks.afterDetached } : {}),
  });
  if (hooks) requests.subscribe(hooks.onRequestEvent);
  requests.subscribe((event) => timeline.push(`event ${event.type}`));
  const subject: RunSubject = { digest: DIGEST, name: undefined, signers: [] };
  const gate = new PolicyGate({
    grants: new GrantService({ store, instances }),
    requests,
    instances,
    run: () => ({ subject, allowances: [] }),
    outOfScope: 'escalate',
    requestTimeoutMs: 60_000,
    ...(hooks ? { audit: hooks } : {}),
  });
  const call: GateCall = {
    callId: 'c1',
    runId: 'run1',
    subject: DIGEST,
    capability: 'notes',
    definition: 'fs',
    method: 'read',
    args: 'a.txt',
    reason: undefined,
    risk: notes.risk('read'),
    scope: notes.checkScope('read', 'a.txt'),
  };
  return { gate, requests, call };
}

const ctx: GateContext = { signal: new AbortController().signal, pauseWallClock: () => () => {} };

async function escalateAndApprove(withAudit: boolean): Promise<void> {
  const { gate, requests, call } = gateFor(withAudit);
  const created = new Promise<string>((resolve) => requests.subscribe((e) => e.type === 'created' && resolve(e.request.id)));
  const decided = gate.decide(call, ctx).then((d) => {
    timeline.push('gate returns');
    return d;
  });
  const id = await created;
  const view = await requests.decide(OPERATOR, { requestId: id, verdict: 'approve', span: 'once' });
  timeline.push('approver answered');
  expect(view.status).toBe('approved');
  const decision = await decided;
  expect(decision).toMatchObject({ allow: true, basis: `escalation:${id}` });
  requests.close();
}

describe('group commit: one fsync per escalation, nothing told or done before it', () => {
  it('with the audit log: the request and approval commit without an fsync; the intent covers them; the gate, the approver and operators wait for it', async () => {
    await escalateAndApprove(true);
    // Two deferred commits: the request, the approval.
    expect(timeline.filter((e) => e.startsWith('deferred '))).toHaveLength(2);
    expect(coveredBefore('gate returns')).toBe(true);
    expect(coveredBefore('approver answered')).toBe(true);
    expect(coveredBefore('event resolved')).toBe(true);
    // The intent record is on disk with the approval it was allowed by.
    const intents = (audit as AuditLog).db.prepare("SELECT COUNT(*) FROM audit_records WHERE type = 'intent'").pluck().get();
    expect(intents).toBe(1);
  });

  it('without an audit log: the store fsyncs the write-ahead log itself before anyone hears of the approval', async () => {
    await escalateAndApprove(false);
    expect(timeline).toContain('fdatasync');
    expect(coveredBefore('gate returns')).toBe(true);
    expect(coveredBefore('approver answered')).toBe(true);
    expect(coveredBefore('event resolved')).toBe(true);
  });

  it('an approval that does not complete the request (two-person rule) is durable before the approver hears of it', async () => {
    const { requests } = gateFor(false);
    await store.insertRequest(requestFixture({ id: 'r2', approvalsRequired: 2, expiresAt: Date.now() + 60_000, createdAt: Date.now() }));
    const view = await requests.decide(OPERATOR, { requestId: 'r2', verdict: 'approve' });
    timeline.push('approver answered');
    expect(view.approvals).toHaveLength(1);
    expect(coveredBefore('approver answered')).toBe(true);
    expect(coveredBefore('event updated')).toBe(true);
    requests.close();
  });
});

describe('group commit: a deferred commit survives the death of the process', () => {
  it('SIGKILL right after a deferred insert and approval: both are there when the file is opened again', async () => {
    await store.close();
    const script = path.join(dir, 'killed.mts');
    writeFileSync(
      script,
      `import { openSqliteStore } from ${JSON.stringify(path.resolve('host/store/sqlite-store.ts'))};
const s = await openSqliteStore(process.argv[2]);
const r = ${JSON.stringify(requestFixture({ id: 'r-killed', approvalsRequired: 1, expiresAt: 4_000_000_000_000 }))};
await s.insertRequest(r, { deferSync: true });
await s.addApproval('r-killed', { operator: 'alice', at: 2000, span: 'once', argsDigest: process.argv[3] }, { resolve: true, deferSync: true });
process.kill(process.pid, 'SIGKILL');
`,
    );
    const { argsDigest } = await import('../../host/gate/proposal.js');
    const digest = argsDigest(requestFixture().args);
    expect(() => execFileSync(process.execPath, ['--import', 'tsx', script, file, digest], { stdio: 'pipe' })).toThrow();
    store = await openSqliteStore(file);
    expect(await store.getRequest('r-killed')).toMatchObject({ status: 'approved', approvals: [{ operator: 'alice' }] });
  }, 60_000);
});
