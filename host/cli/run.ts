/**
 * `contained run <entry.js | image.tgz> [--input JSON|@file] [--grant SPEC]… [--memory-mb N]
 * [--cpu-ms N] [--wall-ms N] [--smtp URL | --maildir DIR] [--secrets FILE] [--json]`: run one agent
 * program in a worker-process sandbox and print its outcome. Secrets (for http grants' credentials)
 * come from `--secrets FILE` only, checked against the grants before the program starts. Exit codes: 0 ok, 1 agent error (including a crashed sandbox), 2 usage error,
 * 3 limit exceeded. The worker mode means no agent program can make this command die, hang, or
 * exit with any other status.
 */
import { readFile } from 'node:fs/promises';
import type { CapabilityInstance } from '../../capabilities/sdk/index.js';
import { ContainedError } from '../../runtime/errors.js';
import type { LimitsInput } from '../../runtime/limits.js';
import { LIMIT_CODES, type RunOutcome } from '../../runtime/outcome.js';
import { loadProgramFromFile, type Program } from '../../runtime/program.js';
import { earlyWorkerSettled } from '../../runtime/worker-spawn.js';
import { type CliIo, intFlag, listFlag, parseFlags, stringFlag } from './args.js';
import { MAIL_FLAGS, MAIL_USAGE, type RunHost, runHostDeps } from './run-host.js';
import { checkGrantSecrets, loadRunSecrets, SECRETS_USAGE } from './run-secrets.js';
import { loadRunTarget } from './run-target.js';
import { runInWorker } from './run-worker.js';

export const RUN_USAGE = `Usage: contained run <entry.js | image.tgz> [options]

Runs an agent program (an ES module whose default export is main(input, caps)) in a sandbox.

Options:
  --input JSON|@file   input handed to main (default null)
  --grant SPEC         grant a capability, e.g. --grant 'notes=fs:{"root":"./notes","readOnly":true}'
                       (repeatable; see docs/capabilities.md for the syntax; relative paths in
                       scopes are relative to the working directory)
${MAIL_USAGE}
${SECRETS_USAGE}
  --memory-mb N        isolate heap limit, MiB
  --cpu-ms N           CPU time limit, ms (counts code resumed after await)
  --wall-ms N          wall-clock limit, ms
  --json               print the outcome as one JSON object
  --in-process         run the isolate in this process (no worker; for debugging)
  --staged             stage the run: reads happen, every other call is recorded and answered
                       from a staged view; prints the changeset and commits nothing (a preview:
                       committing needs a host, contained submit --staged; docs/changesets.md)

Exit codes: 0 ok, 1 agent error or crashed sandbox, 2 usage error, 3 limit exceeded.
`;

export async function runCommand(argv: string[], io: CliIo, env: Record<string, string | undefined> = process.env): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    ...MAIL_FLAGS,
    input: { type: 'string' },
    grant: { type: 'string', multiple: true },
    secrets: { type: 'string' },
    'memory-mb': { type: 'string' },
    'cpu-ms': { type: 'string' },
    'wall-ms': { type: 'string' },
    json: { type: 'boolean' },
    'in-process': { type: 'boolean' },
    staged: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    io.stdout(RUN_USAGE);
    return 0;
  }
  const target = positionals[0];
  if (!target || positionals.length > 1) throw new ContainedError('USAGE', `run takes exactly one program or image\n\n${RUN_USAGE}`);
  const input = await parseInput(stringFlag(values, 'input'));
  const loaded = await loadRunTarget(target, loadProgramFromFile);
  const limits: LimitsInput = { ...loaded.limits };
  const memoryMb = intFlag(values, 'memory-mb');
  const cpuMs = intFlag(values, 'cpu-ms');
  const wallMs = intFlag(values, 'wall-ms');
  if (memoryMb !== undefined) limits.memoryMb = memoryMb;
  if (cpuMs !== undefined) limits.cpuMs = cpuMs;
  if (wallMs !== undefined) limits.wallMs = wallMs;
  const runHost = runHostDeps(values, env);
  const secretsFile = stringFlag(values, 'secrets');
  const secrets = secretsFile === undefined ? undefined : await loadRunSecrets(secretsFile);
  if (secrets) runHost.host.secrets = secrets;
  const capabilities = await grantsFromFlags(listFlag(values, 'grant'), runHost);
  checkGrantSecrets(capabilities, secrets);
  if (runHost.maildirNotice !== undefined && capabilities.some((c) => c.definition.name === 'outbox')) io.stderr(runHost.maildirNotice);
  // Staged: the same instances, staged into one session; nothing but reads reaches the world.
  const staging = values.staged ? new (await import('../../capabilities/sdk/staging.js')).StagingSession('local') : undefined;
  const staged = staging ? capabilities.map((c) => c.staged(staging)) : capabilities;
  let outcome: RunOutcome;
  // Settles when the sandbox has closed; the outcome is printed before that (the same text, sooner).
  let closed: Promise<void>;
  try {
    ({ outcome, closed } = await runOnce(loaded.program, input, limits, staged, values['in-process'] === true, loaded.subject));
  } finally {
    await staging?.close();
  }
  if (values.json) io.stdout(`${JSON.stringify(staging ? { ...outcome, changeset: { effects: staging.effects } } : outcome)}\n`);
  else {
    printOutcome(outcome, io);
    if (staging) {
      const { formatChangeset } = await import('../changesets/format.js');
      const lines = formatChangeset(staging.effects);
      io.stdout(`staged: ${staging.effects.length} effect${staging.effects.length === 1 ? '' : 's'}, none committed${lines.length ? ':' : ''}\n${lines.map((l) => `  ${l}\n`).join('')}`);
    }
  }
  await closed;
  return exitCodeFor(outcome);
}

/**
 * A run with no capabilities and no limits given goes to a one-worker pool without the runtime's
 * entry module or zod (run-worker.ts: the same run spec, the same pool; its modules are the
 * pool's, which createSandbox loads too); any other run through `createSandbox` (imported here,
 * with zod), which validates the limits.
 */
async function runOnce(
  program: Program,
  input: unknown,
  limits: LimitsInput,
  capabilities: CapabilityInstance[],
  inProcess: boolean,
  subject: string | undefined,
): Promise<{ outcome: RunOutcome; closed: Promise<void> }> {
  // The worker started early is a connection to the resident sandbox process or a fork (run-early.ts).
  if (!inProcess) await earlyWorkerSettled();
  if (!inProcess && capabilities.length === 0 && Object.keys(limits).length === 0) {
    return runInWorker(program, input, subject);
  }
  const { createSandbox } = await import('../../runtime/sandbox.js');
  const sandbox = createSandbox({ isolation: inProcess ? 'in-process' : 'worker', workers: 1 });
  try {
    return { outcome: await sandbox.run({ program, input, limits, capabilities, subject }), closed: Promise.resolve() };
  } finally {
    await sandbox.close();
  }
}

export function exitCodeFor(outcome: RunOutcome): number {
  if (outcome.status === 'ok') return 0;
  if (LIMIT_CODES.has(outcome.error.code)) return 3;
  if (outcome.error.code === 'INVALID_ARGUMENT') return 2;
  return 1;
}

async function parseInput(raw: string | undefined): Promise<unknown> {
  if (raw === undefined) return null;
  let text = raw;
  if (raw.startsWith('@')) {
    try {
      text = await readFile(raw.slice(1), 'utf8');
    } catch {
      throw new ContainedError('USAGE', `--input: cannot read ${raw.slice(1)}`);
    }
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ContainedError('USAGE', '--input must be JSON (or @file holding JSON)');
  }
}

async function grantsFromFlags(specs: string[], runHost: RunHost): Promise<CapabilityInstance[]> {
  if (specs.length === 0) return [];
  const { parseGrantSpec } = await import('../../capabilities/grant-spec.js');
  const instances: CapabilityInstance[] = [];
  for (const spec of specs) instances.push(await parseGrantSpec(spec, { host: runHost.host, hostOptions: runHost.hostOptions }));
  return instances;
}

export function printOutcome(outcome: RunOutcome, io: CliIo): void {
  for (const line of outcome.logs) io.stderr(`[${line.level}] ${line.message}\n`);
  const u = outcome.usage;
  const usage = `cpu ${u.cpuMs.toFixed(1)} ms · wall ${u.wallMs.toFixed(1)} ms · heap ${(u.heapBytes / 1048576).toFixed(1)} MiB · ${u.calls} call(s)`;
  if (outcome.status === 'ok') {
    io.stdout(`ok (${usage})\n${JSON.stringify(outcome.value, null, 2)}\n`);
  } else {
    io.stdout(`error ${outcome.error.code}: ${outcome.error.message} (${usage})\n`);
    if (outcome.error.stack) io.stdout(`${outcome.error.stack}\n`);
  }
}
