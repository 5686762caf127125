/**
 * Policy-gate decision: how long `PolicyGate.decide` takes for a call a grant covers, with 10 and
 * with 10,000 grants in a real SQLite store (the host's store, `synchronous=FULL`, in a temp data
 * folder). The covering grant sits among grants of other agents and capabilities, as on a host
 * that serves many images. No audit hooks: this is the decision alone (in the host, `decided`
 * then commits the call's intent before the action runs; see docs/performance.md).
 *
 * The two gates are timed in alternating rounds and the median of all samples of each is taken,
 * so machine noise and JIT warm-up hit both alike. Target: the 10,000-grant decision within 1.2×
 * of the 10-grant one, and at most 20 µs.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { createInstance, defineCapability } from '../capabilities/sdk/index.js';
import { PolicyGate } from '../host/gate/policy-gate.js';
import { RequestManager } from '../host/gate/requests.js';
import { GrantService } from '../host/grant-service.js';
import type { Grant } from '../host/model.js';
import { openSqliteStore } from '../host/store/sqlite-store.js';
import type { GateCall, GateContext } from '../runtime/gate.js';
import { type BenchRow, pct, round } from './report.js';

const SMALL = 10;
const LARGE = 10_000;
/** Rounds alternating between the two gates; each times up to ROUND decisions or ROUND_MS of them. */
const ROUNDS = 20;
const ROUND = 100;
const ROUND_MS = 400;

const probe = defineCapability({
  name: 'bench',
  description: 'benchmark capability',
  scope: z.strictObject({}),
  intersect: (a) => a,
  describeScope: () => 'anything',
  methods: {
    noop: { description: 'does nothing', args: z.number().optional(), result: z.null(), risk: { readOnly: true }, run: () => null },
  },
});

function digest(): string {
  return `sha256:${randomBytes(32).toString('hex')}`;
}

function grant(subject: string, capability: string, createdAt: number): Grant {
  return {
    id: `grt_${randomBytes(8).toString('hex')}`,
    subject: { digest: subject },
    capability,
    methods: ['noop'],
    mode: 'contained',
    approvals: 1,
    createdBy: 'bench',
    reason: 'bench',
    createdAt,
  };
}

interface GateUnderTest {
  decide(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A gate over a store holding `count` active grants, one of which covers the call `decide` makes
 * (in the middle of the list: the store lists oldest first). Seeded with synchronous=NORMAL (no
 * fsync per insert), then reopened as the host opens it.
 */
async function gateWith(count: number): Promise<GateUnderTest> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-bench-gate-'));
  const file = path.join(dir, 'contained.db');
  const subject = digest();
  const now = Date.now();
  const seed = await openSqliteStore(file, { synchronous: 'normal' });
  const capabilities = ['bench', 'notes', 'records', 'mail'];
  for (let i = 0; i < count; i++) {
    const mine = i === Math.floor(count / 2);
    await seed.insertGrant(grant(mine ? subject : digest(), mine ? 'bench' : (capabilities[i % capabilities.length] as string), now - count + i));
  }
  await seed.close();

  const store = await openSqliteStore(file);
  const host = createInstance(probe, {}, {});
  const instances = new Map([['bench', host]]);
  const grants = new GrantService({ store, instances });
  const requests = new RequestManager({
    store,
    validateEdit: async () => {
      throw new Error('not used: the bench call is covered by a grant');
    },
    performDetached: async () => {
      throw new Error('not used: the bench call is covered by a grant');
    },
  });
  const run = { subject: { digest: subject, name: undefined, signers: [] }, allowances: [] };
  const gate = new PolicyGate({ grants, requests, instances, run: () => run, outOfScope: 'deny', requestTimeoutMs: 60_000 });
  const ctx: GateContext = { signal: new AbortController().signal, pauseWallClock: () => () => {} };
  let seq = 0;
  const call = (): GateCall => ({
    callId: `call-${++seq}`,
    runId: 'bench-run',
    subject,
    capability: 'bench',
    definition: 'bench',
    method: 'noop',
    args: 1,
    reason: undefined,
    risk: host.risk('noop'),
    scope: host.checkScope('noop', 1),
  });
  // Fail loudly rather than time a refusal.
  const first = await gate.decide(call(), ctx);
  if (!first.allow || !first.basis?.startsWith('grant:')) throw new Error(`bench gate did not allow by grant: ${JSON.stringify(first)}`);
  return {
    async decide() {
      await gate.decide(call(), ctx);
    },
    async close() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function policyGateDecision(): Promise<BenchRow[]> {
  const small = await gateWith(SMALL);
  const large = await gateWith(LARGE);
  const times: Record<'small' | 'large', number[]> = { small: [], large: [] };
  try {
    for (let r = 0; r < ROUNDS; r++) {
      for (const [key, gate] of [['small', small], ['large', large]] as const) {
        // The first decisions of a round warm the code path of this gate again.
        for (let i = 0; i < 3; i++) await gate.decide();
        // A slow gate (a full scan per decision) gets fewer samples, not a longer bench.
        const start = performance.now();
        for (let i = 0; i < ROUND && (i < 3 || performance.now() - start < ROUND_MS); i++) {
          const t0 = performance.now();
          await gate.decide();
          times[key].push((performance.now() - t0) * 1000);
        }
      }
    }
  } finally {
    await small.close();
    await large.close();
  }
  const p50Small = round(pct(times.small, 50), 1);
  process.stderr.write(`bench: policyGate samples ${times.small.length} (${SMALL} grants), ${times.large.length} (${LARGE} grants)\n`);
  return [
    { name: `policy-gate decision p50, call covered by a grant, ${SMALL} grants in the store`, value: p50Small, unit: 'µs', target: '≤ 20 µs' },
    {
      name: `policy-gate decision p50, call covered by a grant, ${LARGE.toLocaleString('en')} grants in the store`,
      value: round(pct(times.large, 50), 1),
      unit: 'µs',
      peer: `${SMALL} grants`,
      peerValue: p50Small,
      target: '≤ 1.2× and ≤ 20 µs',
    },
  ];
}
