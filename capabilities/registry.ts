/**
 * The table of capability kinds a host can grant by name (`fs`, `kv`, `sql`…): kind → plugin
 * (plugin.ts). Grant specs (grant-spec.ts), the host config (host/config.ts) and `contained caps
 * docs` look kinds up here; a platform adds its own kinds with `createRegistry({ payments: … })`.
 *
 * `openKind` is the one path from a plugin to instances: it parses the instance's host options with
 * the kind's schema, runs its `prepare` step, and hands back `create` and `close`. Fails closed: host
 * options that do not validate are `INVALID_ARGUMENT`; a scope that does not validate is
 * `INVALID_SCOPE` from the kind's factory.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import type Pino from 'pino';
import type { Logger } from 'pino';
import { ContainedError } from '../runtime/errors.js';
import { clockPlugin } from './clock/index.js';
import { paymentsPlugin } from './examples/payments.js';
import { fsPlugin } from './fs/index.js';
import { httpPlugin } from './http/index.js';
import { kvPlugin } from './kv/index.js';
import { logPlugin } from './log/index.js';
import { mcpPlugin } from './mcp/plugin.js';
import { outboxPlugin } from './outbox/index.js';
import type { CapabilityContext, CapabilityHost, CapabilityPlugin } from './plugin.js';
import { randomPlugin } from './random/index.js';
import type { CapabilityInstance, InstanceOptions } from './sdk/instance.js';
import { sqlPlugin } from './sql/index.js';

/** Kind name → plugin. Each plugin keeps its own host-options and prepared types; the table holds any. */
export type CapabilityRegistry = Readonly<Record<string, CapabilityPlugin<any, any>>>;

/** The built-in kinds. */
export const builtinCapabilities: CapabilityRegistry = Object.freeze({
  fs: fsPlugin,
  kv: kvPlugin,
  sql: sqlPlugin,
  clock: clockPlugin,
  random: randomPlugin,
  log: logPlugin,
  http: httpPlugin,
  outbox: outboxPlugin,
  payments: paymentsPlugin,
  mcp: mcpPlugin,
});

/** A registry with extra (or replaced) kinds on top of `base`, e.g. a platform's own capabilities. */
export function createRegistry(extra: CapabilityRegistry, base: CapabilityRegistry = builtinCapabilities): CapabilityRegistry {
  return Object.freeze({ ...base, ...extra });
}

/** Look a kind up, own properties only (`__proto__`, `toString` are not kinds). */
export function lookupKind(registry: CapabilityRegistry, kind: string): CapabilityPlugin | undefined {
  return Object.prototype.hasOwnProperty.call(registry, kind) ? registry[kind] : undefined;
}

/** One configured instance of a kind, prepared: create its instances, then close it. */
export interface OpenKind {
  /** Bind to a scope (parsed once, by `createInstance`). `options.now` defaults to the host's clock. */
  create(scope: unknown, options?: InstanceOptions): CapabilityInstance;
  /** Release what `prepare` took (idempotent; nothing for kinds without `close`). */
  close(): Promise<void>;
}

export interface OpenKindInput {
  /** The binding name the instance will have. */
  name: string;
  /** The instance's host options, as configured (parsed here with the kind's schema). */
  hostOptions?: unknown;
  host?: CapabilityHost;
}

/** The `log` capability's logger when the host gives none: JSON lines on stderr. pino is loaded only then. */
const requireCjs = createRequire(import.meta.url);
function stderrLogger(): Logger {
  const pino = requireCjs('pino') as typeof Pino;
  return pino(pino.destination({ dest: 2, sync: true }));
}

/** The context a kind's hooks receive; host options must already be parsed. */
export function capabilityContext<H>(name: string, hostOptions: H, host: CapabilityHost = {}): CapabilityContext<H> {
  let logger = host.logger;
  const configDir = host.configDir ?? process.cwd();
  return Object.freeze({
    name,
    dataDir: host.dataDir,
    resolvePath: (p: string) => path.resolve(configDir, p),
    get logger(): Logger {
      logger ??= stderrLogger();
      return logger;
    },
    now: host.now ?? Date.now,
    hostOptions,
    secrets: host.secrets,
    documents: host.documents,
  });
}

/** Parse `raw` with the kind's host-options schema (`INVALID_ARGUMENT` naming the kind and the field). */
export function parseHostOptions<H>(kind: string, plugin: CapabilityPlugin<H>, raw: unknown): H {
  const parsed = plugin.hostOptions.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const at = issue?.path.map(String) ?? [];
  throw new ContainedError('INVALID_ARGUMENT', `${kind}: invalid host options${at.length ? ` at ${at.join('.')}` : ''}: ${issue?.message ?? 'do not match the schema'}`, {
    data: { path: ['host', ...at] },
  });
}

/**
 * Prepare one instance of a kind: parse its host options, run its `prepare` step. The caller
 * creates instances from the result and closes it when done (at host shutdown).
 */
export async function openKind<H, P>(kind: string, plugin: CapabilityPlugin<H, P>, input: OpenKindInput): Promise<OpenKind> {
  const hostOptions = parseHostOptions(kind, plugin, input.hostOptions);
  const context = capabilityContext(input.name, hostOptions, input.host);
  const now = input.host?.now;
  const withNow = (options: InstanceOptions): InstanceOptions => (now !== undefined && options.now === undefined ? { ...options, now } : options);
  if (plugin.prepare === undefined) {
    return { create: (scope, options = {}) => plugin.create(scope, context, withNow(options)), close: () => Promise.resolve() };
  }
  const prepared = await plugin.prepare(context);
  let closed = false;
  return {
    create: (scope, options = {}) => plugin.create(scope, context, withNow(options), prepared),
    close: async () => {
      if (closed) return;
      closed = true;
      await plugin.close?.(prepared, context);
    },
  };
}
