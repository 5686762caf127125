/**
 * `GET /v1/runs/:id/events`: a run's events as Server-Sent Events. Each message is
 *
 *     id: <sequence number in this stream, from 1>
 *     event: run | log | request | outcome
 *     data: <one line of JSON>
 *
 * `run` (data: the Run, on each status change), `log` (data: a LogLine), `request` (data:
 * `{ change: created|updated|resolved, request }`), and last `outcome` (data: the Run with its
 * outcome), after which the server ends the stream. A live run replays its journal and then
 * streams; a run that already ended is rebuilt from the store (the run, its requests in their
 * final state, its log lines, the outcome).
 *
 * Defends against: slow readers (a stream whose unsent bytes exceed `maxBufferedBytes` is cut),
 * idle proxies (a `: keep-alive` comment every `heartbeatMs`), leaks (the subscription and the
 * timer go when either side closes; `closeAll` ends every stream when the server shuts down).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RunOutcome } from '../../runtime/outcome.js';
import type { Host } from '../host.js';
import type { RunRecord } from '../model.js';
import type { RunEvent } from './run-journal.js';

export interface EventStreamOptions {
  /** Keep-alive comment interval, ms. */
  heartbeatMs: number;
  /** Unsent bytes a stream may have before it is cut, bytes. */
  maxBufferedBytes: number;
}

export class EventStreams {
  private readonly open = new Set<ServerResponse>();

  constructor(private readonly options: EventStreamOptions) {}

  get size(): number {
    return this.open.size;
  }

  /** Stream a run's events; the caller has checked that the run exists and is allowed. */
  async serve(req: IncomingMessage, res: ServerResponse, host: Host, run: RunRecord): Promise<void> {
    let seq = 0;
    let ended = false;
    let heartbeat: NodeJS.Timeout | undefined;
    let follow: ReturnType<Host['followRun']>;
    const buffered: RunEvent[] = [];
    let replaying = true;
    const finish = (): void => {
      if (ended) return;
      ended = true;
      clearInterval(heartbeat);
      follow?.stop();
      this.open.delete(res);
      if (!res.writableEnded) res.end();
    };
    const send = (event: RunEvent): void => {
      if (ended) return;
      seq += 1;
      const data = event.type === 'log' ? event.line : event.type === 'request' ? { change: event.change, request: event.request } : event.run;
      res.write(`id: ${seq}\nevent: ${event.type}\ndata: ${JSON.stringify(data)}\n\n`);
      if (res.writableLength > this.options.maxBufferedBytes) {
        ended = true;
        clearInterval(heartbeat);
        follow?.stop();
        this.open.delete(res);
        res.destroy();
        return;
      }
      if (event.type === 'outcome') finish();
    };
    // Subscribe and take the replay in one synchronous step: nothing is missed or sent twice.
    follow = host.followRun(run.id, (event) => {
      if (replaying) buffered.push(event);
      else send(event);
    });
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

    if (follow) {
      for (const event of follow.replay) send(event);
    } else {
      for (const event of await rebuild(host, run.id)) send(event);
    }
    replaying = false;
    for (const event of buffered.splice(0)) send(event);
    if (!follow) finish();
  }

  /** End every open stream (server shutdown). */
  closeAll(): void {
    for (const res of this.open) res.end();
    this.open.clear();
  }
}

/** The events of a run that is no longer live, from the store. */
async function rebuild(host: Host, runId: string): Promise<RunEvent[]> {
  const run = await host.store.getRun(runId);
  if (!run) return [];
  const { outcome, ...withoutOutcome } = run;
  const events: RunEvent[] = [{ type: 'run', run: withoutOutcome }];
  const requests = await host.store.listRequests({ runId });
  for (const request of requests.sort((a, b) => a.createdAt - b.createdAt)) {
    events.push({ type: 'request', change: request.status === 'pending' ? 'created' : 'resolved', request: host.requests.view(request) });
  }
  for (const line of (outcome as RunOutcome | undefined)?.logs ?? []) events.push({ type: 'log', line });
  if (outcome !== undefined) events.push({ type: 'outcome', run });
  return events;
}
