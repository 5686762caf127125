/**
 * The audit chain on a real SQLite file: group commit, hashes and links, signed checkpoints, the
 * grant/token inbox, pino lines — and `verifyAudit` naming the first bad record for every kind of
 * tampering, done the way an attacker would: by editing the SQLite file directly.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import Database from 'better-sqlite3';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { canonicalJson } from '../../host/audit/canonical.js';
import { AUDIT_KEY_FILE, type AuditKey, loadOrCreateAuditKey, loadVerifyKey } from '../../host/audit/keys.js';
import { AuditLog, type AuditLogOptions } from '../../host/audit/log.js';
import { GENESIS, hashInput, hashRecord, RECORD_COLUMNS, rowToStored, type StoredRecord } from '../../host/audit/record.js';
import { verifyAudit } from '../../host/audit/verify.js';
import { defaultStorePath, openSqliteStore } from '../../host/store/sqlite-store.js';
import { createToken } from '../../host/tokens.js';

let dir: string;
let file: string;
let key: AuditKey;
const logs: AuditLog[] = [];

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'contained-audit-'));
  file = defaultStorePath(dir);
  key = loadOrCreateAuditKey(dir);
});
afterEach(async () => {
  for (const log of logs.splice(0)) await log.close();
  rmSync(dir, { recursive: true, force: true });
});

function open(options: Partial<AuditLogOptions> = {}): AuditLog {
  const log = new AuditLog({ file, key, checkpointIntervalMs: 0, inboxPollMs: 0, synchronous: 'normal', ...options });
  logs.push(log);
  return log;
}

/** n records, one commit each (so periodic checkpoints fall where `checkpointEvery` says). */
async function fill(n: number, options: Partial<AuditLogOptions> = {}): Promise<void> {
  const log = open(options);
  for (let i = 0; i < n; i++) await log.append({ type: 'call', runId: `run-${i % 3}`, capability: 'notes', method: 'read', callId: `c${i}`, data: { i, args: { path: `f${i}.txt` } } });
  await log.close();
}

/** A raw writable connection: the attacker's. */
function raw<T>(f: (db: Database.Database) => T): T {
  const db = new Database(file);
  try {
    return f(db);
  } finally {
    db.close();
  }
}

function verify(): ReturnType<typeof verifyAudit> {
  const db = new Database(file, { readonly: true });
  try {
    return verifyAudit(db, loadVerifyKey(dir));
  } finally {
    db.close();
  }
}

function row(db: Database.Database, seq: number): StoredRecord {
  return rowToStored(db.prepare(`SELECT ${RECORD_COLUMNS} FROM audit_records WHERE seq = ?`).raw(true).get(seq) as unknown[]);
}

function put(db: Database.Database, r: StoredRecord): void {
  db.prepare('INSERT INTO audit_records (seq, at, type, run_id, subject, capability, method, call_id, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').run(
    r.seq, r.at, r.type, r.runId, r.subject, r.capability, r.method, r.callId, r.data, r.prevHash, r.hash,
  );
}

/** Move records seq >= from by delta (in an order the primary key allows). */
function renumber(db: Database.Database, from: number, delta: number): void {
  const seqs = (db.prepare('SELECT seq FROM audit_records WHERE seq >= ? ORDER BY seq').pluck().all(from) as number[]);
  const order = delta > 0 ? seqs.reverse() : seqs;
  for (const seq of order) db.prepare('UPDATE audit_records SET seq = ? WHERE seq = ?').run(seq + delta, seq);
}

describe('the chain', () => {
  it('links every record to the previous one by sha256 of its canonical JSON, and verifies', async () => {
    await fill(50);
    const records = raw((db) => (db.prepare(`SELECT ${RECORD_COLUMNS} FROM audit_records ORDER BY seq`).raw(true).all() as unknown[][]).map(rowToStored));
    expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(records[0]?.prevHash).toBe(GENESIS);
    for (let i = 1; i < records.length; i++) expect(records[i]?.prevHash).toBe(records[i - 1]?.hash);
    // The hash input is exactly the canonical JSON of the record without its hash.
    const first = records[0] as StoredRecord;
    const { hash: _hash, ...rest } = first;
    const asObject = { ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== null)), data: JSON.parse(first.data) as unknown };
    expect(hashInput(rest)).toBe(canonicalJson(asObject));
    expect(hashRecord(rest)).toBe(first.hash);
    expect(verify()).toMatchObject({ ok: true, records: 50, headSeq: 50, firstBad: undefined });
  });

  it('the fast hash input equals canonical JSON for strings that need escaping (quotes, controls, surrogates, U+2028)', () => {
    for (const c of ['plain', 'quo"te', 'back\\slash', 'ctl\u0001', 'lone\ud800', 'pair😀', 'line\u2028sep', 'tab\t', 'ünï', '']) {
      const r = { seq: 1, at: 2, type: c, runId: c, subject: null, capability: c, method: null, callId: c, data: canonicalJson({ c }), prevHash: c };
      expect(hashInput(r)).toBe(canonicalJson({ seq: 1, at: 2, type: c, runId: c, capability: c, callId: c, data: { c }, prevHash: c }));
    }
  });

  it('group commit: appends of one tick share a transaction, resolve only once committed, and survive reopening', async () => {
    const log = open({ synchronous: 'full' });
    const records = await Promise.all(Array.from({ length: 2000 }, (_, i) => log.append({ type: 'call', data: { i } })));
    expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 2000 }, (_, i) => i + 1));
    // Every resolved record is readable by another connection: it was committed before resolving.
    expect(raw((db) => db.prepare('SELECT COUNT(*) FROM audit_records').pluck().get())).toBe(2000);
    await log.close();
    expect(verify()).toMatchObject({ ok: true, records: 2000, checkpoints: 1, lastCheckpointSeq: 2000 });
  });

  it('`within` runs in the same transaction: when it throws, only its own append fails and the chain stays whole', async () => {
    const log = open();
    raw((db) => db.exec('CREATE TABLE side (n INTEGER)'));
    const ok = log.append({ type: 'review.marked', data: { n: 1 } }, (db) => db.prepare('INSERT INTO side VALUES (1)').run());
    const bad = log.append({ type: 'review.marked', data: { n: 2 } }, (db) => {
      db.prepare('INSERT INTO side VALUES (2)').run();
      throw new Error('lost the race');
    });
    const after = log.append({ type: 'call', data: { n: 3 } });
    await expect(bad).rejects.toThrow('lost the race');
    expect((await ok).seq).toBe(1);
    expect((await after).seq).toBe(2);
    expect(raw((db) => db.prepare('SELECT n FROM side').pluck().all())).toEqual([1]);
    await log.close();
    expect(verify().ok).toBe(true);
  });

  it('emits each committed record as a pino JSON line with audit: true', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } });
    const log = open({ logger: pino({ level: 'info' }, sink) });
    await log.append({ type: 'call', runId: 'r1', capability: 'notes', method: 'read', data: { args: 'a.txt' } });
    await log.close();
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed).toContainEqual(expect.objectContaining({ audit: true, seq: 1, type: 'call', runId: 'r1', capability: 'notes', data: { args: 'a.txt' } }));
  });

  it('drains grant and token changes made by anyone (triggers) into the chain, never the token hash', async () => {
    const store = await openSqliteStore(file);
    const token = await createToken({ name: 'alice', role: 'approver', createdBy: 'test' }, store);
    await store.insertGrant({ id: 'g1', subject: { digest: `sha256:${'a'.repeat(64)}` }, capability: 'notes', methods: ['read'], mode: 'contained', approvals: 1, createdBy: 'erin', reason: 'r', createdAt: 5 });
    await store.revokeGrant('g1', 'erin', 'no longer needed', 6);
    await store.close();
    const log = open();
    await log.append({ type: 'call', data: {} });
    await log.close();
    const types = raw((db) => db.prepare('SELECT type, data FROM audit_records ORDER BY seq').all() as Array<{ type: string; data: string }>);
    expect(types.map((t) => t.type)).toEqual(['token.created', 'grant.added', 'grant.revoked', 'call']);
    expect(types[0]?.data).not.toContain(token.record.hash);
    expect(JSON.parse(types[2]?.data ?? '{}')).toMatchObject({ grantId: 'g1', by: 'erin', reason: 'no longer needed' });
    expect(raw((db) => db.prepare('SELECT COUNT(*) FROM audit_inbox').pluck().get())).toBe(0);
  });
});

describe('checkpoints', () => {
  it('are ed25519 signatures of the head by the host key (0600), checked by verify', async () => {
    expect(statSync(path.join(dir, AUDIT_KEY_FILE)).mode & 0o777).toBe(0o600);
    await fill(25, { checkpointEvery: 10 });
    const report = verify();
    expect(report).toMatchObject({ ok: true, checkpoints: 3, lastCheckpointSeq: 25, unsignedTail: 0, keyId: key.keyId });
    raw((db) => db.prepare("UPDATE audit_checkpoints SET signature = ? WHERE seq = 20").run(Buffer.alloc(64, 1).toString('base64')));
    expect(verify().firstBad).toMatchObject({ seq: 20, kind: 'checkpoint' });
  });

  it('a key another process made is not trusted: verify with a pinned public key names the foreign checkpoint', async () => {
    await fill(5);
    const other = mkdtempSync(path.join(os.tmpdir(), 'contained-audit-other-'));
    const foreign = loadOrCreateAuditKey(other);
    const db = new Database(file, { readonly: true });
    try {
      const report = verifyAudit(db, { ...foreign, privateKey: undefined });
      expect(report.firstBad).toMatchObject({ seq: 5, kind: 'checkpoint' });
    } finally {
      db.close();
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('refuses a signing key readable by others', async () => {
    const { chmodSync } = await import('node:fs');
    chmodSync(path.join(dir, AUDIT_KEY_FILE), 0o644);
    expect(() => loadOrCreateAuditKey(dir)).toThrow(/readable by others/);
  });
});

describe('verify names the first bad record', () => {
  beforeEach(async () => {
    // Checkpoints far apart, so each tamper is found by the chain itself.
    await fill(40, { checkpointEvery: 1000 });
  });

  it('edit: a record changed in place', () => {
    raw((db) => db.prepare("UPDATE audit_records SET data = ? WHERE seq = 17").run('{"i":16,"args":{"path":"other.txt"}}'));
    expect(verify().firstBad).toMatchObject({ seq: 17, kind: 'edited' });
  });

  it('edit: a record changed and its own hash recomputed (the successor still links to the original)', () => {
    raw((db) => {
      const r = row(db, 17);
      const changed = { ...r, data: '{"i":16,"forged":true}' };
      db.prepare('UPDATE audit_records SET data = ?, hash = ? WHERE seq = 17').run(changed.data, hashRecord(changed));
    });
    expect(verify().firstBad).toMatchObject({ seq: 17, kind: 'edited' });
  });

  it('edit: a changed subject column, not just data', () => {
    raw((db) => db.prepare("UPDATE audit_records SET run_id = 'someone-else' WHERE seq = 3").run());
    expect(verify().firstBad).toMatchObject({ seq: 3, kind: 'edited' });
  });

  it('delete: a record removed (a gap)', () => {
    raw((db) => db.prepare('DELETE FROM audit_records WHERE seq = 23').run());
    expect(verify().firstBad).toMatchObject({ seq: 23, kind: 'deleted' });
  });

  it('delete: a record removed and the later ones renumbered to close the gap', () => {
    raw((db) => {
      db.prepare('DELETE FROM audit_records WHERE seq = 23').run();
      renumber(db, 24, -1);
    });
    expect(verify().firstBad).toMatchObject({ seq: 23, kind: 'deleted' });
  });

  it('delete: the tail cut off after the last checkpoint was signed', () => {
    raw((db) => db.prepare('DELETE FROM audit_records WHERE seq > 30').run());
    expect(verify().firstBad).toMatchObject({ seq: 31, kind: 'deleted' });
  });

  it('insert: a forged record with a correct hash and link, later records renumbered', () => {
    raw((db) => {
      renumber(db, 12, +1);
      const before = row(db, 11);
      const forged = { seq: 12, at: before.at, type: 'decision', runId: 'run-0', subject: null, capability: 'notes', method: 'read', callId: 'forged', data: '{"allow":true}', prevHash: before.hash };
      put(db, { ...forged, hash: hashRecord(forged) });
    });
    expect(verify().firstBad).toMatchObject({ seq: 12, kind: 'inserted' });
  });

  it('insert: a forged record with a made-up hash', () => {
    raw((db) => {
      renumber(db, 12, +1);
      put(db, { seq: 12, at: 1, type: 'decision', runId: null, subject: null, capability: null, method: null, callId: null, data: '{}', prevHash: row(db, 11).hash, hash: 'f'.repeat(64) });
    });
    expect(verify().firstBad).toMatchObject({ seq: 12, kind: 'inserted' });
  });

  it('reorder: two records swapped', () => {
    raw((db) => {
      db.prepare('UPDATE audit_records SET seq = -1 WHERE seq = 30').run();
      db.prepare('UPDATE audit_records SET seq = 30 WHERE seq = 31').run();
      db.prepare('UPDATE audit_records SET seq = 31 WHERE seq = -1').run();
    });
    expect(verify().firstBad).toMatchObject({ seq: 30, kind: 'reordered' });
  });

  it('rewrite: everything after an edit re-hashed by someone without the key is caught by the checkpoint', async () => {
    raw((db) => {
      let prev = row(db, 9).hash;
      for (let seq = 10; seq <= 40; seq++) {
        const r = row(db, seq);
        const changed = { ...r, prevHash: prev, data: seq === 10 ? '{"rewritten":true}' : r.data };
        const hash = hashRecord(changed);
        db.prepare('UPDATE audit_records SET data = ?, prev_hash = ?, hash = ? WHERE seq = ?').run(changed.data, prev, hash, seq);
        prev = hash;
      }
    });
    expect(verify().firstBad).toMatchObject({ seq: 1, kind: 'rewritten' });
  });
});
