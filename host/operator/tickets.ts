/**
 * Short-lived, single-use connection tickets, for clients that cannot set headers (a browser's
 * `new WebSocket(url)`): an already-authenticated operator asks the host for a ticket over HTTP and
 * connects with `?ticket=…` within `ttlMs`. A ticket is 32 random bytes, consumed on first use
 * (whatever the outcome of the handshake), and never valid after its expiry.
 *
 * Tickets are kept in the host's store (`Store.insertOneTimeSecret`, by the sha256 of the ticket),
 * so one issued by a host is redeemed by another host of a fleet behind the same load balancer, or
 * by the same host after a restart; taking one is a single transaction, so it is used once across
 * hosts. Expired rows are deleted by the console's session sweep. An operator channel without a
 * host store (embedded on its own) keeps them in memory (`memorySecrets`).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Operator } from '../model.js';
import type { OneTimeSecret, Store } from '../store/store.js';

export interface Ticket {
  ticket: string;
  /** Epoch ms after which the ticket is refused. */
  expiresAt: number;
}

export interface TicketStore {
  issue(operator: Operator): Promise<Ticket>;
  /** The operator the ticket was issued to, once; undefined if unknown, used or expired. */
  redeem(ticket: string): Promise<Operator | undefined>;
}

/** What tickets need of the host's store. */
export type SecretRecords = Pick<Store, 'insertOneTimeSecret' | 'takeOneTimeSecret'>;

export interface TicketStoreOptions {
  /** Where tickets are kept (the host's store; default: this process's memory, `memorySecrets()`). */
  records?: SecretRecords;
  /** Lifetime of a ticket in milliseconds (default 30 000). */
  ttlMs?: number;
  now?: () => number;
}

const TICKET = /^[A-Za-z0-9_-]{43}$/;

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

export function createTicketStore(options: TicketStoreOptions = {}): TicketStore {
  const ttlMs = options.ttlMs ?? 30_000;
  const now = options.now ?? Date.now;
  const records = options.records ?? memorySecrets({ now });
  return {
    async issue(operator) {
      const ticket = randomBytes(32).toString('base64url');
      const expiresAt = now() + ttlMs;
      await records.insertOneTimeSecret({ kind: 'ticket', hash: sha256(ticket), operator: { ...operator }, expiresAt });
      return { ticket, expiresAt };
    },
    async redeem(ticket) {
      if (!TICKET.test(ticket)) return undefined;
      const entry = await records.takeOneTimeSecret('ticket', sha256(ticket));
      return entry !== undefined && entry.expiresAt > now() ? entry.operator : undefined;
    },
  };
}

/**
 * One-time secrets in this process only, for an operator channel embedded without a host store.
 * Bounded: expired entries are swept on each insert, and beyond `maxOutstanding` (default 10 000)
 * the oldest is dropped.
 */
export function memorySecrets(options: { maxOutstanding?: number; now?: () => number } = {}): SecretRecords {
  const maxOutstanding = options.maxOutstanding ?? 10_000;
  const now = options.now ?? Date.now;
  const entries = new Map<string, OneTimeSecret>();
  return {
    async insertOneTimeSecret(secret) {
      const at = now();
      for (const [key, entry] of entries) if (entry.expiresAt <= at) entries.delete(key);
      while (entries.size >= maxOutstanding) {
        const oldest = entries.keys().next().value;
        if (oldest === undefined) break;
        entries.delete(oldest);
      }
      entries.set(`${secret.kind}:${secret.hash}`, { ...secret });
    },
    async takeOneTimeSecret(kind, hash) {
      const key = `${kind}:${hash}`;
      const entry = entries.get(key);
      entries.delete(key);
      return entry;
    },
  };
}
