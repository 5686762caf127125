/**
 * One delivery attempt: a signed POST to a webhook, or one email through the outbox capability's
 * delivery code (capabilities/outbox/deliver.ts: the same SMTP relay handling, timeouts and folder
 * transport). Resolves on success; rejects with NOTIFY_DELIVERY_FAILED (`data.reason`: `timeout`,
 * `network`, `status` with `data.status`, `redirect`, `smtp` or `folder`) otherwise.
 *
 * Bounded: a webhook attempt is aborted after the endpoint's `timeoutMs` (connect, send, headers);
 * the answer's body is never read. Redirects are not followed (a 3xx is a failure): the operator
 * configured this URL, not wherever it points. Loopback and private addresses are allowed — the
 * URL is the operator's, not an agent's.
 */
import { deliver } from '../../capabilities/outbox/deliver.js';
import { ContainedError } from '../../runtime/errors.js';
import type { OutboxRow } from '../store/notify-outbox.js';
import { renderEmail, renderWebhook } from './format.js';
import { EVENT_HEADER, IDEMPOTENCY_HEADER, signHeaders } from './signing.js';
import type { EmailTarget, NotifyTarget, WebhookTarget } from './targets.js';

export interface SendContext {
  consoleUrl: string | undefined;
  now: () => number;
  /** Aborts the attempt (the host is closing). */
  signal: AbortSignal;
}

export interface SendResult {
  /** The receiver's HTTP status (webhooks). */
  status?: number;
}

function failure(reason: string, message: string, extra: Record<string, unknown> = {}, cause?: unknown): ContainedError {
  return new ContainedError('NOTIFY_DELIVERY_FAILED', message, { data: { reason, ...extra }, ...(cause !== undefined ? { cause } : {}) });
}

async function sendWebhook(t: WebhookTarget, row: OutboxRow, ctx: SendContext): Promise<SendResult> {
  const { body, contentType } = renderWebhook(row, t.format, ctx.consoleUrl);
  const headers = {
    'content-type': contentType,
    'user-agent': 'contained-notify/1',
    [IDEMPOTENCY_HEADER]: row.idempotencyKey,
    [EVENT_HEADER]: row.event,
    ...signHeaders(t.secret, body, ctx.now()),
  };
  const timeout = AbortSignal.timeout(t.timeoutMs);
  let res: Response;
  try {
    res = await fetch(t.url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.any([timeout, ctx.signal]) });
  } catch (error) {
    if (timeout.aborted) throw failure('timeout', `${t.shownUrl} did not answer within ${t.timeoutMs} ms`);
    if (ctx.signal.aborted) throw failure('network', 'the host closed during the delivery');
    const cause = (error as { cause?: { code?: unknown } }).cause;
    const code = typeof cause?.code === 'string' ? cause.code : 'network error';
    throw failure('network', `${t.shownUrl}: ${code}`, {}, error);
  }
  // The answer's body is never read: a receiver cannot make us wait on it or fill memory with it.
  await res.body?.cancel().catch(() => undefined);
  if (res.status >= 300 && res.status < 400) throw failure('redirect', `${t.shownUrl} answered ${res.status} (a redirect, not followed)`, { status: res.status });
  if (res.status < 200 || res.status >= 300) throw failure('status', `${t.shownUrl} answered ${res.status}`, { status: res.status });
  return { status: res.status };
}

async function sendEmail(t: EmailTarget, row: OutboxRow, ctx: SendContext): Promise<SendResult> {
  const { subject, text } = renderEmail(row, ctx.consoleUrl);
  try {
    await deliver(t.transport, { from: t.from, to: t.to, cc: [], subject, text });
    return {};
  } catch (error) {
    const data = (error as { data?: { reason?: unknown; smtpCode?: unknown } }).data;
    const reason = data?.reason === 'folder' ? 'folder' : 'smtp';
    throw failure(reason, `email: ${(error as Error).message.replace(/^outbox: /, '')}`, typeof data?.smtpCode === 'string' ? { smtpCode: data.smtpCode } : {}, error);
  }
}

export function send(target: NotifyTarget, row: OutboxRow, ctx: SendContext): Promise<SendResult> {
  return target.kind === 'webhook' ? sendWebhook(target, row, ctx) : sendEmail(target, row, ctx);
}
