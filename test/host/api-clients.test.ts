/**
 * Platform clients are kept apart (finding 3): with two platform tokens on one real host, each
 * client reads, follows and cancels only its own runs and runs by digest only the images it
 * uploaded. Another client's run or image is `404 NOT_FOUND`, answered exactly like one that does
 * not exist (no oracle). An admin sees and cancels every run; a configured cross-client reader
 * (`http.crossClientReaders`) reads and follows every run but cancels only its own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkRunAccess } from '../../host/api/access.js';
import type { Operator } from '../../host/model.js';
import type { RequestView } from '../../host/operator/backend.js';
import type { OperatorClient } from '../../host/operator/client.js';
import { createToken } from '../../host/tokens.js';
import { call, openEvents } from './api-client.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

const NOTES = { capability: 'notes', kind: 'fs', scope: {}, methods: ['read'], why: 'notes' };
const NOBODY = '00000000-0000-4000-8000-000000000000';

let fx: Fixture;
let base: string;
let other: string;
let auditor: string;
beforeAll(async () => {
  fx = await startFixture({ http: { crossClientReaders: ['auditor'] } });
  base = fx.host.url as string;
  other = (await createToken({ name: 'other', role: 'platform', createdBy: 'test' }, fx.host.store)).token;
  auditor = (await createToken({ name: 'auditor', role: 'platform', createdBy: 'test' }, fx.host.store)).token;
});
afterAll(async () => {
  await fx.close();
});

const plat = (): string => fx.tokens['plat'] as string;
const admin = (): string => fx.tokens['erin'] as string;

function nextCreated(op: OperatorClient, digest: string): Promise<RequestView> {
  return new Promise((resolve) => {
    const off = op.onEvent((event) => {
      if (event.type === 'created' && (event.request as RequestView).subject === digest) {
        off();
        resolve(event.request as RequestView);
      }
    });
  });
}

/** A run of `plat`'s that waits for a human (so it can be cancelled), and its escalation. */
async function waitingRun(name: string): Promise<{ runId: string; request: RequestView }> {
  const image = fx.image(name, "export default async (input, caps) => caps.notes.read('a.txt')", [NOTES]);
  expect((await call(base, 'POST', '/v1/images', { token: plat(), body: image.bytes })).status).toBe(201);
  const alice = await fx.operator('alice');
  const created = nextCreated(alice, image.digest);
  const res = await call(base, 'POST', '/v1/runs', { token: plat(), json: { digest: image.digest } });
  expect(res.status).toBe(202);
  return { runId: res.body.runId as string, request: await created };
}

/** The same answer with the run id masked: another client's run must look like no run at all. */
const masked = (res: { status: number; body: unknown }, id: string) => ({ status: res.status, body: JSON.parse(JSON.stringify(res.body).replaceAll(id, 'ID')) as unknown });

describe('one platform client cannot see another\'s runs', () => {
  it('GET, DELETE and /events on another client\'s run are 404, exactly as for a run that does not exist; the run is untouched', async () => {
    const { runId } = await waitingRun('private-run');
    for (const [method, suffix] of [['GET', ''], ['DELETE', ''], ['GET', '/events']] as const) {
      const theirs = await call(base, method, `/v1/runs/${runId}${suffix}`, { token: other });
      const none = await call(base, method, `/v1/runs/${NOBODY}${suffix}`, { token: other });
      expect(theirs.status, `${method} ${suffix}`).toBe(404);
      expect(theirs.body.error.code).toBe('NOT_FOUND');
      expect(masked(theirs, runId)).toEqual(masked(none, NOBODY));
    }
    // The DELETE did nothing: the run still waits for its human.
    const own = await call(base, 'GET', `/v1/runs/${runId}`, { token: plat() });
    expect(own).toMatchObject({ status: 200, body: { id: runId, status: 'running', submittedBy: 'plat' } });
    expect((await call(base, 'DELETE', `/v1/runs/${runId}`, { token: plat() })).status).toBe(202);
  });

  it('the owner and an admin see, follow and cancel it', async () => {
    const { runId } = await waitingRun('admin-cancels');
    expect((await call(base, 'GET', `/v1/runs/${runId}`, { token: admin() })).status).toBe(200);
    const stream = await openEvents(base, `/v1/runs/${runId}/events`, admin());
    expect(stream.status).toBe(200);
    expect((await stream.next('run')).data.id).toBe(runId);
    const cancelled = await call(base, 'DELETE', `/v1/runs/${runId}`, { token: admin() });
    expect(cancelled.status).toBe(202);
    expect((await stream.done).at(-1)?.data).toMatchObject({ id: runId, status: 'cancelled' });
    expect((await call(base, 'GET', `/v1/runs/${runId}`, { token: plat() })).body.status).toBe('cancelled');
  });

  it('a run submitted without a client (library call) is visible to admins only', async () => {
    const image = fx.image('library-run', 'export default () => 1');
    const { runId } = await fx.host.submit({ image: image.bytes });
    await fx.host.waitForRun(runId);
    expect((await call(base, 'GET', `/v1/runs/${runId}`, { token: plat() })).status).toBe(404);
    expect((await call(base, 'GET', `/v1/runs/${runId}`, { token: admin() })).status).toBe(200);
  });
});

describe('a cross-client reader (http.crossClientReaders)', () => {
  it('reads and follows every client\'s runs, but may cancel only its own (403)', async () => {
    const { runId } = await waitingRun('audited');
    expect((await call(base, 'GET', `/v1/runs/${runId}`, { token: auditor })).body).toMatchObject({ id: runId, submittedBy: 'plat' });
    const stream = await openEvents(base, `/v1/runs/${runId}/events`, auditor);
    expect(stream.status).toBe(200);
    stream.close();
    const refused = await call(base, 'DELETE', `/v1/runs/${runId}`, { token: auditor });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('FORBIDDEN');
    expect((await call(base, 'GET', `/v1/runs/${runId}`, { token: plat() })).body.status).toBe('running');
    expect((await call(base, 'DELETE', `/v1/runs/${runId}`, { token: plat() })).status).toBe(202);
  });
});

describe('images are per client', () => {
  it('a client runs by digest only images it uploaded; another client\'s digest is 404 like an unknown one, until it uploads the image itself', async () => {
    const image = fx.image('uploaded-by-plat', 'export default (input) => input');
    expect((await call(base, 'POST', '/v1/images', { token: plat(), body: image.bytes })).status).toBe(201);
    expect((await call(base, 'POST', '/v1/runs', { token: plat(), json: { digest: image.digest } })).status).toBe(202);

    const unknown = `sha256:${'1'.repeat(64)}`;
    const theirs = await call(base, 'POST', '/v1/runs', { token: other, json: { digest: image.digest } });
    const none = await call(base, 'POST', '/v1/runs', { token: other, json: { digest: unknown } });
    expect(theirs.status).toBe(404);
    expect(theirs.body.error.code).toBe('NOT_FOUND');
    expect(masked(theirs, image.digest)).toEqual(masked(none, unknown));

    // Holding the bytes is what entitles a client to an image: uploading it makes it theirs too.
    expect((await call(base, 'POST', '/v1/images', { token: other, body: image.bytes })).status).toBe(201);
    expect((await call(base, 'POST', '/v1/runs', { token: other, json: { digest: image.digest } })).status).toBe(202);
    // An admin runs any stored image.
    expect((await call(base, 'POST', '/v1/runs', { token: admin(), json: { digest: image.digest } })).status).toBe(202);
  });
});

describe('checkRunAccess (the predicate)', () => {
  const as = (name: string, role: Operator['role']): Operator => ({ tokenId: `tok_${name}`, name, role });
  const policy = { crossClientReaders: new Set(['auditor']) };
  const run = { id: 'r', submittedBy: 'ci' };

  it('lets a client reach its own runs and nobody else\'s, lookalike names included', () => {
    expect(checkRunAccess(as('ci', 'platform'), run, 'cancel', policy)).toEqual({ ok: true });
    for (const name of ['CI', 'ci ', ' ci', 'ci\u200b', 'c', 'ci2', 'auditorx', 'Auditor']) {
      expect(checkRunAccess(as(name, 'platform'), run, 'read', policy), name).toMatchObject({ ok: false, code: 'NOT_FOUND', message: 'no run r' });
    }
  });

  it('fails closed on runs without a client and on roles that are not platform or admin', () => {
    for (const submittedBy of [undefined, '']) {
      expect(checkRunAccess(as('ci', 'platform'), { id: 'r', ...(submittedBy === undefined ? {} : { submittedBy }) }, 'read', policy)).toMatchObject({ ok: false, code: 'NOT_FOUND' });
    }
    for (const role of ['viewer', 'approver'] as const) expect(checkRunAccess(as('ci', role), run, 'read', policy)).toMatchObject({ ok: false, code: 'NOT_FOUND' });
    // An admin named like a client is still an admin; a platform client named like an admin is not.
    expect(checkRunAccess(as('erin', 'admin'), { id: 'r' }, 'cancel', policy)).toEqual({ ok: true });
  });

  it('lets a cross-client reader read every run but cancel only its own', () => {
    expect(checkRunAccess(as('auditor', 'platform'), run, 'read', policy)).toEqual({ ok: true });
    expect(checkRunAccess(as('auditor', 'platform'), run, 'cancel', policy)).toMatchObject({ ok: false, code: 'FORBIDDEN' });
    expect(checkRunAccess(as('auditor', 'platform'), { id: 'r', submittedBy: 'auditor' }, 'cancel', policy)).toEqual({ ok: true });
    expect(checkRunAccess(as('auditor', 'viewer'), run, 'read', policy)).toMatchObject({ ok: false, code: 'NOT_FOUND' });
  });
});
