/**
 * `run` over stdio for a trivial program against the same run through the library API. Ours: the
 * official SDK client calls the `run` tool of a real `contained mcp --agent bench --in-process`
 * process (spawned as an MCP client would: JSON-RPC over its stdin/stdout; the process is a host
 * with its store, gate and run service). Peers, in this process: the same code under the same
 * agent subject through the host library (`host.runs.submitCode` + `waitForRun`, in-process
 * isolation), and the bare sandbox (`createSandbox().run`). Sequential calls; p50 and p90.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import pino from 'pino';
import { agentRunSubject, createAgent } from '../host/agents.js';
import { loadHostConfig } from '../host/config.js';
import { formatSubject } from '../host/grants.js';
import { startHost } from '../host/host.js';
import { defaultStorePath, openSqliteStore } from '../host/store/sqlite-store.js';
import { createSandbox } from '../runtime/index.js';
import { programFromSource } from '../runtime/program.js';
import { type BenchRow, pct, round } from './report.js';

const N = 300;
const WARM = 30;
const CODE = 'export default function main(input) { return input + 1; }';
const SUBJECT = { digest: `sha256:${'be'.repeat(32)}` };

async function timed(n: number, f: (i: number) => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < WARM; i++) await f(i);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await f(i);
    out.push(performance.now() - t0);
  }
  return out;
}

export async function mcpStdioRun(): Promise<BenchRow[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-bench-mcp-'));
  const configFile = path.join(dir, 'contained.config.json');
  mkdirSync(path.join(dir, 'data'));
  writeFileSync(configFile, JSON.stringify({ dataDir: path.join(dir, 'data'), listen: { host: '127.0.0.1', port: 0 }, mcp: { runsPerMinute: 1_000_000 } }));
  const store = await openSqliteStore(defaultStorePath(path.join(dir, 'data')));
  await createAgent({ name: 'bench', subject: formatSubject(SUBJECT), createdBy: 'bench' }, store);
  await store.close();
  try {
    // Ours: the real CLI over stdio.
    const client = new Client({ name: 'bench', version: '1' });
    await client.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: ['--no-node-snapshot', '--import', 'tsx', path.resolve('host/cli/main.ts'), 'mcp', '--config', configFile, '--agent', 'bench', '--in-process'],
        cwd: process.cwd(),
        env: process.env as Record<string, string>,
        stderr: 'ignore',
      }),
    );
    const overStdio = await timed(N, async (i) => {
      const result = await client.callTool({ name: 'run', arguments: { code: CODE, input: i } });
      if (result.isError) throw new Error(`bench run failed: ${JSON.stringify(result.content)}`);
    });
    await client.close();

    // Peer: the same run, same subject, through the host library in this process.
    const host = await startHost({ config: await loadHostConfig(configFile), isolation: 'in-process', listen: false, logger: pino({ level: 'silent' }) });
    const subject = { ...agentRunSubject(SUBJECT), text: formatSubject(SUBJECT) };
    const library = await timed(N, async (i) => {
      const { runId } = await host.runs.submitCode({ program: programFromSource(CODE), input: i, subject });
      const outcome = await host.runs.waitForRun(runId);
      if (outcome.status !== 'ok') throw new Error(`bench run failed: ${JSON.stringify(outcome.error)}`);
    });
    await host.close();

    // Floor: the bare sandbox (no host, no store, no gate).
    const sandbox = createSandbox({ isolation: 'in-process' });
    const bare = await timed(N, (i) => sandbox.run({ source: CODE, input: i }));
    await sandbox.close();

    const rows: BenchRow[] = [];
    for (const p of [50, 90]) {
      const ours = round(pct(overStdio, p));
      rows.push({ name: `MCP run over stdio, trivial program (p${p})`, value: ours, unit: 'ms', peer: 'same run via host library (submitCode + waitForRun)', peerValue: round(pct(library, p)) });
      rows.push({ name: `MCP run over stdio, trivial program (p${p}) vs bare sandbox`, value: ours, unit: 'ms', peer: 'createSandbox().run', peerValue: round(pct(bare, p)) });
    }
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
