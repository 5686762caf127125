/**
 * docs/openapi.json is generated from the zod schemas (`npm run docs:openapi`) and must be
 * current; every reference in it resolves; it documents exactly the routes the server has; and
 * real answers of a real host parse with the same response schemas the document is built from.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPENAPI_PATH, renderOpenApi } from '../../host/api/openapi.js';
import { createMcpHttp } from '../../host/mcp/http.js';
import { createApi, DEFAULT_API_LIMITS } from '../../host/api/routes.js';
import { createImageClients } from '../../host/runs/image-store.js';
import { errorSchema, imageUploadedSchema, runAcceptedSchema, runSchema } from '../../host/api/schemas.js';
import { call } from './api-client.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

let fx: Fixture;
beforeAll(async () => {
  fx = await startFixture();
});
afterAll(async () => {
  await fx.close();
});

describe('OpenAPI document', () => {
  it('docs/openapi.json is current (run npm run docs:openapi)', () => {
    expect(readFileSync(OPENAPI_PATH, 'utf8')).toBe(renderOpenApi());
  });

  it('every $ref resolves inside the document', () => {
    const doc = JSON.parse(renderOpenApi()) as { components: { schemas: Record<string, unknown> } };
    const refs = [...renderOpenApi().matchAll(/"\$ref": "([^"]+)"/g)].map((m) => m[1] as string);
    expect(refs.length).toBeGreaterThan(5);
    for (const ref of refs) {
      expect(ref).toMatch(/^#\/components\/schemas\/[A-Za-z0-9]+$/);
      expect(doc.components.schemas).toHaveProperty(ref.split('/').at(-1) as string);
    }
  });

  it('documents exactly the routes the server serves', () => {
    const doc = JSON.parse(renderOpenApi()) as { paths: Record<string, Record<string, unknown>> };
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)).sort();
    const api = createApi({ runs: fx.host.runs, requests: fx.host.requests, images: createImageClients(fx.host.store, fx.dir), verifier: { verify: async () => undefined }, config: fx.config, limits: DEFAULT_API_LIMITS, metrics: undefined, logger: undefined });
    const mcp = createMcpHttp({ runs: fx.host.runs, grants: fx.host.grants, instances: fx.host.instances, agents: { verify: async () => undefined }, admin: { store: fx.host.store, operators: { verify: async () => undefined } } }, { limits: fx.config.mcp, allowedOrigins: [], url: () => undefined });
    const served = [...[...api.routes, ...mcp.routes].map((r) => `${r.method} ${r.path.replace(/:([a-z]+)/g, '{$1}')}`), 'GET /healthz'].sort();
    void mcp.close();
    expect(documented).toEqual(served);
  });

  it('real answers parse with the documented response schemas', async () => {
    const base = fx.host.url as string;
    const token = fx.tokens['plat'] as string;
    const image = fx.image('shapes', "export default (input) => { console.log('hi'); return input; }");
    const uploaded = await call(base, 'POST', '/v1/images', { token, body: image.bytes });
    expect(imageUploadedSchema.safeParse(uploaded.body).success).toBe(true);
    const accepted = await call(base, 'POST', '/v1/runs', { token, json: { digest: image.digest, input: { a: [1, 'x', null] } } });
    expect(runAcceptedSchema.safeParse(accepted.body).error).toBeUndefined();
    const run = await call(base, 'GET', `/v1/runs/${accepted.body.runId}?waitMs=10000`, { token });
    expect(runSchema.safeParse(run.body).error).toBeUndefined();
    expect(run.body.outcome.logs).toHaveLength(1);
    const failed = await call(base, 'POST', '/v1/runs', { token, json: { digest: 'nope' } });
    expect(errorSchema.safeParse(failed.body).error).toBeUndefined();
  });
});
