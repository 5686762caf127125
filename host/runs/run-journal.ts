/**
 * Per-run event journals for live runs: status changes, log lines, the run's requests (created,
 * updated, resolved) and finally the outcome. A follower gets the journal so far and then every
 * new event, with no gap and no duplicate: taking the replay and subscribing happen in the same
 * synchronous step. When the run ends its journal is dropped; later followers are served from
 * the store instead (see events.ts).
 *
 * Bounded: a journal keeps at most `maxEvents`; further log lines still reach live followers but
 * are not kept for replay (the outcome carries every log line anyway).
 *
 * Every event gets an id: its sequence number in its run, from 1, counting every event pushed
 * (also log lines not kept). Event streams send it as the SSE `id:`, so a client that reconnects
 * with `Last-Event-ID` gets only later events. For that, the journal of a run that ended is kept a
 * little longer (`keepEndedMs`, at most `keepEndedRuns` of them, oldest dropped first): long enough
 * for a client cut off near the end to reconnect and get the rest, bounded in memory.
 */
import type { LogLine } from '../../runtime/outcome.js';
import type { RunRecord } from '../model.js';
import type { RequestEvent, RequestView } from '../gate/events.js';

export type RunEvent =
  | { type: 'run'; run: RunRecord }
  | { type: 'log'; line: LogLine }
  | { type: 'request'; change: 'created' | 'updated' | 'resolved'; request: RequestView }
  | { type: 'outcome'; run: RunRecord };

/** An event as the journal keeps it: with its id (sequence number in its run, from 1). */
export type JournalEvent = RunEvent & { id: number };

export type RunEventListener = (event: JournalEvent) => void;

/** What `follow` gives: the events so far (for a run that has ended: all kept, up to its outcome) and, while it is live, the rest as they come. */
export interface RunFollow {
  replay: JournalEvent[];
  stop(): void;
  /** True when the run has ended (its journal kept for resuming); the listener is never called. */
  ended: boolean;
}

interface Journal {
  events: JournalEvent[];
  listeners: Set<RunEventListener>;
  lastId: number;
  endedAt?: number;
}

/** Events kept per live run for replay. */
export const DEFAULT_MAX_JOURNAL_EVENTS = 5_000;

export interface RunJournalOptions {
  /** How long the journal of an ended run is kept for resuming streams, ms (default 60 000). */
  keepEndedMs?: number;
  /** Ended journals kept at most, oldest dropped first (default 1 000). */
  keepEndedRuns?: number;
  now?: () => number;
}

export class RunJournal {
  private readonly journals = new Map<string, Journal>();
  /** Ended journals in the order they ended. */
  private readonly ended = new Map<string, Journal>();
  private readonly keepEndedMs: number;
  private readonly keepEndedRuns: number;
  private readonly now: () => number;

  constructor(
    private readonly maxEvents = DEFAULT_MAX_JOURNAL_EVENTS,
    options: RunJournalOptions = {},
  ) {
    this.keepEndedMs = options.keepEndedMs ?? 60_000;
    this.keepEndedRuns = options.keepEndedRuns ?? 1_000;
    this.now = options.now ?? Date.now;
  }

  /** Route request events to the journal of their run (give this to RequestManager.subscribe). */
  readonly onRequestEvent = (event: RequestEvent): void => {
    if (event.type === 'created' || event.type === 'updated' || event.type === 'resolved') {
      this.push(event.request.runId, { type: 'request', change: event.type, request: event.request });
    }
  };

  open(runId: string): void {
    if (!this.journals.has(runId)) this.journals.set(runId, { events: [], listeners: new Set(), lastId: 0 });
  }

  has(runId: string): boolean {
    return this.journals.has(runId);
  }

  push(runId: string, event: RunEvent): void {
    const journal = this.journals.get(runId);
    if (!journal) return;
    journal.lastId += 1;
    const stamped = { ...event, id: journal.lastId } as JournalEvent;
    if (journal.events.length < this.maxEvents || event.type !== 'log') journal.events.push(stamped);
    for (const listener of journal.listeners) listener(stamped);
  }

  /** Push the final event, tell the followers, and keep the journal a while for resuming streams. */
  end(runId: string, event: RunEvent & { type: 'outcome' }): void {
    this.push(runId, event);
    const journal = this.journals.get(runId);
    this.journals.delete(runId);
    if (!journal) return;
    journal.listeners.clear();
    journal.endedAt = this.now();
    this.ended.delete(runId);
    this.ended.set(runId, journal);
    this.prune();
  }

  /**
   * The events so far and a subscription to the rest while the run is live; for a run that ended
   * recently, its kept events (`ended: true`); undefined otherwise (the store has the rest).
   */
  follow(runId: string, listener: RunEventListener): RunFollow | undefined {
    const journal = this.journals.get(runId);
    if (journal) {
      journal.listeners.add(listener);
      return { replay: [...journal.events], stop: () => journal.listeners.delete(listener), ended: false };
    }
    this.prune();
    const ended = this.ended.get(runId);
    return ended ? { replay: [...ended.events], stop: () => undefined, ended: true } : undefined;
  }

  /** Drop ended journals past their time or beyond the count (oldest first). */
  private prune(): void {
    const oldest = this.now() - this.keepEndedMs;
    for (const [runId, journal] of this.ended) {
      if (this.ended.size <= this.keepEndedRuns && (journal.endedAt ?? 0) > oldest) break;
      this.ended.delete(runId);
    }
  }

  get size(): number {
    return this.journals.size;
  }
}
