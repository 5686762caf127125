/**
 * Operator channel authentication, over real loopback sockets: every refused handshake gets one
 * HTTP status and nothing else (no 101, no frame), and every accepted one is exactly the operator
 * the credential names. Plus the pure predicates (origin, credential) with lookalike inputs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkOrigin, compileOrigins, normaliseOrigin, readCredential, sameHostOrigins } from '../../host/operator/auth.js';
import { createTicketStore, memorySecrets } from '../../host/operator/tickets.js';
import { openSqliteStore } from '../../host/store/sqlite-store.js';
import { ALLOWED_ORIGIN, attempt, connect, connectReady, type Harness, PROTOCOL, rawUpgrade, startHarness, TOKENS } from './operator-harness.js';

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.close();
});

describe('refused handshakes', () => {
  it('no credential → 401, nothing but the status line and headers, socket closed', async () => {
    expect(await attempt(h.url)).toEqual({ status: 401, opened: false, messages: 0 });
    const raw = await rawUpgrade(h.port, '/v1/operator', {});
    expect(raw).toMatch(/^HTTP\/1\.1 401 Unauthorized\r\n/);
    expect(raw).toContain('WWW-Authenticate: Bearer');
    expect(raw).not.toContain('101');
    // Nothing after the plain-text body: no WebSocket frame bytes.
    const body = raw.slice(raw.indexOf('\r\n\r\n') + 4);
    expect(body).toMatch(/^[\x20-\x7e]*\n$/);
    expect(h.channel.clients()).toHaveLength(0);
  });

  it('unknown token, empty bearer, wrong scheme, token too long → 401', async () => {
    expect((await attempt(h.url, { token: 'tok_nobody' })).status).toBe(401);
    expect((await attempt(h.url, { headers: { authorization: 'Bearer ' } })).status).toBe(401);
    expect((await attempt(h.url, { headers: { authorization: `Basic ${TOKENS.alice}` } })).status).toBe(401);
    expect((await attempt(h.url, { headers: { authorization: TOKENS.alice } })).status).toBe(401);
    // Lookalike: a valid token with a suffix or a different case is a different token.
    expect((await attempt(h.url, { token: `${TOKENS.alice}x` })).status).toBe(401);
    expect((await attempt(h.url, { token: TOKENS.alice.toUpperCase() })).status).toBe(401);
    expect((await attempt(h.url, { token: 'x'.repeat(600) })).status).toBe(401);
    expect(h.channel.clients()).toHaveLength(0);
  });

  it('the raw refusal for a bad token carries no frame either', async () => {
    const raw = await rawUpgrade(h.port, '/v1/operator', { Authorization: 'Bearer tok_nobody' });
    expect(raw.split('\r\n')[0]).toBe('HTTP/1.1 401 Unauthorized');
  });

  it('two credentials at once → 401 (one connection, one identity)', async () => {
    const res = await attempt(h.url, { token: TOKENS.alice, protocols: [PROTOCOL, `bearer.${TOKENS.bob}`] });
    expect(res).toEqual({ status: 401, opened: false, messages: 0 });
  });

  it('a platform token cannot open the operator channel → 403', async () => {
    expect(await attempt(h.url, { token: TOKENS.platform })).toEqual({ status: 403, opened: false, messages: 0 });
  });

  it('wrong origin → 403 before the token is even checked; lookalikes too', async () => {
    const calls = h.verifier.calls;
    const base = `http://127.0.0.1:${h.port}`;
    for (const origin of [
      'https://evil.example',
      'https://console.example.evil.example',
      `${base}.evil.example`,
      'http://console.example', // scheme differs
      'https://console.example:8443', // port differs
      'null',
      `${base}@evil.example`,
      'https://console.example/path',
    ]) {
      const res = await attempt(h.url, { token: TOKENS.alice, origin });
      expect(res, origin).toEqual({ status: 403, opened: false, messages: 0 });
    }
    expect(h.verifier.calls).toBe(calls);
    const raw = await rawUpgrade(h.port, '/v1/operator', { Authorization: `Bearer ${TOKENS.alice}`, Origin: 'https://evil.example' });
    expect(raw.split('\r\n')[0]).toBe('HTTP/1.1 403 Forbidden');
  });

  it('a subprotocol list without contained.operator.v1 → 400', async () => {
    expect((await attempt(h.url, { token: TOKENS.alice, protocols: ['chat'] })).status).toBe(400);
  });

  it('a verifier that throws fails closed (503), and the host does not crash', async () => {
    h.verifier.verify = async () => {
      throw new Error('store down');
    };
    expect(await attempt(h.url, { token: TOKENS.alice })).toEqual({ status: 503, opened: false, messages: 0 });
  });

  it('another path on the same server is not the operator channel (404 when nobody else handles it)', async () => {
    const res = await attempt(h.url.replace('/v1/operator', '/v1/operatorx'), { token: TOKENS.alice });
    expect(res.status).toBe(404);
  });
});

describe('accepted handshakes', () => {
  it('bearer header: hello names the operator and role, then the snapshot', async () => {
    const c = await connectReady(h.url, TOKENS.alice);
    const hello = c.messages[0];
    expect(hello).toMatchObject({ type: 'hello', protocol: PROTOCOL, operator: { name: 'alice', role: 'approver' } });
    expect(c.messages[1]?.type).toBe('snapshot');
    expect(c.invalid).toEqual([]);
    expect(h.channel.clients().map((x) => x.operator.name)).toEqual(['alice']);
    await c.close();
  });

  it('browser style: token in Sec-WebSocket-Protocol; only contained.operator.v1 is echoed back', async () => {
    const c = await connect(h.url, { protocols: [PROTOCOL, `bearer.${TOKENS.bob}`] });
    expect(c.ws.protocol).toBe(PROTOCOL);
    await c.ready();
    expect(c.messages[0]).toMatchObject({ type: 'hello', operator: { name: 'bob' } });
    await c.close();
    // A bad token that way is refused like any other.
    expect((await attempt(h.url, { protocols: [PROTOCOL, 'bearer.tok_nobody'] })).status).toBe(401);
  });

  it('the raw 101 response echoes the subprotocol without the token', async () => {
    const raw = await rawUpgrade(h.port, '/v1/operator', { 'Sec-WebSocket-Protocol': `${PROTOCOL}, bearer.${TOKENS.bob}` });
    expect(raw).toMatch(/^HTTP\/1\.1 101 /);
    expect(raw).toContain(`Sec-WebSocket-Protocol: ${PROTOCOL}\r\n`);
    expect(raw).not.toContain(TOKENS.bob);
  });

  it('ticket: works once, then refused; an expired one is refused', async () => {
    const operator = { tokenId: 'tok-ada', name: 'ada', role: 'admin' as const };
    const { ticket } = await h.channel.issueTicket(operator);
    const c = await connect(h.url, { query: `?ticket=${ticket}`, origin: ALLOWED_ORIGIN });
    await c.ready();
    expect(c.messages[0]).toMatchObject({ type: 'hello', operator: { name: 'ada', role: 'admin' } });
    expect(await attempt(h.url, { query: `?ticket=${ticket}` })).toEqual({ status: 401, opened: false, messages: 0 });
    await c.close();
    expect((await attempt(h.url, { query: '?ticket=made-up' })).status).toBe(401);
  });

  it('ticket TTL is 30 s by default', async () => {
    let now = 1_000_000;
    const store = createTicketStore({ now: () => now });
    const op = { tokenId: 't', name: 'n', role: 'viewer' as const };
    const a = await store.issue(op);
    expect(a.expiresAt).toBe(now + 30_000);
    now += 29_999;
    expect(await store.redeem(a.ticket)).toEqual(op);
    const b = await store.issue(op);
    now += 30_000;
    expect(await store.redeem(b.ticket)).toBeUndefined();
  });

  it('the in-memory ticket store stays bounded', async () => {
    const store = createTicketStore({ records: memorySecrets({ maxOutstanding: 3 }) });
    const op = { tokenId: 't', name: 'n', role: 'viewer' as const };
    const tickets: string[] = [];
    for (let i = 0; i < 5; i++) tickets.push((await store.issue(op)).ticket);
    expect(await store.redeem(tickets[0] as string)).toBeUndefined();
    expect(await store.redeem(tickets[1] as string)).toBeUndefined();
    expect(await store.redeem(tickets[4] as string)).toEqual(op);
  });

  it('a ticket kept in the host store is redeemed once, through another store object (another host, or after a restart)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-tickets-'));
    const one = await openSqliteStore(path.join(dir, 'contained.db'));
    const two = await openSqliteStore(path.join(dir, 'contained.db'));
    try {
      const op = { tokenId: 't', name: 'n', role: 'viewer' as const };
      const { ticket } = await createTicketStore({ records: one }).issue(op);
      expect(await createTicketStore({ records: two }).redeem(ticket)).toEqual(op);
      expect(await createTicketStore({ records: one }).redeem(ticket)).toBeUndefined();
      let now = Date.now();
      const late = await createTicketStore({ records: one, now: () => now }).issue(op);
      now += 30_001;
      expect(await createTicketStore({ records: two, now: () => now }).redeem(late.ticket)).toBeUndefined();
    } finally {
      await one.close();
      await two.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('allowed origin and same-host origins are accepted', async () => {
    for (const origin of [ALLOWED_ORIGIN, `http://127.0.0.1:${h.port}`, `http://localhost:${h.port}`]) {
      const c = await connectReady(h.url, TOKENS.viewer, { origin });
      expect(c.messages[0]).toMatchObject({ type: 'hello' });
      await c.close();
    }
  });
});

describe('auth predicates (pure)', () => {
  it('compileOrigins refuses bad configuration at start-up', () => {
    expect(() => compileOrigins(['console.example'])).toThrow(TypeError);
    expect(() => compileOrigins(['https://console.example/'])).toThrow(TypeError);
    expect(() => compileOrigins(['*'])).toThrow(TypeError);
    expect([...compileOrigins(['HTTPS://Console.Example:443'])]).toEqual(['https://console.example']);
  });

  it('normaliseOrigin fails closed', () => {
    for (const bad of ['', 'null', 'file:///etc', 'javascript:alert(1)', 'http://a b', 'http://user@host', 'http://host/p', 'http://host?q', 'http://host#f']) {
      expect(normaliseOrigin(bad), bad).toBeUndefined();
    }
    expect(normaliseOrigin('http://[::1]:80')).toBe('http://[::1]');
  });

  it('checkOrigin: absent passes (non-browser), several or unparsable refuse', () => {
    const allowed = compileOrigins([ALLOWED_ORIGIN]);
    const same = sameHostOrigins({ address: '127.0.0.1', family: 'IPv4', port: 7420 });
    expect(checkOrigin(undefined, allowed, same).ok).toBe(true);
    expect(checkOrigin('http://localhost:7420', allowed, same).ok).toBe(true);
    expect(checkOrigin('http://localhost:7421', allowed, same).ok).toBe(false);
    expect(checkOrigin(['https://console.example', 'https://console.example'], allowed, same).ok).toBe(false);
    expect(checkOrigin('https://console.example, https://evil.example', allowed, same).ok).toBe(false);
    const lan = sameHostOrigins({ address: '192.168.1.5', family: 'IPv4', port: 7420 });
    expect(checkOrigin('http://192.168.1.5:7420', allowed, lan).ok).toBe(true);
    expect(checkOrigin('http://localhost:7420', allowed, lan).ok).toBe(false);
  });

  it('readCredential: exactly one credential, well-formed', () => {
    const url = '/v1/operator';
    expect(readCredential({ url })).toMatchObject({ ok: false, status: 401 });
    expect(readCredential({ url, authorization: 'bearer abc' })).toMatchObject({ ok: true, credential: { kind: 'bearer', token: 'abc' } });
    expect(readCredential({ url, authorization: 'Bearer a b' })).toMatchObject({ ok: false, status: 401 });
    expect(readCredential({ url, protocol: `${PROTOCOL}, bearer.abc` })).toMatchObject({ ok: true, offersProtocol: true, credential: { kind: 'subprotocol', token: 'abc' } });
    expect(readCredential({ url, protocol: 'bearer.abc' })).toMatchObject({ ok: false, status: 400 });
    expect(readCredential({ url, protocol: `${PROTOCOL}, bearer.a, bearer.b` })).toMatchObject({ ok: false, status: 401 });
    expect(readCredential({ url, protocol: `${PROTOCOL}, bearer.` })).toMatchObject({ ok: false, status: 401 });
    expect(readCredential({ url, protocol: `${PROTOCOL}, bearer.a/b` })).toMatchObject({ ok: false, status: 400 });
    expect(readCredential({ url: `${url}?ticket=t1` })).toMatchObject({ ok: true, credential: { kind: 'ticket', ticket: 't1' } });
    expect(readCredential({ url: `${url}?ticket=t1&ticket=t2` })).toMatchObject({ ok: false, status: 401 });
    expect(readCredential({ url: `${url}?ticket=t1`, authorization: 'Bearer abc' })).toMatchObject({ ok: false, status: 401 });
    // Offering the subprotocol alone next to a bearer header is one credential, not two.
    expect(readCredential({ url, authorization: 'Bearer abc', protocol: PROTOCOL })).toMatchObject({ ok: true, offersProtocol: true });
  });
});
