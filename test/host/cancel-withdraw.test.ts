/**
 * Cancelling a run withdraws its pending recommendations (real host: SQLite store, HTTP API and
 * operator channel on 127.0.0.1:0, outbox into a maildir): each closes as `cancelled`, operators
 * get it `resolved`, the audit log records who withdrew it, approving it afterwards is
 * ALREADY_RESOLVED and nothing is performed — the exploit being "approve the mail of a run the
 * platform already cancelled". A request opened in the race after the cancel is withdrawn too.
 * With `cancelledRunRecommendations: "keep"` they stand, marked `runEnded` on every view.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../host/cli/main.js';
import { formatRequest } from '../../host/operator/terminal.js';
import type { OperatorClient } from '../../host/operator/client.js';
import type { WireRequestView as RequestView } from '../../host/operator/protocol.js';
import { call } from './api-client.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

const MAIL = { capability: 'mail', kind: 'outbox', scope: {}, methods: ['send'], why: 'mail' };

function source(subject: string): string {
  return `export default async (input, caps) => (await caps.mail.send({ to: 'team@example.com', subject: '${subject}', text: 'x' }, { reason: 'tell the team' })).accepted`;
}

function nextEvent(op: OperatorClient, type: 'created' | 'resolved', filter: (r: RequestView) => boolean): Promise<RequestView> {
  return new Promise((resolve) => {
    const off = op.onEvent((event) => {
      if (event.type === type && filter(event.request as RequestView)) {
        off();
        resolve(event.request as RequestView);
      }
    });
  });
}

async function finished(base: string, token: string, runId: string): Promise<{ status: string; outcome: unknown }> {
  for (;;) {
    const res = await call(base, 'GET', `/v1/runs/${runId}?waitMs=10000`, { token });
    if (res.body.outcome) return res.body;
  }
}

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t) });
  return { code, out, err };
}

describe('cancelling a run withdraws its pending recommendations (default)', () => {
  let fx: Fixture;
  beforeAll(async () => {
    fx = await startFixture();
  });
  afterAll(async () => {
    await fx.close();
  });

  it('DELETE /v1/runs/:id: the recommendation closes as cancelled, operators see it resolved, a later approval is ALREADY_RESOLVED, nothing is sent, the audit has the withdrawal', async () => {
    const base = fx.host.url as string;
    const plat = fx.tokens['plat'] as string;
    const image = fx.image('cancel-mailer', source('after cancel'), [MAIL]);
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const alice = await fx.operator('alice');
    const created = nextEvent(alice, 'created', (r) => r.subject === image.digest);
    const submitted = await call(base, 'POST', '/v1/runs', { token: plat, json: { image: Buffer.from(image.bytes).toString('base64') } });
    expect(submitted.status).toBe(202);
    const runId = submitted.body.runId as string;
    const request = await created;
    expect(request.runEnded).toBe(false);
    const resolved = nextEvent(alice, 'resolved', (r) => r.id === request.id);

    const cancelled = await call(base, 'DELETE', `/v1/runs/${runId}`, { token: plat });
    expect(cancelled.status).toBe(202);
    expect(await resolved).toMatchObject({ id: request.id, status: 'cancelled', resolvedBy: ['plat'], runEnded: true });
    expect(await fx.host.store.getRequest(request.id)).toMatchObject({ status: 'cancelled', resolvedBy: ['plat'] });
    expect(await finished(base, plat, runId)).toMatchObject({ status: 'cancelled', outcome: { error: { code: 'CANCELLED' } } });
    expect(alice.pending.has(request.id)).toBe(false);

    const late = await alice.decide({ requestId: request.id, verdict: 'approve' }).catch((e: unknown) => e);
    expect(late).toMatchObject({ code: 'ALREADY_RESOLVED', message: `request ${request.id} was withdrawn: its run was cancelled` });
    const url = fx.host.url as string;
    const viaCli = await cli(['approve', request.id, '--url', url, '--token', fx.tokens['bob'] as string]);
    expect(viaCli).toMatchObject({ code: 1, err: `ALREADY_RESOLVED: request ${request.id} was withdrawn: its run was cancelled\n` });

    await new Promise((r) => setTimeout(r, 100)); // a detached perform, were there one, would have written by now
    expect(fx.mails().filter((m) => m.includes('Subject: after cancel'))).toEqual([]);
    expect(await fx.host.store.getRequest(request.id)).not.toHaveProperty('execution');

    await fx.host.audit.flush();
    const audit = await cli(['audit', 'query', '--run', runId, '--json', '--data-dir', fx.dir]);
    const records = audit.out.trim().split('\n').map((l) => JSON.parse(l) as { type: string; data: Record<string, unknown> });
    expect(records.find((r) => r.type === 'request.resolved')?.data).toMatchObject({ requestId: request.id, status: 'cancelled', by: ['plat'] });
    expect(records.some((r) => r.type === 'intent')).toBe(false);
  });

  it('runs.cancel over the operator channel withdraws too, in the name of the admin who cancelled', async () => {
    const image = fx.image('cancel-mailer-ws', source('ws cancel'), [MAIL]);
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const erin = await fx.operator('erin');
    const created = nextEvent(erin, 'created', (r) => r.subject === image.digest);
    const { runId } = await fx.host.submit({ image: image.bytes });
    const request = await created;
    const resolved = nextEvent(erin, 'resolved', (r) => r.id === request.id);
    await erin.cancelRun(runId);
    expect(await resolved).toMatchObject({ status: 'cancelled', resolvedBy: ['erin'] });
    await fx.host.waitForRun(runId);
  });

  it('a recommendation opened in the race after the cancel (its run already cancelled) is withdrawn at once', async () => {
    const runId = '00000000-0000-4000-8000-00000000cafe';
    await fx.host.store.insertRun({ id: runId, subject: undefined, imageName: 'racer', status: 'cancelled', input: null, createdAt: Date.now() });
    const decision = await fx.host.requests.open(
      { kind: 'recommendation', runId, capability: 'mail', definition: 'outbox', method: 'send', args: { to: 'team@example.com', subject: 'race', text: 'x' }, why: 'assisted mode', approvalsRequired: 1, timeoutMs: 60_000 },
      AbortSignal.abort(),
    );
    expect(decision.status).toBe('run_gone');
    expect(await fx.host.store.getRequest(decision.request.id)).toMatchObject({ status: 'cancelled' });
  });
});

describe('cancelledRunRecommendations: "keep"', () => {
  let fx: Fixture;
  beforeAll(async () => {
    fx = await startFixture({ cancelledRunRecommendations: 'keep' });
  });
  afterAll(async () => {
    await fx.close();
  });

  it('the recommendation stands after the cancel, marked runEnded in the snapshot, the terminal console and `approve`; approved, it is performed once', async () => {
    const image = fx.image('keep-mailer', source('kept'), [MAIL]);
    await fx.grant(image.digest, { capability: 'mail', methods: ['send'], mode: 'assisted' });
    const alice = await fx.operator('alice');
    const created = nextEvent(alice, 'created', (r) => r.subject === image.digest);
    const { runId } = await fx.host.submit({ image: image.bytes });
    const request = await created;
    expect(formatRequest(request, Date.now())).not.toContain('run ended');
    await fx.host.cancelRun(runId);
    await fx.host.waitForRun(runId);
    expect((await fx.host.store.getRequest(request.id))?.status).toBe('pending');

    const bob = await fx.operator('bob'); // a fresh snapshot
    const seen = bob.pending.get(request.id);
    expect(seen).toMatchObject({ status: 'pending', runEnded: true });
    expect(formatRequest(seen as RequestView, Date.now())).toContain(`run ${runId} (run ended: approving performs the action without it)`);

    const approved = await cli(['approve', request.id.slice(0, 8), '--url', fx.host.url as string, '--token', fx.tokens['carol'] as string]);
    expect(approved).toEqual({ code: 0, out: `${request.id}: approved (its run had ended: the host performs the action on its own)\n`, err: '' });
    for (let i = 0; i < 200 && !fx.mails().some((m) => m.includes('Subject: kept')); i++) await new Promise((r) => setTimeout(r, 10));
    expect(fx.mails().filter((m) => m.includes('Subject: kept'))).toHaveLength(1);
  });
});
