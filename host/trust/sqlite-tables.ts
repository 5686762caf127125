/**
 * The trust tables in the SQLite store file (tables.ts): the synchronous Ledger, ReviewQueue and
 * Proposals on the audit log's own connection, reads answered at once, writes as SQLite steps of
 * the audit batch (they commit with their record in one IMMEDIATE transaction).
 */
import type Database from 'better-sqlite3';
import { Ledger } from './ledger.js';
import { Proposals } from './proposals.js';
import { ReviewQueue } from './reviews.js';
import type { TrustTables } from './tables.js';

export function sqliteTrustTables(db: Database.Database): TrustTables {
  const ledger = new Ledger(db);
  const reviews = new ReviewQueue(db);
  const proposals = new Proposals(db);
  // Reads run synchronously; a throw becomes a rejection like the PostgreSQL ones.
  const read = <T>(f: () => T): Promise<T> => {
    try {
      return Promise.resolve(f());
    } catch (error) {
      return Promise.reject(error as Error);
    }
  };
  return {
    kind: 'sqlite',
    has: (ref) => read(() => ledger.has(ref)),
    stats: (key, now, config) => read(() => ledger.stats(key, now, config)),
    assistedCount: (key) => read(() => ledger.assistedCount(key)),
    actions: (subject) => read(() => ledger.actions(subject)),
    recommended: (...args) => ({ sqlite: () => ledger.recommended(...args) }),
    verdict: (...args) => ({ sqlite: () => ledger.verdict(...args) }),
    executed: (...args) => ({ sqlite: () => ledger.executed(...args) }),
    reviewed: (...args) => ({ sqlite: () => ledger.reviewed(...args) }),
    review: (id) => read(() => reviews.get(id)),
    reviews: (filter) => read(() => reviews.list(filter)),
    criticalReviews: () => read(() => reviews.critical()),
    queueReview: (review) => ({ sqlite: () => reviews.insert(review) }),
    markReview: (...args) => ({ sqlite: () => reviews.mark(...args) }),
    proposal: (id) => read(() => proposals.get(id)),
    openProposal: (key) => read(() => proposals.open(key)),
    lastProposalAt: (key, excludeId) => read(() => proposals.lastProposalAt(key, excludeId)),
    proposals: (status) => read(() => proposals.list(status)),
    insertProposal: (...args) => ({ sqlite: () => proposals.insert(...args) }),
    decideProposal: (...args) => ({ sqlite: () => proposals.decide(...args) }),
    close: () => Promise.resolve(),
  };
}
