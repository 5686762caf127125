/**
 * What an escalation round trip waits for: a real host (in-process isolates, SQLite store with
 * synchronous=FULL, audit log), one agent making sequential calls no grant covers, one automated
 * approver over the operator WebSocket. Every store method and every audit-log batch commit is
 * wrapped on the live instances and timed; each gate decision gets the operations that ran while
 * it was open. Not part of `npm run bench`; run it alone:
 *
 *   node --no-node-snapshot --import tsx bench/profile/escalation.ts
 *
 * Prints, per decision (median over the calls): the durable commits on the path (store writes,
 * audit batches), their time, and the legs: request stored → operator hears it → approval sent →
 * approval committed → gate returns.
 */
import { OperatorClient } from '../../host/operator/client.js';
import { packImage } from '../../sandbox-images/pack.js';
import { benchHost } from '../host.js';
import { pct, round } from '../report.js';

const CALLS = 120;
const READS = /^(get|list|find)/;

type Op = { name: string; start: number; end: number };

function median(samples: readonly number[]): number {
  return round(pct(samples, 50), 3);
}

const b = await benchHost();
const ops: Op[] = [];
const wrap = (target: object, name: string, label: string): void => {
  const obj = target as Record<string, unknown>;
  const original = obj[name] as (...a: unknown[]) => unknown;
  obj[name] = function (this: unknown, ...a: unknown[]) {
    const op: Op = { name: label, start: performance.now(), end: Number.NaN };
    ops.push(op);
    const out = original.apply(this, a);
    if (out instanceof Promise) return out.finally(() => (op.end = performance.now()));
    op.end = performance.now();
    return out;
  };
};
const store = b.host.store as unknown as Record<string, unknown>;
// The Store interface's methods (store.ts), not the SQLite class's private helpers.
const STORE_METHOD = /^(insert|update|add|resolve|claim|complete|revoke|get|list|find)[A-Z]/;
for (const name of Object.getOwnPropertyNames(Object.getPrototypeOf(store))) {
  if (STORE_METHOD.test(name) && typeof store[name] === 'function') wrap(store, name, `store.${name}`);
}
// The audit log's group commit: one IMMEDIATE transaction (one fsync) per batch.
wrap(b.host.audit, 'commitBatch', 'audit.commitBatch');

// Five approvers, each taking its share: the channel allows 20 messages/s per connection (burst
// 40), so no approval here waits on the rate limit.
const operators = await Promise.all(
  Array.from({ length: 5 }, () => OperatorClient.connect({ url: `${b.host.url?.replace(/^http/, 'ws')}/v1/operator`, token: b.approver, requestTimeoutMs: 60_000 })),
);
const heard = new Map<string, number>();
const sent = new Map<string, number>();
for (const [k, op] of operators.entries()) {
  op.onEvent((event) => {
    if (event.type !== 'created' || Number.parseInt(event.request.id.slice(0, 8), 16) % operators.length !== k) return;
    heard.set(event.request.id, performance.now());
    sent.set(event.request.id, performance.now());
    op.decide({ requestId: event.request.id, verdict: 'approve', span: 'once' }).catch((error: unknown) => {
      process.stderr.write(`approve failed: ${String((error as Error).message)}\n`);
    });
  });
}

const decisions: Array<{ start: number; end: number }> = [];
const gate = b.host.gate;
const original = gate.decide.bind(gate);
gate.decide = async (call, ctx) => {
  const d = { start: performance.now(), end: Number.NaN };
  decisions.push(d);
  const decision = await original(call, ctx);
  d.end = performance.now();
  return decision;
};

const manifest = { format: 1, name: 'bench', version: '1.0.0', description: 'escalates', entry: 'main.js', requests: [{ capability: 'notes', kind: 'fs', scope: {}, methods: ['read'], why: 'bench' }], limits: { wallMs: 600_000, cpuMs: 60_000 } };
const files = new Map<string, Uint8Array>([
  ['manifest.json', Buffer.from(JSON.stringify(manifest))],
  ['main.js', Buffer.from(`export default async (n, caps) => { for (let i = 0; i < n; i++) await caps.notes.read('a.txt'); return n; }`)],
]);
const { runId } = await b.host.submit({ image: packImage(files), input: CALLS });
const outcome = await b.host.waitForRun(runId);
await Promise.all(operators.map((op) => op.close()));
await b.close();
if (outcome.status !== 'ok') throw new Error(JSON.stringify(outcome.error));

const per = { total: [] as number[], commits: [] as number[], commitMs: [] as number[], reads: [] as number[], stored: [] as number[], toOperator: [] as number[], approvalCommitted: [] as number[], afterApproval: [] as number[] };
const names = new Map<string, number>();
const readNames = new Map<string, number>();
for (const d of decisions.slice(5)) {
  const inside = ops.filter((o) => o.start >= d.start && o.end <= d.end);
  const commits = inside.filter((o) => !READS.test(o.name.split('.')[1] ?? ''));
  per.total.push(d.end - d.start);
  per.commits.push(commits.length);
  per.commitMs.push(commits.reduce((s, o) => s + (o.end - o.start), 0));
  per.reads.push(inside.length - commits.length);
  for (const o of commits) names.set(o.name, (names.get(o.name) ?? 0) + 1);
  for (const o of inside) if (!commits.includes(o)) readNames.set(o.name, (readNames.get(o.name) ?? 0) + 1);
  const insert = inside.find((o) => o.name === 'store.insertRequest');
  const approval = inside.find((o) => o.name === 'store.addApproval');
  const requestId = [...heard.keys()].find((id) => (heard.get(id) ?? 0) >= d.start && (heard.get(id) ?? 0) <= d.end);
  if (insert && approval && requestId) {
    per.stored.push(insert.end - d.start);
    per.toOperator.push((heard.get(requestId) ?? 0) - insert.end);
    per.approvalCommitted.push(approval.end - (sent.get(requestId) ?? 0));
    per.afterApproval.push(d.end - approval.end);
  }
}
const decided = decisions.length - 5;
console.log(
  JSON.stringify({
    section: 'escalation round trip (gate.decide: open → operator over ws → approve → resume)',
    decisions: decided,
    p50Ms: median(per.total),
    p50DurableCommits: median(per.commits),
    commitsByKind: Object.fromEntries([...names].map(([n, c]) => [n, round(c / decided, 2)])),
    p50MsInCommits: median(per.commitMs),
    p50StoreReads: median(per.reads),
    readsByKind: Object.fromEntries([...readNames].map(([n, c]) => [n, round(c / decided, 2)])),
    legsP50Ms: {
      openToRequestStored: median(per.stored),
      storedToOperatorHears: median(per.toOperator),
      approvalSentToCommitted: median(per.approvalCommitted),
      approvalCommittedToGateReturns: median(per.afterApproval),
    },
  }),
);
