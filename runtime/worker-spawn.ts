/**
 * Starting a sandbox worker process (runtime/worker-main.ts), for the pool (worker-pool.ts), and
 * starting one early: `contained run` forks its worker before it has loaded the rest of the CLI,
 * so the worker's start-up (Node without its snapshot, isolated-vm, the engine) overlaps the CLI's
 * instead of following it. Only `node:` modules here, so importing this costs nothing.
 *
 * A worker gets no copy of the host's environment (operator tokens, SMTP passwords, database URLs
 * live there), only the few variables a Node process needs to start: were an isolate ever escaped
 * (GHSA-864f-rcv7-6rh4 was such a bug), the worker holds nothing worth taking. A worker started
 * early is the same process the pool would start (same module, flags and environment): the pool
 * adopts it only if its settings are the pool's, and a worker nobody adopts exits with its parent
 * (it holds the parent's event loop open by nothing: its handles are unref'd until adopted).
 */
import { type ChildProcess, fork } from 'node:child_process';
import module from 'node:module';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

/** The only variables of the host's environment a worker inherits (none of them holds a secret). */
export const WORKER_ENV_ALLOWLIST = ['PATH', 'TMPDIR', 'TMP', 'TEMP', 'TZ', 'LANG', 'LC_ALL', 'NODE_OPTIONS', 'NODE_ENV', 'NODE_V8_COVERAGE', 'SYSTEMROOT', 'SystemRoot', 'WINDIR'];

/** What a worker is started with, beyond its module. */
export interface WorkerSettings {
  /** Isolates the worker keeps ready, and their heap limit (MiB). */
  warmIsolates: number;
  warmMemoryMb: number;
}

export interface WorkerModule {
  file: string;
  execArgv: string[];
}

/** Worker entry next to this module; under vitest/tsx the sources are .ts and need the tsx loader. */
export function workerEntry(): WorkerModule {
  const here = fileURLToPath(import.meta.url);
  const ts = here.endsWith('.ts');
  const file = here.replace(/worker-spawn\.(ts|js)$/, `worker-main.${ts ? 'ts' : 'js'}`);
  // The worker creates isolates: it needs Node without its startup snapshot (isolated-vm#420).
  const execArgv = ['--no-node-snapshot'];
  if (ts) execArgv.push('--import', import.meta.resolve('tsx'));
  return { file, execArgv };
}

export function workerEnv(settings: WorkerSettings): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const name of WORKER_ENV_ALLOWLIST) if (process.env[name] !== undefined) env[name] = process.env[name];
  env.CONTAINED_WARM_ISOLATES = String(settings.warmIsolates);
  env.CONTAINED_WARM_MEMORY_MB = String(settings.warmMemoryMb);
  // The compile cache of this process (bin/contained.js turns it on for an installed package): a
  // folder only this user can write, holding V8 code for our own modules, never for agent code.
  const cacheDir = module.getCompileCacheDir?.();
  if (cacheDir) env.NODE_COMPILE_CACHE = cacheDir;
  return env;
}

export function spawnWorkerProcess(settings: WorkerSettings, entry: WorkerModule = workerEntry()): ChildProcess {
  return fork(entry.file, [], {
    execArgv: entry.execArgv,
    serialization: 'json',
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: workerEnv(settings),
  });
}

/**
 * What the pool needs of a worker: a forked ChildProcess, or a connection to the resident sandbox
 * process (resident-client.ts ResidentWorker) that behaves like one.
 */
export interface WorkerChild {
  readonly pid?: number | undefined;
  readonly connected: boolean;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  send(message: object): boolean;
  kill(signal?: NodeJS.Signals): boolean;
  on(event: string, listener: (...args: any[]) => void): this;
  once(event: string, listener: (...args: any[]) => void): this;
  off(event: string, listener: (...args: any[]) => void): this;
  emit(event: string, ...args: unknown[]): boolean;
}

/** A handle that keeps this process's event loop running unless unref'd. */
interface Refable {
  ref(): unknown;
  unref(): unknown;
}

interface Early {
  key: string;
  child: WorkerChild;
  /** Messages the worker sent before a pool adopted it (its `ready`), in order. */
  messages: unknown[];
  hold(message: unknown): void;
  handles: Array<Refable | null | undefined>;
}

let early: Early | undefined;
/** An early worker still being obtained (startWorkerEarlyFrom). */
let pending: Promise<void> | undefined;

function keyOf(settings: WorkerSettings, entry: WorkerModule): string {
  return JSON.stringify([settings.warmIsolates, settings.warmMemoryMb, entry.file, entry.execArgv]);
}

/** The handles of a child process that keep this process's event loop running. */
function handles(child: ChildProcess): Array<Refable | null | undefined> {
  return [child, child.channel, child.stdout as unknown as Refable, child.stderr as unknown as Refable];
}

function keep(settings: WorkerSettings, entry: WorkerModule, child: WorkerChild, refs: Array<Refable | null | undefined>, messages: unknown[]): void {
  const hold = (message: unknown): void => void messages.push(message);
  child.on('message', hold);
  child.on('error', () => undefined);
  for (const h of refs) h?.unref();
  early = { key: keyOf(settings, entry), child, messages, hold, handles: refs };
}

/** Start one worker now, for a pool this process creates later with the same settings. */
export function startWorkerEarly(settings: WorkerSettings, entry: WorkerModule = workerEntry()): void {
  if (early || pending) return;
  const child = spawnWorkerProcess(settings, entry);
  keep(settings, entry, child, handles(child), []);
}

/**
 * Take the early worker from elsewhere: `obtain` resolves to a worker serving these settings (a
 * connection to the resident sandbox process, with the messages it has sent), or to undefined,
 * and then one is forked as startWorkerEarly does. A pool created before it settles forks its own:
 * wait for earlyWorkerSettled() first.
 */
export function startWorkerEarlyFrom(
  settings: WorkerSettings,
  obtain: Promise<{ child: WorkerChild & Refable; messages: unknown[] } | undefined>,
  entry: WorkerModule = workerEntry(),
): void {
  if (early || pending) return;
  const settle = (got: { child: WorkerChild & Refable; messages: unknown[] } | undefined): void => {
    pending = undefined;
    if (got) keep(settings, entry, got.child, [got.child], [...got.messages]);
    else startWorkerEarly(settings, entry);
  };
  pending = obtain.then(settle, () => settle(undefined));
}

/**
 * Resolves once the early worker, if one is being obtained, is there (or forked instead). While it
 * waits it holds the event loop open: the connection being made is unref'd (a worker nobody adopts
 * must not keep the process alive), and without a handle of its own an awaiting `contained run`
 * would end mid-await (exit 13) when nothing else is pending, e.g. beside a resident that accepts
 * but never greets.
 */
export async function earlyWorkerSettled(): Promise<void> {
  if (!pending) return;
  const hold = setInterval(() => undefined, 60_000);
  try {
    await pending;
  } finally {
    clearInterval(hold);
  }
}

/**
 * The worker started early, if it has these settings and is still alive; it is handed over once.
 * The caller attaches its listeners and then replays `messages`.
 */
export function adoptEarlyWorker(settings: WorkerSettings, entry: WorkerModule = workerEntry()): { child: WorkerChild; messages: unknown[] } | undefined {
  const taken = early;
  if (!taken || taken.key !== keyOf(settings, entry)) return undefined;
  early = undefined;
  const { child } = taken;
  child.off('message', taken.hold);
  if (child.exitCode !== null || child.signalCode !== null || !child.connected) {
    child.kill('SIGKILL');
    return undefined;
  }
  for (const h of taken.handles) h?.ref();
  return { child, messages: taken.messages };
}
