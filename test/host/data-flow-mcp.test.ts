/**
 * The data-flow rule with MCP tools, in a real host with @modelcontextprotocol/server-everything
 * over stdio: a tool can be the sensitive source (`getSum`, as configured) and a tool the operator
 * marks open-world (`echo`: its hint says closed, the host config's risk override raises it) is
 * held after it; a tool that stays closed-world (`getSum` itself) never is.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RequestView } from '../../host/operator/backend.js';
import type { OperatorEvent } from '../../host/operator/client.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

const BIN = path.resolve('node_modules/.bin');
const EVERYTHING = { capability: 'everything', kind: 'mcp', scope: {}, methods: ['getSum', 'echo'], why: 'sums and echoes' };

let fx: Fixture;
beforeAll(async () => {
  fx = await startFixture({
    capabilities: {
      everything: {
        kind: 'mcp',
        host: { server: { command: path.join(BIN, 'mcp-server-everything'), args: ['stdio'] }, risk: { echo: { openWorld: true } } },
      },
    },
    dataFlow: { sensitive: [{ label: 'the sums', capability: 'everything', methods: ['getSum'] }] },
  });
});
afterAll(async () => {
  await fx?.close();
});

describe('the data-flow rule and MCP tools', () => {
  it('an open-world tool runs at once before the sensitive tool, and is held after it; the closed-world tool never is', async () => {
    const image = fx.image(
      'mcp-flow',
      `export default async (input, caps) => {
         const before = await caps.everything.echo({ message: 'no data yet' });
         const sum = await caps.everything.getSum({ a: 40, b: 2 });
         const again = await caps.everything.getSum({ a: 1, b: 2 });
         try { await caps.everything.echo({ message: JSON.stringify(sum) }); return [before, 'echoed']; } catch (e) { return [before, e.code]; }
       }`,
      [EVERYTHING],
    );
    await fx.grant(image.digest, { capability: 'everything', methods: ['getSum', 'echo'], mode: 'contained' });
    const alice = await fx.operator('alice');
    const seen = new Promise<RequestView>((resolve) => {
      const off = alice.onEvent((event: OperatorEvent) => {
        if (event.type === 'created' && (event.request as RequestView).subject === image.digest) {
          off();
          resolve(event.request as RequestView);
        }
      });
    });
    const { runId } = await fx.host.submit({ image: image.bytes, input: null });
    const request = await seen;
    expect(request).toMatchObject({ kind: 'recommendation', capability: 'everything', method: 'echo', args: { message: expect.stringContaining('42') } });
    expect(request.why).toContain('this run read the sums (sensitive) before this call');
    expect((await fx.host.requests.pending()).filter((r) => r.runId === runId)).toHaveLength(1);
    await alice.decide({ requestId: request.id, verdict: 'deny', reason: 'keep the sums here' });
    expect(await fx.host.waitForRun(runId)).toMatchObject({ status: 'ok', value: [expect.stringMatching(/no data yet/), 'ESCALATION_DENIED'] });
    expect(await fx.host.store.getRun(runId)).toMatchObject({ sensitiveSources: ['the sums'] });
  });
});
