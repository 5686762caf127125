/**
 * Notifications to where operators are (docs/approvals.md): the host's events become rows of the
 * durable outbox (events.ts → host/store/notify-outbox.ts), and the worker (worker.ts) delivers them
 * to webhooks and by email.
 *
 * `onEvent` is the event-hub listener: it only queues rows (written one event after another, in
 * event order, each in one short transaction) and wakes the worker — the gate, which emits the
 * events, never waits for a delivery or a write. A row that cannot be written is logged and
 * dropped; the event and the decision behind it go on. `close` waits for the writes queued.
 *
 * After a restart, `reconcile` writes the `request.created` rows of pending requests that have none
 * (a host killed between storing a request and writing its row), `reconcileOutcomes` the decided /
 * expired rows of requests notified as open that are closed now (the restart's recovery closes some
 * without an event), then the worker sends whatever is still pending, with the idempotency keys it had. Rows of a target no longer in the config are
 * marked `dropped`; delivered and given-up rows older than `keepMs` are removed.
 */
import type { Logger } from 'pino';
import type { RequestEvent, RequestView } from '../gate/events.js';
import { type NotifyOutbox, type OutboxRow, type OutboxTargetSummary } from '../store/notify-outbox.js';
import type { NotifyConfig } from './config.js';
import { type McpToolNotice, mcpToolNotification, type Notification, notificationFor, outboxRows } from './events.js';
import type { NotifyTarget } from './targets.js';
import { startWorker, type Worker } from './worker.js';

export interface NotifierOptions {
  config: NotifyConfig;
  targets: readonly NotifyTarget[];
  outbox: NotifyOutbox;
  logger?: Logger | undefined;
  now?: () => number;
}

/** A target as the console shows it: where it goes (never its secret or the path of its URL) and how its deliveries stand. */
export interface NotifyTargetStatus extends Omit<OutboxTargetSummary, 'target'> {
  target: string;
  kind: 'webhook' | 'email' | 'removed';
  /** Webhooks: the URL's origin; email: the recipients. */
  to: string;
  format?: string;
  events: string[];
}

export interface NotifyStatus {
  targets: NotifyTargetStatus[];
  /** Newest first. */
  deliveries: Array<Omit<OutboxRow, 'payload' | 'eventKey'> & { requestId?: string }>;
}

export interface Notifier {
  /** The event-hub listener. */
  onEvent(event: RequestEvent): void;
  /** A tool change of an mcp capability waits for an operator (`mcp.tool.pending`). */
  onMcpToolChange(notice: McpToolNotice): void;
  /** After a restart, before requests are recovered: the pending requests' `request.created` rows. */
  reconcile(pending: readonly RequestView[]): Promise<number>;
  /**
   * After requests are recovered: a request notified as created that is no longer pending and has no
   * decided / expired row (closed by the recovery, which tells no listener, or by a host killed before
   * writing the row) gets that row now. `view` reads a request as operators see it.
   */
  reconcileOutcomes(view: (requestId: string) => Promise<RequestView | undefined>): Promise<number>;
  /** Start delivering (once the console's URL is known, for the links). */
  start(consoleUrl: () => string | undefined): void;
  status(options?: { limit?: number; target?: string }): Promise<NotifyStatus>;
  close(): Promise<void>;
}

export async function createNotifier(options: NotifierOptions): Promise<Notifier> {
  const { config, targets, outbox, logger } = options;
  const now = options.now ?? Date.now;
  let worker: Worker | undefined;
  let closed = false;

  const dropped = await outbox.dropOtherTargets(
    targets.map((t) => t.target),
    now(),
  );
  if (dropped > 0) logger?.warn({ dropped }, 'notifications for targets no longer configured were dropped');
  await outbox.prune(now() - config.keepMs);
  const prune = setInterval(() => {
    outbox.prune(now() - config.keepMs).catch((error: unknown) => logger?.error({ err: error }, 'notification outbox prune failed'));
  }, Math.min(config.keepMs, 3_600_000));
  prune.unref();

  /**
   * Enqueues one after another, in event order: a request's rows are ordered by when they were
   * written, so its `request.decided` row must not overtake its `request.created` row.
   */
  let queued: Promise<unknown> = Promise.resolve();
  const enqueue = (rows: Parameters<NotifyOutbox['enqueue']>[0]): Promise<number> => {
    const step = queued.then(() => outbox.enqueue(rows));
    queued = step.catch(() => undefined);
    return step;
  };

  /** Rows for the targets that hear it, in one short transaction; the worker is woken. */
  const send = (n: Notification | undefined, at: number): void => {
    if (!n) return;
    const rows = outboxRows(n, targets, at);
    if (rows.length === 0) return;
    enqueue(rows).then(
      () => worker?.kick(),
      (error: unknown) => logger?.error({ err: error, event: n.event, key: n.key }, 'notification could not be queued'),
    );
  };

  return {
    onEvent(event) {
      if (closed || targets.length === 0) return;
      const at = now();
      send(notificationFor(event, at), at);
    },
    onMcpToolChange(notice) {
      if (closed || targets.length === 0) return;
      const at = now();
      send(mcpToolNotification(notice, at), at);
    },
    async reconcile(pending) {
      const at = now();
      let added = 0;
      for (const request of pending) {
        // Older ones may have been delivered and pruned already: never send those twice.
        if (request.createdAt < at - config.keepMs) continue;
        const n = notificationFor({ type: 'created', request }, request.createdAt);
        if (!n) continue;
        added += await enqueue(outboxRows(n, targets, at));
      }
      if (added > 0) logger?.info({ added }, 'notifications queued for requests pending since before the restart');
      return added;
    },
    async reconcileOutcomes(view) {
      const listening = targets.filter((t) => t.events.has('request.decided') || t.events.has('request.expired'));
      const open = await outbox.openRequests(listening.map((t) => t.target));
      const byRequest = new Map<string, string[]>();
      for (const o of open) byRequest.set(o.orderKey, [...(byRequest.get(o.orderKey) ?? []), o.target]);
      let added = 0;
      for (const [id, names] of byRequest) {
        const request = await view(id);
        if (!request || request.status === 'pending') continue;
        const at = now();
        const n = notificationFor({ type: 'resolved', request }, request.resolvedAt ?? at);
        if (!n) continue;
        added += await enqueue(outboxRows(n, targets.filter((t) => names.includes(t.target)), at));
      }
      if (added > 0) logger?.info({ added }, 'notifications queued for requests closed since they were notified');
      return added;
    },
    start(consoleUrl) {
      if (closed || worker || targets.length === 0) return;
      worker = startWorker({
        outbox,
        targets,
        maxAttempts: config.maxAttempts,
        initialDelayMs: config.initialDelayMs,
        maxDelayMs: config.maxDelayMs,
        maxConcurrent: config.maxConcurrent,
        pollMs: config.pollMs,
        consoleUrl: () => config.consoleUrl ?? consoleUrl(),
        logger,
        now,
      });
    },
    async status(filter = {}) {
      const summaries = new Map((await outbox.summary()).map((s) => [s.target, s]));
      const empty = { pending: 0, delivered: 0, failed: 0, dropped: 0, failing: 0 };
      const out: NotifyTargetStatus[] = targets.map((t) => ({
        ...empty,
        ...summaries.get(t.target),
        target: t.target,
        kind: t.kind,
        to: t.kind === 'webhook' ? t.shownUrl : t.to.join(', '),
        ...(t.kind === 'webhook' ? { format: t.format } : {}),
        events: [...t.events],
      }));
      for (const [name, s] of summaries) if (!targets.some((t) => t.target === name)) out.push({ ...s, kind: 'removed', to: '', events: [] });
      const deliveries = (await outbox.list({ limit: filter.limit ?? 100, ...(filter.target !== undefined ? { target: filter.target } : {}) })).map(({ payload, eventKey: _key, ...row }) => {
        const request = payload.request as { id?: unknown } | undefined;
        return { ...row, ...(typeof request?.id === 'string' ? { requestId: request.id } : {}) };
      });
      return { targets: out, deliveries };
    },
    async close() {
      closed = true;
      clearInterval(prune);
      await queued;
      await worker?.close();
      await outbox.close();
    },
  };
}
