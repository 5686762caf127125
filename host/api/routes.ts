/**
 * The platform API routes (docs/http-api.md): upload images, submit runs, read and follow and
 * cancel them, and `/metrics`. Authenticated with `platform` (or `admin`) bearer tokens; bodies
 * size-capped before they are buffered and validated with the zod schemas of schemas.ts; every
 * failure a JSON error with a stable code (respond.ts).
 *
 * Clients are kept apart (access.ts): a platform client reaches only the runs it submitted and
 * runs by digest only the images it uploaded; anything else is NOT_FOUND, like a run or image that
 * does not exist. Admins reach everything; `http.crossClientReaders` read every run.
 *
 * The route list is also the table openapi.ts documents: `API_OPERATIONS` holds, per route, the
 * summary and the request and response schemas.
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import type { HostConfig } from '../config.js';
import type { RequestManager } from '../gate/requests.js';
import type { HostMetrics } from '../metrics.js';
import type { Operator, RunRecord } from '../model.js';
import { type ImageClients, noSuchImage } from '../runs/image-store.js';
import type { RunService } from '../runs/service.js';
import type { TokenVerifier } from '../tokens.js';
import { type AccessPolicy, checkRunAccess, noSuchRun, rememberingUploads, type RunIntent } from './access.js';
import { API_ROLES, authenticate } from './auth.js';
import { readBody, readJson, requireMediaType, validate } from './body.js';
import { EventStreams } from './events.js';
import type { HttpRoute, RouteContext } from './http-route.js';
import { DEFAULT_HTTP_CONFIG, type HttpConfig } from './limits.js';
import { sendJson } from './respond.js';
import { RUN_ID, runQuerySchema, submitDigestSchema, submitImageSchema } from './schemas.js';

/** The limits of the API routes: the fields of the `http` config section they use (limits.ts documents each). */
export type ApiLimits = Pick<HttpConfig, 'maxImageBytes' | 'maxRunBodyBytes' | 'maxWaitMs' | 'sseHeartbeatMs' | 'sseMaxBufferedBytes' | 'maxEventStreamsPerClient'>;

export const DEFAULT_API_LIMITS: Readonly<ApiLimits> = Object.freeze({
  maxImageBytes: DEFAULT_HTTP_CONFIG.maxImageBytes,
  maxRunBodyBytes: DEFAULT_HTTP_CONFIG.maxRunBodyBytes,
  maxWaitMs: DEFAULT_HTTP_CONFIG.maxWaitMs,
  sseHeartbeatMs: DEFAULT_HTTP_CONFIG.sseHeartbeatMs,
  sseMaxBufferedBytes: DEFAULT_HTTP_CONFIG.sseMaxBufferedBytes,
  maxEventStreamsPerClient: DEFAULT_HTTP_CONFIG.maxEventStreamsPerClient,
});

/** Media types accepted for an image upload. */
export const IMAGE_MEDIA_TYPES = ['application/gzip', 'application/x-gzip', 'application/octet-stream'] as const;

/** What the API uses of the host: the run service, and the requests of a run (an ended run's event stream). */
export interface ApiPorts {
  runs: Pick<RunService, 'addImage' | 'submit' | 'submitDigest' | 'get' | 'waitForRun' | 'cancelRun' | 'followRun'>;
  requests: Pick<RequestManager, 'viewsForRun'>;
  /** Which platform clients uploaded which image (in the store: any host of a fleet knows). */
  images: ImageClients;
}

export interface ApiDeps extends ApiPorts {
  verifier: TokenVerifier;
  config: HostConfig;
  limits: ApiLimits;
  metrics: HostMetrics | undefined;
  logger: Logger | undefined;
}

export interface Api {
  routes: HttpRoute[];
  /** End open event streams (server shutdown). */
  close(): void;
}

export function createApi(deps: ApiDeps): Api {
  const { runs, requests, verifier, config, limits, metrics } = deps;
  const streams = new EventStreams({ heartbeatMs: limits.sseHeartbeatMs, maxBufferedBytes: limits.sseMaxBufferedBytes, maxStreamsPerClient: limits.maxEventStreamsPerClient });
  const platform = (ctx: RouteContext) => authenticate(ctx.req, verifier, API_ROLES);
  const policy: AccessPolicy = { crossClientReaders: new Set(config.http.crossClientReaders) };
  const imageClients = rememberingUploads(deps.images);

  /** The run named by `:id` if `caller` may reach it for `intent`; NOT_FOUND (as for no run) or FORBIDDEN. */
  async function findRun(ctx: RouteContext, caller: Operator, intent: RunIntent): Promise<RunRecord> {
    const id = ctx.params['id'] ?? '';
    const run = RUN_ID.test(id) ? await runs.get(id) : undefined;
    if (!run) throw noSuchRun(id);
    const access = checkRunAccess(caller, run, intent, policy);
    if (!access.ok) throw access.code === 'NOT_FOUND' ? noSuchRun(id) : new ContainedError(access.code, access.message);
    return run;
  }

  const routes: HttpRoute[] = [
    {
      method: 'POST',
      path: '/v1/images',
      async handler(ctx) {
        const operator = await platform(ctx);
        requireMediaType(ctx.req, IMAGE_MEDIA_TYPES);
        const bytes = await readBody(ctx.req, limits.maxImageBytes);
        const image = await runs.addImage(bytes);
        await imageClients.add(image.digest, operator.name);
        sendJson(ctx.res, 201, image, { location: `/v1/images/${image.digest}` });
      },
    },
    {
      method: 'POST',
      path: '/v1/runs',
      async handler(ctx) {
        const operator = await platform(ctx);
        const raw = await readJson(ctx.req, z.unknown(), limits.maxRunBodyBytes);
        // Two forms; pick the schema by the key that tells them apart, so errors name real fields.
        const inline = typeof raw === 'object' && raw !== null && 'image' in raw;
        const body = inline ? validate(submitImageSchema, raw, 'body') : validate(submitDigestSchema, raw, 'body');
        const submittedBy = operator.name;
        // Another client's image is answered exactly like one never uploaded.
        if ('digest' in body && operator.role !== 'admin' && !(await imageClients.has(body.digest, operator.name))) throw noSuchImage(body.digest);
        const submitted =
          'image' in body
            ? await runs.submit({ image: decodeBase64(body.image), input: body.input ?? null, submittedBy, staged: body.staged === true })
            : await runs.submitDigest({ digest: body.digest, input: body.input ?? null, submittedBy, staged: body.staged === true });
        sendJson(ctx.res, 202, submitted, { location: `/v1/runs/${submitted.runId}` });
      },
    },
    {
      method: 'GET',
      path: '/v1/runs/:id',
      async handler(ctx) {
        const operator = await platform(ctx);
        const query = validate(runQuerySchema, Object.fromEntries(ctx.url.searchParams), 'query');
        let run = await findRun(ctx, operator, 'read');
        const waitMs = Math.min(limits.maxWaitMs, query.waitMs ?? 0);
        if (waitMs > 0 && (run.status === 'running' || run.status === 'queued')) {
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([runs.waitForRun(run.id).catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, waitMs)))]);
          clearTimeout(timer);
          run = (await runs.get(run.id)) ?? run;
        }
        sendJson(ctx.res, 200, run);
      },
    },
    {
      method: 'GET',
      path: '/v1/runs/:id/events',
      name: '/v1/runs/:id/events',
      async handler(ctx) {
        const operator = await platform(ctx);
        const run = await findRun(ctx, operator, 'read');
        await streams.serve(ctx.req, ctx.res, { runs, requests }, run, { client: operator.name, lastEventId: header(ctx, 'last-event-id') });
      },
    },
    {
      method: 'DELETE',
      path: '/v1/runs/:id',
      async handler(ctx) {
        const operator = await platform(ctx);
        const run = await findRun(ctx, operator, 'cancel');
        const live = run.status === 'running' || run.status === 'queued';
        const after = live ? await runs.cancelRun(run.id, { by: operator.name }) : run;
        sendJson(ctx.res, live ? 202 : 200, after);
      },
    },
    {
      method: 'GET',
      path: '/metrics',
      async handler(ctx) {
        if (!config.metricsPublic) await platform(ctx);
        if (!metrics) throw new ContainedError('NOT_FOUND', 'this server has no metrics');
        const { contentType, body } = await metrics.render();
        ctx.res.writeHead(200, { 'content-type': contentType, 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store' });
        ctx.res.end(body);
      },
    },
  ];
  return { routes, close: () => streams.closeAll() };
}

/** Strict base64 (standard alphabet, optional padding); anything else is INVALID_ARGUMENT. */
function decodeBase64(text: string): Buffer {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 === 1) {
    throw new ContainedError('INVALID_ARGUMENT', 'image must be base64', { data: { path: ['image'] } });
  }
  return Buffer.from(text, 'base64');
}

/** A request header as one string (repeated ones joined, so a strict parser refuses them). */
function header(ctx: RouteContext, name: string): string | undefined {
  const value = ctx.req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}
