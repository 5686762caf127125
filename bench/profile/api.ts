/**
 * Where the HTTP API's runs per second go, against direct library calls on the same host (the
 * `npm run bench -- api` pair): CPU of this process per run on each path, store operations per
 * run, and the floor of the HTTP exchange itself — the same fetch client and two requests per run
 * (POST, then GET) against a bare `node:http` server that answers small JSON at once. The HTTP
 * path is measured twice: with the fetch client in this process (its CPU counted here), and with
 * the client in its own process as in the bench (bench/api-client.ts). Not part of `npm run bench`:
 *
 *   node --no-node-snapshot --import tsx bench/profile/api.ts
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { clientProcess, direct, exampleHost, overHttp, rate } from '../api.js';
import { round } from '../report.js';

const RUNS = 500;

function cpuMs(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
}

async function httpFloor(): Promise<void> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const body = req.method === 'POST' ? JSON.stringify({ runId: '00000000-0000-4000-8000-000000000000', digest: `sha256:${'0'.repeat(64)}`, status: 'running' }) : JSON.stringify({ id: 'x', status: 'ok', outcome: { status: 'ok', value: 1, logs: [], usage: {} } });
      res.writeHead(req.method === 'POST' ? 202 : 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const headers = { authorization: 'Bearer x', 'content-type': 'application/json' };
  const one = async (): Promise<void> => {
    await (await fetch(`${base}/v1/runs`, { method: 'POST', headers, body: JSON.stringify({ digest: 'x', input: {} }) })).json();
    await (await fetch(`${base}/v1/runs/x?waitMs=30000`, { headers })).json();
  };
  await rate(one);
  const c0 = process.cpuUsage();
  const perSecond = await rate(one);
  const cpu = cpuMs(c0) / RUNS;
  server.close();
  console.log(JSON.stringify({ section: 'HTTP floor: fetch POST + GET against a bare node:http server, 20 clients', pairsPerSecond: round(perSecond, 1), cpuMsPerPair: round(cpu, 3) }));
}

async function hostPaths(isolation: 'in-process' | 'worker'): Promise<void> {
  const h = await exampleHost(isolation);
  const counts = new Map<string, number>();
  const store = h.host.store as unknown as Record<string, unknown>;
  for (const name of Object.getOwnPropertyNames(Object.getPrototypeOf(store))) {
    if (!/^(insert|update|add|resolve|claim|complete|revoke|get|list|find)[A-Z]/.test(name) || typeof store[name] !== 'function') continue;
    const original = store[name] as (...a: unknown[]) => unknown;
    store[name] = function (this: unknown, ...a: unknown[]) {
      counts.set(name, (counts.get(name) ?? 0) + 1);
      return original.apply(this, a);
    };
  }
  const base = h.host.url as string;
  const client = await clientProcess(base, h.token, h.digest);
  try {
    await rate((i) => (i % 2 === 0 ? direct(h.host, h.digest, i) : overHttp(base, h.token, h.digest, i)));
    await client.round(100);
    for (const [path, one] of [
      ['direct', (i: number) => direct(h.host, h.digest, i)],
      ['http', (i: number) => overHttp(base, h.token, h.digest, i)],
      ['http, client in its own process', async (i: number) => {
        if (i === 0) await client.round(RUNS);
      }],
    ] as const) {
      counts.clear();
      const c0 = process.cpuUsage();
      const perSecond = await rate(one);
      const cpu = cpuMs(c0) / RUNS;
      console.log(
        JSON.stringify({
          section: `host runs, ${isolation}`,
          path,
          runsPerSecond: round(perSecond, 1),
          cpuMsPerRunInThisProcess: round(cpu, 3),
          storeCallsPerRun: Object.fromEntries([...counts].map(([k, v]) => [k, round(v / RUNS, 2)])),
        }),
      );
    }
  } finally {
    client.close();
    await h.close();
  }
}

await httpFloor();
await hostPaths('in-process');
await hostPaths('worker');
