/**
 * A Node client for the operator channel (the operator terminal and `contained approve|deny` are
 * built on it). It authenticates with a bearer header, waits for `hello` and the complete
 * snapshot, keeps `pending` current from events, and turns every reply into a resolved value or
 * a `ContainedError` carrying the server's code. Every server message is validated against the
 * protocol schemas; one that does not match is not trusted.
 *
 * Connection failures are typed too: HTTP 401 → UNAUTHENTICATED, 403 → FORBIDDEN, anything
 * else (refused, reset, timeout, closed mid-request) → HOST_UNREACHABLE.
 */
import type { IncomingMessage } from 'node:http';
import WebSocket from 'ws';
import { ContainedError } from '../../runtime/errors.js';
import type { Grant, Operator } from '../model.js';
import type { Demotion, Proposal, Review, ReviewStatus, ReviewVerdict } from '../trust/model.js';
import type { DecideInput } from './backend.js';
import {
  type ClientMessage,
  type ClientMessageType,
  type HelloMessage,
  PROTOCOL,
  type WireRequestView,
  type ResultPayload,
  type ServerMessage,
  serverMessageSchema,
} from './protocol.js';

export interface OperatorClientOptions {
  /** `ws://host:port/v1/operator` */
  url: string;
  token: string;
  /** Sent as `Origin` (browsers always send one; Node clients need not). */
  origin?: string;
  /** Milliseconds to wait for the handshake, hello and snapshot (default 10 000). */
  connectTimeoutMs?: number;
  /** Milliseconds to wait for each reply (default 30 000). */
  requestTimeoutMs?: number;
}

export type OperatorEvent = Extract<ServerMessage, { type: 'created' | 'updated' | 'resolved' | 'grant' | 'run' }>;
/** Review queue, promotion and demotion events (delivered to `onTrustEvent` listeners). */
export type OperatorTrustEvent = Extract<ServerMessage, { type: 'review' | 'promotion' | 'demotion' }>;

type Waiter = { type: ClientMessageType; resolve: (value: unknown) => void; reject: (error: ContainedError) => void; timer: NodeJS.Timeout };

/** Client-message payloads without `type` and `id` (the client adds those). */
type Payload<T extends ClientMessageType> = Omit<Extract<ClientMessage, { type: T }>, 'type' | 'id'>;

export class OperatorClient {
  /** Pending requests by id: the snapshot, then kept current by events. */
  readonly pending = new Map<string, WireRequestView>();
  private hello_: HelloMessage | undefined;
  private readonly waiters = new Map<string, Waiter>();
  private readonly eventListeners = new Set<(event: OperatorEvent) => void>();
  private readonly trustListeners = new Set<(event: OperatorTrustEvent) => void>();
  private readonly closeListeners = new Set<(error: ContainedError) => void>();
  private nextId = 1;
  private closedWith: ContainedError | undefined;

  private constructor(
    private readonly ws: WebSocket,
    private readonly requestTimeoutMs: number,
  ) {}

  /** Connect, authenticate, and resolve once `hello` and the whole snapshot have arrived. */
  static connect(options: OperatorClientOptions): Promise<OperatorClient> {
    const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(options.url, [PROTOCOL], {
        headers: { authorization: `Bearer ${options.token}` },
        ...(options.origin !== undefined ? { origin: options.origin } : {}),
        handshakeTimeout: connectTimeoutMs,
        perMessageDeflate: false,
      });
      const client = new OperatorClient(ws, options.requestTimeoutMs ?? 30_000);
      let settled = false;
      const fail = (error: ContainedError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ws.terminate();
        reject(error);
      };
      const timer = setTimeout(() => fail(unreachable(`no hello and snapshot from ${options.url} within ${connectTimeoutMs} ms`)), connectTimeoutMs);
      ws.on('unexpected-response', (req, res: IncomingMessage) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (body.length < 500) body += chunk;
        });
        res.on('end', () => {
          req.destroy();
          fail(httpError(res.statusCode ?? 0, body.trim()));
        });
        res.on('error', () => fail(httpError(res.statusCode ?? 0, body.trim())));
        res.on('close', () => fail(httpError(res.statusCode ?? 0, body.trim())));
      });
      ws.on('error', (error) => fail(unreachable(`cannot reach ${options.url}: ${error.message}`)));
      ws.on('close', (code, reason) => {
        const error = unreachable(`connection closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`);
        fail(error);
        client.closed(error);
      });
      ws.on('message', (data, isBinary) => {
        client.onMessage(isBinary ? undefined : (data as Buffer).toString('utf8'));
        if (!settled && client.hello_ !== undefined && client.snapshotComplete) {
          settled = true;
          clearTimeout(timer);
          resolve(client);
        }
      });
    });
  }

  private snapshotComplete = false;

  get hello(): HelloMessage {
    if (this.hello_ === undefined) throw new Error('not connected');
    return this.hello_;
  }

  get operator(): Pick<Operator, 'name' | 'role'> {
    return this.hello.operator;
  }

  onEvent(listener: (event: OperatorEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Review, promotion and demotion events. */
  onTrustEvent(listener: (event: OperatorTrustEvent) => void): () => void {
    this.trustListeners.add(listener);
    return () => this.trustListeners.delete(listener);
  }

  /** Called once when the connection ends, with why. */
  onClose(listener: (error: ContainedError) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  async decide(input: DecideInput): Promise<WireRequestView> {
    return (await this.call('decide', input)).request;
  }
  async listGrants(): Promise<Grant[]> {
    return (await this.call('grants.list', {})).grants;
  }
  async revokeGrant(grantId: string, reason: string): Promise<Grant> {
    return (await this.call('grants.revoke', { grantId, reason })).grant;
  }
  async listRuns(limit?: number): Promise<ResultPayload<'runs.list'>['runs']> {
    return (await this.call('runs.list', limit === undefined ? {} : { limit })).runs;
  }
  /** Undo a committed changeset's local effects (docs/changesets.md). */
  undoChangeset(requestId: string): Promise<ResultPayload<'changeset.undo'>> {
    return this.call('changeset.undo', { requestId });
  }

  async cancelRun(runId: string): Promise<ResultPayload<'runs.cancel'>['run']> {
    return (await this.call('runs.cancel', { runId })).run;
  }
  async ping(): Promise<number> {
    return (await this.call('ping', {})).at;
  }
  async listReviews(filter: { status?: ReviewStatus | 'all'; limit?: number } = {}): Promise<Review[]> {
    return (await this.call('review.list', filter)).reviews;
  }
  async markReview(input: { reviewId: string; verdict: ReviewVerdict; note?: string }): Promise<{ review: Review; demotion?: Demotion }> {
    return this.call('review.mark', input);
  }
  async listPromotions(status?: Proposal['status']): Promise<Proposal[]> {
    return (await this.call('promotion.list', status === undefined ? {} : { status })).proposals;
  }
  async decidePromotion(input: { proposalId: string; verdict: 'accept' | 'decline'; reason: string }): Promise<Proposal> {
    return (await this.call('promotion.decide', input)).proposal;
  }

  /** Send one client message and wait for its `result` (or throw its `error` as a ContainedError). */
  call<T extends ClientMessageType>(type: T, payload: Payload<T>): Promise<ResultPayload<T>> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = `c${this.nextId++}`;
    return new Promise<ResultPayload<T>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        reject(unreachable(`no reply to ${type} within ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      this.waiters.set(id, { type, resolve: resolve as (value: unknown) => void, reject, timer });
      this.ws.send(JSON.stringify({ ...payload, type, id }));
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) return resolve();
      this.ws.once('close', () => resolve());
      this.ws.close(1000, 'bye');
    });
  }

  private onMessage(text: string | undefined): void {
    let parsed: ReturnType<typeof serverMessageSchema.safeParse> | undefined;
    let raw: unknown;
    try {
      raw = text === undefined ? undefined : JSON.parse(text);
      parsed = serverMessageSchema.safeParse(raw);
    } catch {
      parsed = undefined;
    }
    if (!parsed?.success) {
      // Not trusted: fail the request it claims to answer, ignore it otherwise.
      const id = typeof raw === 'object' && raw !== null ? (raw as { id?: unknown }).id : undefined;
      if (typeof id === 'string') this.settle(id, new ContainedError('INTERNAL', `the server sent a reply that is not ${PROTOCOL}`));
      return;
    }
    const message = parsed.data;
    switch (message.type) {
      case 'hello':
        this.hello_ = message;
        return;
      case 'snapshot':
        for (const request of message.requests) this.pending.set(request.id, request);
        if (message.complete) this.snapshotComplete = true;
        return;
      case 'result': {
        const waiter = this.waiters.get(message.id);
        if (waiter && waiter.type !== message.of) this.settle(message.id, new ContainedError('INTERNAL', `the server answered ${waiter.type} with a ${message.of} result`));
        else this.settle(message.id, undefined, message.result);
        return;
      }
      case 'error':
        if (message.id !== undefined) this.settle(message.id, new ContainedError(message.code, message.message, message.data ? { data: message.data } : {}));
        return;
      case 'created':
      case 'updated':
      case 'resolved':
        if (message.type === 'resolved' || message.request.status !== 'pending') this.pending.delete(message.request.id);
        else this.pending.set(message.request.id, message.request);
        break;
      case 'grant':
      case 'run':
        break;
      case 'review':
      case 'promotion':
      case 'demotion':
        for (const listener of this.trustListeners) listener(message);
        return;
    }
    for (const listener of this.eventListeners) listener(message);
  }

  private settle(id: string, error: ContainedError | undefined, value?: unknown): void {
    const waiter = this.waiters.get(id);
    if (!waiter) return;
    this.waiters.delete(id);
    clearTimeout(waiter.timer);
    if (error) waiter.reject(error);
    else waiter.resolve(value);
  }

  private closed(error: ContainedError): void {
    if (this.closedWith) return;
    this.closedWith = error;
    for (const [id] of this.waiters) this.settle(id, error);
    for (const listener of this.closeListeners) listener(error);
  }
}

function unreachable(message: string): ContainedError {
  return new ContainedError('HOST_UNREACHABLE', message);
}

function httpError(status: number, body: string): ContainedError {
  const detail = body ? `: ${body}` : '';
  if (status === 401) return new ContainedError('UNAUTHENTICATED', `the host refused the token (HTTP 401${detail})`);
  if (status === 403) return new ContainedError('FORBIDDEN', `the host refused the connection (HTTP 403${detail})`);
  return unreachable(`the host answered HTTP ${status}${detail}`);
}
