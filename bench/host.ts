/**
 * Host benchmarks: the escalation round trip (sandbox call → operator receives it over WebSocket →
 * automated approve → sandbox resumes) and the time for an operator connecting to 10,000 pending
 * requests to receive the whole snapshot. Real host, real store, real sockets on loopback.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { parseHostConfig } from '../host/config.js';
import { startHost } from '../host/host.js';
import type { RequestRecord } from '../host/model.js';
import { OperatorClient } from '../host/operator/client.js';
import { createToken } from '../host/tokens.js';

import { packImage } from '../sandbox-images/pack.js';
import { type BenchRow, pct, round } from './report.js';

export async function benchHost(): Promise<{ dir: string; host: Awaited<ReturnType<typeof startHost>>; approver: string; close(): Promise<void> }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-bench-host-'));
  mkdirSync(path.join(dir, 'notes'));
  writeFileSync(path.join(dir, 'notes', 'a.txt'), 'x');
  const config = parseHostConfig({ dataDir: dir, listen: { host: '127.0.0.1', port: 0 }, capabilities: { notes: { kind: 'fs', scope: { root: path.join(dir, 'notes'), readOnly: true } } } }, dir);
  const host = await startHost({ config, isolation: 'in-process', logger: pino({ level: 'silent' }) });
  const approver = (await createToken({ name: 'bench', role: 'approver', createdBy: 'bench' }, host.store)).token;
  return {
    dir,
    host,
    approver,
    async close() {
      await host.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function escalationRoundTrip(): Promise<BenchRow[]> {
  const N = 150;
  const b = await benchHost();
  // Five automated approvers, each taking its share: the channel rate-limits every connection
  // (20 messages/s, burst 40), which a single bot approving 150 requests at once would exceed.
  const ops = await Promise.all(
    Array.from({ length: 5 }, () => OperatorClient.connect({ url: `${b.host.url?.replace(/^http/, 'ws')}/v1/operator`, token: b.approver, requestTimeoutMs: 60_000 })),
  );
  for (const [k, op] of ops.entries()) {
    op.onEvent((event) => {
      if (event.type !== 'created' || Number.parseInt(event.request.id.slice(0, 8), 16) % ops.length !== k) return;
      op.decide({ requestId: event.request.id, verdict: 'approve', span: 'once' }).catch((error: unknown) => {
        process.stderr.write(`bench approve failed: ${String((error as Error).message)}\n`);
      });
    });
  }
  const manifest = { format: 1, name: 'bench', version: '1.0.0', description: 'escalates', entry: 'main.js', requests: [{ capability: 'notes', kind: 'fs', scope: {}, methods: ['read'], why: 'bench' }], limits: { wallMs: 600_000, cpuMs: 60_000 } };
  const files = new Map<string, Uint8Array>([
    ['manifest.json', Buffer.from(JSON.stringify(manifest))],
    ['main.js', Buffer.from(`export default async (n, caps) => { const t0 = Date.now(); for (let i = 0; i < n; i++) await caps.notes.read('a.txt'); return (Date.now() - t0) / n; }`)],
  ]);
  // Time each decision inside the gate (opened → operator decides → resolved), and the whole loop from the agent.
  const decideTimes: number[] = [];
  const gate = b.host.gate;
  const original = gate.decide.bind(gate);
  gate.decide = async (call, ctx) => {
    const t0 = performance.now();
    const decision = await original(call, ctx);
    decideTimes.push(performance.now() - t0);
    return decision;
  };
  const { runId } = await b.host.submit({ image: packImage(files), input: N });
  const outcome = await b.host.waitForRun(runId);
  await Promise.all(ops.map((op) => op.close()));
  await b.close();
  const rows: BenchRow[] = [
    { name: 'escalation round trip p50 (gate: open → operator over ws → approve → resume)', value: round(pct(decideTimes, 50)), unit: 'ms', target: '≤ 1 ms (durable)' },
    { name: 'escalation round trip p99', value: round(pct(decideTimes, 99)), unit: 'ms' },
  ];
  if (outcome.status === 'ok') rows.push({ name: 'escalated call, mean seen by the agent', value: round(outcome.value as number), unit: 'ms' });
  return rows;
}

export async function operatorSnapshot(): Promise<BenchRow[]> {
  const COUNT = 10_000;
  const b = await benchHost();
  const now = Date.now();
  for (let i = 0; i < COUNT; i++) {
    const request: RequestRecord = {
      id: randomUUID(),
      kind: 'recommendation',
      runId: randomUUID(),
      subject: `sha256:${'0'.repeat(64)}`,
      capability: 'notes',
      definition: 'fs',
      method: 'read',
      args: `report-${i}.md`,
      reason: 'summarise the week',
      why: 'assisted mode (bench)',
      approvalsRequired: 1,
      approvals: [],
      status: 'pending',
      createdAt: now,
      expiresAt: now + 3_600_000,
    };
    await b.host.store.insertRequest(request);
  }
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const op = await OperatorClient.connect({ url: `${b.host.url?.replace(/^http/, 'ws')}/v1/operator`, token: b.approver, connectTimeoutMs: 30_000 });
    samples.push(performance.now() - t0);
    if (op.pending.size !== COUNT) throw new Error(`snapshot had ${op.pending.size} requests`);
    await op.close();
  }
  await b.close();
  return [{ name: `operator snapshot of ${COUNT} pending requests (connect → complete)`, value: round(pct(samples, 50)), unit: 'ms', target: '≤ 250 ms' }];
}

