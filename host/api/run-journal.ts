/**
 * Per-run event journals for live runs: status changes, log lines, the run's requests (created,
 * updated, resolved) and finally the outcome. A follower gets the journal so far and then every
 * new event, with no gap and no duplicate: taking the replay and subscribing happen in the same
 * synchronous step. When the run ends its journal is dropped; later followers are served from
 * the store instead (see events.ts).
 *
 * Bounded: a journal keeps at most `maxEvents`; further log lines still reach live followers but
 * are not kept for replay (the outcome carries every log line anyway).
 */
import type { LogLine } from '../../runtime/outcome.js';
import type { RunRecord } from '../model.js';
import type { RequestEvent, RequestView } from '../operator/backend.js';

export type RunEvent =
  | { type: 'run'; run: RunRecord }
  | { type: 'log'; line: LogLine }
  | { type: 'request'; change: 'created' | 'updated' | 'resolved'; request: RequestView }
  | { type: 'outcome'; run: RunRecord };

export type RunEventListener = (event: RunEvent) => void;

interface Journal {
  events: RunEvent[];
  listeners: Set<RunEventListener>;
}

/** Events kept per live run for replay. */
export const DEFAULT_MAX_JOURNAL_EVENTS = 5_000;

export class RunJournal {
  private readonly journals = new Map<string, Journal>();

  constructor(private readonly maxEvents = DEFAULT_MAX_JOURNAL_EVENTS) {}

  /** Route request events to the journal of their run (give this to RequestManager.subscribe). */
  readonly onRequestEvent = (event: RequestEvent): void => {
    if (event.type === 'created' || event.type === 'updated' || event.type === 'resolved') {
      this.push(event.request.runId, { type: 'request', change: event.type, request: event.request });
    }
  };

  open(runId: string): void {
    if (!this.journals.has(runId)) this.journals.set(runId, { events: [], listeners: new Set() });
  }

  has(runId: string): boolean {
    return this.journals.has(runId);
  }

  push(runId: string, event: RunEvent): void {
    const journal = this.journals.get(runId);
    if (!journal) return;
    if (journal.events.length < this.maxEvents || event.type !== 'log') journal.events.push(event);
    for (const listener of journal.listeners) listener(event);
  }

  /** Push the final event, tell the followers, and drop the journal. */
  end(runId: string, event: RunEvent & { type: 'outcome' }): void {
    this.push(runId, event);
    this.journals.delete(runId);
  }

  /** The events so far and a subscription to the rest; undefined when the run is not live. */
  follow(runId: string, listener: RunEventListener): { replay: RunEvent[]; stop(): void } | undefined {
    const journal = this.journals.get(runId);
    if (!journal) return undefined;
    journal.listeners.add(listener);
    return { replay: [...journal.events], stop: () => journal.listeners.delete(listener) };
  }

  get size(): number {
    return this.journals.size;
  }
}
