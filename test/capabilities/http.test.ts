// The http capability against real node:http servers on loopback. The "public" server listens on
// 127.0.0.2 and the "internal" one on 127.0.0.1 with the same port; scopes admit 127.0.0.2/32 as
// the stand-in for the public internet, so SSRF and DNS-rebinding attempts are real connections
// that would land on the internal server if a defence failed. No traffic leaves loopback.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HttpScope, type HostLookup, createHttp } from '../../capabilities/http/index.js';
import type { CapabilityInstance } from '../../capabilities/sdk/index.js';

const SECRET = 'Bearer sk-live-0123456789abcdef';
const secrets = { get: (name: string) => (name === 'api-token' ? SECRET : undefined) };

interface Seen {
  path: string;
  method: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function handler(name: string, seen: Seen[]): http.RequestListener {
  return (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      seen.push({ path: url.pathname, method: req.method ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() });
      const p = url.pathname;
      if (p === '/slow') return; // never answers; the timeout must fire
      if (p === '/redirect') {
        res.writeHead(Number(url.searchParams.get('status') ?? 302), { location: url.searchParams.get('to') ?? '/' });
        return res.end();
      }
      if (p === '/loop') {
        res.writeHead(302, { location: '/loop' });
        return res.end();
      }
      if (p === '/echo-secret-redirect') {
        // A hostile or buggy server that leaks the credential into a redirect target.
        res.writeHead(302, { location: `http://evil.test/${encodeURIComponent(String(req.headers.authorization))}` });
        return res.end();
      }
      if (p === '/big') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        const chunk = Buffer.alloc(64 * 1024, 'a');
        let sent = 0;
        const pump = (): void => {
          while (sent < 32 * 1024 * 1024) {
            sent += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        res.on('close', () => (sent = Infinity));
        return pump();
      }
      if (p === '/gzip-bomb') {
        res.writeHead(200, { 'content-encoding': 'gzip', 'content-type': 'text/plain' });
        return res.end(zlib.gzipSync(Buffer.alloc(8 * 1024 * 1024, 'z')));
      }
      if (p === '/echo') {
        res.writeHead(200, {
          'content-type': 'application/json',
          'set-cookie': 'session=abc; HttpOnly',
          'x-served-by': name,
          'x-echo-auth': String(req.headers.authorization ?? ''),
          connection: 'close, x-hop',
          'x-hop': 'drop me',
        });
        return res.end(JSON.stringify({ server: name, method: req.method, headers: req.headers, body: Buffer.concat(chunks).toString() }));
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'x-served-by': name });
      res.end(req.method === 'HEAD' ? undefined : `hello from ${name} at ${p}`);
    });
  };
}

const seenPublic: Seen[] = [];
const seenInternal: Seen[] = [];
let publicServer: http.Server;
let internalServer: http.Server;
let port = 0;

function listen(server: http.Server, host: string, p: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(p, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

beforeAll(async () => {
  for (let attempt = 0; ; attempt++) {
    publicServer = http.createServer(handler('public', seenPublic));
    internalServer = http.createServer(handler('internal', seenInternal));
    await listen(publicServer, '127.0.0.2', 0);
    port = (publicServer.address() as AddressInfo).port;
    try {
      await listen(internalServer, '127.0.0.1', port);
      return;
    } catch (error) {
      publicServer.close();
      if (attempt >= 5) throw error;
    }
  }
});

afterAll(async () => {
  for (const s of [publicServer, internalServer]) {
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
});

const PUB = (): string => `http://127.0.0.2:${port}`;
const INT = (): string => `http://127.0.0.1:${port}`;

/** A scope where 127.0.0.2 plays the public internet. */
function scope(extra: Partial<HttpScope> = {}): HttpScope {
  return { origins: [PUB()], allowedCidrs: ['127.0.0.2/32'], ...extra };
}

async function call(inst: CapabilityInstance, method: string, raw: unknown): Promise<any> {
  const args = inst.parseArgs(method, raw);
  return inst.invoke(method, args, { runId: 'run-1', signal: new AbortController().signal });
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string; data?: Record<string, unknown>; cause?: unknown }> {
  try {
    await p;
  } catch (error) {
    return error as { code: string; message: string };
  }
  throw new Error('expected a refusal');
}

describe('http: allowed requests', () => {
  it('GET returns status, filtered headers and body', async () => {
    const inst = createHttp(scope());
    const out = await call(inst, 'get', { url: `${PUB()}/echo` });
    expect(out.status).toBe(200);
    expect(out.redirected).toBe(false);
    expect(out.truncated).toBe(false);
    expect(JSON.parse(out.body).server).toBe('public');
    expect(out.headers['x-served-by']).toBe('public');
    // Cookies and hop-by-hop headers (including those named in `connection`) never reach the agent.
    expect(out.headers['set-cookie']).toBeUndefined();
    expect(out.headers.connection).toBeUndefined();
    expect(out.headers['x-hop']).toBeUndefined();
  });

  it('HEAD returns no body; send POSTs a body with its content-type', async () => {
    const inst = createHttp(scope({ methods: ['GET', 'HEAD', 'POST'] }));
    const head = await call(inst, 'get', { url: `${PUB()}/x`, method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    const post = await call(inst, 'send', { url: `${PUB()}/echo`, method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"a":1}' });
    const echoed = JSON.parse(post.body);
    expect(echoed).toMatchObject({ method: 'POST', body: '{"a":1}' });
    expect(echoed.headers['content-type']).toBe('application/json');
    expect(echoed.headers.host).toBe(`127.0.0.2:${port}`);
    expect(echoed.headers['accept-encoding']).toBe('identity');
  });

  it('follows a redirect inside the scope and reports the final URL', async () => {
    const inst = createHttp(scope());
    const out = await call(inst, 'get', { url: `${PUB()}/redirect?to=/final` });
    expect(out).toMatchObject({ status: 200, redirected: true, url: `${PUB()}/final` });
    expect(out.body).toBe('hello from public at /final');
  });

  it('303 after POST becomes GET without the body', async () => {
    const inst = createHttp(scope({ methods: ['GET', 'POST'] }));
    const out = await call(inst, 'send', { url: `${PUB()}/redirect?status=303&to=/echo`, method: 'POST', body: 'x' });
    expect(JSON.parse(out.body)).toMatchObject({ method: 'GET', body: '' });
  });
});

describe('http: scope refusals (OUT_OF_SCOPE)', () => {
  const inst = () => createHttp(scope({ methods: ['GET', 'POST'], pathPrefixes: ['/api/v1'] }));

  it.each([
    ['host', () => `http://other.test:${port}/api/v1/x`],
    ['port', () => `http://127.0.0.2:${port + 1}/api/v1/x`],
    ['scheme', () => `https://127.0.0.2:${port}/api/v1/x`],
    ['file scheme', () => 'file:///etc/passwd'],
    ['path prefix lookalike', () => `${PUB()}/api/v10`],
    ['dot segments', () => `${PUB()}/api/v1/../../admin`],
    ['encoded dot segments', () => `${PUB()}/api/v1/%2e%2e/admin`],
    ['userinfo lookalike', () => `http://127.0.0.2:${port}@other.test/api/v1/`],
  ])('refuses a disallowed %s before any connection', async (_what, url) => {
    const before = seenPublic.length + seenInternal.length;
    const i = inst();
    expect(i.checkScope('get', i.parseArgs('get', { url: url() })).ok).toBe(false);
    expect((await refusal(call(i, 'get', { url: url() }))).code).toBe('OUT_OF_SCOPE');
    expect(seenPublic.length + seenInternal.length).toBe(before);
  });

  it('refuses a disallowed method', async () => {
    expect((await refusal(call(inst(), 'send', { url: `${PUB()}/api/v1/x`, method: 'DELETE' }))).code).toBe('OUT_OF_SCOPE');
    // A GET-only scope does not even expose `send`.
    expect((await refusal(call(createHttp(scope()), 'send', { url: `${PUB()}/`, method: 'POST' }))).code).toBe('UNKNOWN_CAPABILITY');
  });

  it('refuses a request body over maxRequestBytes', async () => {
    const i = createHttp(scope({ methods: ['POST'], maxRequestBytes: 10 }));
    expect((await refusal(call(i, 'send', { url: `${PUB()}/echo`, method: 'POST', body: 'x'.repeat(11) }))).code).toBe('OUT_OF_SCOPE');
  });

  it.each([
    [{ Host: 'evil.test' }],
    [{ 'Transfer-Encoding': 'chunked' }],
    [{ 'Content-Length': '5' }],
    [{ 'x-a': 'v\r\nX-Injected: 1' }],
    [{ 'bad name': 'v' }],
    [{ 'X-A': '1', 'x-a': '2' }],
  ])('refuses request headers %j with INVALID_ARGUMENT', (headers) => {
    expect(() => createHttp(scope()).parseArgs('get', { url: `${PUB()}/`, headers })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('refuses unknown argument keys', () => {
    expect(() => createHttp(scope()).parseArgs('get', { url: `${PUB()}/`, follow: true })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('http: SSRF and DNS rebinding', () => {
  it('refuses loopback when the scope does not allow it explicitly', async () => {
    const before = seenInternal.length;
    for (const url of [`${INT()}/`, `http://[::ffff:127.0.0.1]:${port}/`, `http://2130706433:${port}/`, `http://0x7f.0.0.1:${port}/`]) {
      const host = new URL(url).hostname;
      const i = createHttp({ origins: [`http://${host}:${port}`] });
      const e = await refusal(call(i, 'get', { url }));
      expect(e.code, url).toBe('OUT_OF_SCOPE');
      expect(e.data?.reason).toBe('address');
    }
    expect(seenInternal.length).toBe(before);
  });

  it('refuses a name the system resolver maps to loopback (localhost)', async () => {
    const i = createHttp({ origins: [`http://localhost:${port}`] });
    const e = await refusal(call(i, 'get', { url: `http://localhost:${port}/` }));
    expect(e).toMatchObject({ code: 'OUT_OF_SCOPE', data: { reason: 'address' } });
  });

  it('allows loopback when the scope says so (allowPrivateNetwork)', async () => {
    const out = await call(createHttp({ origins: [INT()], allowPrivateNetwork: true }), 'get', { url: `${INT()}/x` });
    expect(out.body).toBe('hello from internal at /x');
  });

  it('connects to the address it checked, not a second DNS answer (rebinding)', async () => {
    let calls = 0;
    const lookup: HostLookup = async () => (calls++ === 0 ? [{ address: '127.0.0.2', family: 4 }] : [{ address: '127.0.0.1', family: 4 }]);
    const i = createHttp({ origins: [`http://rebind.test:${port}`], allowedCidrs: ['127.0.0.2/32'] }, { lookup });
    const before = seenInternal.length;
    const first = await call(i, 'get', { url: `http://rebind.test:${port}/first` });
    expect(first.body).toBe('hello from public at /first');
    expect(calls).toBe(1);
    // The next resolution answers with the internal address: refused, and nothing reached it.
    const e = await refusal(call(i, 'get', { url: `http://rebind.test:${port}/second` }));
    expect(e).toMatchObject({ code: 'OUT_OF_SCOPE', data: { reason: 'address' } });
    expect(seenInternal.length).toBe(before);
    expect(seenPublic.find((s) => s.path === '/first')?.headers.host).toBe(`rebind.test:${port}`);
  });

  it('uses only allowed answers when a name resolves to both kinds', async () => {
    const lookup: HostLookup = async () => [{ address: '127.0.0.1', family: 4 }, { address: '::1', family: 6 }, { address: '127.0.0.2', family: 4 }];
    const i = createHttp({ origins: [`http://mixed.test:${port}`], allowedCidrs: ['127.0.0.2/32'] }, { lookup });
    expect((await call(i, 'get', { url: `http://mixed.test:${port}/m` })).body).toBe('hello from public at /m');
  });

  it('refuses a redirect to an origin outside the scope', async () => {
    const i = createHttp(scope());
    const e = await refusal(call(i, 'get', { url: `${PUB()}/redirect?to=${encodeURIComponent('http://evil.test/')}` }));
    expect(e).toMatchObject({ code: 'OUT_OF_SCOPE', data: { reason: 'redirect' } });
  });

  it('refuses a redirect to a private address even when its origin is listed', async () => {
    const before = seenInternal.length;
    const i = createHttp(scope({ origins: [PUB(), INT()] }));
    const e = await refusal(call(i, 'get', { url: `${PUB()}/redirect?to=${encodeURIComponent(`${INT()}/admin`)}` }));
    expect(e).toMatchObject({ code: 'OUT_OF_SCOPE', data: { reason: 'redirect-address' } });
    expect(seenInternal.length).toBe(before);
  });

  it('caps redirect hops', async () => {
    const e = await refusal(call(createHttp(scope({ maxRedirects: 3 })), 'get', { url: `${PUB()}/loop` }));
    expect(e).toMatchObject({ code: 'CAPABILITY_FAILED', data: { reason: 'redirects' } });
  });
});

describe('http: limits', () => {
  it('truncates a large response at maxResponseBytes and stops reading', async () => {
    const out = await call(createHttp(scope({ maxResponseBytes: 100_000 })), 'get', { url: `${PUB()}/big` });
    expect(out.truncated).toBe(true);
    expect(out.body.length).toBe(100_000);
  });

  it('caps the decoded size of a compressed response (gzip bomb)', async () => {
    const out = await call(createHttp(scope({ maxResponseBytes: 4096 })), 'get', { url: `${PUB()}/gzip-bomb` });
    expect(out).toMatchObject({ truncated: true });
    expect(out.body).toBe('z'.repeat(4096));
  });

  it('a response exactly at the cap is not truncated', async () => {
    const size = 'hello from public at /exact'.length;
    const out = await call(createHttp(scope({ maxResponseBytes: size })), 'get', { url: `${PUB()}/exact` });
    expect(out).toMatchObject({ truncated: false, body: 'hello from public at /exact' });
  });

  it('times out', async () => {
    const e = await refusal(call(createHttp(scope({ timeoutMs: 300 })), 'get', { url: `${PUB()}/slow` }));
    expect(e).toMatchObject({ code: 'CAPABILITY_FAILED', data: { reason: 'timeout' } });
  });

  it('stops when the run is cancelled', async () => {
    const inst = createHttp(scope());
    const ac = new AbortController();
    const p = inst.invoke('get', inst.parseArgs('get', { url: `${PUB()}/slow` }), { runId: 'r', signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    expect((await refusal(p)).code).toBe('CANCELLED');
  });

  it('revocation and budgets apply', async () => {
    const inst = createHttp(scope(), {}, { budgets: { get: { maxCalls: 1 } } });
    await call(inst, 'get', { url: `${PUB()}/` });
    expect((await refusal(call(inst, 'get', { url: `${PUB()}/` }))).code).toBe('BUDGET_EXCEEDED');
    const inst2 = createHttp(scope());
    inst2.revoke('test');
    expect((await refusal(call(inst2, 'get', { url: `${PUB()}/` }))).code).toBe('CAPABILITY_REVOKED');
  });

  it('an attenuated child cannot reach what its parent refuses', async () => {
    const parent = createHttp(scope({ origins: [PUB(), INT()], pathPrefixes: ['/a'] }));
    const child = parent.attenuate({ origins: [PUB()], pathPrefixes: ['/a/b', '/c'] });
    expect((await call(child, 'get', { url: `${PUB()}/a/b/x` })).status).toBe(200);
    expect((await refusal(call(child, 'get', { url: `${PUB()}/c` }))).code).toBe('OUT_OF_SCOPE');
    expect((await refusal(call(child, 'get', { url: `${INT()}/a/b` }))).code).toBe('OUT_OF_SCOPE');
  });
});

describe('http: host-attached credentials', () => {
  const credScope = (): HttpScope =>
    scope({
      origins: [PUB(), `http://second.test:${port}`],
      credentials: [{ origin: PUB(), header: 'authorization', secret: 'api-token' }],
      methods: ['GET', 'POST'],
    });
  const lookup: HostLookup = async () => [{ address: '127.0.0.2', family: 4 }];

  it('the server receives the secret; the agent never sees it', async () => {
    const inst = createHttp(credScope(), { secrets, lookup });
    const out = await call(inst, 'get', { url: `${PUB()}/echo` });
    const received = seenPublic.at(-1);
    expect(received?.headers.authorization).toBe(SECRET);
    const text = JSON.stringify(out);
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain('sk-live-0123456789abcdef');
    expect(out.headers['x-echo-auth']).toBe('[REDACTED]');
    expect(JSON.parse(out.body).headers.authorization).toBe('[REDACTED]');
    expect(JSON.stringify(inst.describe())).not.toContain(SECRET);
  });

  it('the agent cannot override or replace the credential header', async () => {
    const inst = createHttp(credScope(), { secrets, lookup });
    const before = seenPublic.length;
    for (const name of ['authorization', 'Authorization', 'AUTHORIZATION']) {
      const e = await refusal(call(inst, 'get', { url: `${PUB()}/echo`, headers: { [name]: 'Bearer mine' } }));
      expect(e.code).toBe('OUT_OF_SCOPE');
    }
    expect(seenPublic.length).toBe(before);
  });

  it('is sent only to its own origin', async () => {
    const inst = createHttp(credScope(), { secrets, lookup });
    const out = await call(inst, 'get', { url: `http://second.test:${port}/echo` });
    expect(JSON.parse(out.body).headers.authorization).toBeUndefined();
    // Elsewhere the agent may send its own authorization header.
    const own = await call(inst, 'get', { url: `http://second.test:${port}/echo`, headers: { authorization: 'Bearer mine' } });
    expect(JSON.parse(own.body).headers.authorization).toBe('Bearer mine');
  });

  it('never appears in an error message, data or cause, even when the server leaks it', async () => {
    const inst = createHttp(credScope(), { secrets, lookup });
    const e = await refusal(call(inst, 'get', { url: `${PUB()}/echo-secret-redirect` }));
    expect(e.code).toBe('OUT_OF_SCOPE');
    const everything = [e.message, JSON.stringify(e), JSON.stringify(e.data), String((e.cause as Error | undefined)?.message), e instanceof Error ? e.stack : ''].join('\n');
    expect(everything).not.toContain('sk-live-0123456789abcdef');
    expect(everything).not.toContain(encodeURIComponent(SECRET));
  });

  it('fails closed when the secret is missing on the host', async () => {
    const inst = createHttp(credScope(), { secrets: { get: () => undefined }, lookup });
    const before = seenPublic.length;
    const e = await refusal(call(inst, 'get', { url: `${PUB()}/echo` }));
    expect(e).toMatchObject({ code: 'CAPABILITY_FAILED', data: { reason: 'credential' } });
    expect(seenPublic.length).toBe(before);
  });

  it('a redirect to another origin drops the credential and the agent\'s own authorization', async () => {
    const inst = createHttp(credScope(), { secrets, lookup });
    const out = await call(inst, 'get', { url: `${PUB()}/redirect?to=${encodeURIComponent(`http://second.test:${port}/echo`)}` });
    expect(out.redirected).toBe(true);
    expect(JSON.parse(out.body).headers.authorization).toBeUndefined();
    const own = await call(inst, 'get', {
      url: `http://second.test:${port}/redirect?to=${encodeURIComponent(`${PUB()}/redirect?to=${encodeURIComponent(`http://second.test:${port}/echo`)}`)}`,
      headers: { authorization: 'Bearer mine', cookie: 'c=1', 'x-keep': 'yes' },
    });
    const h = JSON.parse(own.body).headers;
    expect(h.authorization).toBeUndefined();
    expect(h.cookie).toBeUndefined();
    expect(h['x-keep']).toBe('yes');
  });
});
