/**
 * The OpenAPI 3.1 document of the platform API, generated from the zod schemas the routes
 * validate with (schemas.ts, via `z.toJSONSchema`). `npm run docs:openapi` writes
 * `docs/openapi.json`; test/host/api-openapi.test.ts fails when the committed file is stale.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { DEFAULT_API_LIMITS, IMAGE_MEDIA_TYPES } from './routes.js';
import { apiSchemas } from './schemas.js';

export const OPENAPI_PATH = fileURLToPath(new URL('../../docs/openapi.json', import.meta.url));

type Json = Record<string, unknown>;

const ref = (id: string): Json => ({ $ref: `#/components/schemas/${id}` });
const json = (id: string): Json => ({ 'application/json': { schema: ref(id) } });
const error = (description: string): Json => ({ description, content: json('Error') });

const RUN_ID_PARAM = { name: 'id', in: 'path', required: true, description: 'The run id (a UUID).', schema: { type: 'string', format: 'uuid' } };
const MiB = 1024 * 1024;

const RETRY_AFTER = { 'Retry-After': { schema: { type: 'integer' }, description: 'Seconds to wait before retrying.' } };
const retry = (description: string): Json => ({ description, headers: RETRY_AFTER, content: json('Error') });
const SERVER_BUSY = 'SERVER_BUSY: the host holds its maximum of connections (`http.maxConnections`); answered at once, before the request is read.';

/** The standard error answers of an authenticated endpoint. */
const AUTH_ERRORS = {
  '401': error('UNAUTHENTICATED: no valid bearer token.'),
  '403': error('FORBIDDEN: the token\'s role is not platform or admin.'),
  '503': retry(SERVER_BUSY),
};
/** An agent identity as the API shows it (never its token's hash). */
const AGENT = { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' }, subject: { type: 'string' }, createdAt: { type: 'integer' }, createdBy: { type: 'string' }, revokedAt: { type: 'integer' } }, required: ['id', 'name', 'subject', 'createdAt', 'createdBy'] };
const ADMIN_ERRORS = {
  '401': error('UNAUTHENTICATED: no valid operator bearer token.'),
  '403': error('FORBIDDEN: the token\'s role is not admin.'),
  '503': retry(SERVER_BUSY),
};
const NOT_FOUND_RUN = error('NOT_FOUND: no such run, or the run of another platform client (the same answer, so run ids of other clients cannot be probed).');

function operations(): Json {
  return {
    '/v1/images': {
      post: {
        operationId: 'uploadImage',
        summary: 'Upload an image',
        description: `Validate an image archive (.tgz) with the image loader and store it by digest. At most ${DEFAULT_API_LIMITS.maxImageBytes / MiB} MiB (\`http.maxImageBytes\`). Uploading the same image again replaces the stored file. The image becomes runnable by digest for the client that uploaded it (and admins); other clients upload it themselves.`,
        requestBody: { required: true, content: Object.fromEntries(IMAGE_MEDIA_TYPES.map((t) => [t, { schema: { type: 'string', format: 'binary' } }])) },
        responses: {
          '201': { description: 'Stored.', content: json('ImageUploaded') },
          ...AUTH_ERRORS,
          '413': error('PAYLOAD_TOO_LARGE: the archive is larger than the limit.'),
          '415': error('UNSUPPORTED_MEDIA_TYPE: not application/gzip or application/octet-stream.'),
          '422': error('IMAGE_*: the loader refused the archive (the code says why: IMAGE_PATH_TRAVERSAL, IMAGE_LINK, IMAGE_TOO_LARGE, IMAGE_MANIFEST_INVALID…).'),
        },
      },
    },
    '/v1/runs': {
      post: {
        operationId: 'submitRun',
        summary: 'Submit a run',
        description: 'Queue a run of an uploaded image (by digest), or of an image sent inline as base64. Answers at once; follow the run with GET /v1/runs/{id} or its event stream.',
        requestBody: { required: true, content: json('SubmitRun') },
        responses: {
          '202': { description: 'Accepted (running, or queued for a free slot).', headers: { Location: { schema: { type: 'string' }, description: 'The run\'s URL.' } }, content: json('RunAccepted') },
          '400': error('INVALID_ARGUMENT: the body does not match the schema; `data.path` names the field.'),
          ...AUTH_ERRORS,
          '404': error('NOT_FOUND: this client (platform token name) uploaded no image with this digest; another client\'s upload does not count, and the answer is the same.'),
          '413': error('PAYLOAD_TOO_LARGE'),
          '415': error('UNSUPPORTED_MEDIA_TYPE: not application/json.'),
          '422': error('IMAGE_*: the inline image was refused.'),
          '429': retry('QUEUE_FULL: the run queue is full; nothing was stored.'),
          '503': retry(`SHUTTING_DOWN: the host is closing; or ${SERVER_BUSY}`),
        },
      },
    },
    '/v1/runs/{id}': {
      get: {
        operationId: 'getRun',
        summary: 'Read a run',
        description: 'A platform client reads its own runs; admins and `http.crossClientReaders` read every run.',
        parameters: [
          RUN_ID_PARAM,
          { name: 'waitMs', in: 'query', required: false, description: `Long-poll: wait up to this many ms (at most ${DEFAULT_API_LIMITS.maxWaitMs}) for a queued or running run to end.`, schema: { type: 'integer', minimum: 0, maximum: DEFAULT_API_LIMITS.maxWaitMs } },
        ],
        responses: { '200': { description: 'The run.', content: json('Run') }, '400': error('INVALID_ARGUMENT: bad waitMs.'), ...AUTH_ERRORS, '404': NOT_FOUND_RUN },
      },
      delete: {
        operationId: 'cancelRun',
        summary: 'Cancel a run',
        description: 'Cancel a queued or running run (one waiting for a human included). A run that has already ended is answered as it is. A platform client cancels its own runs only; admins any.',
        parameters: [RUN_ID_PARAM],
        responses: {
          '202': { description: 'Cancellation under way; the run ends with status `cancelled`; its pending recommendations are withdrawn (status `cancelled`).', content: json('Run') },
          '200': { description: 'The run had already ended; nothing changed.', content: json('Run') },
          ...AUTH_ERRORS,
          '403': error('FORBIDDEN: the token\'s role is not platform or admin; or a cross-client reader (`http.crossClientReaders`) asked to cancel another client\'s run.'),
          '404': NOT_FOUND_RUN,
        },
      },
    },
    '/v1/runs/{id}/events': {
      get: {
        operationId: 'runEvents',
        summary: 'Follow a run (Server-Sent Events)',
        description:
          'Messages `id: <n>`, `event: <type>`, `data: <JSON>`; `n` is the event\'s sequence number in its run. Types: `run` (data: Run, on each status change), `log` (data: LogLine), `request` (data: `{ change: created|updated|resolved, request }`), `outcome` (data: Run with its outcome; the stream then ends). What already happened is replayed first; with `Last-Event-ID`, only the events after it. A `: keep-alive` comment is sent every 15 s. Same access rule as GET /v1/runs/{id}.',
        parameters: [
          RUN_ID_PARAM,
          { name: 'Last-Event-ID', in: 'header', required: false, description: 'Resume: the id of the last event received; only later events are sent.', schema: { type: 'string', pattern: '^[0-9]{1,16}$' } },
        ],
        responses: {
          '200': { description: 'The event stream.', content: { 'text/event-stream': { schema: { type: 'string' } } } },
          '204': { description: 'Nothing after Last-Event-ID: the run has ended and that was its last event, or its events are no longer kept (read the run with GET /v1/runs/{id}). An EventSource stops reconnecting.' },
          '400': error('INVALID_ARGUMENT: Last-Event-ID is not a whole number (`data.path` = ["Last-Event-ID"]).'),
          ...AUTH_ERRORS,
          '404': NOT_FOUND_RUN,
          '429': retry(`TOO_MANY_CONNECTIONS: this client already holds \`http.maxEventStreamsPerClient\` (default ${DEFAULT_API_LIMITS.maxEventStreamsPerClient}) event streams.`),
        },
      },
    },
    '/v1/mcp': {
      post: {
        operationId: 'mcp',
        summary: 'MCP server (Streamable HTTP)',
        description:
          'The Model Context Protocol over Streamable HTTP (docs/mcp.md): JSON-RPC messages in, a JSON or `text/event-stream` answer out. `initialize` opens a session (`Mcp-Session-Id` in the answer, sent back on every later request). Tools: `run` (`{ code, input? }`: run JavaScript as the agent, under its grants) and `run_image` (`{ digest, input? }`). A call that needs an operator stays open with `notifications/progress`. Every request needs an agent token (`cta_…`, `contained agent create`), not an operator token; per-session limits are in the `mcp` config section.',
        security: [{ agent: [] }],
        parameters: [{ name: 'Mcp-Session-Id', in: 'header', required: false, description: 'The session, from the answer to initialize.', schema: { type: 'string' } }],
        requestBody: { required: true, content: { 'application/json': { schema: { type: 'object', description: 'A JSON-RPC 2.0 message (or a batch) of the MCP protocol.' } } } },
        responses: {
          '200': { description: 'The JSON-RPC answer, as JSON or as an event stream.', content: { 'application/json': { schema: { type: 'object' } }, 'text/event-stream': { schema: { type: 'string' } } } },
          '202': { description: 'A notification or response was accepted.' },
          '400': { description: 'A JSON-RPC error: no session id on a request that needs one, or not an initialize request.', content: { 'application/json': { schema: { type: 'object' } } } },
          '401': error('UNAUTHENTICATED: no agent token, an unknown one or a revoked one (`WWW-Authenticate: Bearer`). Nothing was listed or run.'),
          '403': error('FORBIDDEN: a browser Origin not in `allowedOrigins`.'),
          '404': { description: 'A JSON-RPC error: the session is unknown, closed, or another agent\'s.', content: { 'application/json': { schema: { type: 'object' } } } },
          '413': error('PAYLOAD_TOO_LARGE: the body is larger than `mcp.maxBodyBytes`.'),
          '503': retry('SERVER_BUSY: the host holds `mcp.maxSessions` MCP sessions, or `http.maxConnections` connections.'),
        },
      },
      get: {
        operationId: 'mcpStream',
        summary: 'MCP server: the session\'s server-to-client event stream',
        security: [{ agent: [] }],
        parameters: [{ name: 'Mcp-Session-Id', in: 'header', required: true, schema: { type: 'string' } }],
        responses: { '200': { description: 'The event stream.', content: { 'text/event-stream': { schema: { type: 'string' } } } }, '401': error('UNAUTHENTICATED: no valid agent token.') },
      },
      delete: {
        operationId: 'mcpClose',
        summary: 'MCP server: close the session (its live runs are cancelled)',
        security: [{ agent: [] }],
        parameters: [{ name: 'Mcp-Session-Id', in: 'header', required: true, schema: { type: 'string' } }],
        responses: { '200': { description: 'Closed.' }, '401': error('UNAUTHENTICATED: no valid agent token.') },
      },
    },
    '/v1/agents': {
      get: {
        operationId: 'listAgents',
        summary: 'List agent identities (MCP clients)',
        description: 'Every agent, active and revoked, oldest first; never a token or its hash. Needs an admin token. docs/mcp.md.',
        responses: { '200': { description: 'The agents.', content: { 'application/json': { schema: { type: 'object', properties: { agents: { type: 'array', items: AGENT } }, required: ['agents'] } } } }, ...ADMIN_ERRORS },
      },
      post: {
        operationId: 'createAgent',
        summary: 'Create an agent identity; its token is in this answer only',
        description: 'As `contained agent create`: `subject` is what its runs carry and grants name (`sha256:<64 hex>` or `<name>@sha256:<signer key id>`). The token (`cta_…`) is answered once; only its sha256 is stored. Needs an admin token.',
        requestBody: { required: true, content: { 'application/json': { schema: { type: 'object', properties: { name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' }, subject: { type: 'string' } }, required: ['name', 'subject'], additionalProperties: false } } } },
        responses: {
          '201': { description: 'Created.', content: { 'application/json': { schema: { ...AGENT, properties: { ...AGENT.properties, token: { type: 'string', pattern: '^cta_[A-Za-z0-9_-]{43}$' } }, required: [...AGENT.required, 'token'] } } } },
          '400': error('INVALID_ARGUMENT: a bad name or subject, or the name of an active agent (`data.field`).'),
          '413': error('PAYLOAD_TOO_LARGE: the body is larger than 16 KiB.'),
          '415': error('UNSUPPORTED_MEDIA_TYPE: the body is not application/json.'),
          ...ADMIN_ERRORS,
        },
      },
    },
    '/v1/agents/{name}': {
      delete: {
        operationId: 'revokeAgent',
        summary: 'Revoke an agent',
        description: 'Revokes the active agent of that name (or the agent with that id): its token is refused from its next request, its stdio server runs nothing more. Its grants stay (revoke them separately). Needs an admin token.',
        parameters: [{ name: 'name', in: 'path', required: true, description: 'The agent\'s name, or its id (agt_…).', schema: { type: 'string' } }],
        responses: { '200': { description: 'The revoked agent.', content: { 'application/json': { schema: AGENT } } }, '404': error('NOT_FOUND: no active agent of that name, and no agent with that id.'), ...ADMIN_ERRORS },
      },
    },
    '/metrics': {
      get: {
        operationId: 'metrics',
        summary: 'Prometheus metrics',
        description: 'Prometheus text format. Needs a platform or admin token unless the host config sets `metricsPublic`.',
        responses: { '200': { description: 'The metrics.', content: { 'text/plain': { schema: { type: 'string' } } } }, ...AUTH_ERRORS },
      },
    },
    '/healthz': {
      get: { operationId: 'health', summary: 'Liveness', security: [], responses: { '200': { description: 'The host is up.', content: { 'application/json': { schema: { type: 'object', properties: { ok: { const: true } }, required: ['ok'] } } } } } },
    },
  };
}

/**
 * zod puts recursive schemas used by several components (`z.json()` in the manifest) under a
 * `__shared` entry and points at them as `…/__shared#/$defs/schemaN`, which is not a valid
 * reference inside an OpenAPI document. Hoist each into its own component (identical ones once).
 */
function hoistShared(generated: Record<string, Json>): Record<string, Json> {
  const shared = (generated['__shared']?.['$defs'] ?? {}) as Record<string, Json>;
  const names = new Map<string, string>();
  const bodies = new Map<string, string>();
  let n = 0;
  for (const [key, def] of Object.entries(shared)) {
    // Normalise self-references so identical recursive shapes compare equal.
    const shape = JSON.stringify(def).replaceAll(`#/components/schemas/__shared#/$defs/${key}"`, '#SELF"');
    const known = bodies.get(shape);
    if (known !== undefined) names.set(key, known);
    else {
      const name = shape.includes('"propertyNames"') && shape.includes('"null"') ? (n++ === 0 ? 'JsonValue' : `JsonValue${n}`) : `Shared${key}`;
      names.set(key, name);
      bodies.set(shape, name);
    }
  }
  const rewrite = (value: unknown): unknown =>
    JSON.parse(
      JSON.stringify(value).replace(/#\/components\/schemas\/__shared#\/\$defs\/([A-Za-z0-9_]+)"/g, (_m, key: string) => `#/components/schemas/${names.get(key) ?? key}"`),
    ) as unknown;
  const out: Record<string, Json> = {};
  for (const [key, def] of Object.entries(shared)) {
    const name = names.get(key) as string;
    if (!(name in out)) out[name] = rewrite(def) as Json;
  }
  for (const [id, schema] of Object.entries(generated)) {
    if (id === '__shared') continue;
    const { $schema: _s, $id: _i, ...rest } = schema;
    out[id] = rewrite(rest) as Json;
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

export function renderOpenApi(): string {
  const generated = z.toJSONSchema(apiSchemas, { uri: (id) => `#/components/schemas/${id}`, unrepresentable: 'any' }) as { schemas: Record<string, Json> };
  const schemas = hoistShared(generated.schemas);
  const document = {
    openapi: '3.1.0',
    info: {
      title: 'ai-contained platform API',
      version: 'v1',
      description: 'Submit agent runs to an ai-contained host and follow them. See docs/http-api.md. Generated from the zod schemas by `npm run docs:openapi`.',
    },
    servers: [{ url: 'http://127.0.0.1:7420', description: 'The host\'s default listening address.' }],
    security: [{ bearer: [] }],
    paths: operations(),
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'An operator token (`ctd_…`) of the platform or admin role: `contained token create --role platform`.' },
        agent: { type: 'http', scheme: 'bearer', description: 'An agent token (`cta_…`) for the MCP server: `contained agent create --name NAME --subject SUBJECT`.' },
      },
      schemas,
    },
  };
  return `${JSON.stringify(document, null, 2)}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--write')) {
    writeFileSync(OPENAPI_PATH, renderOpenApi());
    process.stdout.write(`wrote ${OPENAPI_PATH}\n`);
  } else {
    process.stdout.write(readFileSync(OPENAPI_PATH, 'utf8') === renderOpenApi() ? 'docs/openapi.json is current\n' : 'docs/openapi.json is stale\n');
  }
}
