/**
 * `GET /v1/runs/:id/events`: a run's events as Server-Sent Events. Each message is
 *
 *     id: <the event's sequence number in its run, from 1>
 *     event: run | log | request | outcome
 *     data: <one line of JSON>
 *
 * `run` (data: the Run, on each status change), `log` (data: a LogLine), `request` (data:
 * `{ change: created|updated|resolved, request }`), and last `outcome` (data: the Run with its
 * outcome), after which the server ends the stream. A live run replays its journal and then
 * streams; a run that already ended is rebuilt from the store (the run, its requests in their
 * final state, its log lines, the outcome — which carries the run's last id).
 *
 * Resuming: a client that reconnects with `Last-Event-ID: n` gets only the events after n — from
 * the live journal, or from the journal of a run that ended recently (run-journal.ts keeps it a
 * while). When nothing is left to send (the run ended and n was its last event, or its events are
 * no longer kept) the answer is `204 No Content`, which tells an EventSource to stop reconnecting;
 * `GET /v1/runs/:id` has the final run.
 *
 * Defends against: slow readers (a stream whose unsent bytes exceed `maxBufferedBytes` is cut),
 * idle proxies (a `: keep-alive` comment every `heartbeatMs`), one client holding every socket
 * (at most `maxStreamsPerClient` open streams per client: one more is TOO_MANY_CONNECTIONS, 429
 * with Retry-After), leaks (the subscription and the timer go when either side closes; `closeAll`
 * ends every stream when the server shuts down).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ContainedError } from '../../runtime/errors.js';
import type { RunOutcome } from '../../runtime/outcome.js';
import type { RequestManager } from '../gate/requests.js';
import type { RunRecord } from '../model.js';
import type { JournalEvent, RunEvent } from '../runs/run-journal.js';
import type { RunService } from '../runs/service.js';
import { CONNECTION_RETRY_AFTER_SECONDS, DEFAULT_HTTP_CONFIG } from './limits.js';

export interface EventStreamOptions {
  /** Keep-alive comment interval, ms. */
  heartbeatMs: number;
  /** Unsent bytes a stream may have before it is cut, bytes. */
  maxBufferedBytes: number;
  /** Streams one client may hold open at once (default `http.maxEventStreamsPerClient`, 64). */
  maxStreamsPerClient?: number;
}

/** Where a stream's events come from: a live run's journal, or for an ended run the store (its run and requests). */
export interface EventSources {
  runs: Pick<RunService, 'followRun' | 'get'>;
  requests: Pick<RequestManager, 'viewsForRun'>;
}

export interface ServeOptions {
  /** Who is asking (the platform client's token name); streams are counted per client. */
  client?: string;
  /** `Last-Event-ID` as sent (a decimal event id); INVALID_ARGUMENT when malformed. */
  lastEventId?: string | undefined;
}

/** The largest event id a client may send back (a run never gets near it). */
const MAX_EVENT_ID = Number.MAX_SAFE_INTEGER;

/** `Last-Event-ID` as a number; undefined when absent or empty; INVALID_ARGUMENT otherwise. */
export function parseLastEventId(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const id = /^\d{1,16}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(id) || id > MAX_EVENT_ID) {
    throw new ContainedError('INVALID_ARGUMENT', 'Last-Event-ID must be the id of an event of this stream (a whole number)', { data: { path: ['Last-Event-ID'] } });
  }
  return id;
}

export class EventStreams {
  private readonly open = new Set<ServerResponse>();
  private readonly perClient = new Map<string, number>();
  private readonly maxStreamsPerClient: number;

  constructor(private readonly options: EventStreamOptions) {
    this.maxStreamsPerClient = options.maxStreamsPerClient ?? DEFAULT_HTTP_CONFIG.maxEventStreamsPerClient;
  }

  get size(): number {
    return this.open.size;
  }

  /** Open streams of one client. */
  countFor(client: string): number {
    return this.perClient.get(client) ?? 0;
  }

  /** Stream a run's events; the caller has checked that the run exists and is allowed. */
  async serve(req: IncomingMessage, res: ServerResponse, sources: EventSources, run: RunRecord, serveOptions: ServeOptions = {}): Promise<void> {
    const after = parseLastEventId(serveOptions.lastEventId);
    const client = serveOptions.client ?? '';
    // Checked and counted in one synchronous step, so concurrent requests cannot overshoot.
    const held = this.countFor(client);
    if (held >= this.maxStreamsPerClient) {
      throw new ContainedError('TOO_MANY_CONNECTIONS', `${client || 'this client'} already follows ${held} event streams, the most allowed (http.maxEventStreamsPerClient); close one first`, {
        data: { limit: this.maxStreamsPerClient, retryAfterSeconds: CONNECTION_RETRY_AFTER_SECONDS },
      });
    }
    let ended = false;
    let counted = false;
    let heartbeat: NodeJS.Timeout | undefined;
    let follow: ReturnType<RunService['followRun']>;
    const buffered: JournalEvent[] = [];
    let replaying = true;
    const release = (): void => {
      clearInterval(heartbeat);
      follow?.stop();
      this.open.delete(res);
      if (counted) {
        counted = false;
        const n = this.countFor(client) - 1;
        if (n > 0) this.perClient.set(client, n);
        else this.perClient.delete(client);
      }
    };
    const finish = (): void => {
      if (ended) return;
      ended = true;
      release();
      if (!res.writableEnded) res.end();
    };
    const send = (event: RunEvent, id: number): void => {
      if (ended) return;
      if (after !== undefined && id <= after) {
        // An id past the run's own (made up, or stale) must not keep the stream open forever.
        if (event.type === 'outcome') finish();
        return;
      }
      const data = event.type === 'log' ? event.line : event.type === 'request' ? { change: event.change, request: event.request } : event.run;
      res.write(`id: ${id}\nevent: ${event.type}\ndata: ${JSON.stringify(data)}\n\n`);
      if (res.writableLength > this.options.maxBufferedBytes) {
        ended = true;
        release();
        res.destroy();
        return;
      }
      if (event.type === 'outcome') finish();
    };
    // Subscribe and take the replay in one synchronous step: nothing is missed or sent twice.
    follow = sources.runs.followRun(run.id, (event) => {
      if (replaying) buffered.push(event);
      else send(event, event.id);
    });
    const live = follow !== undefined && !follow.ended;
    // What a run that has ended sends: after Last-Event-ID, its kept journal; else a rebuild.
    let endedEvents: { event: RunEvent; id: number }[] | undefined;
    if (!live) {
      if (after !== undefined) {
        endedEvents = (follow?.replay ?? []).filter((e) => e.id > after).map((e) => ({ event: e, id: e.id }));
        if (endedEvents.length === 0) {
          follow?.stop();
          res.writeHead(204, { 'cache-control': 'no-store' });
          res.end();
          return;
        }
      }
    }
    this.perClient.set(client, held + 1);
    counted = true;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      'x-content-type-options': 'nosniff',
    });
    res.flushHeaders();
    this.open.add(res);
    heartbeat = setInterval(() => {
      if (!ended) res.write(': keep-alive\n\n');
    }, this.options.heartbeatMs);
    heartbeat.unref();
    req.once('close', finish);
    res.once('close', finish);

    if (live) {
      for (const event of follow?.replay ?? []) send(event, event.id);
    } else if (endedEvents) {
      for (const { event, id } of endedEvents) send(event, id);
    } else {
      const rebuilt = await rebuild(sources, run.id);
      // The outcome carries the run's last id (when its journal is still kept), so a client that
      // reconnects with it is told 204; the events before it are numbered from 1.
      const lastId = follow?.replay.at(-1)?.id ?? 0;
      rebuilt.forEach((event, i) => send(event, event.type === 'outcome' ? Math.max(i + 1, lastId) : i + 1));
    }
    replaying = false;
    for (const event of buffered.splice(0)) send(event, event.id);
    if (!live) finish();
  }

  /** End every open stream (server shutdown). */
  closeAll(): void {
    for (const res of this.open) res.end();
    this.open.clear();
    this.perClient.clear();
  }
}

/** The events of a run that is no longer live, from the store. */
async function rebuild(sources: EventSources, runId: string): Promise<RunEvent[]> {
  const run = await sources.runs.get(runId);
  if (!run) return [];
  const { outcome, ...withoutOutcome } = run;
  const events: RunEvent[] = [{ type: 'run', run: withoutOutcome }];
  const requests = await sources.requests.viewsForRun(runId);
  for (const request of requests.sort((a, b) => a.createdAt - b.createdAt)) {
    events.push({ type: 'request', change: request.status === 'pending' ? 'created' : 'resolved', request });
  }
  for (const line of (outcome as RunOutcome | undefined)?.logs ?? []) events.push({ type: 'log', line });
  if (outcome !== undefined) events.push({ type: 'outcome', run });
  return events;
}
