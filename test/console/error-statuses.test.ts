/**
 * An error answer's HTTP status follows from its code alone (runtime/errors.ts): a refusal by the
 * grant rules or the trust rules is a 4xx carrying that code, never a 500 that reads like a host
 * fault. End to end through the console's grant routes on a real host, and through `sendError`
 * for the refusals no HTTP route reaches today (promotions and decisions go over the operator
 * channel, whose answers an HTTP adapter may carry later). `sendError` has no status map of its
 * own, and the OpenAPI document names each code under the registry's status.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendError } from '../../host/api/respond.js';
import { ContainedError, type ErrorCode, ERRORS } from '../../runtime/errors.js';
import { type Fixture, startFixture } from '../host/helpers/host-fixture.js';
import { login, post, raw } from './helpers.js';

const DIGEST = `sha256:${'b'.repeat(64)}`;

describe('console grant routes: refusals are 4xx with their code', () => {
  let fx: Fixture;
  let base: string;
  beforeAll(async () => {
    fx = await startFixture();
    base = fx.host.url as string;
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('GRANT_REFUSED (a destructive method made autonomous) is 422', async () => {
    const s = await login(base, { token: fx.tokens['erin'] as string });
    const res = await post(base, '/console/api/grants', { subject: { digest: DIGEST }, capability: 'records', methods: ['execute'], mode: 'contained', reason: 'risky' }, s);
    expect(res.json().error.code).toBe('GRANT_REFUSED');
    expect(res.status).toBe(422);
  });

  it('INVALID_SCOPE (a grant scope wider than the host instance) is 400', async () => {
    const s = await login(base, { token: fx.tokens['erin'] as string });
    const res = await post(base, '/console/api/grants', { subject: { digest: DIGEST }, capability: 'notes', methods: ['read'], mode: 'assisted', scope: { root: path.dirname(fx.dir) }, reason: 'wider' }, s);
    expect(res.json().error.code).toBe('INVALID_SCOPE');
    expect(res.status).toBe(400);
  });

  it('ALREADY_RESOLVED (narrowing a grant that is no longer active) is 409', async () => {
    const s = await login(base, { token: fx.tokens['erin'] as string });
    const added = await post(base, '/console/api/grants', { subject: { digest: DIGEST }, capability: 'notes', methods: ['read', 'list'], mode: 'assisted', reason: 'read notes' }, s);
    expect(added.status).toBe(201);
    const id = added.json().grant.id as string;
    expect((await post(base, `/console/api/grants/${id}/narrow`, { methods: ['read'], reason: 'less' }, s)).status).toBe(201);
    const again = await post(base, `/console/api/grants/${id}/narrow`, { methods: ['read'], reason: 'again' }, s);
    expect(again.json().error.code).toBe('ALREADY_RESOLVED');
    expect(again.status).toBe(409);
  });

  it('NOT_NARROWER (a narrowing that would widen the grant) is 400 and names the field; INVALID_SCOPE keeps its scope meaning', async () => {
    const s = await login(base, { token: fx.tokens['erin'] as string });
    const added = await post(base, '/console/api/grants', { subject: { digest: DIGEST }, capability: 'notes', methods: ['read', 'list'], mode: 'assisted', approvals: 2, reason: 'read notes' }, s);
    const id = added.json().grant.id as string;
    for (const [change, field] of [
      [{ methods: ['read', 'write'] }, 'methods'],
      [{ mode: 'executed' }, 'mode'],
      [{ approvals: 1 }, 'approvals'],
    ] as const) {
      const res = await post(base, `/console/api/grants/${id}/narrow`, { ...change, reason: 'wider' }, s);
      expect(res.json().error, field).toMatchObject({ code: 'NOT_NARROWER', data: { field } });
      expect(res.status, field).toBe(400);
    }
    const badScope = await post(base, `/console/api/grants/${id}/narrow`, { scope: { root: 42 }, reason: 'bad scope' }, s);
    expect(badScope.json().error.code).toBe('INVALID_SCOPE');
    expect(badScope.status).toBe(400);
  });
});

describe('sendError: the refusals no HTTP route reaches yet are 4xx too', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((req, res) => sendError(res, new ContainedError(req.url?.slice(1) as ErrorCode, 'refused')));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it.each([
    ['PROMOTION_REFUSED', 409],
    ['STALE_REQUEST', 409],
    ['GRANT_REFUSED', 422],
    ['INVALID_SCOPE', 400],
  ] as const)('%s is %i', async (code, status) => {
    const res = await raw(base, 'GET', `/${code}`);
    expect(res.json().error.code).toBe(code);
    expect(res.status).toBe(status);
  });
});

describe('sendError: every code answers with the status the registry gives it', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((req, res) => sendError(res, new ContainedError(req.url?.slice(1) as ErrorCode, 'refused')));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it('no status map of its own: status from ERRORS, 500 for a code that is never an HTTP answer', async () => {
    for (const [code, spec] of Object.entries(ERRORS)) {
      const res = await raw(base, 'GET', `/${code}`);
      expect(res.json().error.code, code).toBe(code);
      expect(res.status, code).toBe(spec.status ?? 500);
    }
  });

  it('anything that is not a ContainedError is INTERNAL, 500, with no detail', async () => {
    const s = createServer((_req, res) => sendError(res, new Error('ENOENT: /etc/host/secret')));
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    const res = await raw(`http://127.0.0.1:${(s.address() as AddressInfo).port}`, 'GET', '/');
    await new Promise((resolve) => s.close(resolve));
    expect(res.status).toBe(500);
    expect(res.json().error.code).toBe('INTERNAL');
    expect(res.body).not.toContain('/etc');
  });
});

describe('docs/openapi.json documents each error code under the status the registry gives it', () => {
  it('every `CODE:` an error response names (IMAGE_* = every IMAGE_ code) has that status', () => {
    const spec = JSON.parse(readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8')) as { paths: Record<string, Record<string, { responses?: Record<string, { description?: string }> }>> };
    const codes = Object.keys(ERRORS) as ErrorCode[];
    const wrong: string[] = [];
    let checked = 0;
    for (const [route, operations] of Object.entries(spec.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        for (const [status, response] of Object.entries(operation.responses ?? {})) {
          if (Number(status) < 400) continue;
          for (const m of (response.description ?? '').matchAll(/(?:^|; or )([A-Z][A-Z0-9_]*\*?)(?::|$)/g)) {
            const named = m[1] as string;
            const matching = named.endsWith('*') ? codes.filter((c) => c.startsWith(named.slice(0, -1))) : codes.filter((c) => c === named);
            if (matching.length === 0) wrong.push(`${method} ${route} ${status}: ${named} is not a registry code`);
            for (const code of matching) {
              checked++;
              if (ERRORS[code].status !== Number(status)) wrong.push(`${method} ${route} ${status}: ${code} is ${ERRORS[code].status} in the registry`);
            }
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(30);
    expect(wrong).toEqual([]);
  });
});
