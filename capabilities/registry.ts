/**
 * The table of capability kinds a host can grant by name (`fs`, `kv`, `sql`…): for each, its
 * definition and a factory from a scope plus the host's resources to an instance. Grant specs
 * (grant-spec.ts) and `contained caps docs` look kinds up here; a platform adds its own kinds with
 * `createRegistry({ payments: … })`.
 *
 * Fails closed: a scope that does not validate throws `INVALID_SCOPE` from the factory. Relative
 * file paths in scopes (`fs.root`, `kv.file`, `sql.file`) are resolved against `host.dataDir` when
 * one is given, and refused otherwise.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import type Pino from 'pino';
import type { Logger } from 'pino';
import { createClock, clockCapability } from './clock/index.js';
import { createFs, fsCapability, type FsDeps } from './fs/index.js';
import { createKv, kvCapability } from './kv/index.js';
import { createLog, logCapability } from './log/index.js';
import { createRandom, randomCapability } from './random/index.js';
import type { CapabilityDefinition } from './sdk/define.js';
import type { CapabilityInstance, InstanceOptions } from './sdk/instance.js';
import { createSql, sqlCapability } from './sql/index.js';
import { ContainedError } from '../runtime/errors.js';
import { createPayments, paymentsCapability, type PaymentsLedger, type PaymentsScope } from './examples/payments.js';
import { createHttp, httpCapability, type HttpScope } from './http/index.js';
import { createOutbox, outboxCapability, type OutboxScope, type OutboxTransport } from './outbox/index.js';

/** A host-side secret store (names to values); capabilities never hand values to agents. */
export interface HostSecrets {
  get(name: string): string | undefined;
}

/** What the host offers every factory. Add a field here when a new kind needs one. */
export interface HostDeps {
  /** Destination of the `log` capability (default: JSON lines on stderr). */
  logger?: Logger;
  /** Credentials the host may attach on the agent's behalf (http). */
  secrets?: HostSecrets;
  /** Folder against which relative file paths in scopes are resolved. */
  dataDir?: string;
  /** Injected clock, epoch ms (clock capability, budgets, expiry). */
  now?: () => number;
  /** fs resolution strategy override (tests). */
  fsStrategy?: FsDeps['strategy'];
  /** Where `outbox` delivers: an SMTP relay or a local folder. Default: the folder `<dataDir>/outbox`. */
  mail?: OutboxTransport;
  /** The ledger behind the `payments` example kind (e.g. `createSqliteLedger`). */
  paymentsLedger?: PaymentsLedger;
}

export interface RegistryEntry {
  definition: CapabilityDefinition;
  create(scope: unknown, host: HostDeps, options?: InstanceOptions): CapabilityInstance;
}

export type CapabilityRegistry = Readonly<Record<string, RegistryEntry>>;

/** Resolve `scope[key]` against `host.dataDir` when it is a relative path (leaves the rest to the schema). */
function withHostPath(scope: unknown, key: string, host: HostDeps): unknown {
  if (typeof scope !== 'object' || scope === null || Array.isArray(scope)) return scope;
  const value = (scope as Record<string, unknown>)[key];
  if (typeof value !== 'string' || path.isAbsolute(value) || host.dataDir === undefined) return scope;
  return { ...scope, [key]: path.resolve(host.dataDir, value) };
}

/** The `log` capability's logger when the host gives none: JSON lines on stderr. pino is loaded only then. */
const requireCjs = createRequire(import.meta.url);
function stderrLogger(): Logger {
  const pino = requireCjs('pino') as typeof Pino;
  return pino(pino.destination({ dest: 2, sync: true }));
}

function withNow(options: InstanceOptions | undefined, host: HostDeps): InstanceOptions {
  return host.now !== undefined && options?.now === undefined ? { ...options, now: host.now } : (options ?? {});
}

/** The built-in kinds. */
export const builtinCapabilities: CapabilityRegistry = Object.freeze({
  fs: {
    definition: fsCapability,
    create: (scope, host, options) =>
      createFs(withHostPath(scope, 'root', host), host.fsStrategy ? { strategy: host.fsStrategy } : {}, withNow(options, host)),
  },
  kv: {
    definition: kvCapability,
    create: (scope, host, options) => createKv(withHostPath(scope, 'file', host), {}, withNow(options, host)),
  },
  sql: {
    definition: sqlCapability,
    create: (scope, host, options) => createSql(withHostPath(scope, 'file', host), {}, withNow(options, host)),
  },
  clock: {
    definition: clockCapability,
    create: (scope, host, options) => createClock(scope, host.now ? { now: host.now } : {}, withNow(options, host)),
  },
  random: {
    definition: randomCapability,
    create: (scope, host, options) => createRandom(scope, {}, withNow(options, host)),
  },
  log: {
    definition: logCapability,
    create: (scope, host, options) =>
      createLog(scope, { logger: host.logger ?? stderrLogger() }, withNow(options, host)),
  },
  http: {
    definition: httpCapability,
    create: (scope, host, options) => createHttp(scope as HttpScope, host.secrets ? { secrets: host.secrets } : {}, withNow(options, host)),
  },
  outbox: {
    definition: outboxCapability,
    create: (scope, host, options) => {
      const transport = host.mail ?? (host.dataDir === undefined ? undefined : { folder: path.resolve(host.dataDir, 'outbox') });
      // Said in the words of who configures it: the host config key, or the run command's flags.
      if (!transport) throw new ContainedError('INVALID_ARGUMENT', 'outbox: no mail transport is configured: set "mail" in the host config (contained run: --smtp URL or --maildir DIR)');
      return createOutbox(scope as OutboxScope, { transport }, withNow(options, host));
    },
  },
  payments: {
    definition: paymentsCapability,
    create: (scope, host, options) => {
      if (!host.paymentsLedger) throw new ContainedError('INVALID_ARGUMENT', 'payments: no refunds ledger is configured: set "paymentsLedger" in the host config (contained run cannot grant payments)');
      return createPayments(scope as PaymentsScope, { ledger: host.paymentsLedger }, withNow(options, host));
    },
  },
} satisfies Record<string, RegistryEntry>);

/** A registry with extra (or replaced) kinds on top of `base`, e.g. a platform's own capabilities. */
export function createRegistry(extra: Readonly<Record<string, RegistryEntry>>, base: CapabilityRegistry = builtinCapabilities): CapabilityRegistry {
  return Object.freeze({ ...base, ...extra });
}

/** Look a kind up, own properties only (`__proto__`, `toString` are not kinds). */
export function lookupKind(registry: CapabilityRegistry, kind: string): RegistryEntry | undefined {
  return Object.prototype.hasOwnProperty.call(registry, kind) ? registry[kind] : undefined;
}
