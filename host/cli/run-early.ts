/**
 * `contained run` starts its sandbox worker before it loads the rest of the CLI (the runtime, the
 * program loader, zod): the worker's start-up then overlaps the CLI's instead of following it
 * (runtime/worker-spawn.ts). The worker is the one `run`'s sandbox would start — one worker with
 * the sandbox's default warm isolates at the default heap limit — so the pool adopts it; a test
 * holds these numbers to SANDBOX_DEFAULTS and DEFAULT_LIMITS (they are not imported: both modules
 * build zod schemas, which is what this module exists to avoid).
 *
 * When the user's resident sandbox process (`contained sandbox start`) answers on its socket, its
 * connection is that worker and nothing is forked (runtime/resident-client.ts). A resident that is
 * gone leaves a socket nobody listens on: it is removed, with one note on stderr, and a worker is
 * forked as usual. CONTAINED_RESIDENT=0 always forks.
 */
import { connectResident, removeStaleSocket } from '../../runtime/resident-client.js';
import { findSocket, RESIDENT_CONNECT_TIMEOUT_MS, residentDir } from '../../runtime/resident-protocol.js';
import { startWorkerEarly, startWorkerEarlyFrom, type WorkerSettings } from '../../runtime/worker-spawn.js';

/** The settings of `contained run`'s worker: SANDBOX_DEFAULTS.warmIsolates, DEFAULT_LIMITS.memoryMb. */
export const RUN_WORKER_SETTINGS: Readonly<WorkerSettings> = Object.freeze({ warmIsolates: 2, warmMemoryMb: 64 });

/** Start `run`'s worker now, unless these arguments will not use one (in-process mode, help). */
export function startRunWorkerEarly(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, warn: (line: string) => void = (line) => void process.stderr.write(line)): void {
  if (argv.includes('--in-process') || argv.includes('--help') || argv.includes('-h')) return;
  const socket = env.CONTAINED_RESIDENT === '0' ? undefined : findSocket(residentDir(env));
  if (socket === undefined) return startWorkerEarly(RUN_WORKER_SETTINGS);
  if ('refused' in socket) {
    warn(`contained: not using the resident sandbox process: ${socket.refused}\n`);
    return startWorkerEarly(RUN_WORKER_SETTINGS);
  }
  const obtain = connectResident(socket.path, RESIDENT_CONNECT_TIMEOUT_MS).then((result) => {
    if (result.ok) return { child: result.worker, messages: result.messages };
    if (result.reason === 'stale' && removeStaleSocket(socket.path, socket.ino)) {
      warn('contained: the resident sandbox process is gone (its socket was left behind and is now removed); running in a new worker process. `contained sandbox start` starts it again.\n');
    }
    return undefined;
  });
  startWorkerEarlyFrom(RUN_WORKER_SETTINGS, obtain);
}
