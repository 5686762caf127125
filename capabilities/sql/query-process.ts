/**
 * A query process: a child process of the host that runs sql calls one at a time (statement.ts)
 * and answers over IPC. It exists so that a statement can be stopped: SQLite running inside
 * better-sqlite3 cannot be interrupted, and a worker thread stuck in native code does not stop on
 * `terminate()`, but a process dies on SIGKILL, taking its memory and its locks with it (SQLite's
 * journal rolls an unfinished write back, as after any crash).
 *
 * Defends the machine from the statement: a watchdog thread (it runs while the main thread is
 * inside SQLite) kills the process when its resident memory passes `CONTAINED_SQL_MAX_RSS_BYTES`,
 * and when the host that started it is gone (no orphan burns CPU for ever). The host (engine.ts)
 * kills it at the call's deadline. It holds no host secret: its environment is the engine's short
 * allowlist, and all it receives is one call's database file, tables and statement.
 *
 * Protocol (JSON over the IPC channel): it says `{ t: 'ready' }` once, then answers each
 * `{ t: 'job', id, job }` with `{ t: 'done', id, ok: true, value }` or
 * `{ t: 'done', id, ok: false, error: { code, message, data?, detail? } }` — `detail` is the cause
 * for the host log, never for the agent.
 */
import { Worker } from 'node:worker_threads';
import { ContainedError, messageOf } from '../../runtime/errors.js';
import { runJob, type SqlJob } from './statement.js';

export type HostToQuery = { t: 'job'; id: number; job: SqlJob };
export type QueryToHost =
  | { t: 'ready' }
  | { t: 'done'; id: number; ok: true; value: unknown }
  | { t: 'done'; id: number; ok: false; error: { code: string; message: string; data?: Record<string, unknown>; detail?: string } };

/** Plain CommonJS for an eval'd worker: no loader, no imports of ours. */
const WATCHDOG = `
const { workerData } = require('node:worker_threads');
const { maxRssBytes, hostPid, intervalMs } = workerData;
setInterval(() => {
  if (process.memoryUsage.rss() > maxRssBytes || process.ppid !== hostPid) process.kill(process.pid, 'SIGKILL');
}, intervalMs);
`;

function send(message: QueryToHost): void {
  process.send?.(message);
}

function answer(id: number, job: SqlJob): void {
  try {
    send({ t: 'done', id, ok: true, value: runJob(job) });
  } catch (e) {
    if (e instanceof ContainedError) {
      const cause = (e as { cause?: unknown }).cause;
      send({ t: 'done', id, ok: false, error: { ...e.toJSON(), ...(cause === undefined ? {} : { detail: messageOf(cause) }) } });
    } else {
      send({ t: 'done', id, ok: false, error: { code: 'INTERNAL', message: 'internal error in the sql query process', detail: messageOf(e) } });
    }
  }
}

function main(): void {
  const maxRssBytes = Number(process.env['CONTAINED_SQL_MAX_RSS_BYTES']);
  const hostPid = Number(process.env['CONTAINED_SQL_HOST_PID']);
  if (!process.send || !(maxRssBytes > 0) || !(hostPid > 0)) {
    process.stderr.write('the sql query process is started by the host (engine.ts), not by hand\n');
    process.exit(2);
  }
  new Worker(WATCHDOG, { eval: true, workerData: { maxRssBytes, hostPid, intervalMs: 5 } }).unref();
  process.on('message', (message: HostToQuery) => {
    if (message?.t === 'job') answer(message.id, message.job);
  });
  // The host closed the channel (idle, or it exited): nothing more will come.
  process.on('disconnect', () => process.exit(0));
  send({ t: 'ready' });
}

main();
