// The operator channel (contained.operator.v1, docs/protocol.md) from the browser. Each connection
// uses a fresh single-use ticket from POST /console/api/ticket — the page never holds the operator
// token. Replies are matched to requests by id; events go to listeners. On a drop it reconnects
// with backoff and a new ticket; when the session is gone (401) it says so and stops.
import { api } from './api.js';

const PROTOCOL = 'contained.operator.v1';

export class Channel {
  constructor() {
    this.ws = undefined;
    this.seq = 0;
    this.waiting = new Map();
    this.listeners = new Set();
    this.state = 'idle';
    this.stopped = false;
    this.backoff = 500;
    this.snapshot = [];
    this.hello = undefined;
  }

  /** listener(message) for every server message; also { type: 'state', state } on changes. */
  on(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(message) {
    for (const l of this.listeners) {
      try {
        l(message);
      } catch (error) {
        console.error(error);
      }
    }
  }

  setState(state, detail) {
    this.state = state;
    this.emit({ type: 'state', state, detail });
  }

  async connect() {
    if (this.stopped) return;
    this.setState('connecting');
    let ticket;
    try {
      ticket = await api.post('/console/api/ticket', {});
    } catch (error) {
      if (error.status === 401) {
        this.stopped = true;
        this.setState('signed-out');
        return;
      }
      return this.retry();
    }
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}${ticket.path}?ticket=${encodeURIComponent(ticket.ticket)}`, [PROTOCOL]);
    this.ws = ws;
    ws.addEventListener('message', (event) => this.onMessage(event.data));
    ws.addEventListener('close', () => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      for (const [, w] of this.waiting) w.reject(Object.assign(new Error('the connection to the host closed'), { code: 'HOST_UNREACHABLE' }));
      this.waiting.clear();
      if (!this.stopped) this.retry();
    });
  }

  retry() {
    this.setState('reconnecting');
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, 15_000);
    setTimeout(() => this.connect(), wait);
  }

  onMessage(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message.type === 'hello') {
      this.hello = message;
      this.backoff = 500;
      this.snapshot = [];
    } else if (message.type === 'snapshot') {
      this.snapshot.push(...message.requests);
      if (message.complete) {
        this.emit({ type: 'snapshot.complete', requests: this.snapshot });
        this.snapshot = [];
        this.setState('live');
      }
      return;
    } else if ((message.type === 'result' || message.type === 'error') && message.id !== undefined && this.waiting.has(message.id)) {
      const w = this.waiting.get(message.id);
      this.waiting.delete(message.id);
      if (message.type === 'result') w.resolve(message.result);
      else w.reject(Object.assign(new Error(message.message), { code: message.code, data: message.data }));
      return;
    }
    this.emit(message);
  }

  /** Send a client message; resolves with its `result`, rejects with { code, message }. */
  request(type, fields = {}) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(Object.assign(new Error('not connected to the host'), { code: 'HOST_UNREACHABLE' }));
    const id = `c${++this.seq}`;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      ws.send(JSON.stringify({ type, id, ...fields }));
    });
  }

  /** Does this host know a client message type? (An unknown type is refused with path "type".) */
  async supports(type, fields = {}) {
    try {
      await this.request(type, fields);
      return true;
    } catch (error) {
      return !(error.code === 'INVALID_ARGUMENT' && (error.data?.path === 'type' || /unknown message type/.test(error.message)));
    }
  }

  close() {
    this.stopped = true;
    const ws = this.ws;
    this.ws = undefined;
    if (ws) ws.close(1000, 'logged out');
  }
}
