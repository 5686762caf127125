/**
 * A real webhook receiver on loopback for the notification tests: records every delivery (headers,
 * raw body, whether its signature verifies) and answers as its `mode` says — `ok` (204), `fail`
 * (503), `hang` (never answers), `redirect` (302 to `/elsewhere`, which records a hit if followed).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyWebhook } from '../../../host/notify/signing.js';

export interface Received {
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
  json: Record<string, any>;
  signature: ReturnType<typeof verifyWebhook>;
  at: number;
  answered: number | 'hang';
}

export type Mode = 'ok' | 'fail' | 'hang' | 'redirect';

export interface Receiver {
  url: string;
  port: number;
  received: Received[];
  /** Deliveries answered 2xx, in arrival order. */
  accepted(): Received[];
  mode: Mode | ((r: Received) => Mode);
  /** Hits on `/elsewhere` (a followed redirect). */
  followed: number;
  close(): Promise<void>;
}

export async function startReceiver(secret: string, mode: Receiver['mode'] = 'ok', port = 0): Promise<Receiver> {
  const hanging = new Set<ServerResponse>();
  const r: Receiver = {
    url: '',
    port: 0,
    received: [],
    accepted: () => r.received.filter((x) => typeof x.answered === 'number' && x.answered < 300),
    mode,
    followed: 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer((req, res) => {
    if (req.url === '/elsewhere') {
      r.followed += 1;
      res.writeHead(204).end();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json: Record<string, any> = {};
      try {
        json = JSON.parse(body) as Record<string, any>;
      } catch {
        /* recorded as is */
      }
      const entry: Received = { path: req.url ?? '', headers: req.headers, body, json, signature: verifyWebhook(secret, body, req.headers), at: Date.now(), answered: 204 };
      const m = typeof r.mode === 'function' ? r.mode(entry) : r.mode;
      r.received.push(entry);
      if (m === 'hang') {
        entry.answered = 'hang';
        hanging.add(res);
        return;
      }
      if (m === 'redirect') {
        entry.answered = 302;
        res.writeHead(302, { location: `http://127.0.0.1:${r.port}/elsewhere` }).end();
        return;
      }
      entry.answered = m === 'ok' ? 204 : 503;
      res.writeHead(entry.answered).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  r.port = (server.address() as AddressInfo).port;
  r.url = `http://127.0.0.1:${r.port}/hook`;
  return r;
}

export { waitUntil } from './wait.js';
