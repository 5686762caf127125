/**
 * Import-time preflight of the package entries (`ai-contained`, `ai-contained/host`).
 *
 * Defends against: a library user's Node that started from its built-in startup snapshot. isolated-vm's
 * README asks for `--no-node-snapshot` on Node 20 and later; without it, V8's shared heap can abort the
 * whole process natively when an isolate is created — sometimes, on some platforms, long after import.
 * So the entries refuse to load at once, with one line naming the flag and NODE_OPTIONS.
 *
 * How it decides: a real probe first. `process.features.cached_builtins` is true only when Node loaded
 * the code cache of its built-in modules, which it takes from the startup snapshot (false under
 * `--no-node-snapshot`, given on the command line or in NODE_OPTIONS; test/package/preflight.test.ts
 * checks both ways in child processes, on every Node CI runs). The probe cannot be fooled by a flag-like
 * argument value, nor by a NODE_OPTIONS assigned from inside the process after start-up (which changes
 * nothing; the message says so). Only where the probe is missing do the flags decide. Fails closed: when
 * nothing says the snapshot is off, it is on.
 */

export interface NodeStartup {
  /** `process.execArgv`: Node's own command-line flags. */
  execArgv: readonly string[];
  /** `process.env.NODE_OPTIONS` as it is now (it may have been changed after start-up). */
  nodeOptions: string | undefined;
  /** `process.features.cached_builtins`: true when the built-in code cache (from the snapshot) was loaded. */
  cachedBuiltins: unknown;
  /** `process.config.variables.node_use_node_snapshot`: false for a Node built without a startup snapshot. */
  builtWithSnapshot: unknown;
}

export type SnapshotCheck =
  | { ok: true; reason: 'no-snapshot-build' | 'probe' | 'flag' }
  | { ok: false; code: 'NODE_SNAPSHOT'; message: string };

const FLAG = '--no-node-snapshot';

export function currentStartup(): NodeStartup {
  const variables = (process.config as { variables?: Record<string, unknown> }).variables;
  return {
    execArgv: process.execArgv,
    nodeOptions: process.env.NODE_OPTIONS,
    cachedBuiltins: (process.features as unknown as Record<string, unknown>).cached_builtins,
    builtWithSnapshot: variables?.node_use_node_snapshot,
  };
}

/** Is it safe to load isolated-vm in this process? Pure: everything it reads is in `startup`. */
export function checkNodeSnapshot(startup: NodeStartup): SnapshotCheck {
  if (startup.builtWithSnapshot === false) return { ok: true, reason: 'no-snapshot-build' };
  const fromEnv = lastSnapshotFlag(splitNodeOptions(startup.nodeOptions ?? ''));
  if (typeof startup.cachedBuiltins === 'boolean') {
    return startup.cachedBuiltins ? refuse(fromEnv === 'off') : { ok: true, reason: 'probe' };
  }
  // No probe: the flags decide. Node applies NODE_OPTIONS first, then its command line.
  const flag = lastSnapshotFlag(startup.execArgv) ?? fromEnv;
  return flag === 'off' ? { ok: true, reason: 'flag' } : refuse(false);
}

function refuse(setTooLate: boolean): SnapshotCheck {
  const late = setTooLate ? ' (NODE_OPTIONS names it, but was set after this Node started: it must be in the environment of the `node` command)' : '';
  return {
    ok: false,
    code: 'NODE_SNAPSHOT',
    message:
      `ai-contained: start Node with ${FLAG}${late} — isolated-vm needs it on Node 20 and later, and can crash the process without it. ` +
      `Run \`node ${FLAG} app.js\`, or set NODE_OPTIONS=${FLAG} in the environment; the \`contained\` command does this itself.`,
  };
}

/** The last of `--no-node-snapshot` / `--node-snapshot` among Node flags, as Node reads them (`_` and `-` alike). */
export function lastSnapshotFlag(args: readonly string[]): 'off' | 'on' | undefined {
  let last: 'off' | 'on' | undefined;
  for (const arg of args) {
    const name = arg.split('=', 1)[0]?.replaceAll('_', '-');
    if (name === FLAG) last = 'off';
    else if (name === '--node-snapshot') last = 'on';
  }
  return last;
}

/** NODE_OPTIONS split as Node splits it: on white space, except inside double quotes (`\` escapes there). */
export function splitNodeOptions(value: string): string[] {
  const out: string[] = [];
  let current = '';
  let started = false;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i] as string;
    if (quoted && c === '\\' && i + 1 < value.length) {
      current += value[++i];
    } else if (c === '"') {
      quoted = !quoted;
      started = true;
    } else if (!quoted && /\s/.test(c)) {
      if (started) out.push(current);
      current = '';
      started = false;
    } else {
      current += c;
      started = true;
    }
  }
  if (started) out.push(current);
  return out;
}

const verdict = checkNodeSnapshot(currentStartup());
if (!verdict.ok) throw new Error(verdict.message);
