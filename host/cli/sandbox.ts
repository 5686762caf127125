/**
 * `contained sandbox start|stop|status`: the resident sandbox process of this user
 * (runtime/resident-main.ts). While it runs, `contained run` hands its program to it over a Unix
 * socket instead of forking a worker (run-early.ts), which saves a Node start without its snapshot
 * on every run. Opt-in: nothing starts it but `sandbox start`; it stops after --idle-seconds with
 * no client (default 30 min), on `sandbox stop`, or when a run crashes it (then `contained run`
 * forks again). Exit codes: 0 ok (status: running), 1 not running (status) or failed, 2 usage.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ContainedError } from '../../runtime/errors.js';
import { removeStaleSocket, residentRequest, spawnResident } from '../../runtime/resident-client.js';
import { DEFAULT_RESIDENT_IDLE_MS, ensureResidentDir, findSocket, LOG_NAME, type ResidentStatus, residentDir, residentKey } from '../../runtime/resident-protocol.js';
import { type CliIo, intFlag, parseFlags } from './args.js';
import { RUN_WORKER_SETTINGS } from './run-early.js';

export const SANDBOX_USAGE = `Usage: contained sandbox start|stop|status [options]

A resident sandbox process for this user: while it runs, \`contained run\` hands its program to it
over a Unix socket (in $XDG_RUNTIME_DIR/ai-contained, else ~/.cache/ai-contained/run) instead of
starting a worker process, which makes a short run several times faster. Each run still gets a
fresh isolate with the same limits; capability calls still go through the \`contained run\` process.
Runs of this user share the process: one that crashes it (a V8 fatal error) ends the others in
flight, as runs sharing a worker do. CONTAINED_RESIDENT=0 makes \`contained run\` ignore it.

  start [--idle-seconds N]   start it (stops after N seconds with no client; default ${DEFAULT_RESIDENT_IDLE_MS / 1000})
  stop                       stop it (runs in flight end CANCELLED)
  status [--json]            is it running; its pid, socket and run counts

Exit codes: 0 ok (status: running), 1 not running (status) or failed, 2 usage error.
`;

/** How long `start` waits for the new process to answer, and `stop` for it to exit, ms. */
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const ANSWER_TIMEOUT_MS = 2_000;

/** The running resident's status; undefined if none answers (a stale socket is removed). */
async function currentStatus(dir: string): Promise<ResidentStatus | undefined> {
  const found = findSocket(dir);
  if (found === undefined) return undefined;
  if ('refused' in found) throw new ContainedError('RESIDENT_DIR_UNSAFE', `not using the resident sandbox process: ${found.refused}`, { data: { dir, reason: found.refused } });
  const answer = await residentRequest(found.path, { t: 'status' }, ANSWER_TIMEOUT_MS);
  if (answer === undefined || answer === 'stopping') {
    removeStaleSocket(found.path, found.ino);
    return undefined;
  }
  return answer;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function describe(status: ResidentStatus): string {
  const stale = status.key === residentKey() ? '' : '; it runs other code than this contained (upgraded since it started), so contained run does not use it: `contained sandbox start` replaces it';
  return `running (pid ${status.pid}, socket ${status.socket}; ${status.runs} run(s) since ${status.startedAt}, ${status.running} running, ${status.clients} client(s); stops after ${Math.round(status.idleMs / 1000)} s idle${stale})\n`;
}

/** Ask the resident to stop and wait for its process to end (SIGKILL after STOP_TIMEOUT_MS). */
async function stopResident(dir: string, status: ResidentStatus): Promise<void> {
  const found = findSocket(dir);
  if (found && !('refused' in found)) await residentRequest(found.path, { t: 'stop' }, ANSWER_TIMEOUT_MS);
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (alive(status.pid) && Date.now() < deadline) await sleep(20);
  if (alive(status.pid)) process.kill(status.pid, 'SIGKILL');
}

export async function sandboxCommand(argv: string[], io: CliIo, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { values, positionals } = parseFlags(argv, { 'idle-seconds': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } });
  if (values.help) {
    io.stdout(SANDBOX_USAGE);
    return 0;
  }
  const [action, ...extra] = positionals;
  if (extra.length > 0 || (action !== 'start' && action !== 'stop' && action !== 'status')) throw new ContainedError('USAGE', `sandbox takes start, stop or status\n\n${SANDBOX_USAGE}`);
  if (values['idle-seconds'] !== undefined && action !== 'start') throw new ContainedError('USAGE', '--idle-seconds goes with sandbox start');
  const dir = residentDir(env);
  const json = values.json === true;

  if (action === 'status') {
    const status = await currentStatus(dir);
    io.stdout(json ? `${JSON.stringify(status ? { state: 'running', current: status.key === residentKey(), ...status } : { state: 'not running' })}\n` : status ? describe(status) : 'not running\n');
    return status ? 0 : 1;
  }

  if (action === 'stop') {
    const status = await currentStatus(dir);
    if (!status) {
      io.stdout('not running\n');
      return 0;
    }
    await stopResident(dir, status);
    io.stdout(`stopped (pid ${status.pid})\n`);
    return 0;
  }

  const idleSeconds = intFlag(values, 'idle-seconds');
  const folder = ensureResidentDir(dir);
  if (!folder.ok) throw new ContainedError('RESIDENT_DIR_UNSAFE', `the folder ${dir} ${folder.reason}; not starting the resident sandbox process`, { data: { dir, reason: folder.reason } });
  const running = await currentStatus(dir);
  if (running && running.key === residentKey()) {
    io.stdout(`already ${describe(running)}`);
    return 0;
  }
  // One of other code (the package was upgraded under it): contained run no longer uses it.
  if (running) {
    await stopResident(dir, running);
    io.stdout(`stopped pid ${running.pid}, which ran other code than this contained\n`);
  }
  const pid = spawnResident(dir, RUN_WORKER_SETTINGS, idleSeconds === undefined ? DEFAULT_RESIDENT_IDLE_MS : idleSeconds * 1000);
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const status = await currentStatus(dir);
    if (status && status.pid === pid) {
      io.stdout(json ? `${JSON.stringify({ state: 'running', ...status })}\n` : `started: ${describe(status)}`);
      return 0;
    }
    if (pid === undefined || !alive(pid) || Date.now() > deadline) break;
    await sleep(20);
  }
  if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL');
  const log = `${dir}/${LOG_NAME}`;
  throw new ContainedError('RESIDENT_START_FAILED', `the resident sandbox process did not answer on its socket (see ${log})`, { data: { log } });
}
