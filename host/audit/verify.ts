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
 * Several keys (a fleet whose hosts each sign with their own key; docs/audit-and-trust.md "Several
 * hosts"): each checkpoint is checked with the given key of the same id; a checkpoint whose key is
 * not among them is a problem, never a pass.
 *
 * `verifyAudit` walks a SQLite connection synchronously; `verifyAuditSource` walks any AuditSource
 * (PostgreSQL included) page by page, live, in bounded memory. Both share the walk and the diagnosis.
 *
 * Records after the last checkpoint are reported as unsigned: appending forged records at the
 * very end is only detectable once a checkpoint covers them (one is written every 1000 records,
 * every minute while records arrive, and when the host stops).
 */
import type Database from 'better-sqlite3';
import { type AuditKey, type Checkpoint, checkpointSignatureOk } from './keys.js';
import { GENESIS, hashRecord, RECORD_COLUMNS, rowToStored, type StoredRecord } from './record.js';
import type { AuditSource } from './source.js';

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
  /** The first key given (one host's key). */
  keyId: string | undefined;
  /** Every key checkpoints were checked with. */
  keyIds: string[];
  firstBad: BadRecord | undefined;
  problems: BadRecord[];
  warnings: string[];
  elapsedMs: number;
}

/** One key, several (one per host), or none (signatures not checked, with a warning). */
export type VerifyKeys = AuditKey | readonly AuditKey[] | undefined;

function keyList(keys: VerifyKeys): readonly AuditKey[] {
  return keys === undefined ? [] : Array.isArray(keys) ? keys : [keys as AuditKey];
}

/** Lookups the diagnosis needs around a bad record. */
interface Around {
  next(seq: number): StoredRecord | undefined;
  seqOfHash(hash: string): number | undefined;
}

/** The walk over the chain in seq order: feed records until `step` says stop, then `finish`. */
class ChainWalk {
  readonly problems: BadRecord[] = [];
  readonly warnings: string[] = [];
  readonly bySeq: Map<number, Checkpoint>;
  count = 0;
  private expected = 1;
  private prev: StoredRecord | undefined;
  private prevHash = GENESIS;
  private lastGoodCheckpoint = 0;
  anomaly: StoredRecord | undefined;
  mismatch: { record: StoredRecord; checkpoint: Checkpoint; since: number } | undefined;

  constructor(readonly checkpoints: readonly Checkpoint[], readonly keys: readonly AuditKey[], given: boolean) {
    this.bySeq = new Map(checkpoints.map((cp) => [cp.seq, cp]));
    if (!given) {
      this.warnings.push('no public key found: checkpoint signatures were not checked (pass --public-key FILE)');
      return;
    }
    const byId = new Map(keys.map((k) => [k.keyId, k]));
    for (const cp of checkpoints) {
      const key = byId.get(cp.keyId);
      if (!key) {
        this.problems.push({ seq: cp.seq, kind: 'checkpoint', message: `checkpoint at seq ${cp.seq} is signed by key ${cp.keyId}, which is not among the given public keys (${keys.map((k) => k.keyId).join(', ')}): pass that host's key with --public-key` });
      } else if (!checkpointSignatureOk(key, cp)) {
        this.problems.push({ seq: cp.seq, kind: 'checkpoint', message: `checkpoint at seq ${cp.seq}: the signature does not verify` });
      }
    }
  }

  /** False: stop walking (the first bad record is found). */
  step(r: StoredRecord): boolean {
    this.count += 1;
    if (r.seq !== this.expected) {
      const expected = this.expected;
      this.problems.push(r.seq > expected
        ? { seq: expected, kind: 'deleted', message: expected === r.seq - 1 ? `record ${expected} is missing (the chain goes from ${expected - 1} to ${r.seq})` : `records ${expected}..${r.seq - 1} are missing` }
        : { seq: r.seq, kind: 'edited', message: `record ${r.seq} has a seq out of order` });
      return false;
    }
    if (hashRecord(r) !== r.hash || r.prevHash !== this.prevHash) {
      this.anomaly = r;
      return false;
    }
    const cp = this.bySeq.get(r.seq);
    if (cp && cp.hash !== r.hash) {
      this.mismatch = { record: r, checkpoint: cp, since: this.lastGoodCheckpoint + 1 };
      return false;
    }
    if (cp) this.lastGoodCheckpoint = r.seq;
    this.prev = r;
    this.prevHash = r.hash;
    this.expected += 1;
    return true;
  }

  /** The seqs whose following record, and the hashes whose seq, the diagnosis may ask for. */
  wanted(): { after: number[]; hashes: string[] } {
    const r = this.anomaly ?? this.mismatch?.record;
    return r ? { after: [r.seq], hashes: [r.prevHash] } : { after: [], hashes: [] };
  }

  finish(around: Around, head: { seq: number; hash: string } | undefined, total: number, keys: readonly AuditKey[], t0: number): VerifyReport {
    const problems = this.problems;
    if (this.mismatch) {
      // A record inserted or moved right at a checkpoint's seq: the next record shows what happened.
      const { record, checkpoint, since } = this.mismatch;
      const next = around.next(record.seq);
      if (next && (next.seq !== record.seq + 1 || hashRecord(next) !== next.hash || next.prevHash !== record.hash)) {
        problems.push(next.seq !== record.seq + 1 ? { seq: record.seq + 1, kind: 'deleted', message: `records ${record.seq + 1}..${next.seq - 1} are missing` } : diagnose(around, next, record));
      } else {
        problems.push({
          seq: since,
          kind: 'rewritten',
          message: `records ${since}..${record.seq} were rewritten and re-hashed: the checkpoint signed at seq ${record.seq} names hash ${checkpoint.hash.slice(0, 16)}…, the log has ${record.hash.slice(0, 16)}…`,
        });
      }
    }
    if (this.anomaly) problems.push(diagnose(around, this.anomaly, this.prev));
    const headSeq = head?.seq ?? 0;
    const checkpoints = this.checkpoints;
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
      keyId: keys[0]?.keyId,
      keyIds: keys.map((k) => k.keyId),
      firstBad: problems[0],
      problems,
      warnings: this.warnings,
      elapsedMs: Math.round(performance.now() - t0),
    };
  }
}

export function verifyAudit(db: Database.Database, keys: VerifyKeys): VerifyReport {
  const t0 = performance.now();
  const list = keyList(keys);
  const checkpoints = db.prepare('SELECT seq, hash, at, key_id AS keyId, signature FROM audit_checkpoints ORDER BY seq').all() as Checkpoint[];
  const walk = new ChainWalk(checkpoints, list, keys !== undefined);
  for (const raw of pages(db)) if (!walk.step(rowToStored(raw))) break;
  const nextStmt = db.prepare(`SELECT ${RECORD_COLUMNS} FROM audit_records WHERE seq > ? ORDER BY seq LIMIT 1`).raw(true);
  const around: Around = {
    next: (seq) => {
      const row = nextStmt.get(seq) as unknown[] | undefined;
      return row ? rowToStored(row) : undefined;
    },
    seqOfHash: (hash) => db.prepare('SELECT seq FROM audit_records WHERE hash = ?').pluck().get(hash) as number | undefined,
  };
  const head = db.prepare('SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string } | undefined;
  const total = (db.prepare('SELECT COUNT(*) FROM audit_records').pluck().get() as number) ?? walk.count;
  return walk.finish(around, head, total, list, t0);
}

/**
 * The same verification over any audit source (PostgreSQL: the rows as they are now, read page by
 * page). The few records the diagnosis looks at around a bad one are fetched before it runs.
 */
export async function verifyAuditSource(source: AuditSource, keys: VerifyKeys, pageSize = 20_000): Promise<VerifyReport> {
  const t0 = performance.now();
  const list = keyList(keys);
  const walk = new ChainWalk(await source.checkpoints(), list, keys !== undefined);
  let after = Number.MIN_SAFE_INTEGER;
  walking: for (;;) {
    const rows = await source.page(after, pageSize);
    for (const r of rows) if (!walk.step(r)) break walking;
    if (rows.length < pageSize) break;
    after = rows[rows.length - 1]?.seq ?? after;
  }
  // Prefetch what diagnose/finish may ask: the next two records after the bad one, and predecessor seqs.
  const nexts = new Map<number, StoredRecord | undefined>();
  const seqs = new Map<string, number | undefined>();
  const { after: from, hashes } = walk.wanted();
  for (const seq of from) {
    const following = await source.page(seq, 2);
    nexts.set(seq, following[0]);
    if (following[0]) {
      nexts.set(following[0].seq, following[1]);
      hashes.push(following[0].prevHash);
    }
  }
  for (const hash of hashes) seqs.set(hash, await source.seqOfHash(hash));
  const around: Around = {
    next: (seq) => {
      if (!nexts.has(seq)) throw new Error(`verify: record after ${seq} was not prefetched`);
      return nexts.get(seq);
    },
    seqOfHash: (hash) => seqs.get(hash),
  };
  const head = await source.head();
  const total = await source.count();
  return walk.finish(around, head, total, list, t0);
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
function diagnose(around: Around, r: StoredRecord, prev: StoredRecord | undefined): BadRecord {
  const n = r.seq;
  const next = around.next(n);
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
    const moved = r.prevHash === prevHash ? undefined : originalSeq(around, r);
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
function originalSeq(around: Around, r: StoredRecord): number | undefined {
  const pred = around.seqOfHash(r.prevHash);
  const candidates = pred === undefined ? [] : [pred + 1, pred, pred + 2];
  return candidates.find((seq) => seq !== r.seq && hashRecord({ ...r, seq }) === r.hash);
}
