/**
 * The console's routes on the host's HTTP server: the page and its assets under `/console/`, and a
 * small JSON API under `/console/api/` for what a browser cannot do over the operator WebSocket
 * (log in, get a connection ticket, add or narrow a grant, list a run's requests).
 *
 * Every route: `Host` must name this server (DNS rebinding); the API answers only its own page
 * (`Sec-Fetch-Site` same-origin or none). Every state change (POST): an `Origin` of this server, JSON only, and — once logged in —
 * the session's CSRF token in `X-CSRF-Token`. Roles are the host's: `platform` tokens cannot log
 * in (as on the channel), grant changes need `admin` (as the channel's grant messages do), and
 * decisions are not made here at all — they go over the operator WebSocket, where the channel and
 * the host backend enforce them. The raw operator token never reaches page JavaScript: the page
 * gets a single-use, 30-second ticket per connection.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import { readJson, validate } from '../api/body.js';
import { sendError } from '../api/respond.js';
import type { HttpRoute, HttpServices, RouteContext } from '../http.js';
import { type Operator, roleAtLeast } from '../model.js';
import { hashToken } from '../tokens.js';
import { addGrant, addGrantSchema, narrowGrant, narrowGrantSchema } from './grants.js';
import { type OriginGuard, parseCookies, securityHeaders, sendConsoleJson, sessionCookie } from './http.js';
import { mcpToolRoutes } from './mcp-tools.js';
import { notifyStatus } from './notify.js';
import { passkeyRoutes } from './passkeys.js';
import { auditQuerySchema, auditSearch, createVerifier, trustReport } from './oversight.js';
import type { ConsolePorts } from './ports.js';
import { checkCsrf, type Session, type SessionStore } from './sessions.js';
import type { Asset } from './static.js';

export const SESSION_COOKIE = 'ctd_session';
export const CSRF_HEADER = 'x-csrf-token';
/** Largest console JSON body, bytes. */
export const MAX_CONSOLE_BODY_BYTES = 64 * 1024;

const loginSchema = z.union([z.strictObject({ token: z.string().min(1).max(512) }), z.strictObject({ code: z.string().min(1).max(512) })]);
const emptySchema = z.strictObject({});

export interface RouteDeps {
  /** The host services the console uses. */
  ports: ConsolePorts;
  /** The HTTP server's: the token verifier and the operator channel (tickets, disconnect). */
  services: Pick<HttpServices, 'verifier' | 'channel'>;
  sessions: SessionStore;
  assets: ReadonlyMap<string, Asset>;
  guard: OriginGuard;
  secureCookies: boolean;
  maxAgeMs: number;
  now: () => number;
  logger: Logger | undefined;
  /** Close the operator connections a session opened. */
  disconnect(session: Session, reason: string): void;
}

/** The operator a ticket is issued to, tagged with the session so logout can close its sockets. */
export type TaggedOperator = Operator & { consoleSession?: string };

export function consoleRoutes(deps: RouteDeps): HttpRoute[] {
  const { ports, services, sessions, assets, guard } = deps;

  /** Wrap a handler: host check first, console headers on every error answer. */
  const route = (method: HttpRoute['method'], path: string, handler: (ctx: RouteContext) => Promise<void> | void): HttpRoute => ({
    method,
    path,
    name: `console ${path}`,
    async handler(ctx) {
      try {
        guard.checkHost(ctx.req);
        if (path.startsWith('/console/api/')) guard.checkFetchSite(ctx.req);
        if (method !== 'GET') guard.checkStateChange(ctx.req);
        await handler(ctx);
      } catch (error) {
        if (!(error instanceof ContainedError)) deps.logger?.error({ err: error, path: ctx.url.pathname }, 'console route failed');
        for (const [k, v] of Object.entries(securityHeaders())) if (!ctx.res.headersSent) ctx.res.setHeader(k, v);
        sendError(ctx.res, error);
      }
    },
  });

  async function session(req: IncomingMessage, res: ServerResponse, options: { csrf: boolean }): Promise<Session> {
    const found = await sessions.get(parseCookies(req.headers.cookie).get(SESSION_COOKIE));
    if (!found) throw new ContainedError('UNAUTHENTICATED', 'not logged in (or the session expired)');
    // A revoked token ends its sessions at once, whatever their age.
    const record = await ports.tokens.findTokenByHash(found.tokenHash);
    if (!record || record.revokedAt !== undefined) {
      await sessions.destroy(found.key);
      deps.disconnect(found, 'token revoked');
      res.setHeader('set-cookie', sessionCookie(SESSION_COOKIE, '', { maxAgeSeconds: 0, secure: deps.secureCookies }));
      throw new ContainedError('UNAUTHENTICATED', 'the token of this session was revoked');
    }
    if (options.csrf && !checkCsrf(found, req.headers[CSRF_HEADER])) throw new ContainedError('FORBIDDEN', `missing or wrong CSRF token (${CSRF_HEADER} header)`);
    return found;
  }

  const describe = (s: Session): Record<string, unknown> => ({ operator: { name: s.operator.name, role: s.operator.role }, csrf: s.csrf, expiresAt: s.expiresAt });

  function serveAsset(res: ServerResponse, name: string): void {
    const asset = assets.get(name);
    if (!asset) throw new ContainedError('NOT_FOUND', 'no such console file');
    res.writeHead(200, securityHeaders({ 'content-type': asset.type, 'content-length': String(asset.body.length), 'cache-control': name === 'index.html' ? 'no-store' : 'no-cache' }));
    res.end(asset.body);
  }

  const page = ({ res }: RouteContext): void => serveAsset(res, 'index.html');
  const verify = createVerifier(ports.oversight, ports.dataDir, deps.now, ports.auditKeys);
  const subjectParam = z.string().regex(/^sha256:[0-9a-f]{64}$/).optional();

  return [
    route('GET', '/', ({ res }) => {
      res.writeHead(302, securityHeaders({ location: '/console/', 'content-length': '0' }));
      res.end();
    }),
    route('GET', '/console', ({ res }) => {
      res.writeHead(301, securityHeaders({ location: '/console/', 'content-length': '0' }));
      res.end();
    }),
    route('GET', '/console/', page),
    route('GET', '/console/login', page),
    route('GET', '/console/static/*', ({ res, url }) => serveAsset(res, url.pathname.slice('/console/static/'.length))),

    route('GET', '/console/api/session', async ({ req, res }) => {
      sendConsoleJson(res, 200, describe(await session(req, res, { csrf: false })));
    }),

    route('POST', '/console/api/login', async ({ req, res }) => {
      const body = await readJson(req, loginSchema, MAX_CONSOLE_BODY_BYTES);
      let found: { operator: Operator; tokenHash: string } | undefined;
      if ('token' in body) {
        const operator = await services.verifier.verify(body.token);
        if (operator) found = { operator, tokenHash: hashToken(body.token) };
      } else {
        found = await sessions.redeemCode(body.code);
        // The token behind a login code may have been revoked since.
        const record = found ? await ports.tokens.findTokenByHash(found.tokenHash) : undefined;
        if (!record || record.revokedAt !== undefined) found = undefined;
      }
      if (!found) throw new ContainedError('UNAUTHENTICATED', 'invalid, expired or revoked token or login code');
      if (!roleAtLeast(found.operator.role, 'viewer')) throw new ContainedError('FORBIDDEN', `role ${found.operator.role} may not use the operator console`);
      const created = await sessions.create(found.operator, found.tokenHash);
      deps.logger?.info({ operator: found.operator.name, role: found.operator.role, via: 'token' in body ? 'token' : 'code' }, 'console login');
      sendConsoleJson(res, 200, describe(created.session), { 'set-cookie': sessionCookie(SESSION_COOKIE, created.cookie, { maxAgeSeconds: deps.maxAgeMs / 1000, secure: deps.secureCookies }) });
    }),

    route('POST', '/console/api/logout', async ({ req, res }) => {
      const s = await session(req, res, { csrf: true });
      await sessions.destroy(s.key);
      deps.disconnect(s, 'logged out');
      deps.logger?.info({ operator: s.operator.name }, 'console logout');
      res.writeHead(204, securityHeaders({ 'set-cookie': sessionCookie(SESSION_COOKIE, '', { maxAgeSeconds: 0, secure: deps.secureCookies }), 'cache-control': 'no-store' }));
      res.end();
    }),

    route('POST', '/console/api/ticket', async ({ req, res }) => {
      const s = await session(req, res, { csrf: true });
      await readJson(req, emptySchema, MAX_CONSOLE_BODY_BYTES);
      const tagged: TaggedOperator = { ...s.operator, consoleSession: s.key };
      const ticket = await services.channel.issueTicket(tagged);
      sendConsoleJson(res, 200, { ticket: ticket.ticket, expiresAt: ticket.expiresAt, path: '/v1/operator' });
    }),

    route('GET', '/console/api/capabilities', async ({ req, res }) => {
      await session(req, res, { csrf: false });
      const capabilities = [...ports.capabilities.entries()].map(([name, instance]) => {
        const d = instance.describe();
        return { name, kind: d.capability, description: d.description, scope: d.scope, methods: d.methods.map((m) => ({ name: m.name, description: m.description, risk: m.risk })) };
      });
      sendConsoleJson(res, 200, { capabilities });
    }),

    route('GET', '/console/api/runs/:id/requests', async ({ req, res, params }) => {
      await session(req, res, { csrf: false });
      const runId = params['id'] ?? '';
      if (!/^[A-Za-z0-9-]{1,64}$/.test(runId)) throw new ContainedError('INVALID_ARGUMENT', 'malformed run id');
      sendConsoleJson(res, 200, { requests: await ports.requests.viewsForRun(runId, { limit: 500 }) });
    }),

    route('GET', '/console/api/trust', async ({ req, res, url }) => {
      await session(req, res, { csrf: false });
      const subject = validate(subjectParam, url.searchParams.get('subject') ?? undefined, 'subject');
      sendConsoleJson(res, 200, { subjects: await trustReport(ports.oversight, deps.now(), subject) });
    }),

    route('GET', '/console/api/audit', async ({ req, res, url }) => {
      await session(req, res, { csrf: false });
      const query = validate(auditQuerySchema, Object.fromEntries([...url.searchParams].filter(([, v]) => v !== '')), 'query');
      sendConsoleJson(res, 200, { records: await auditSearch(ports.oversight, query) });
    }),

    route('GET', '/console/api/audit/verify', async ({ req, res }) => {
      await session(req, res, { csrf: false });
      sendConsoleJson(res, 200, await verify());
    }),

    route('GET', '/console/api/notify', async ({ req, res, url }) => {
      const s = await session(req, res, { csrf: false });
      sendConsoleJson(res, 200, await notifyStatus(ports.notify, s.operator, url.searchParams));
    }),

    ...passkeyRoutes({ passkeys: ports.passkeys, route, session }),
    ...mcpToolRoutes({ mcpTools: ports.mcpTools, route, session }),

    route('POST', '/console/api/grants', async ({ req, res }) => {
      const s = await session(req, res, { csrf: true });
      const body = await readJson(req, addGrantSchema, MAX_CONSOLE_BODY_BYTES);
      const result = await addGrant(ports, s.operator, body);
      deps.logger?.info({ grantId: result.grant.id, by: s.operator.name }, 'console grant added');
      sendConsoleJson(res, 201, result);
    }),

    route('POST', '/console/api/grants/:id/narrow', async ({ req, res, params }) => {
      const s = await session(req, res, { csrf: true });
      const body = await readJson(req, narrowGrantSchema, MAX_CONSOLE_BODY_BYTES);
      const result = await narrowGrant(ports, s.operator, params['id'] ?? '', body);
      deps.logger?.info({ grantId: result.grant.id, from: result.revoked.id, by: s.operator.name }, 'console grant narrowed');
      sendConsoleJson(res, 201, result);
    }),
  ];
}
