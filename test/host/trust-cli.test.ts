/**
 * The CLI against a running host (real sandboxes, real WebSocket channel, real SQLite file):
 * `review list|mark` through the channel and on the data folder (a second writer appending to the
 * same chain while the host runs), `trust report|proposals|accept`, and `audit tail|query|export|
 * verify` on what all that recorded.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditCommand } from '../../host/cli/audit.js';
import { main } from '../../host/cli/main.js';
import { trustReport } from '../../host/console/oversight.js';
import type { OperatorClient } from '../../host/operator/client.js';
import type { WireRequestView as RequestView } from '../../host/operator/protocol.js';
import type { Proposal, Review } from '../../host/trust/model.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

let fx: Fixture;
beforeAll(async () => {
  fx = await startFixture({ trust: { minAssistedReviews: 2 } });
});
afterAll(async () => {
  await fx.close();
});

function cli(argv: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const saved = { url: process.env.CONTAINED_URL, token: process.env.CONTAINED_TOKEN };
  delete process.env.CONTAINED_URL;
  delete process.env.CONTAINED_TOKEN;
  Object.assign(process.env, env);
  return main(argv, { stdout: (t) => (out += t), stderr: (t) => (err += t) }).then((code) => {
    if (saved.url === undefined) delete process.env.CONTAINED_URL;
    else process.env.CONTAINED_URL = saved.url;
    if (saved.token === undefined) delete process.env.CONTAINED_TOKEN;
    else process.env.CONTAINED_TOKEN = saved.token;
    return { code, out, err };
  });
}

function token(name: string): string {
  const t = fx.tokens[name];
  if (t === undefined) throw new Error(`no token ${name}`);
  return t;
}

const NOTES = { capability: 'notes', kind: 'fs', scope: {}, methods: ['mkdir'], why: 'folders' };

async function runImage(bytes: Buffer): Promise<string> {
  const { runId } = await fx.host.submit({ image: bytes });
  expect((await fx.host.waitForRun(runId)).status).toBe('ok');
  await fx.host.audit.flush(); // reviews and ledger rows ride along with the next audit batch
  return runId;
}

function created(op: OperatorClient, subject: string): Promise<RequestView> {
  return new Promise((resolve) => {
    const off = op.onEvent((e) => {
      if (e.type === 'created' && e.request.subject === subject) {
        off();
        resolve(e.request);
      }
    });
  });
}

describe('review and trust from the command line', () => {
  it('review list / mark through the channel; a second review marked on the data folder while the host runs', async () => {
    const image = fx.image('cli-exec', "export default async (input, caps) => { await caps.notes.mkdir('a/one'); await caps.notes.mkdir('a/two'); return 2; }", [NOTES]);
    await fx.grant(image.digest, { capability: 'notes', methods: ['mkdir'], mode: 'executed' });
    const runId = await runImage(image.bytes);
    const url = fx.host.url ?? '';

    const listed = await cli(['review', 'list', '--json'], { CONTAINED_URL: url, CONTAINED_TOKEN: token('alice') });
    expect(listed.code).toBe(0);
    const reviews = (JSON.parse(listed.out) as Review[]).filter((r) => r.runId === runId);
    expect(reviews.map((r) => r.action.args)).toEqual(['a/one', 'a/two']);
    const human = await cli(['review', 'list', '--url', url, '--token', token('alice')]);
    expect(human.out).toContain(`${reviews[0]?.id}  pending  notes.mkdir  run ${runId.slice(0, 8)}`);
    expect(human.out).toContain('args "a/one"');

    const viewer = await cli(['review', 'list', '--url', url, '--token', token('vic')]);
    expect(viewer).toMatchObject({ code: 1, err: expect.stringMatching(/^FORBIDDEN/) });
    const noNote = await cli(['review', 'mark', reviews[0]?.id ?? '', 'error', '--url', url, '--token', token('alice')]);
    expect(noNote.code).toBe(2);

    const ok = await cli(['review', 'mark', reviews[0]?.id ?? '', 'ok', '--url', url, '--token', token('alice')]);
    expect(ok).toMatchObject({ code: 0, out: `review ${reviews[0]?.id}: ok (notes.mkdir, run ${runId.slice(0, 8)})\n` });
    // On the data folder, as a terminal approver, while the host keeps writing the same chain.
    const local = await cli(['review', 'mark', reviews[1]?.id ?? '', 'critical', '--note', 'wrong tree', '--data-dir', fx.dir, '--by', 'carol']);
    expect(local.code).toBe(0);
    expect(local.out).toMatch(/demoted notes\.mkdir to assisted \(critical\)/);
    expect(await fx.host.trust.tables.review(reviews[1]?.id ?? '')).toMatchObject({ status: 'critical', markedBy: 'carol', note: 'wrong tree' });
    const again = await cli(['review', 'mark', reviews[1]?.id ?? '', 'ok', '--data-dir', fx.dir]);
    expect(again).toMatchObject({ code: 1, err: expect.stringMatching(/^ALREADY_RESOLVED/) });

    const report = await cli(['trust', 'report', '--subject', image.digest, '--data-dir', fx.dir]);
    expect(report.code).toBe(0);
    expect(report.out).toMatch(/phase 1/);
    expect(report.out).toMatch(/notes\.mkdir +assisted +0\/0\/0 .* 2 1\/0\/1 +50\.0%/);
  });

  it('a proposal at the bar, listed and accepted by an admin through the channel; the report shows the new mode', async () => {
    const image = fx.image('cli-assisted', "export default async (input, caps) => caps.notes.mkdir('b/' + input)", [NOTES]);
    await fx.grant(image.digest, { capability: 'notes', methods: ['mkdir'], mode: 'assisted' });
    const alice = await fx.operator('alice');
    for (const n of [1, 2]) {
      const seen = created(alice, image.digest);
      const { runId } = await fx.host.submit({ image: image.bytes, input: n });
      await alice.decide({ requestId: (await seen).id, verdict: 'approve' });
      await fx.host.waitForRun(runId);
    }
    // The verdict rides along with the next audit batch, then the promotion check runs: wait for it.
    for (let i = 0; i < 100 && !(await fx.host.trust.promotions.list('proposed')).some((p) => p.subject === image.digest); i++) await new Promise((r) => setTimeout(r, 20));
    const listed = await cli(['trust', 'proposals', '--status', 'proposed', '--json', '--data-dir', fx.dir]);
    const proposal = (JSON.parse(listed.out) as Proposal[]).find((p) => p.subject === image.digest);
    expect(proposal).toMatchObject({ capability: 'notes', method: 'mkdir', evidence: { assistedReviews: 2, approvedAsIs: 2 } });

    const refused = await cli(['trust', 'accept', proposal?.id ?? '', '--reason', 'clean', '--url', fx.host.url ?? '', '--token', token('alice')]);
    expect(refused).toMatchObject({ code: 1, err: expect.stringMatching(/^FORBIDDEN/) });
    const accepted = await cli(['trust', 'accept', proposal?.id ?? '', '--reason', 'clean record', '--url', fx.host.url ?? '', '--token', token('erin')]);
    expect(accepted.code).toBe(0);
    expect(accepted.out).toMatch(/accepted by erin: clean record → executed grant grt_/);

    const report = JSON.parse((await cli(['trust', 'report', '--subject', image.digest, '--json', '--data-dir', fx.dir])).out) as Array<{ phase: number; actions: Array<{ action: string; mode: string }> }>;
    expect(report).toEqual([expect.objectContaining({ phase: 2, actions: [expect.objectContaining({ action: 'notes.mkdir', mode: 'executed' })] })]);
    // The next run needs nobody.
    const { runId } = await fx.host.submit({ image: image.bytes, input: 3 });
    expect((await fx.host.waitForRun(runId)).status).toBe('ok');
  });

  it('contained and executed actions need no promotion: the report says so instead of counting assisted reviews', async () => {
    const READS = { capability: 'notes', kind: 'fs', scope: {}, methods: ['read', 'mkdir'], why: 'notes' };
    const image = fx.image('cli-contained', "export default async (input, caps) => { await caps.notes.mkdir('c'); return caps.notes.read('a.txt'); }", [READS]);
    await fx.grant(image.digest, { capability: 'notes', methods: ['read'], mode: 'contained' });
    await fx.grant(image.digest, { capability: 'notes', methods: ['mkdir'], mode: 'executed' });
    await runImage(image.bytes);
    const json = JSON.parse((await cli(['trust', 'report', '--subject', image.digest, '--json', '--data-dir', fx.dir])).out) as Array<{ actions: Array<{ action: string; mode: string; bar: string }> }>;
    expect(json[0]?.actions.map((a) => [a.action, a.mode, a.bar])).toEqual([
      ['notes.mkdir', 'executed', 'not needed (already executed)'],
      ['notes.read', 'contained', 'not needed (already contained)'],
    ]);
    const text = (await cli(['trust', 'report', '--subject', image.digest, '--data-dir', fx.dir])).out;
    expect(text).toMatch(/notes\.read +contained .*not needed \(already contained\)\n/);
    expect(text).toMatch(/notes\.mkdir +executed .*not needed \(already executed\)\n/);
    expect(text).not.toMatch(/assisted reviews/);
    // The console's trust page and the figures shown with a request use the same words.
    const rows = await trustReport(fx.host, Date.now(), image.digest);
    expect(rows[0]?.actions.map((a) => a.bar)).toEqual(['not needed (already executed)', 'not needed (already contained)']);
  });

  it('audit tail / query / export / verify read what all of that recorded', async () => {
    await fx.host.audit.flush();
    const tail = await cli(['audit', 'tail', '-n', '3', '--data-dir', fx.dir]);
    expect(tail.code).toBe(0);
    expect(tail.out.trim().split('\n')).toHaveLength(3);
    expect(tail.out).toMatch(/^#\d+ \d{4}-\d\d-\d\dT.*Z /);

    const demotions = JSON.parse(`[${(await cli(['audit', 'query', '--type', 'demotion', '--json', '--data-dir', fx.dir])).out.trim().split('\n').join(',')}]`) as Array<{ data: { by: string; trigger: string } }>;
    expect(demotions).toEqual([expect.objectContaining({ data: expect.objectContaining({ by: 'carol', trigger: 'critical' }) })]);
    const mkdirs = (await cli(['audit', 'query', '--capability', 'notes.mkdir', '--type', 'intent', '--since', '1h', '--data-dir', fx.dir])).out.trim().split('\n');
    expect(mkdirs.length).toBeGreaterThanOrEqual(5);
    expect((await cli(['audit', 'query', '--until', '2000-01-01T00:00:00Z', '--data-dir', fx.dir])).out).toBe('');
    expect((await cli(['audit', 'query', '--since', 'yesterday', '--data-dir', fx.dir])).code).toBe(2);

    const file = path.join(fx.dir, 'export.jsonl');
    expect((await cli(['audit', 'export', '--out', file, '--data-dir', fx.dir])).code).toBe(0);
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { seq: number; prevHash: string; hash: string });
    expect(lines[0]?.seq).toBe(1);
    for (let i = 1; i < lines.length; i++) expect(lines[i]?.prevHash).toBe(lines[i - 1]?.hash);
    expect(lines.map((l) => (l as unknown as { type: string }).type)).toEqual(expect.arrayContaining(['audit.started', 'token.created', 'grant.added', 'review.marked', 'promotion.proposed', 'promotion.accepted', 'run.started', 'run.ended']));

    // tail --follow prints records as they are committed, until stopped.
    const controller = new AbortController();
    let followed = '';
    const following = auditCommand(['tail', '-n', '0', '--follow', '--type', 'run.started', '--data-dir', fx.dir], { stdout: (t) => (followed += t), stderr: () => undefined }, { signal: controller.signal, pollMs: 20 });
    await new Promise((r) => setTimeout(r, 60));
    const image = fx.image('cli-follow', 'export default async () => 1');
    const { runId } = await fx.host.submit({ image: image.bytes });
    await fx.host.waitForRun(runId);
    await fx.host.audit.flush();
    for (let i = 0; i < 50 && !followed.includes(runId.slice(0, 8)); i++) await new Promise((r) => setTimeout(r, 20));
    controller.abort();
    expect(await following).toBe(0);
    expect(followed).toMatch(new RegExp(`^#\\d+ .* run\\.started +run=${runId.slice(0, 8)}`));

    const verified = await cli(['audit', 'verify', '--data-dir', fx.dir]);
    expect(verified).toMatchObject({ code: 0, out: expect.stringMatching(/OK: the chain and every checkpoint verify/) });
  });
});
