/**
 * Which host events become notifications, and what each one says: a pure mapping from the host's
 * event stream (host/gate/events.ts: request, grant, run and trust changes) to outbox rows, one per
 * target that listens to that kind of event.
 *
 *   created                                    → request.created
 *   resolved, status expired                   → request.expired
 *   resolved, any other status (approved, denied, cancelled, run_gone) → request.decided
 *   demotion                                   → demotion
 *   promotion proposed                         → promotion.proposed
 *   an mcp tool withdrawn or held (mcpToolNotification, from host/audit/mcp-tools.ts) → mcp.tool.pending
 *
 * Everything else (approvals on the way to a two-person rule, grants, runs, reviews) is not sent.
 * The payload is a snapshot taken when the event happens; the request's arguments are in it only
 * for a webhook with `includeArguments` (the digest always is: it names what an approval approves).
 * Rows of one request share its id as order key, so they go out in the order they happened.
 */
import type { OutboxInput } from '../store/notify-outbox.js';
import type { RequestEvent, RequestView } from '../gate/events.js';
import type { NotifyEvent } from './config.js';
import type { NotifyTarget } from './targets.js';

export interface Notification {
  event: NotifyEvent;
  /** Unique per event: `request.created:<id>`… */
  key: string;
  orderKey: string;
  payload: Record<string, unknown>;
}

/** What a notification says about a request (no arguments; see `withArguments`). */
export function requestSummary(r: RequestView): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: r.id,
    kind: r.kind,
    status: r.status,
    runId: r.runId,
    capability: r.capability,
    why: r.why,
    argsDigest: r.proposal.argsDigest,
    approvalsRequired: r.approvalsRequired,
    approvedBy: r.proposal.approvedBy,
    createdAt: r.createdAt,
    expiresAt: r.expiresAt,
  };
  if (r.subject !== undefined) out.subject = r.subject;
  if (r.method !== undefined) out.method = r.method;
  if (r.risk !== undefined) out.risk = r.risk;
  if (r.reason !== undefined) out.reason = r.reason;
  if (r.resolvedAt !== undefined) out.resolvedAt = r.resolvedAt;
  if (r.resolvedBy !== undefined) out.resolvedBy = r.resolvedBy;
  if (r.denyReason !== undefined) out.denyReason = r.denyReason;
  return out;
}

/** A tool change of an mcp capability that waits for an operator (host/audit/mcp-tools.ts). */
export interface McpToolNotice {
  capability: string;
  tool: string;
  method?: string;
  /** `changed`: withdrawn until accepted; `new`: not offered until accepted. */
  change: 'new' | 'changed';
  fingerprint: string;
  previous: string | null;
  differs: string[];
  /** Written by the MCP server. */
  description: string;
}

/** One notification per capability, tool and fingerprint (the outbox keeps one row per key and target). */
export function mcpToolNotification(notice: McpToolNotice, at: number): Notification {
  return { event: 'mcp.tool.pending', key: `mcp.tool.pending:${notice.capability}:${notice.tool}:${notice.fingerprint}`, orderKey: `mcp:${notice.capability}:${notice.tool}`, payload: { at, mcpTool: notice } };
}

/** The notification an event makes, if any (targets filter it further by their `events`). */
export function notificationFor(event: RequestEvent, at: number): Notification | undefined {
  switch (event.type) {
    case 'created':
      return { event: 'request.created', key: `request.created:${event.request.id}`, orderKey: event.request.id, payload: { at, request: requestSummary(event.request), args: event.request.proposal.args } };
    case 'resolved': {
      const kind: NotifyEvent = event.request.status === 'expired' ? 'request.expired' : 'request.decided';
      return { event: kind, key: `${kind}:${event.request.id}`, orderKey: event.request.id, payload: { at, request: requestSummary(event.request), args: event.request.proposal.args } };
    }
    case 'demotion': {
      const d = event.demotion;
      return { event: 'demotion', key: `demotion:${d.subject}:${d.capability}.${d.method}:${d.at}`, orderKey: `${d.subject}:${d.capability}.${d.method}`, payload: { at, demotion: d } };
    }
    case 'promotion':
      if (event.change !== 'proposed') return undefined;
      return { event: 'promotion.proposed', key: `promotion.proposed:${event.proposal.id}`, orderKey: `${event.proposal.subject}:${event.proposal.capability}.${event.proposal.method}`, payload: { at, promotion: event.proposal } };
    default:
      return undefined;
  }
}

/** One outbox row per target listening to this notification's event. */
export function outboxRows(n: Notification, targets: readonly NotifyTarget[], at: number): OutboxInput[] {
  const rows: OutboxInput[] = [];
  for (const t of targets) {
    if (!t.events.has(n.event)) continue;
    const { args, ...rest } = n.payload;
    const payload = t.kind === 'webhook' && t.includeArguments && args !== undefined ? { ...rest, args } : rest;
    rows.push({ target: t.target, event: n.event, eventKey: n.key, orderKey: n.orderKey, payload, at });
  }
  return rows;
}
