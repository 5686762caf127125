/**
 * Several hosts on one PostgreSQL (a throwaway cluster, test/helpers/postgres.ts): the escalation
 * round trip with the operator on another host than the run against the same on one host; audit
 * appends per second on PostgreSQL against SQLite (both durable); runs per second with two hosts
 * against one. Real hosts (worker sandboxes), real sockets on loopback. Without PostgreSQL the
 * rows say so.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { loadOrCreateAuditKey } from '../host/audit/keys.js';
import { AuditLog } from '../host/audit/log.js';
import { parseHostConfig } from '../host/config.js';
import { type Host, startHost } from '../host/host.js';
import { OperatorClient } from '../host/operator/client.js';
import { defaultStorePath } from '../host/store/sqlite-store.js';
import { createToken } from '../host/tokens.js';
import { computeDigest } from '../sandbox-images/digest.js';
import { packImage } from '../sandbox-images/pack.js';
import { pgAvailable, pgSkipReason, startPostgres } from '../test/helpers/postgres.js';
import { type BenchRow, pct, round } from './report.js';

interface BenchFleetHost {
  host: Host;
  dir: string;
}

async function fleetHost(root: string, name: string, store: string | undefined, isolation: 'worker' | 'in-process'): Promise<BenchFleetHost> {
  const dir = path.join(root, name);
  mkdirSync(path.join(dir, 'notes'), { recursive: true });
  writeFileSync(path.join(dir, 'notes', 'a.txt'), 'x');
  const config = parseHostConfig(
    {
      dataDir: dir,
      ...(store === undefined ? {} : { store }),
      listen: { host: '127.0.0.1', port: 0 },
      maxConcurrentRuns: 64,
      capabilities: { notes: { kind: 'fs', scope: { root: path.join(dir, 'notes'), readOnly: true } } },
    },
    dir,
  );
  return { dir, host: await startHost({ config, isolation, logger: pino({ level: 'silent' }) }) };
}

function image(name: string, source: string): { bytes: Buffer; digest: string } {
  const manifest = { format: 1, name, version: '1.0.0', description: name, entry: 'main.js', requests: [{ capability: 'notes', kind: 'fs', scope: {}, methods: ['read'], why: 'bench' }], limits: { wallMs: 600_000, cpuMs: 60_000 } };
  const files = new Map<string, Uint8Array>([
    ['manifest.json', Buffer.from(JSON.stringify(manifest))],
    ['main.js', Buffer.from(source)],
  ]);
  return { bytes: packImage(files), digest: computeDigest(files).digest };
}

/** p50 of the gate's decision time for N escalations of one run on `runOn`, approved by bots connected to `decideOn`. */
async function roundTrip(runOn: Host, decideOn: Host, token: string, n: number): Promise<number> {
  const ops = await Promise.all(Array.from({ length: 5 }, () => OperatorClient.connect({ url: `${decideOn.url?.replace(/^http/, 'ws')}/v1/operator`, token, requestTimeoutMs: 60_000 })));
  for (const [k, op] of ops.entries()) {
    op.onEvent((event) => {
      if (event.type !== 'created' || Number.parseInt(event.request.id.slice(0, 8), 16) % ops.length !== k) return;
      op.decide({ requestId: event.request.id, verdict: 'approve', span: 'once' }).catch((error: unknown) => process.stderr.write(`bench approve failed: ${String((error as Error).message)}\n`));
    });
  }
  const times: number[] = [];
  const gate = runOn.gate;
  const original = gate.decide.bind(gate);
  gate.decide = async (call, ctx) => {
    const t0 = performance.now();
    const decision = await original(call, ctx);
    times.push(performance.now() - t0);
    return decision;
  };
  // No grant covers the image: each read escalates.
  const img = image('escalate', `export default async (n, caps) => { for (let i = 0; i < n; i++) await caps.notes.read('a.txt'); return n; }`);
  const { runId } = await runOn.submit({ image: img.bytes, input: n });
  const outcome = await runOn.waitForRun(runId);
  gate.decide = original;
  await Promise.all(ops.map((op) => op.close()));
  if (outcome.status !== 'ok') throw new Error(`bench run failed: ${JSON.stringify(outcome)}`);
  return pct(times, 50);
}

async function runsPerSecond(hosts: Host[], total: number): Promise<number> {
  const img = image('trivial', 'export default async (n) => n + 1');
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: total }, async (_, i) => {
      const host = hosts[i % hosts.length] as Host;
      const { runId } = await host.submit({ image: img.bytes, input: i });
      await host.waitForRun(runId);
    }),
  );
  return total / ((performance.now() - t0) / 1000);
}

async function auditRate(log: AuditLog, callers: number, per: number): Promise<number> {
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async (_, c) => {
      for (let i = 0; i < per; i++) await log.append({ type: 'call', capability: 'notes', method: 'read', callId: `c${c}-${i}`, data: { ok: true } });
    }),
  );
  return (callers * per) / ((performance.now() - t0) / 1000);
}

export async function fleetBench(): Promise<BenchRow[]> {
  if (!pgAvailable) return [{ name: `several hosts: not measured (${pgSkipReason})`, value: 0, unit: '' }];
  const pg = await startPostgres();
  const root = mkdtempSync(path.join(os.tmpdir(), 'contained-bench-fleet-'));
  const rows: BenchRow[] = [];
  try {
    // Escalation round trip: operator on the run's host, then on the other host.
    const db = await pg.createDatabase();
    const a = await fleetHost(root, 'a', db, 'in-process');
    const b = await fleetHost(root, 'b', db, 'in-process');
    const token = (await createToken({ name: 'bench', role: 'approver', createdBy: 'bench' }, a.host.store)).token;
    const N = 150;
    await roundTrip(a.host, a.host, token, 20); // warm both paths
    const same = await roundTrip(a.host, a.host, token, N);
    const cross = await roundTrip(a.host, b.host, token, N);
    rows.push({ name: 'escalation round trip p50, PostgreSQL store, operator on another host (LISTEN/NOTIFY)', value: round(cross), unit: 'ms', peer: 'operator on the run\'s host', peerValue: round(same) });

    // Runs per second: two hosts against one (worker sandboxes; each host its own pool).
    await b.host.close();
    await a.host.close();
    const dbRuns = await pg.createDatabase();
    const one = await fleetHost(root, 'one', dbRuns, 'worker');
    await runsPerSecond([one.host], 200);
    const oneRate = await runsPerSecond([one.host], 1000);
    const two = await fleetHost(root, 'two', dbRuns, 'worker');
    await runsPerSecond([two.host], 200);
    const twoRate = await runsPerSecond([one.host, two.host], 1000);
    await two.host.close();
    await one.host.close();
    rows.push({ name: 'runs per second, two hosts on one PostgreSQL (worker pools), trivial program', value: round(twoRate, 1), unit: 'runs/s', peer: 'one host', peerValue: round(oneRate, 1) });

    // Audit appends, both durable: PostgreSQL (synchronous_commit on) against SQLite (synchronous=FULL).
    const dbAudit = await pg.createDatabase();
    const { openPgStore } = await import('../host/store/pg-store.js');
    await (await openPgStore(dbAudit)).close(); // the schema
    const keyDir = path.join(root, 'audit');
    for (const d of [keyDir, path.join(root, 'audit-pg'), path.join(root, 'audit-sqlite')]) mkdirSync(d, { recursive: true });
    const key = loadOrCreateAuditKey(keyDir);
    const onPg = new AuditLog({ file: defaultStorePath(path.join(root, 'audit-pg')), postgres: dbAudit, key, checkpointIntervalMs: 0, inboxPollMs: 0 });
    await auditRate(onPg, 16, 50);
    const pgRate = await auditRate(onPg, 64, 200);
    await onPg.close();
    const onSqlite = new AuditLog({ file: defaultStorePath(path.join(root, 'audit-sqlite')), key, synchronous: 'full', checkpointIntervalMs: 0, inboxPollMs: 0 });
    await auditRate(onSqlite, 16, 50);
    const sqliteRate = await auditRate(onSqlite, 64, 200);
    await onSqlite.close();
    rows.push({ name: 'audit append on PostgreSQL, 64 callers each awaiting its record (durable commit)', value: round(pgRate, 1), unit: 'records/s', peer: 'SQLite (synchronous=FULL)', peerValue: round(sqliteRate, 1) });
    return rows;
  } finally {
    await pg.stop();
    rmSync(root, { recursive: true, force: true });
  }
}
