/**
 * API throughput: runs per second of an example image (records-cleanup, dry run: one SQL query
 * through a `contained` grant and a log line) submitted through the HTTP API by 20 concurrent
 * clients (POST /v1/runs by digest, then GET ?waitMs= until the outcome), against the same runs
 * through direct library calls on the same host (`host.submitDigest` + `host.waitForRun`, 20 at a
 * time). The ratio is the cost of HTTP, JSON, authentication and polling. Real host, real store,
 * loopback; in-process isolates and the worker pool. The HTTP clients run in a process of their own
 * (api-client.ts), as real clients do: the fetch client's own CPU is not the API's. The two paths
 * run in alternating rounds, so a noisy neighbour on this shared machine hits both alike.
 */
import { fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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

/** Rounds alternating between the two paths (the machine is shared and noisy: both get the same share of it). */
const ROUNDS = 6;

/** Run `runs` runs with `CLIENTS` workers each doing `one` in turn; runs per second. */
export async function rate(one: (i: number) => Promise<void>, runs: number = RUNS): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      for (let i = next++; i < runs; i = next++) await one(i);
    }),
  );
  return runs / ((performance.now() - t0) / 1000);
}

/**
 * Both paths in ROUNDS alternating rounds of RUNS / ROUNDS runs each (which goes first alternates
 * too): `a` here, `b` a round run elsewhere (the client process) answering its runs per second.
 * Runs per second of each over all its rounds, and the per-round ratios b/a, sorted.
 */
export async function interleaved(a: (i: number) => Promise<void>, b: (runs: number) => Promise<number>): Promise<{ a: number; b: number; ratios: number[] }> {
  const per = Math.ceil(RUNS / ROUNDS);
  let timeA = 0;
  let timeB = 0;
  const ratios: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let ra: number;
    let rb: number;
    if (r % 2 === 0) {
      ra = await rate(a, per);
      rb = await b(per);
    } else {
      rb = await b(per);
      ra = await rate(a, per);
    }
    timeA += per / ra;
    timeB += per / rb;
    ratios.push(rb / ra);
  }
  return { a: (per * ROUNDS) / timeA, b: (per * ROUNDS) / timeB, ratios: ratios.sort((p, q) => p - q) };
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

/** The HTTP client in its own process (api-client.ts): `round(runs)` runs that many and answers runs per second. */
export async function clientProcess(base: string, token: string, digest: string): Promise<{ round(runs: number): Promise<number>; close(): void }> {
  const child = fork(fileURLToPath(new URL('./api-client.ts', import.meta.url)), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const next = (): Promise<{ ready?: boolean; perSecond?: number; error?: string }> =>
    new Promise((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (code) => reject(new Error(`bench api client exited (${String(code)})`)));
    });
  const ready = next();
  child.send({ base, token, digest });
  await ready;
  return {
    async round(runs) {
      const answer = next();
      child.send({ runs });
      const { perSecond, error } = await answer;
      if (error !== undefined || perSecond === undefined) throw new Error(`bench api client: ${error ?? 'no answer'}`);
      return perSecond;
    },
    close: () => child.disconnect(),
  };
}

export async function apiThroughput(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const isolation of ['in-process', 'worker'] as const) {
    const h = await exampleHost(isolation);
    const base = h.host.url as string;
    const client = await clientProcess(base, h.token, h.digest);
    try {
      // Warm both paths (JIT, isolate pool, SQLite pages, the client) before measuring.
      await rate((i) => direct(h.host, h.digest, i), 100);
      await client.round(100);
      const { a: library, b: api, ratios } = await interleaved(
        (i) => direct(h.host, h.digest, i),
        (runs) => client.round(runs),
      );
      process.stderr.write(`bench: api ${isolation}: per-round ratios ${ratios.map((r) => r.toFixed(2)).join(' ')}\n`);
      rows.push({
        name: `runs per second through the HTTP API (${CLIENTS} clients, records-cleanup, ${isolation})`,
        value: Math.round(api * 10) / 10,
        unit: 'runs/s',
        peer: 'direct library calls (host.submitDigest + waitForRun)',
        peerValue: Math.round(library * 10) / 10,
        target: '≥ 0.9×',
      });
    } finally {
      client.close();
      await h.close();
    }
  }
  return rows;
}
