/**
 * Helpers for the console tests: raw HTTP requests with full control of Host, Origin and Cookie
 * (fetch cannot set Host), a console login, and a WebSocket opened with a console ticket.
 */
import { request } from 'node:http';
import WebSocket from 'ws';

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json(): any;
}

export function raw(base: string, method: string, path: string, options: { headers?: Record<string, string>; body?: string } = {}): Promise<RawResponse> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers: { ...(options.body !== undefined ? { 'content-length': String(Buffer.byteLength(options.body)) } : {}), ...options.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) as unknown });
      });
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

export interface ConsoleSession {
  cookie: string;
  csrf: string;
  setCookie: string;
  body: any;
}

/** JSON POST as the page would send it: same-host Origin, JSON body, the session cookie and CSRF token. */
export function post(base: string, path: string, body: unknown, session?: { cookie: string; csrf?: string }, extra: Record<string, string> = {}): Promise<RawResponse> {
  return raw(base, 'POST', path, {
    headers: {
      origin: base,
      'content-type': 'application/json',
      ...(session ? { cookie: session.cookie } : {}),
      ...(session?.csrf ? { 'x-csrf-token': session.csrf } : {}),
      ...extra,
    },
    body: JSON.stringify(body),
  });
}

export async function login(base: string, credential: { token: string } | { code: string }): Promise<ConsoleSession> {
  const res = await post(base, '/console/api/login', credential);
  if (res.status !== 200) throw new Error(`login failed: ${res.status} ${res.body}`);
  const setCookie = String(res.headers['set-cookie']);
  const cookie = setCookie.split(';')[0] as string;
  return { cookie, csrf: res.json().csrf as string, setCookie, body: res.json() };
}

/** Open the operator channel with a ticket issued to a console session; resolves with the socket and its first message. */
export async function channelFor(base: string, session: ConsoleSession): Promise<{ ws: WebSocket; hello: any; next(): Promise<any> }> {
  const ticket = await post(base, '/console/api/ticket', {}, session);
  if (ticket.status !== 200) throw new Error(`ticket failed: ${ticket.status} ${ticket.body}`);
  const { ticket: t, path } = ticket.json() as { ticket: string; path: string };
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}${path}?ticket=${encodeURIComponent(t)}`, ['contained.operator.v1'], { origin: base });
  const queue: any[] = [];
  const waiters: Array<(m: any) => void> = [];
  ws.on('message', (data) => {
    const m = JSON.parse(String(data)) as unknown;
    const w = waiters.shift();
    if (w) w(m);
    else queue.push(m);
  });
  const next = (): Promise<any> => (queue.length > 0 ? Promise.resolve(queue.shift()) : new Promise((resolve) => waiters.push(resolve)));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, hello: await next(), next };
}
