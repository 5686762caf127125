/**
 * The `http` built-in capability: HTTP(S) requests to an allowlist of origins, methods and path
 * prefixes, with SSRF and DNS-rebinding defences, response caps, a timeout, header filtering and
 * host-attached credentials the agent never sees.
 *
 * Two methods so risk annotations are exact: `get` (GET/HEAD, read-only) and `send`
 * (POST/PUT/PATCH/DELETE: writes to a remote system whose effects we cannot know, so it keeps the
 * worst-case `destructive` and irreversible annotations; a platform that knows better wraps its API
 * in its own capability, see docs/custom-capability.md). `createHttp` exposes only `get` when the
 * scope allows only GET/HEAD, so such an instance is read-only as a whole.
 *
 * Fails closed: arguments that do not parse are `INVALID_ARGUMENT`, anything outside the scope
 * (URL, redirect hop or resolved address) is `OUT_OF_SCOPE`, the outside world failing is
 * `CAPABILITY_FAILED` with `data.reason`. See scope.ts, policy.ts, fetch.ts for each defence.
 */
import { z } from 'zod';
import { definePlugin, NO_HOST_OPTIONS } from '../plugin.js';
import { type CapabilityInstance, type InstanceOptions, createInstance, defineCapability, method } from '../sdk/index.js';
import { type HttpDeps, performRequest } from './fetch.js';
import { normaliseRequestHeaders, requestHeadersSchema } from './headers.js';
import { checkRequest } from './policy.js';
import { type CompiledHttpScope, type HttpScope, READ_METHODS, describeHttpScope, httpScopeSchema, intersectHttpScopes, makeScopeCompiler } from './scope.js';

export type { HttpDeps, HostLookup, HttpResult, SecretStore } from './fetch.js';
export type { HttpMethod, HttpScope } from './scope.js';
export { HTTP_DEFAULTS, HTTP_METHODS, httpScopeSchema } from './scope.js';
export { checkAddress, isPublicAddress } from './address.js';

const url = z.string().min(1).max(8192);

const getArgs = z.strictObject({
  url,
  method: z.enum(['GET', 'HEAD']).optional(),
  headers: requestHeadersSchema.optional(),
});

const sendArgs = z.strictObject({
  url,
  method: z.enum(['POST', 'PUT', 'PATCH', 'DELETE']),
  headers: requestHeadersSchema.optional(),
  body: z.string().max(64 * 1024 * 1024).optional(),
});

const httpResult = z.strictObject({
  status: z.number().int(),
  statusText: z.string(),
  url: z.string(),
  redirected: z.boolean(),
  headers: z.record(z.string(), z.string()),
  body: z.string(),
  truncated: z.boolean(),
});

type GetArgs = z.output<typeof getArgs>;
type SendArgs = z.output<typeof sendArgs>;

function makeDefinition() {
  // Memo of the pure `compileScope`, keyed by the (never mutated) parsed scope object.
  const compiled: (scope: HttpScope) => CompiledHttpScope = makeScopeCompiler();
  const shape = (a: GetArgs | SendArgs) => ({
    url: a.url,
    method: a.method ?? 'GET',
    headers: normaliseRequestHeaders(a.headers),
    bodyBytes: 'body' in a && a.body !== undefined ? Buffer.byteLength(a.body, 'utf8') : 0,
  });
  return defineCapability<HttpScope, HttpDeps>({
    name: 'http',
    description: 'HTTP(S) requests to an allowlist of origins; private and loopback addresses are refused unless the scope allows them.',
    scope: httpScopeSchema,
    intersect: intersectHttpScopes,
    describeScope: describeHttpScope,
    methods: {
      get: method({
        description: 'Fetch a URL with GET (or HEAD) and return status, headers and the body as text (cut at the size limit, see `truncated`).',
        args: getArgs,
        result: httpResult,
        risk: { readOnly: true, destructive: false, reversible: true, openWorld: true, financial: false },
        inScope: (a: GetArgs, scope: HttpScope) => checkRequest(compiled(scope), shape(a)),
        run: (a: GetArgs, ctx) =>
          performRequest({ url: a.url, method: a.method ?? 'GET', headers: normaliseRequestHeaders(a.headers), body: undefined }, compiled(ctx.scope), ctx.deps, ctx.signal),
      }),
      send: method({
        description: 'Send a POST, PUT, PATCH or DELETE request with an optional text body (set content-type yourself for JSON) and return the response.',
        args: sendArgs,
        result: httpResult,
        risk: { readOnly: false, destructive: true, reversible: false, openWorld: true, financial: false },
        staging: {
          // Queued in the changeset; the agent gets a placeholder response (202, header x-contained-staged).
          async stage(a: SendArgs, ctx) {
            await ctx.record({
              summary: `${a.method} ${a.url}${a.body === undefined ? '' : ` (${Buffer.byteLength(a.body, 'utf8')} bytes)`}`,
              detail: { method: a.method, url: a.url, headers: normaliseRequestHeaders(a.headers), body: a.body ?? null },
            });
            return { status: 202, statusText: 'Staged', url: a.url, redirected: false, headers: { 'x-contained-staged': 'true' }, body: '', truncated: false };
          },
        },
        inScope: (a: SendArgs, scope: HttpScope) => checkRequest(compiled(scope), shape(a)),
        run: (a: SendArgs, ctx) =>
          performRequest({ url: a.url, method: a.method, headers: normaliseRequestHeaders(a.headers), body: a.body }, compiled(ctx.scope), ctx.deps, ctx.signal),
      }),
    },
  });
}

export const httpCapability = makeDefinition();

/**
 * Bind the http definition to a scope and host resources. A scope that allows only GET/HEAD exposes
 * only `get` unless `options.methods` says otherwise. A bad rule throws `INVALID_SCOPE` here.
 */
export function createHttp(scope: unknown, deps: HttpDeps = {}, options: InstanceOptions = {}): CapabilityInstance<HttpScope, HttpDeps> {
  return createInstance(httpCapability, scope, deps, (parsed) => {
    const readOnly = (parsed.methods ?? READ_METHODS).every((m) => READ_METHODS.includes(m));
    return readOnly && options.methods === undefined ? { ...options, methods: ['get'] } : options;
  });
}

/** The registry's entry: no host options; the credentials it attaches come from the instance's secrets. */
export const httpPlugin = definePlugin({
  definition: httpCapability,
  hostOptions: NO_HOST_OPTIONS,
  create: (scope, context, options) => createHttp(scope, context.secrets ? { secrets: context.secrets } : {}, options),
});
