/**
 * The grants that were active when loaded, held in memory and indexed by subject, so the gate finds
 * the grants of a run's subject without listing the store (grant-service.ts keeps it current).
 *
 * It answers with the same grants, in the same order, as `store.listGrants({ activeAt: now })`
 * (restricted to a subject for `matching`): oldest first (`created_at`, then `id` compared as
 * SQLite compares text), expired ones filtered out at the time asked. It decides nothing: which
 * grant covers a call stays `chooseGrant` (grant-choice.ts), which checks revocation, expiry,
 * capability, method and subject again over what this returns.
 *
 * The grants it holds are frozen (deeply): callers share them, and a caller that changed one would
 * change what the gate decides by.
 */
import type { Grant, RunSubject, Subject } from './model.js';

/** The index key of a grant's subject: its digest, or its name with its signer. */
function subjectKey(subject: Subject): string {
  return 'digest' in subject ? digestKey(subject.digest) : nameKey(subject.name, subject.signer);
}

const digestKey = (digest: string): string => `d${digest}`;
const nameKey = (name: string, signer: string): string => `n${JSON.stringify([name, signer])}`;

/** SQLite's BINARY collation (UTF-8 bytes) for ids; JS code-unit order agrees below the surrogates. */
function compareIds(a: string, b: string): number {
  if (/[\ud800-\uffff]/.test(a) || /[\ud800-\uffff]/.test(b)) return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The store's order: `ORDER BY created_at, id`. */
export function compareGrants(a: Grant, b: Grant): number {
  return a.createdAt - b.createdAt || compareIds(a.id, b.id);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Insert into a sorted list, keeping it sorted (after equals: ids are unique anyway). */
function insertSorted(list: Grant[], grant: Grant): void {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareGrants(list[mid] as Grant, grant) <= 0) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, grant);
}

function removeFrom(list: Grant[] | undefined, id: string): void {
  if (!list) return;
  const i = list.findIndex((g) => g.id === id);
  if (i >= 0) list.splice(i, 1);
}

const unexpired = (now: number) => (g: Grant): boolean => g.expiresAt === undefined || now < g.expiresAt;

export class GrantIndex {
  private readonly all: Grant[] = [];
  private readonly byId = new Map<string, Grant>();
  private readonly bySubject = new Map<string, Grant[]>();

  /**
   * @param version the store's change counter read before `grants` were listed
   * @param loadedAt the `activeAt` they were listed with: grants expired by then are not here, so
   *   questions about an earlier time are not this index's to answer (`covers`)
   */
  constructor(
    public version: number,
    readonly loadedAt: number,
    grants: readonly Grant[],
  ) {
    for (const grant of grants) this.add(grant);
  }

  /** Whether this index can answer for time `now` (not before it was loaded). */
  covers(now: number): boolean {
    return now >= this.loadedAt;
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** Add an unrevoked grant (a revoked one, or one already here, changes nothing). */
  add(grant: Grant): void {
    if (grant.revokedAt !== undefined || this.byId.has(grant.id)) return;
    const frozen = deepFreeze(grant);
    this.byId.set(frozen.id, frozen);
    insertSorted(this.all, frozen);
    const key = subjectKey(frozen.subject);
    let bucket = this.bySubject.get(key);
    if (!bucket) this.bySubject.set(key, (bucket = []));
    insertSorted(bucket, frozen);
  }

  /** Take a grant out (revoked). */
  remove(id: string): void {
    const grant = this.byId.get(id);
    if (!grant) return;
    this.byId.delete(id);
    removeFrom(this.all, id);
    const key = subjectKey(grant.subject);
    const bucket = this.bySubject.get(key);
    removeFrom(bucket, id);
    if (bucket?.length === 0) this.bySubject.delete(key);
  }

  get(id: string): Grant | undefined {
    return this.byId.get(id);
  }

  /** Every grant not expired at `now`, oldest first. */
  active(now: number): Grant[] {
    return this.all.filter(unexpired(now));
  }

  /** The grants not expired at `now` whose subject is the run's digest, or its name with one of its signers; oldest first. */
  matching(run: RunSubject, now: number): Grant[] {
    const buckets: Grant[][] = [];
    if (run.digest !== undefined) {
      const bucket = this.bySubject.get(digestKey(run.digest));
      if (bucket) buckets.push(bucket);
    }
    if (run.name !== undefined) {
      for (const signer of new Set(run.signers)) {
        const bucket = this.bySubject.get(nameKey(run.name, signer));
        if (bucket) buckets.push(bucket);
      }
    }
    if (buckets.length === 0) return [];
    if (buckets.length === 1) return (buckets[0] as Grant[]).filter(unexpired(now));
    return buckets.flat().filter(unexpired(now)).sort(compareGrants);
  }
}
