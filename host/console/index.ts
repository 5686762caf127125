/**
 * The web console (docs/console.md): a page served by the host that is a client of the operator
 * WebSocket protocol like any other — live pending requests, decisions, runs, grants, and the
 * review / trust / audit views when the host has them. This module wires sessions, static assets
 * and routes together; `startHost` mounts it on the host's HTTP server unless told not to.
 *
 * It receives the few host services it uses (`ConsolePorts`), never the host: decisions go over
 * the operator channel like any client's; grant changes through the grant service.
 *
 * Public API: `createWebConsole(ports, options)` → `{ routes(services), loginLink(token), close() }`.
 */
import type { Logger } from 'pino';
import type { HttpRoute, HttpServices } from '../http.js';
import { hashToken } from '../tokens.js';
import { createOriginGuard } from './http.js';
import type { ConsolePorts } from './ports.js';
import { consoleRoutes, type TaggedOperator } from './routes.js';
import { createSessionStore, SESSION_DEFAULTS, type Session, type SessionOptions } from './sessions.js';
import { defaultStaticDir, loadAssets } from './static.js';
import { webauthnBrowserAsset } from './passkeys.js';

export type { ConsolePorts } from './ports.js';
export { CSRF_HEADER, SESSION_COOKIE } from './routes.js';

export interface WebConsoleOptions {
  sessions?: SessionOptions;
  /** Mark the session cookie `Secure` (serve the console over HTTPS, e.g. behind a proxy). Default false. */
  secureCookies?: boolean;
  /** Where the page and its assets are (default: host/console/static). */
  staticDir?: string;
  /** How often expired sessions are swept and their sockets closed, ms (default 30 000). */
  sweepMs?: number;
  logger?: Logger;
  now?: () => number;
}

export interface WebConsole {
  /** The routes to mount on the host's HTTP server. */
  routes(services: HttpServices): HttpRoute[];
  /**
   * A one-time login link for an operator token (the token itself never appears in it): the path
   * `/console/login#code=…`, valid once, until `expiresAt`. Undefined if the token is not valid.
   */
  loginLink(token: string): Promise<{ path: string; expiresAt: number } | undefined>;
  close(): void;
}

export function createWebConsole(ports: ConsolePorts, options: WebConsoleOptions = {}): WebConsole {
  const now = options.now ?? Date.now;
  const sessions = createSessionStore(ports.sessions, { ...options.sessions, now });
  const assets = loadAssets(options.staticDir ?? defaultStaticDir());
  // The browser side of passkeys (signed approvals), served from this host like every asset.
  const webauthn = webauthnBrowserAsset();
  if (webauthn) assets.set('vendor/webauthn.js', webauthn);
  const maxAgeMs = options.sessions?.maxAgeMs ?? SESSION_DEFAULTS.maxAgeMs;
  let services: HttpServices | undefined;

  const disconnect = (session: Session, reason: string): void => {
    services?.channel.disconnect((op) => (op as TaggedOperator).consoleSession === session.key, reason);
  };
  const sweep = setInterval(() => {
    sessions.sweep().then(
      (gone) => {
        for (const session of gone) disconnect(session, 'session expired');
      },
      // The store may be unreachable for a while (a database restart): the next sweep tries again.
      (error: unknown) => options.logger?.warn({ err: error }, 'console: sweeping expired sessions failed'),
    );
  }, options.sweepMs ?? 30_000);
  sweep.unref();

  return {
    routes(s) {
      services = s;
      const logger = options.logger ?? s.logger;
      return consoleRoutes({
        ports,
        services: s,
        sessions,
        assets,
        guard: createOriginGuard(s.config.allowedOrigins, () => s.url()),
        secureCookies: options.secureCookies ?? false,
        maxAgeMs,
        now,
        logger: logger?.child({ component: 'console' }),
        disconnect,
      });
    },
    async loginLink(token) {
      const operator = await services?.verifier.verify(token);
      if (!operator) return undefined;
      const { code, expiresAt } = await sessions.issueCode(operator, hashToken(token));
      return { path: `/console/login#code=${code}`, expiresAt };
    },
    close() {
      clearInterval(sweep);
    },
  };
}
