/**
 * The console's HTTP side on a real host over loopback (no browser): security headers, static
 * files, the Host/Origin checks, login by token and by one-time code, the session cookie's
 * attributes, CSRF on every state change, tickets for the operator channel, roles on grant
 * changes, grant add/narrow through the host's rules, logout and token revocation.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fixture, startFixture } from '../host/helpers/host-fixture.js';
import { channelFor, login, post, raw } from './helpers.js';

let fx: Fixture;
let base: string;
beforeAll(async () => {
  fx = await startFixture();
  base = fx.host.url as string;
});
afterAll(async () => {
  await fx?.close();
});

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('page and assets', () => {
  it('serves the page with a strict CSP and no inline script or style', async () => {
    const res = await raw(base, 'GET', '/console/');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.headers['content-security-policy']).toContain("default-src 'self'");
    expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    expect(res.headers['content-security-policy']).not.toContain('unsafe-inline');
    expect(res.headers['x-frame-options']).toBe('DENY');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.body).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
    expect(res.body).not.toMatch(/\sstyle=|\son[a-z]+=/i);
    expect(res.body).not.toMatch(/https?:\/\/(?!127)/);
    expect((await raw(base, 'GET', '/')).headers.location).toBe('/console/');
  });

  it('serves listed assets only: no traversal, no unknown files', async () => {
    const js = await raw(base, 'GET', '/console/static/app.js');
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toMatch(/^text\/javascript/);
    expect(js.body).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/);
    for (const path of ['/console/static/../../host.ts', '/console/static/%2e%2e/index.ts', '/console/static/..%2findex.ts', '/console/static/', '/console/static/nope.js']) {
      expect((await raw(base, 'GET', path)).status, path).toBe(404);
    }
  });

  it('refuses a Host header that is not this server (DNS rebinding), and API calls from other origins', async () => {
    const port = new URL(base).port;
    expect((await raw(base, 'GET', '/console/', { headers: { host: `evil.example:${port}` } })).status).toBe(403);
    for (const site of ['cross-site', 'same-site']) {
      expect((await raw(base, 'GET', '/console/api/session', { headers: { 'sec-fetch-site': site } })).status, site).toBe(403);
    }
    // The page itself may be opened from a link anywhere (the cookie is SameSite=Strict anyway).
    expect((await raw(base, 'GET', '/console/', { headers: { 'sec-fetch-site': 'cross-site' } })).status).toBe(200);
    expect((await raw(base, 'GET', '/console/', { headers: { host: `localhost:${port}` } })).status).toBe(200);
  });
});

describe('login', () => {
  it('sets a short-lived HttpOnly SameSite=Strict cookie and returns the CSRF token, never the operator token', async () => {
    const s = await login(base, { token: fx.tokens['alice'] as string });
    expect(s.setCookie).toMatch(/^ctd_session=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/; Max-Age=\d+$/);
    expect(s.body).toMatchObject({ operator: { name: 'alice', role: 'approver' }, csrf: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) });
    expect(JSON.stringify(s.body)).not.toContain(fx.tokens['alice']);
    const again = await raw(base, 'GET', '/console/api/session', { headers: { cookie: s.cookie } });
    expect(again.status).toBe(200);
    expect(again.json()).toMatchObject({ operator: { name: 'alice' }, csrf: s.csrf });
  });

  it('refuses bad tokens (401), platform tokens (403), a missing or foreign Origin (403), non-JSON bodies (415)', async () => {
    expect((await post(base, '/console/api/login', { token: 'ctd_' + 'x'.repeat(43) })).status).toBe(401);
    expect((await post(base, '/console/api/login', { token: 'nope' })).status).toBe(401);
    const platform = await post(base, '/console/api/login', { token: fx.tokens['plat'] });
    expect(platform.status).toBe(403);
    expect(platform.json().error.code).toBe('FORBIDDEN');
    const noOrigin = await raw(base, 'POST', '/console/api/login', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: fx.tokens['alice'] }) });
    expect(noOrigin.status).toBe(403);
    expect((await post(base, '/console/api/login', { token: fx.tokens['alice'] }, undefined, { origin: 'http://127.0.0.1.evil.example' })).status).toBe(403);
    expect((await post(base, '/console/api/login', { token: fx.tokens['alice'] }, undefined, { origin: 'null' })).status).toBe(403);
    const form = await raw(base, 'POST', '/console/api/login', { headers: { origin: base, 'content-type': 'text/plain' }, body: JSON.stringify({ token: fx.tokens['alice'] }) });
    expect(form.status).toBe(415);
    expect((await post(base, '/console/api/login', { token: fx.tokens['alice'], extra: 1 })).status).toBe(400);
  });

  it('accepts a one-time login code exactly once', async () => {
    const link = await fx.host.console?.loginLink(fx.tokens['erin'] as string);
    expect(link?.path).toMatch(/^\/console\/login#code=[A-Za-z0-9_-]{43}$/);
    const code = (link?.path ?? '').split('#code=')[1] as string;
    expect(link?.path).not.toContain(fx.tokens['erin']);
    const s = await login(base, { code });
    expect(s.body.operator).toEqual({ name: 'erin', role: 'admin' });
    expect((await post(base, '/console/api/login', { code })).status).toBe(401);
    expect(await fx.host.console?.loginLink('ctd_not-a-token')).toBeUndefined();
  });
});

describe('CSRF and tickets', () => {
  it('refuses every state change without the session CSRF token, with a wrong one, or from another origin', async () => {
    const s = await login(base, { token: fx.tokens['erin'] as string });
    const other = await login(base, { token: fx.tokens['alice'] as string });
    const grant = { subject: { digest: DIGEST }, capability: 'notes', methods: ['read'], mode: 'contained', reason: 'csrf test' };
    const wrong = `${s.csrf.slice(0, -1)}${s.csrf.endsWith('A') ? 'B' : 'A'}`;
    for (const [path, body] of [
      ['/console/api/ticket', {}],
      ['/console/api/logout', {}],
      ['/console/api/grants', grant],
    ] as const) {
      const none = await post(base, path, body, { cookie: s.cookie });
      expect(none.status, path).toBe(403);
      expect(none.json().error).toMatchObject({ code: 'FORBIDDEN', message: expect.stringMatching(/CSRF/) });
      expect((await post(base, path, body, { cookie: s.cookie, csrf: other.csrf })).status, path).toBe(403);
      expect((await post(base, path, body, { cookie: s.cookie, csrf: wrong })).status, path).toBe(403);
      expect((await post(base, path, body, { cookie: s.cookie, csrf: s.csrf }, { origin: 'http://127.0.0.1:1' })).status, path).toBe(403);
    }
    // Still logged in: none of the refused requests did anything.
    expect((await raw(base, 'GET', '/console/api/session', { headers: { cookie: s.cookie } })).status).toBe(200);
    expect((await fx.host.store.listGrants()).some((g) => g.reason === 'csrf test')).toBe(false);
  });

  it('issues single-use tickets that open the operator channel as the session operator', async () => {
    const s = await login(base, { token: fx.tokens['vic'] as string });
    const ticket = (await post(base, '/console/api/ticket', {}, s)).json() as { ticket: string; path: string };
    expect(ticket.path).toBe('/v1/operator');
    const url = `${base.replace(/^http/, 'ws')}/v1/operator?ticket=${encodeURIComponent(ticket.ticket)}`;
    const ws = new WebSocket(url, ['contained.operator.v1'], { origin: base });
    const hello = await new Promise<any>((resolve, reject) => {
      ws.once('message', (d) => resolve(JSON.parse(String(d))));
      ws.once('error', reject);
    });
    expect(hello.operator).toEqual({ name: 'vic', role: 'viewer' });
    ws.close();
    const reuse = new WebSocket(url, ['contained.operator.v1'], { origin: base });
    const status = await new Promise<number>((resolve) => reuse.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(401);
  });

  it('a viewer\'s forged decision over its ticketed channel is refused by the host', async () => {
    const s = await login(base, { token: fx.tokens['vic'] as string });
    const { ws, next } = await channelFor(base, s);
    for (let m = await next(); !(m.type === 'snapshot' && m.complete); m = await next()) {
      // Skip events until the snapshot is complete.
    }
    ws.send(JSON.stringify({ type: 'decide', id: 'f1', requestId: 'anything', verdict: 'approve' }));
    let reply = await next();
    while (reply.id !== 'f1') reply = await next();
    expect(reply).toMatchObject({ type: 'error', code: 'FORBIDDEN' });
    ws.close();
  });
});

describe('grants through the console', () => {
  it('only admins add or narrow grants', async () => {
    const grant = { subject: { digest: DIGEST }, capability: 'notes', methods: ['read'], mode: 'contained', reason: 'role test' };
    for (const who of ['vic', 'alice']) {
      const s = await login(base, { token: fx.tokens[who] as string });
      const res = await post(base, '/console/api/grants', grant, s);
      expect(res.status, who).toBe(403);
      expect(res.json().error.code).toBe('FORBIDDEN');
    }
  });

  it('adds a grant under the host\'s risk rules, and narrows one without ever widening it', async () => {
    const s = await login(base, { token: fx.tokens['erin'] as string });
    const refused = await post(base, '/console/api/grants', { subject: { digest: DIGEST }, capability: 'records', methods: ['execute'], mode: 'contained', reason: 'risky' }, s);
    expect(refused.json().error.code).toBe('GRANT_REFUSED');
    const added = await post(base, '/console/api/grants', { subject: { digest: DIGEST }, capability: 'notes', methods: ['read', 'list'], mode: 'contained', reason: 'read notes' }, s);
    expect(added.status).toBe(201);
    const g = added.json().grant;
    expect(g).toMatchObject({ capability: 'notes', methods: ['read', 'list'], mode: 'contained', createdBy: 'erin' });

    const wider = await post(base, `/console/api/grants/${g.id}/narrow`, { methods: ['read', 'write'], reason: 'more' }, s);
    expect(wider.json().error.code).toBe('NOT_NARROWER');
    const laxer = await post(base, `/console/api/grants/${g.id}/narrow`, { mode: 'contained', approvals: 1, reason: 'same' }, s);
    expect(laxer.status).toBe(201);
    const g2 = laxer.json().grant;
    const back = await post(base, `/console/api/grants/${g2.id}/narrow`, { mode: 'assisted', reason: 'more oversight' }, s);
    expect(back.status).toBe(201);
    const g3 = back.json().grant;
    expect(g3).toMatchObject({ mode: 'assisted', methods: ['read', 'list'] });
    expect((await post(base, `/console/api/grants/${g3.id}/narrow`, { mode: 'executed', reason: 'less' }, s)).json().error.code).toBe('NOT_NARROWER');
    const narrowed = await post(base, `/console/api/grants/${g3.id}/narrow`, { methods: ['read'], scope: { root: `${fx.dir}/notes`, readOnly: true }, reason: 'read only' }, s);
    expect(narrowed.status).toBe(201);
    expect(narrowed.json().grant).toMatchObject({ methods: ['read'], scope: { readOnly: true } });
    expect(narrowed.json().revoked).toMatchObject({ id: g3.id, revokedBy: 'erin', revokeReason: expect.stringContaining(narrowed.json().grant.id) });
    expect((await post(base, `/console/api/grants/${g3.id}/narrow`, { reason: 'again' }, s)).json().error.code).toBe('ALREADY_RESOLVED');
    expect((await fx.host.store.getGrant(g.id))?.revokedAt).toBeTypeOf('number');
  });
});

describe('logout and revocation', () => {
  it('logout ends the session, clears the cookie and closes its channel connections', async () => {
    const s = await login(base, { token: fx.tokens['bob'] as string });
    const { ws } = await channelFor(base, s);
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    const out = await post(base, '/console/api/logout', {}, s);
    expect(out.status).toBe(204);
    expect(String(out.headers['set-cookie'])).toMatch(/^ctd_session=; HttpOnly; SameSite=Strict; Path=\/; Max-Age=0/);
    expect(await closed).toBe(1008);
    expect((await raw(base, 'GET', '/console/api/session', { headers: { cookie: s.cookie } })).status).toBe(401);
    expect((await post(base, '/console/api/ticket', {}, s)).status).toBe(401);
  });

  it('a revoked token ends its console sessions at the next request', async () => {
    const { createToken } = await import('../../host/tokens.js');
    const { token, record } = await createToken({ name: 'temp-op', role: 'approver', createdBy: 'test' }, fx.host.store);
    const s = await login(base, { token });
    await fx.host.store.revokeToken(record.id, Date.now());
    expect((await raw(base, 'GET', '/console/api/session', { headers: { cookie: s.cookie } })).status).toBe(401);
    expect((await post(base, '/console/api/login', { token })).status).toBe(401);
  });
});
