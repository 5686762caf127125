/**
 * Short-lived, single-use connection tickets, for clients that cannot set headers (a browser's
 * `new WebSocket(url)`): an already-authenticated operator asks the host for a ticket over HTTP and
 * connects with `?ticket=…` within `ttlMs`. A ticket is 32 random bytes, consumed on first use
 * (whatever the outcome of the handshake), and never valid after its expiry. The store is bounded:
 * expired tickets are swept on each issue, and beyond `maxOutstanding` the oldest is dropped.
 */
import { randomBytes } from 'node:crypto';
import type { Operator } from '../model.js';

export interface Ticket {
  ticket: string;
  /** Epoch ms after which the ticket is refused. */
  expiresAt: number;
}

export interface TicketStore {
  issue(operator: Operator): Ticket;
  /** The operator the ticket was issued to, once; undefined if unknown, used or expired. */
  redeem(ticket: string): Operator | undefined;
  /** Tickets issued and not yet redeemed or swept. */
  size(): number;
}

export interface TicketStoreOptions {
  /** Lifetime of a ticket in milliseconds (default 30 000). */
  ttlMs?: number;
  /** Most tickets outstanding at once (default 10 000). */
  maxOutstanding?: number;
  now?: () => number;
}

export function createTicketStore(options: TicketStoreOptions = {}): TicketStore {
  const ttlMs = options.ttlMs ?? 30_000;
  const maxOutstanding = options.maxOutstanding ?? 10_000;
  const now = options.now ?? Date.now;
  // Insertion order is expiry order (one TTL for all), so sweeping stops at the first live one.
  const tickets = new Map<string, { operator: Operator; expiresAt: number }>();

  function sweep(at: number): void {
    for (const [key, entry] of tickets) {
      if (entry.expiresAt > at && tickets.size < maxOutstanding) break;
      tickets.delete(key);
    }
  }

  return {
    issue(operator) {
      const at = now();
      sweep(at);
      const ticket = randomBytes(32).toString('base64url');
      const expiresAt = at + ttlMs;
      tickets.set(ticket, { operator: { ...operator }, expiresAt });
      return { ticket, expiresAt };
    },
    redeem(ticket) {
      const entry = tickets.get(ticket);
      if (entry === undefined) return undefined;
      tickets.delete(ticket);
      return entry.expiresAt > now() ? entry.operator : undefined;
    },
    size: () => tickets.size,
  };
}
