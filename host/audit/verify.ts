/**
 * `contained audit verify`: walk the whole chain in seq order, recompute every hash, check every
 * link and every signed checkpoint, and name the first bad record.
 *
 * What each kind of tampering looks like, and how it is named:
 * - edited: a record's content no longer matches its hash (or, when the editor recomputed that
 *   hash, the next record no longer links to it: the edited record is named, not its successor);
 * - deleted: a gap in seq, or (when later records were renumbered to close it) a record whose hash
 *   only matches one seq further on; a missing tail shows against the last checkpoint;
 * - inserted: a record the next one skips over (the next record links to the one before it and
 *   hashes only with its old seq);
 * - reordered: two records that each hash only with the other's seq;
 * - rewritten: a stretch re-hashed from end to end by someone without the key — the chain is
 *   consistent but a signed checkpoint names another hash (the stretch since the previous
 *   checkpoint is named);
 * - checkpoint: a signature that does not verify, or a checkpoint from another key.
 *
 * Records after the last checkpoint are reported as unsigned: appending forged records at the
 * very end is only detectable once a checkpoint covers them (one is written every 1000 records,
 * every minute while records arrive, and when the host stops).
 */
import type Database from 'better-sqlite3';
import { type AuditKey, type Checkpoint, checkpointSignatureOk } from './keys.js';
import { GENESIS, hashRecord, RECORD_COLUMNS, rowToStored, type StoredRecord } from './record.js';

export type BadKind = 'edited' | 'deleted' | 'inserted' | 'reordered' | 'rewritten' | 'checkpoint';

export interface BadRecord {
  seq: number;
  kind: BadKind;
  message: string;
}

export interface VerifyReport {
  ok: boolean;
  records: number;
  headSeq: number;
  headHash: string;
  checkpoints: number;
  lastCheckpointSeq: number | undefined;
  /** Records after the last checkpoint (not covered by a signature yet). */
  unsignedTail: number;
  keyId: string | undefined;
  firstBad: BadRecord | undefined;
  problems: BadRecord[];
  warnings: string[];
  elapsedMs: number;
}

export function verifyAudit(db: Database.Database, key: AuditKey | undefined): VerifyReport {
  const t0 = performance.now();
  const problems: BadRecord[] = [];
  const warnings: string[] = [];
  const checkpoints = (db.prepare('SELECT seq, hash, at, key_id AS keyId, signature FROM audit_checkpoints ORDER BY seq').all() as Checkpoint[]);
  const bySeq = new Map(checkpoints.map((cp) => [cp.seq, cp]));
  if (!key) warnings.push('no public key found: checkpoint signatures were not checked (pass --public-key FILE)');
  else {
    for (const cp of checkpoints) {
      if (!checkpointSignatureOk(key, cp)) {
        problems.push({ seq: cp.seq, kind: 'checkpoint', message: cp.keyId === key.keyId ? `checkpoint at seq ${cp.seq}: the signature does not verify` : `checkpoint at seq ${cp.seq} is signed by another key (${cp.keyId})` });
      }
    }
  }

  let count = 0;
  let expected = 1;
  let prev: StoredRecord | undefined;
  let prevHash = GENESIS;
  let lastGoodCheckpoint = 0;
  let anomaly: StoredRecord | undefined;
  let mismatch: { record: StoredRecord; checkpoint: Checkpoint; since: number } | undefined;
  for (const raw of pages(db)) {
    const r = rowToStored(raw);
    count += 1;
    if (r.seq !== expected) {
      problems.push(r.seq > expected
        ? { seq: expected, kind: 'deleted', message: expected === r.seq - 1 ? `record ${expected} is missing (the chain goes from ${expected - 1} to ${r.seq})` : `records ${expected}..${r.seq - 1} are missing` }
        : { seq: r.seq, kind: 'edited', message: `record ${r.seq} has a seq out of order` });
      break;
    }
    if (hashRecord(r) !== r.hash || r.prevHash !== prevHash) {
      anomaly = r;
      break;
    }
    const cp = bySeq.get(r.seq);
    if (cp && cp.hash !== r.hash) {
      mismatch = { record: r, checkpoint: cp, since: lastGoodCheckpoint + 1 };
      break;
    }
    if (cp) lastGoodCheckpoint = r.seq;
    prev = r;
    prevHash = r.hash;
    expected += 1;
  }
  if (mismatch) {
    // A record inserted or moved right at a checkpoint's seq: the next record shows what happened.
    const { record, checkpoint, since } = mismatch;
    const nextRaw = db.prepare(`SELECT ${RECORD_COLUMNS} FROM audit_records WHERE seq > ? ORDER BY seq LIMIT 1`).raw(true).get(record.seq) as unknown[] | undefined;
    const next = nextRaw ? rowToStored(nextRaw) : undefined;
    if (next && (next.seq !== record.seq + 1 || hashRecord(next) !== next.hash || next.prevHash !== record.hash)) {
      problems.push(next.seq !== record.seq + 1 ? { seq: record.seq + 1, kind: 'deleted', message: `records ${record.seq + 1}..${next.seq - 1} are missing` } : diagnose(db, next, record));
    } else {
      problems.push({
        seq: since,
        kind: 'rewritten',
        message: `records ${since}..${record.seq} were rewritten and re-hashed: the checkpoint signed at seq ${record.seq} names hash ${checkpoint.hash.slice(0, 16)}…, the log has ${record.hash.slice(0, 16)}…`,
      });
    }
  }
  if (anomaly) problems.push(diagnose(db, anomaly, prev));

  const head = db.prepare('SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string } | undefined;
  const total = (db.prepare('SELECT COUNT(*) FROM audit_records').pluck().get() as number) ?? count;
  const headSeq = head?.seq ?? 0;
  const lastCheckpointSeq = checkpoints.length > 0 ? checkpoints[checkpoints.length - 1]?.seq : undefined;
  if (lastCheckpointSeq !== undefined && lastCheckpointSeq > headSeq) {
    problems.push({ seq: headSeq + 1, kind: 'deleted', message: `records ${headSeq + 1}..${lastCheckpointSeq} are missing: a checkpoint was signed at seq ${lastCheckpointSeq}, the log ends at ${headSeq}` });
  }
  problems.sort((a, b) => a.seq - b.seq);
  return {
    ok: problems.length === 0,
    records: total,
    headSeq,
    headHash: head?.hash ?? GENESIS,
    checkpoints: checkpoints.length,
    lastCheckpointSeq,
    unsignedTail: Math.max(0, headSeq - (lastCheckpointSeq ?? 0)),
    keyId: key?.keyId,
    firstBad: problems[0],
    problems,
    warnings,
    elapsedMs: Math.round(performance.now() - t0),
  };
}

/** Every record in seq order, read in pages (faster than a row iterator; constant memory). */
function* pages(db: Database.Database, size = 20_000): Generator<unknown[]> {
  const page = db.prepare(`SELECT ${RECORD_COLUMNS} FROM audit_records WHERE seq > ? ORDER BY seq LIMIT ?`).raw(true);
  let after = Number.MIN_SAFE_INTEGER;
  for (;;) {
    const rows = page.all(after, size) as unknown[][];
    yield* rows;
    if (rows.length < size) return;
    after = rows[rows.length - 1]?.[0] as number;
  }
}

/** Name what happened at the first record that does not verify. */
function diagnose(db: Database.Database, r: StoredRecord, prev: StoredRecord | undefined): BadRecord {
  const n = r.seq;
  const nextRaw = db.prepare(`SELECT ${RECORD_COLUMNS} FROM audit_records WHERE seq > ? ORDER BY seq LIMIT 1`).raw(true).get(n) as unknown[] | undefined;
  const next = nextRaw ? rowToStored(nextRaw) : undefined;
  const hashesAs = (x: StoredRecord, seq: number): boolean => hashRecord({ ...x, seq }) === x.hash;
  const prevHash = prev?.hash ?? GENESIS;
  if (hashRecord(r) !== r.hash) {
    if (n > 1 && prev && hashesAs(r, n - 1)) {
      return { seq: n - 1, kind: 'inserted', message: `record ${n - 1} was inserted: the record now at ${n} was written as ${n - 1} and links past it` };
    }
    if (hashesAs(r, n + 1)) {
      if (next && next.seq === n + 1 && hashesAs(next, n)) return { seq: n, kind: 'reordered', message: `records ${n} and ${n + 1} were swapped (each hashes only with the other's seq)` };
      return { seq: n, kind: 'deleted', message: `record ${n} was deleted and the later records renumbered (the record now at ${n} was written as ${n + 1})` };
    }
    if (next && next.seq === n + 1 && hashesAs(next, n) && next.prevHash === prevHash) {
      return { seq: n, kind: 'inserted', message: `record ${n} was inserted: the next record was written as ${n} and links to ${n - 1}` };
    }
    const moved = r.prevHash === prevHash ? undefined : originalSeq(db, r);
    if (moved !== undefined) return { seq: n, kind: 'reordered', message: `the record at ${n} was written as seq ${moved}` };
    return { seq: n, kind: 'edited', message: `record ${n} was changed: its content does not match its hash` };
  }
  // Content intact, but it does not link to the record before it.
  if (prev && next?.prevHash === r.hash) {
    return { seq: n - 1, kind: 'edited', message: `record ${n - 1} was changed and its hash recomputed: record ${n} still links to the original` };
  }
  if (!prev) return { seq: n, kind: 'edited', message: `record ${n} does not start the chain (its prevHash is not the genesis hash)` };
  return { seq: n - 1, kind: 'edited', message: `record ${n} does not link to record ${n - 1}: record ${n - 1} was changed and re-hashed` };
}

/** The seq a moved record was written with: one after the record its prevHash names. */
function originalSeq(db: Database.Database, r: StoredRecord): number | undefined {
  const pred = db.prepare('SELECT seq FROM audit_records WHERE hash = ?').pluck().get(r.prevHash) as number | undefined;
  const candidates = pred === undefined ? [] : [pred + 1, pred, pred + 2];
  return candidates.find((seq) => seq !== r.seq && hashRecord({ ...r, seq }) === r.hash);
}
