/**
 * What a route on the host's HTTP server is (host/http.ts dispatches them): a method, a path —
 * exact, with `:name` parameters, or ending in `/*` for a prefix — and a handler that answers with
 * `res` itself. The platform API (routes.ts), the web console and an embedder's routes are all
 * lists of these. Types only, so every adapter can declare routes without importing the server.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export type RouteMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'HEAD';

export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  /** `:name` parameters of the path, decoded. */
  params: Readonly<Record<string, string>>;
}

export interface HttpRoute {
  method: RouteMethod;
  path: string;
  handler(ctx: RouteContext): Promise<void> | void;
  /** A label for metrics and logs (default: `path`). */
  name?: string;
}
