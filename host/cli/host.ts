/**
 * `contained host [--config contained.config.json] [--port N] [--in-process]`: the long-running
 * host (store, grants, gate, operator channel, run API). `contained submit agent.tgz …`: submit a
 * run to a running host, wait while its requests are decided, print the outcome.
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { ContainedError } from '../../runtime/errors.js';
import type { RunOutcome } from '../../runtime/index.js';
import { loadHostConfig } from '../config.js';
import { createHostLogger } from '../logger.js';
import { startHost } from '../host.js';
import type { RunRecord } from '../model.js';
import { type CliIo, intFlag, parseFlags, stringFlag } from './args.js';
import { endpointFrom, hostFetch } from './endpoint.js';
import { exitCodeFor, printOutcome } from './run.js';

const HOST_USAGE = `Usage: contained host [--config contained.config.json] [--port N] [--in-process]

Starts the host: the embedded store in the data folder, the capability instances of the config,
the policy gate, the operator WebSocket channel and the run API, on one port (loopback by default).
`;

const SUBMIT_USAGE = `Usage: contained submit <image.tgz> [--input JSON|@file] [--staged] [--url URL] [--token TOKEN] [--json] [--no-wait]

Submits a run to a running host (URL and token also from CONTAINED_URL / CONTAINED_TOKEN; the URL is
the host's http://HOST:PORT or its ws://HOST:PORT/v1/operator, default http://127.0.0.1:7420; the
token needs the platform or admin role), waits while its requests are decided, and prints the outcome.
Exit codes as for 'contained run'; 1 with HOST_UNREACHABLE when the host cannot be reached.

--staged stages the run: reads happen, every other call is recorded and answered from a staged
view; when the run ends its effects wait, as one changeset request, for operators to approve
(contained changeset show|undo, docs/changesets.md). The outcome printed is the staged run's.
`;

function hostLogger(): Logger {
  if (process.stdout.isTTY) {
    try {
      return createHostLogger({ transport: { target: 'pino-pretty', options: { colorize: true } } });
    } catch {
      // pino-pretty not installed: JSON lines it is.
    }
  }
  return createHostLogger();
}

export async function hostCommand(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(argv, { config: { type: 'string' }, port: { type: 'string' }, 'in-process': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } });
  if (values.help) {
    io.stdout(HOST_USAGE);
    return 0;
  }
  const config = await loadHostConfig(stringFlag(values, 'config'));
  const port = intFlag(values, 'port');
  if (port !== undefined) config.listen.port = port;
  const logger = hostLogger();
  // Crash tests kill the host between a durable decision and the action (never set in production).
  const fault = process.env.CONTAINED_FAULT === 'kill-after-decision';
  let stopped: ((reason: ContainedError) => void) | undefined;
  const host = await startHost({
    config,
    logger,
    onStopped: (reason) => stopped?.(reason),
    isolation: values['in-process'] ? 'in-process' : 'worker',
    ...(fault ? { afterDecision: (r) => { if (r.status === 'approved') process.kill(process.pid, 'SIGKILL'); } } : {}),
  });
  io.stdout(`contained host listening on ${host.url} (operator channel ${host.url?.replace(/^http/, 'ws')}/v1/operator, data in ${config.dataDir})\n`);
  io.stdout(`  web console  ${host.url}/console/   (log in with an operator token: contained token create --name NAME --role approver)\n`);
  io.stdout(`  run API      ${host.url}/v1/runs    (platform tokens; docs/http-api.md)\n`);
  const reason = await new Promise<ContainedError | undefined>((resolve) => {
    const stop = (): void => resolve(undefined);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    stopped = resolve;
  });
  if (reason) {
    // The host has closed itself (HOST_REAPED); exit non-zero so a supervisor restarts it.
    io.stderr(`contained host: ${reason.code}: ${reason.message}\n`);
    return 1;
  }
  await host.close();
  return 0;
}

export async function submitCommand(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    input: { type: 'string' },
    url: { type: 'string' },
    token: { type: 'string' },
    json: { type: 'boolean' },
    'no-wait': { type: 'boolean' },
    staged: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    io.stdout(SUBMIT_USAGE);
    return 0;
  }
  const file = positionals[0];
  if (!file || positionals.length > 1) throw new ContainedError('USAGE', `submit takes exactly one image\n\n${SUBMIT_USAGE}`);
  const base = endpointFrom(values, process.env).http;
  const token = stringFlag(values, 'token') ?? process.env.CONTAINED_TOKEN;
  if (!token) throw new ContainedError('USAGE', 'submit needs a platform token: pass --token or set CONTAINED_TOKEN');
  let image: Buffer;
  try {
    image = await readFile(file);
  } catch {
    throw new ContainedError('USAGE', `cannot read ${file}`);
  }
  const inputFlag = stringFlag(values, 'input');
  let input: unknown = null;
  if (inputFlag !== undefined) {
    const text = inputFlag.startsWith('@') ? await readFile(inputFlag.slice(1), 'utf8').catch(() => { throw new ContainedError('USAGE', `--input: cannot read ${inputFlag.slice(1)}`); }) : inputFlag;
    try {
      input = JSON.parse(text) as unknown;
    } catch {
      throw new ContainedError('USAGE', '--input must be JSON (or @file holding JSON)');
    }
  }
  const submitted = (await api(`${base}/v1/runs`, token, { method: 'POST', body: JSON.stringify({ image: image.toString('base64'), input, ...(values.staged ? { staged: true } : {}) }) })) as { runId: string; digest: string };
  if (values['no-wait']) {
    io.stdout(values.json ? `${JSON.stringify(submitted)}\n` : `submitted run ${submitted.runId} (${submitted.digest})\n`);
    return 0;
  }
  if (!values.json) io.stderr(`run ${submitted.runId} submitted; waiting (requests may need an operator's decision)…\n`);
  for (;;) {
    const run = (await api(`${base}/v1/runs/${submitted.runId}?waitMs=60000`, token, { method: 'GET' })) as RunRecord;
    if (run.status !== 'running' && run.status !== 'queued' && run.outcome) {
      const outcome = run.outcome as RunOutcome;
      if (values.json) io.stdout(`${JSON.stringify({ runId: run.id, ...outcome })}\n`);
      else printOutcome(outcome, io);
      if (values.staged && !values.json && outcome.status === 'ok') io.stderr(`staged: its effects, if any, wait as one changeset request of run ${submitted.runId} (contained operator; docs/changesets.md)\n`);
      return exitCodeFor(outcome);
    }
  }
}

/** The run API; not reaching the host is HOST_UNREACHABLE (endpoint.ts). */
function api(url: string, token: string, init: { method: string; body?: string }): Promise<unknown> {
  return hostFetch(url, token, init);
}
