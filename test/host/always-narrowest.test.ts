/**
 * "Always" writes the narrowest grant, end to end: a real host (store, fs capability, sandboxes)
 * and operators deciding over real WebSocket clients.
 * - `requestCapability(notes, { root: …/sub, readOnly: true })`: one approval (only read methods
 *   can do anything under that scope), and the grant lists read, list, stat only — not append,
 *   mkdir, move.
 * - `fs.list("sub")`: the grant covers `list` on `sub` only, not the whole folder.
 * - A grant naming a subfolder root keeps the agent's paths meaning what they meant (they start
 *   at the binding's root; before, the grant silently re-based them onto the subfolder).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { narrowGrant } from '../../host/console/grants.js';
import type { RequestView } from '../../host/operator/backend.js';
import type { OperatorClient, OperatorEvent } from '../../host/operator/client.js';
import type { Grant } from '../../host/model.js';
import type { RunOutcome } from '../../runtime/index.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

let fx: Fixture;
let notes: string;
beforeAll(async () => {
  fx = await startFixture();
  notes = path.join(fx.dir, 'notes');
  mkdirSync(path.join(notes, 'sub'), { recursive: true });
  writeFileSync(path.join(notes, 'sub', 'x.txt'), 'in sub');
});
afterAll(async () => {
  await fx.close();
});

const NOTES = { capability: 'notes', kind: 'fs', scope: {}, methods: ['read', 'list', 'stat', 'write', 'append', 'mkdir', 'move', 'remove'], why: 'notes' };

/** The next `created` request for this image, as this operator sees it. */
function nextCreated(op: OperatorClient, digest: string): Promise<RequestView> {
  return new Promise((resolve) => {
    const off = op.onEvent((event: OperatorEvent) => {
      if (event.type === 'created' && (event.request as RequestView).subject === digest) {
        off();
        resolve(event.request as RequestView);
      }
    });
  });
}

/** Start a run; its outcome is a promise inside an object (so awaiting the start does not await the end). */
async function run(image: { bytes: Buffer }, input: unknown): Promise<{ outcome: Promise<RunOutcome> }> {
  const { runId } = await fx.host.submit({ image: image.bytes, input });
  return { outcome: fx.host.waitForRun(runId) };
}

async function grantsOf(digest: string): Promise<Grant[]> {
  return (await fx.host.store.listGrants()).filter((g) => 'digest' in g.subject && g.subject.digest === digest);
}

describe('"always" writes the narrowest grant', () => {
  it('requestCapability with a read-only subfolder: one approval; the grant covers read, list, stat on that subfolder only', async () => {
    const image = fx.image(
      'sub-reader',
      `export default async (input, caps) => {
        if (input.ask) await requestCapability('notes', { root: input.root, readOnly: true }, 'read the sub folder');
        const text = await caps.notes.read('sub/x.txt');
        if (input.ask) return text;
        try { await caps.notes.read('a.txt'); return [text, 'read a.txt']; } catch (e) { return [text, e.code]; }
      }`,
      [NOTES],
    );
    const alice = await fx.operator('alice');
    const seen = nextCreated(alice, image.digest);
    const { outcome: first } = await run(image, { ask: true, root: path.join(notes, 'sub') });
    const request = await seen;
    expect(request).toMatchObject({ kind: 'escalation', capability: 'notes', requestedScope: { root: path.join(notes, 'sub'), readOnly: true } });
    expect(request.approvalsRequired).toBe(1);
    await alice.decide({ requestId: request.id, verdict: 'approve', span: 'always' });
    expect(await first).toMatchObject({ status: 'ok', value: 'in sub' });

    const grants = await grantsOf(image.digest);
    expect(grants).toHaveLength(1);
    expect(grants[0]).toMatchObject({ capability: 'notes', methods: ['read', 'list', 'stat'], mode: 'contained', approvals: 1, scope: { root: path.join(notes, 'sub'), readOnly: true }, createdBy: 'alice' });

    // The next run reads sub/x.txt under the grant, with no request; a.txt (outside sub) escalates.
    const outside = nextCreated(alice, image.digest);
    const { outcome: second } = await run(image, { ask: false });
    const escalation = await outside;
    expect(escalation).toMatchObject({ kind: 'escalation', method: 'read', args: 'a.txt' });
    await alice.decide({ requestId: escalation.id, verdict: 'deny', reason: 'outside the granted folder' });
    expect(await second).toMatchObject({ status: 'ok', value: ['in sub', 'ESCALATION_DENIED'] });
  });

  it('requestCapability for a scope wider than the host offers is refused at once, with no request', async () => {
    const image = fx.image(
      'wide-asker',
      "export default async (input, caps) => { const out = []; for (const scope of input) { try { await requestCapability('notes', scope, 'everything'); out.push('granted'); } catch (e) { out.push([e.code, e.message]); } } return out; }",
      [NOTES],
    );
    const before = (await fx.host.requests.pending()).length;
    const { outcome } = await run(image, [{ root: fx.dir }, { maxFileBytes: 2 ** 40 }]);
    const result = await outcome;
    expect(result).toMatchObject({
      status: 'ok',
      value: [
        ['INVALID_ARGUMENT', expect.stringContaining('requestCapability("notes")')],
        ['INVALID_ARGUMENT', expect.stringMatching(/requestCapability\("notes"\): .*asks for more .*\(maxFileBytes\)/)],
      ],
    });
    expect(JSON.stringify(result)).not.toContain(fx.dir); // no host path or host value reaches the agent
    expect(JSON.stringify(result)).not.toContain('8388608');
    expect((await fx.host.requests.pending()).length).toBe(before);
  });

  it('fs.list("sub"): the grant covers list on sub only; listing the root escalates again', async () => {
    const image = fx.image(
      'sub-lister',
      `export default async (input, caps) => {
        const names = (await caps.notes.list('sub')).map((e) => e.name);
        if (input === 'first') return names;
        try { await caps.notes.list(); return [names, 'listed the root']; } catch (e) { return [names, e.code]; }
      }`,
      [NOTES],
    );
    const alice = await fx.operator('alice');
    const seen = nextCreated(alice, image.digest);
    const { outcome: first } = await run(image, 'first');
    const request = await seen;
    expect(request).toMatchObject({ kind: 'escalation', method: 'list', args: 'sub', approvalsRequired: 1 });
    await alice.decide({ requestId: request.id, verdict: 'approve', span: 'always' });
    expect(await first).toMatchObject({ status: 'ok', value: ['x.txt'] });

    const grants = await grantsOf(image.digest);
    expect(grants).toHaveLength(1);
    expect(grants[0]).toMatchObject({ methods: ['list'], mode: 'contained', scope: { paths: ['sub'] } });

    const again = nextCreated(alice, image.digest);
    const { outcome: second } = await run(image, 'second');
    const root = await again;
    expect(root).toMatchObject({ kind: 'escalation', method: 'list' });
    expect(root.args).toBeUndefined();
    await alice.decide({ requestId: root.id, verdict: 'deny', reason: 'only sub was granted' });
    expect(await second).toMatchObject({ status: 'ok', value: [['x.txt'], 'ESCALATION_DENIED'] });
  });

  it('an "always" grant (fields only, e.g. { paths }) can be narrowed further from the console, never widened', async () => {
    const image = fx.image('narrow-me', "export default async () => null", [NOTES]);
    const g = await fx.grant(image.digest, { capability: 'notes', methods: ['list'], mode: 'contained', scope: { paths: ['sub'] } });
    const deps = { grants: fx.host.grants };
    const erin = { tokenId: 'tok_erin', name: 'erin', role: 'admin' as const };
    const narrowed = await narrowGrant(deps, erin, g.id, { scope: { paths: ['sub/deep'] }, reason: 'only deep' });
    expect(narrowed.grant.scope).toMatchObject({ paths: ['sub/deep'] });
    await expect(narrowGrant(deps, erin, narrowed.grant.id, { scope: { paths: ['sub', 'a.txt'] }, reason: 'wider' })).resolves.toMatchObject({ grant: { scope: { paths: ['sub/deep'] } } });
  });

  it('a grant naming a subfolder root: the agent still names files from the binding\'s root, and reaches only the subfolder', async () => {
    const image = fx.image(
      'rooted',
      `export default async (input, caps) => {
        const out = [await caps.notes.read('sub/x.txt')];
        try { await caps.notes.read('x.txt'); out.push('read x.txt'); } catch (e) { out.push(e.code); }
        return out;
      }`,
      [NOTES],
    );
    await fx.grant(image.digest, { capability: 'notes', methods: ['read'], mode: 'contained', scope: { root: path.join(notes, 'sub') } });
    const alice = await fx.operator('alice');
    const seen = nextCreated(alice, image.digest);
    const { outcome } = await run(image, null);
    const request = await seen; // x.txt means notes/x.txt: outside the grant, so it escalates
    expect(request).toMatchObject({ method: 'read', args: 'x.txt' });
    await alice.decide({ requestId: request.id, verdict: 'deny', reason: 'not granted' });
    expect(await outcome).toMatchObject({ status: 'ok', value: ['in sub', 'ESCALATION_DENIED'] });
  });
});
