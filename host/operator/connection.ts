/**
 * One authenticated operator connection: the hello and snapshot on connect, the per-connection
 * rate limit, decoding and answering client messages, and the send path with backpressure.
 *
 * Defences and how they fail:
 * - Every client message is decoded by protocol.ts; a bad one gets an `error` echoing its id and
 *   the connection stays open. Role checks happen here before the backend is called (and again in
 *   the backend, which owns policy).
 * - Rate limit: a token bucket of `messageBurst` refilled at `messagesPerSecond`; a message over it
 *   is answered RATE_LIMITED and not processed. Refused messages draw on a second bucket of the
 *   same burst refilled over `abuseWindowMs`; once that is empty too, the connection is closed 1008.
 * - Backpressure: nothing is sent while `ws.bufferedAmount` exceeds `maxBufferedBytes`; the first
 *   message that would be sent then closes the connection 1013 instead, so a client that stops
 *   reading costs at most `maxBufferedBytes` plus one message. The snapshot goes out in chunks,
 *   each sent only after the previous reached the kernel; events arriving meanwhile are queued
 *   under the same byte limit.
 */
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import { ContainedError } from '../../runtime/errors.js';
import { type Operator, roleAtLeast } from '../model.js';
import type { OperatorBackend } from './backend.js';
import { type ClientMessage, type ErrorMessage, errorMessage, type HelloMessage, parseClientMessage, readId, type ServerMessage } from './protocol.js';
import { TokenBucket } from './rate-limit.js';

/** WebSocket close codes the server uses (docs/protocol.md). */
export const CLOSE = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  POLICY: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  TRY_AGAIN_LATER: 1013,
} as const;

export interface ConnectionLimits {
  maxBufferedBytes: number;
  messagesPerSecond: number;
  messageBurst: number;
  /** Refused messages tolerated: `messageBurst` of them per this many ms before closing 1008. */
  abuseWindowMs: number;
  snapshotChunkSize: number;
}

export interface ConnectionDeps {
  backend: OperatorBackend;
  logger: Logger;
  limits: ConnectionLimits;
  hello: HelloMessage;
  now: () => number;
}

export class OperatorConnection {
  readonly connectedAt: number;
  /** Set by pongs, cleared by each heartbeat ping. */
  alive = true;
  private ready = false;
  private queued: Buffer[] = [];
  private queuedBytes = 0;
  private readonly rate: TokenBucket;
  private readonly strikes: TokenBucket;
  private readonly log: Logger;
  /** Closed for abuse of the rate limit: no message is read any more; the close follows its pending replies. */
  private abusive = false;

  constructor(
    readonly ws: WebSocket,
    readonly operator: Operator,
    readonly remoteAddress: string | undefined,
    private readonly deps: ConnectionDeps,
  ) {
    const { limits, now } = deps;
    this.connectedAt = now();
    this.rate = new TokenBucket(limits.messagesPerSecond, limits.messageBurst, now);
    this.strikes = new TokenBucket((limits.messageBurst * 1000) / limits.abuseWindowMs, limits.messageBurst, now);
    this.log = deps.logger.child({ operator: operator.name, role: operator.role });
    ws.on('pong', () => {
      this.alive = true;
    });
    ws.on('message', (data, isBinary) => this.onMessage(data as Buffer, isBinary));
  }

  get open(): boolean {
    return this.ws.readyState === this.ws.OPEN;
  }

  /** Send the hello, then the snapshot of pending requests, then whatever events arrived meanwhile. */
  async start(): Promise<void> {
    this.sendMessage(this.deps.hello);
    let pending;
    try {
      pending = await this.deps.backend.pending(this.operator);
    } catch (error) {
      this.log.error({ err: error }, 'operator snapshot failed');
      this.close(CLOSE.INTERNAL, 'snapshot failed');
      return;
    }
    const size = this.deps.limits.snapshotChunkSize;
    for (let i = 0; i === 0 || i < pending.length; i += size) {
      if (!this.open) return;
      const chunk = pending.slice(i, i + size);
      const frame = encode({ type: 'snapshot', requests: chunk, complete: i + size >= pending.length });
      // One chunk in flight at a time: wait until it reached the kernel before building the next.
      const sent = await new Promise<boolean>((resolve) => {
        if (!this.sendFrame(frame, (err) => resolve(!err))) resolve(false);
      });
      if (!sent) return;
    }
    this.ready = true;
    const queued = this.queued;
    this.queued = [];
    this.queuedBytes = 0;
    for (const frame of queued) if (!this.sendFrame(frame)) return;
  }

  /** An event frame (already encoded once for every connection). */
  deliver(frame: Buffer): void {
    if (!this.open) return;
    if (this.ready) {
      this.sendFrame(frame);
      return;
    }
    this.queuedBytes += frame.length;
    if (this.queuedBytes > this.deps.limits.maxBufferedBytes) {
      this.queued = [];
      this.overloaded();
      return;
    }
    this.queued.push(frame);
  }

  close(code: number, reason: string): void {
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.close(code, reason);
  }

  private sendMessage(message: ServerMessage): boolean {
    return this.sendFrame(encode(message));
  }

  private sendFrame(frame: Buffer, callback?: (err?: Error) => void): boolean {
    if (!this.open) return false;
    if (this.ws.bufferedAmount > this.deps.limits.maxBufferedBytes) {
      this.overloaded();
      return false;
    }
    this.ws.send(frame, { binary: false }, callback);
    return true;
  }

  private overloaded(): void {
    this.log.warn({ bufferedAmount: this.ws.bufferedAmount, limit: this.deps.limits.maxBufferedBytes }, 'operator too slow; closing 1013');
    this.close(CLOSE.TRY_AGAIN_LATER, 'too slow: send buffer full');
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (!this.open || this.abusive) return;
    if (!this.rate.take()) {
      if (!this.strikes.take()) {
        this.log.warn('operator rate limit abused; closing 1008');
        // Read nothing more, but let the replies to messages already accepted out first: frames
        // arriving in one chunk are all parsed before any of their (async) replies is sent.
        this.abusive = true;
        setImmediate(() => this.close(CLOSE.POLICY, 'rate limit exceeded'));
        return;
      }
      this.sendMessage(errorMessage('RATE_LIMITED', `more than ${this.deps.limits.messagesPerSecond} messages per second; message not processed`, idOf(data, isBinary)));
      return;
    }
    if (isBinary) {
      this.sendMessage(errorMessage('INVALID_ARGUMENT', 'binary frames are not accepted; send JSON text'));
      return;
    }
    const parsed = parseClientMessage(data.toString('utf8'));
    if (!parsed.ok) {
      this.sendMessage(parsed.error);
      return;
    }
    void this.handle(parsed.message);
  }

  private async handle(message: ClientMessage): Promise<void> {
    try {
      const reply = await this.dispatch(message);
      this.sendMessage(reply);
    } catch (error) {
      this.sendMessage(this.toErrorMessage(error, message.id));
    }
  }

  private async dispatch(message: ClientMessage): Promise<ServerMessage> {
    const { backend } = this.deps;
    const op = this.operator;
    switch (message.type) {
      case 'ping':
        return { type: 'result', id: message.id, of: 'ping', result: { pong: true, at: this.deps.now() } };
      case 'decide': {
        this.requireRole('approver', 'decide on requests');
        const input =
          message.verdict === 'deny'
            ? { requestId: message.requestId, verdict: 'deny' as const, reason: message.reason ?? '' }
            : {
                requestId: message.requestId,
                verdict: 'approve' as const,
                ...(message.args !== undefined ? { args: message.args } : {}),
                ...(message.argsDigest !== undefined ? { argsDigest: message.argsDigest } : {}),
                ...(message.span !== undefined ? { span: message.span } : {}),
                ...(message.note !== undefined ? { note: message.note } : {}),
                ...(message.assertion !== undefined ? { assertion: message.assertion } : {}),
              };
        const request = await backend.decide(op, input);
        this.log.info({ requestId: message.requestId, verdict: message.verdict, status: request.status }, 'operator decision');
        return { type: 'result', id: message.id, of: 'decide', result: { request } };
      }
      case 'grants.list':
        this.requireRole('admin', 'list grants');
        return { type: 'result', id: message.id, of: 'grants.list', result: { grants: await backend.listGrants(op) } };
      case 'grants.revoke': {
        this.requireRole('admin', 'revoke grants');
        const grant = await backend.revokeGrant(op, message.grantId, message.reason);
        this.log.info({ grantId: message.grantId }, 'operator revoked grant');
        return { type: 'result', id: message.id, of: 'grants.revoke', result: { grant } };
      }
      case 'runs.list':
        return { type: 'result', id: message.id, of: 'runs.list', result: { runs: await backend.listRuns(op, message.limit ?? 50) } };
      case 'runs.cancel': {
        this.requireRole('admin', 'cancel runs');
        const run = await backend.cancelRun(op, message.runId);
        this.log.info({ runId: message.runId }, 'operator cancelled run');
        return { type: 'result', id: message.id, of: 'runs.cancel', result: { run } };
      }
      case 'review.list': {
        this.requireRole('approver', 'see the review queue');
        const reviews = await supported(backend.listReviews, 'review queue').call(backend, op, {
          ...(message.status !== undefined ? { status: message.status } : {}),
          ...(message.limit !== undefined ? { limit: message.limit } : {}),
        });
        return { type: 'result', id: message.id, of: 'review.list', result: { reviews } };
      }
      case 'review.mark': {
        this.requireRole('approver', 'review executed actions');
        const marked = await supported(backend.markReview, 'review queue').call(backend, op, {
          reviewId: message.reviewId,
          verdict: message.verdict,
          ...(message.note !== undefined ? { note: message.note } : {}),
        });
        this.log.info({ reviewId: message.reviewId, verdict: message.verdict, demoted: marked.demotion !== undefined }, 'operator reviewed an executed action');
        return { type: 'result', id: message.id, of: 'review.mark', result: marked.demotion ? { review: marked.review, demotion: marked.demotion } : { review: marked.review } };
      }
      case 'promotion.list': {
        const proposals = await supported(backend.listPromotions, 'trust ledger').call(backend, op, message.status);
        return { type: 'result', id: message.id, of: 'promotion.list', result: { proposals } };
      }
      case 'promotion.decide': {
        this.requireRole('admin', 'decide promotions');
        const proposal = await supported(backend.decidePromotion, 'trust ledger').call(backend, op, { proposalId: message.proposalId, verdict: message.verdict, reason: message.reason });
        this.log.info({ proposalId: message.proposalId, verdict: message.verdict }, 'operator decided a promotion');
        return { type: 'result', id: message.id, of: 'promotion.decide', result: { proposal } };
      }
      case 'changeset.undo': {
        this.requireRole('approver', 'undo changesets');
        const undone = await supported(backend.undoChangeset, 'changesets').call(backend, op, message.requestId);
        this.log.info({ requestId: message.requestId, restored: undone.restored }, 'operator undid a changeset');
        return { type: 'result', id: message.id, of: 'changeset.undo', result: undone };
      }
    }
  }

  private requireRole(role: 'approver' | 'admin', what: string): void {
    if (!roleAtLeast(this.operator.role, role)) {
      throw new ContainedError('FORBIDDEN', `role ${this.operator.role} may not ${what} (needs ${role})`);
    }
  }

  private toErrorMessage(error: unknown, id: string): ErrorMessage {
    if (error instanceof ContainedError) return errorMessage(error.code, error.message, id, error.data);
    this.log.error({ err: error }, 'operator backend failed');
    return errorMessage('INTERNAL', 'internal error in the host (see the host log)', id);
  }
}

/** An optional backend operation, or NOT_FOUND when this host has none (e.g. no trust ledger). */
function supported<F>(f: F | undefined, what: string): F {
  if (f === undefined) throw new ContainedError('NOT_FOUND', `this host has no ${what}`);
  return f;
}

export function encode(message: ServerMessage): Buffer {
  return Buffer.from(JSON.stringify(message), 'utf8');
}

/** Best effort id of a message refused before decoding (rate limit), so the error can echo it. */
function idOf(data: Buffer, isBinary: boolean): string | undefined {
  if (isBinary) return undefined;
  try {
    return readId(JSON.parse(data.toString('utf8')));
  } catch {
    return undefined;
  }
}
