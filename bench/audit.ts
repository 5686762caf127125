/**
 * Audit log benchmarks for `npm run bench` (registered in bench/run.ts):
 * - auditThroughput: durable records per second through AuditLog with group commit
 *   (synchronous=FULL: every transaction fsynced to the WAL before its appends resolve), many
 *   appends in flight at once the way concurrent gate calls make them; against the 20,000/s target,
 *   and against one transaction per record (what group commit saves).
 * - auditVerify: `verifyAudit` over a 1,000,000-record chain (with a signed checkpoint every 1000),
 *   built quickly in a temp database (bulk transactions, synchronous=OFF; building is not timed).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { loadOrCreateAuditKey, signCheckpoint } from '../host/audit/keys.js';
import { AuditLog } from '../host/audit/log.js';
import { type AuditInput, GENESIS, sealRecord } from '../host/audit/record.js';
import { verifyAudit } from '../host/audit/verify.js';
import { migrate } from '../host/store/schema.js';
import { defaultStorePath } from '../host/store/sqlite-store.js';
import { type BenchRow, round } from './report.js';

const TARGET_PER_SECOND = 20_000;

/** A gate-sized record: an intent with small arguments. */
function sample(i: number): AuditInput {
  return {
    type: 'intent',
    runId: `run-${i % 64}`,
    subject: `sha256:${'ab'.repeat(32)}`,
    capability: 'notes',
    method: 'write',
    callId: `call-${i}`,
    data: { basis: 'grant:grt_0123456789abcdef', mode: 'executed', args: { path: `reports/${i}.txt`, content: 'x'.repeat(64) } },
  };
}

function tempDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'contained-bench-audit-'));
}

export async function auditThroughput(): Promise<BenchRow[]> {
  const dir = tempDir();
  try {
    const key = loadOrCreateAuditKey(dir);
    const log = new AuditLog({ file: defaultStorePath(dir), key, synchronous: 'full', checkpointIntervalMs: 0, inboxPollMs: 0 });
    // Group commit: 200 waves of 1000 appends in flight together (one tick each).
    const WAVES = 200;
    const WAVE = 1000;
    await Promise.all(Array.from({ length: WAVE }, (_, i) => log.append(sample(i))));
    const t0 = performance.now();
    for (let w = 0; w < WAVES; w++) await Promise.all(Array.from({ length: WAVE }, (_, i) => log.append(sample(w * WAVE + i))));
    const grouped = (WAVES * WAVE) / ((performance.now() - t0) / 1000);
    // One transaction (and one fsync) per record: each append awaited before the next.
    const SINGLE = 2000;
    const t1 = performance.now();
    for (let i = 0; i < SINGLE; i++) await log.append(sample(i));
    const single = SINGLE / ((performance.now() - t1) / 1000);
    // Concurrency as a host sees it: 64 callers, each awaiting its own append, in a loop.
    const CALLERS = 64;
    const PER = 200;
    const t2 = performance.now();
    await Promise.all(Array.from({ length: CALLERS }, async (_, c) => {
      for (let i = 0; i < PER; i++) await log.append(sample(c * PER + i));
    }));
    const callers = (CALLERS * PER) / ((performance.now() - t2) / 1000);
    await log.close();
    return [
      { name: 'audit append, group commit, durable (synchronous=FULL)', value: round(grouped, 1), unit: 'records/s', peer: 'target', peerValue: TARGET_PER_SECOND, target: '≥ 20000 records/s' },
      { name: 'audit append, 64 callers each awaiting its record', value: round(callers, 1), unit: 'records/s', peer: 'one transaction per record', peerValue: round(single, 1) },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function auditVerify(): Promise<BenchRow[]> {
  const N = 1_000_000;
  const dir = tempDir();
  try {
    const key = loadOrCreateAuditKey(dir);
    const file = defaultStorePath(dir);
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = OFF');
    migrate(db, Date.now());
    const insert = db.prepare('INSERT INTO audit_records (seq, at, type, run_id, subject, capability, method, call_id, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
    const checkpoint = db.prepare('INSERT INTO audit_checkpoints (seq, hash, at, key_id, signature) VALUES (?, ?, ?, ?, ?)');
    let prev = GENESIS;
    const at = Date.now();
    const build = db.transaction((from: number, to: number) => {
      for (let seq = from; seq <= to; seq++) {
        const r = sealRecord(sample(seq), seq, at + seq, prev);
        insert.run(r.seq, r.at, r.type, r.runId, r.subject, r.capability, r.method, r.callId, r.data, r.prevHash, r.hash);
        prev = r.hash;
        if (seq % 1000 === 0) {
          const cp = signCheckpoint(key, seq, r.hash, r.at);
          checkpoint.run(cp.seq, cp.hash, cp.at, cp.keyId, cp.signature);
        }
      }
    });
    for (let from = 1; from <= N; from += 50_000) build(from, Math.min(N, from + 49_999));
    db.close();
    const reader = new Database(file, { readonly: true });
    const t0 = performance.now();
    const report = verifyAudit(reader, { ...key, privateKey: undefined });
    const seconds = (performance.now() - t0) / 1000;
    reader.close();
    if (!report.ok || report.records !== N) throw new Error(`bench chain did not verify: ${JSON.stringify(report.firstBad)}`);
    return [
      { name: `audit verify, ${N.toLocaleString('en')} records + ${report.checkpoints} signed checkpoints`, value: round(seconds, 2), unit: 's' },
      { name: 'audit verify speed', value: round(N / seconds, 1), unit: 'records/s' },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
