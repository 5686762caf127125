/**
 * API throughput: runs per second of an example image (records-cleanup, dry run: one SQL query
 * through a `contained` grant and a log line) submitted through the HTTP API by 20 concurrent
 * clients (POST /v1/runs by digest, then GET ?waitMs= until the outcome), against the same runs
 * through direct library calls on the same host (`host.submitDigest` + `host.waitForRun`, 20 at a
 * time). The ratio is the cost of HTTP, JSON, authentication and polling. Real host, real store,
 * loopback; in-process isolates and the worker pool.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { parseHostConfig } from '../host/config.js';
import { newGrantId } from '../host/grants.js';
import { type Host, startHost } from '../host/host.js';
import { createToken } from '../host/tokens.js';
import { EXAMPLES_DIR } from '../sandbox-images/build-examples.js';
import { buildImage } from '../sandbox-images/build.js';
import type { BenchRow } from './report.js';

const RUNS = 500;
const CLIENTS = 20;

export async function exampleHost(isolation: 'in-process' | 'worker'): Promise<{ host: Host; token: string; digest: string; close(): Promise<void> }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-bench-api-'));
  const db = new Database(path.join(dir, 'records.db'));
  db.exec(readFileSync(path.join(EXAMPLES_DIR, 'records-cleanup', 'data', 'seed.sql'), 'utf8'));
  db.close();
  const config = parseHostConfig(
    { dataDir: dir, listen: { host: '127.0.0.1', port: 0 }, capabilities: { records: { kind: 'sql', scope: { file: path.join(dir, 'records.db'), tables: ['records'] } } } },
    dir,
  );
  const host = await startHost({ config, isolation, logger: pino({ level: 'silent' }) });
  const token = (await createToken({ name: 'bench', role: 'platform', createdBy: 'bench' }, host.store)).token;
  // Uploaded through the API: a platform client runs by digest only the images it uploaded.
  const uploaded = await fetch(`${host.url}/v1/images`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/gzip' },
    body: await buildImage(path.join(EXAMPLES_DIR, 'records-cleanup', 'image')),
  });
  if (uploaded.status !== 201) throw new Error(`image upload failed: HTTP ${uploaded.status}`);
  const { digest } = (await uploaded.json()) as { digest: string };
  await host.store.insertGrant({ id: newGrantId(), subject: { digest }, capability: 'records', methods: ['query'], mode: 'contained', approvals: 1, createdBy: 'bench', reason: 'bench', createdAt: Date.now() });
  return {
    host,
    token,
    digest,
    async close() {
      await host.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Run `RUNS` runs with `CLIENTS` workers each doing `one` in turn; runs per second. */
export async function rate(one: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      for (let i = next++; i < RUNS; i = next++) await one(i);
    }),
  );
  return RUNS / ((performance.now() - t0) / 1000);
}

export async function overHttp(base: string, token: string, digest: string, i: number): Promise<void> {
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  let res = await fetch(`${base}/v1/runs`, { method: 'POST', headers, body: JSON.stringify({ digest, input: { olderThanDays: 30 + (i % 50), dryRun: true } }) });
  while (res.status === 429) {
    await res.arrayBuffer();
    await new Promise((r) => setTimeout(r, Number(res.headers.get('retry-after') ?? 1) * 10));
    res = await fetch(`${base}/v1/runs`, { method: 'POST', headers, body: JSON.stringify({ digest, input: { olderThanDays: 30 + (i % 50), dryRun: true } }) });
  }
  const { runId } = (await res.json()) as { runId: string };
  for (;;) {
    const run = (await (await fetch(`${base}/v1/runs/${runId}?waitMs=30000`, { headers })).json()) as { status: string; outcome?: unknown };
    if (run.outcome !== undefined) {
      if (run.status !== 'ok') throw new Error(`bench run failed: ${JSON.stringify(run.outcome)}`);
      return;
    }
  }
}

export async function direct(host: Host, digest: string, i: number): Promise<void> {
  const { runId } = await host.submitDigest({ digest, input: { olderThanDays: 30 + (i % 50), dryRun: true } });
  const outcome = await host.waitForRun(runId);
  if (outcome.status !== 'ok') throw new Error(`bench run failed: ${JSON.stringify(outcome.error)}`);
}

export async function apiThroughput(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const isolation of ['in-process', 'worker'] as const) {
    const h = await exampleHost(isolation);
    try {
      const base = h.host.url as string;
      // Warm both paths (JIT, isolate pool, SQLite pages) before measuring.
      await rate((i) => (i % 2 === 0 ? direct(h.host, h.digest, i) : overHttp(base, h.token, h.digest, i)));
      const library = await rate((i) => direct(h.host, h.digest, i));
      const api = await rate((i) => overHttp(base, h.token, h.digest, i));
      rows.push({
        name: `runs per second through the HTTP API (${CLIENTS} clients, records-cleanup, ${isolation})`,
        value: Math.round(api * 10) / 10,
        unit: 'runs/s',
        peer: 'direct library calls (host.submitDigest + waitForRun)',
        peerValue: Math.round(library * 10) / 10,
        target: '≥ 0.9×',
      });
    } finally {
      await h.close();
    }
  }
  return rows;
}
