/**
 * The host configuration file (`contained.config.json`): data folder, listening address, the
 * capability instances the host offers (by registry kind and scope, each with its kind's host
 * options — an outbox's mail transport, the payments ledger — and its secrets), trusted image keys, the escalation defaults and the limits of each part (`http`, `sandbox`,
 * `operator`, `console`, `audit`: each section's schema lives with its module, with
 * its defaults and units in its names) — a strict zod schema, so a typo is an error at
 * start-up instead of a silently ignored setting.
 *
 * Paths outside scopes (`dataDir`, `trustedKeys` files, a capability's `secrets.file` and the paths
 * in its host options: `host.folder` of an outbox, `host.ledger.file` of payments) are relative to
 * the folder of the config file; relative paths inside capability scopes (`fs.root`, `kv.file`,
 * `sql.file`) are relative to `dataDir` (each kind's plugin resolves them).
 *
 * Fails with `USAGE` when the named file cannot be read, `INVALID_ARGUMENT` (with `data.path`) when
 * it does not parse or match the schema, and the registry's `INVALID_ARGUMENT`/`INVALID_SCOPE`
 * (prefixed with the capability name) when an instance cannot be created.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { CapabilityDocuments, CapabilityHost, HostSecrets } from '../capabilities/plugin.js';
import { builtinCapabilities, type CapabilityRegistry, lookupKind, type OpenKind, openKind } from '../capabilities/registry.js';
import { budgetSchema } from '../capabilities/sdk/budget.js';
import type { CapabilityInstance, InstanceOptions } from '../capabilities/sdk/instance.js';
import { ContainedError } from '../runtime/errors.js';
import { parsePublicKey } from '../sandbox-images/signature.js';
import { sandboxConfigSchema } from '../runtime/sandbox-config.js';
import { httpConfigSchema } from './api/limits.js';
import { auditConfigSchema } from './audit/config.js';
import { consoleConfigSchema } from './console/limits.js';
import { notifyConfigSchema } from './notify/config.js';
import { operatorConfigSchema } from './operator/limits.js';
import { trustConfigSchema } from './trust/policy.js';
import { mcpConfigSchema } from './mcp/limits.js';
import { dataFlowConfigSchema } from './gate/data-flow-config.js';
import { stagingConfigSchema } from './changesets/config.js';
import { approvalsConfigSchema } from './approvals/config.js';
import { checkStoreValue, fleetConfigSchema } from './fleet-config.js';

/** Looked for in the working folder when no `--config` is given. */
export const DEFAULT_CONFIG_FILE = 'contained.config.json';
/** Largest config, secrets or key file read, in bytes. */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

const BINDING = /^[a-z][a-zA-Z0-9]{0,63}$/;

/**
 * Secrets an instance may attach (http credentials): inline name → value, or `{ "file": "secrets.json" }`
 * (a JSON object of name → value, relative to the config file). An object whose only key is `file`
 * is always a file reference.
 */
export const secretsConfigSchema = z.union([z.strictObject({ file: z.string().min(1) }), z.record(z.string(), z.string())]);
export type SecretsConfig = z.output<typeof secretsConfigSchema>;

export const capabilityConfigSchema = z.strictObject({
  /** A registry kind: fs, kv, sql, clock, random, log, http, outbox, payments… */
  kind: z.string().min(1),
  /** The instance scope, validated by the kind's own schema when the instance is created. */
  scope: z.record(z.string(), z.unknown()).default({}),
  /**
   * The instance's host options (an outbox's `{ "smtp": … }` or `{ "folder": … }`, the payments
   * `{ "ledger": … }`), validated by the kind's own host-options schema when the instance is created.
   */
  host: z.unknown().optional(),
  /** Secrets this instance may attach (http credentials; see `secretsConfigSchema`). */
  secrets: secretsConfigSchema.optional(),
  /** Offer only these methods of the kind (default: all). */
  methods: z.array(z.string().min(1)).min(1).optional(),
  /** Budgets of the host instance itself, shared by every run (per-grant budgets are separate). */
  budgets: z.record(z.string(), budgetSchema).optional(),
});
export type CapabilityConfig = z.output<typeof capabilityConfigSchema>;

export const hostConfigSchema = z.strictObject({
  /** The host's data folder (store, default outbox folder, relative scope paths). */
  dataDir: z.string().min(1).default('./.contained'),
  /**
   * Where the durable state lives (host/store/store-location.ts; `CONTAINED_STORE` overrides):
   * nothing or a file path (relative to `dataDir`) → the embedded SQLite store; `postgres://…` →
   * a PostgreSQL database several hosts share (docs/host-state.md).
   */
  store: z.string().min(1).optional(),
  /** Several hosts on one PostgreSQL store: heartbeat and dead-host timeout (host/fleet.ts). */
  fleet: fleetConfigSchema.prefault({}),
  listen: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(7420),
    })
    .default({ host: '127.0.0.1', port: 7420 }),
  /** Binding name (what the agent sees as `caps.<name>`) → instance. */
  capabilities: z.record(z.string().regex(BINDING, 'capability names are lower camel case'), capabilityConfigSchema).default({}),
  /** Origins allowed to open the operator WebSocket from a browser (exact `scheme://host[:port]`). */
  allowedOrigins: z.array(z.string().min(1)).default([]),
  /** Milliseconds a request waits for a human unless its grant says otherwise. Default 15 min. */
  requestTimeoutMs: z.number().int().positive().default(900_000),
  /**
   * Pending recommendations of a run that is cancelled: `withdraw` (the default) closes them as
   * `cancelled`, never performed; `keep` leaves them standing (approved later, the host performs them).
   */
  cancelledRunRecommendations: z.enum(['withdraw', 'keep']).optional(),
  /** A call outside every grant: ask an operator (`escalate`) or fail `CAPABILITY_DENIED` at once (`deny`). */
  outOfScope: z.enum(['escalate', 'deny']).default('escalate'),
  /** Image signing public keys (PEM text, or a path to a PEM file); loaded as PEM text. */
  trustedKeys: z.array(z.string().min(1)).default([]),
  /** Refuse images without a signature from a trusted key. */
  requireSignature: z.boolean().default(false),
  /** Promotion policy, demotion rule, ledger windows (host/trust/policy.ts; docs/audit-and-trust.md). */
  trust: trustConfigSchema.prefault({}),
  /** Runs holding an isolate at once (running, or waiting for a human); more wait in the run queue. */
  maxConcurrentRuns: z.number().int().min(1).max(10_000).default(32),
  /** Runs waiting for a free slot; beyond this a submission fails QUEUE_FULL (HTTP 429 with Retry-After). */
  maxQueuedRuns: z.number().int().min(0).max(1_000_000).default(1000),
  /** Serve `GET /metrics` without a token (default false: an admin or platform token is required). */
  metricsPublic: z.boolean().default(false),
  /** HTTP server limits (timeouts, connection caps, body sizes) and cross-client readers (host/api/limits.ts; docs/http-api.md). */
  http: httpConfigSchema.prefault({}),
  /** Worker pool limits: workers, runs per worker, heartbeat, start timeout, worker output, warm isolates (runtime/sandbox-config.ts). */
  sandbox: sandboxConfigSchema.prefault({}),
  /** Operator channel limits: frame size, message rate and burst, heartbeat, buffered bytes (host/operator/limits.ts; docs/protocol.md). */
  operator: operatorConfigSchema.prefault({}),
  /** Web console session expiry (idle and absolute), login code lifetime, session cap, sweep (host/console/limits.ts). */
  console: consoleConfigSchema.prefault({}),
  /** Audit log batching, fsync mode and checkpoints (host/audit/config.ts). */
  audit: auditConfigSchema.prefault({}),
  /** Webhooks and email telling operators what waits for them; the outbox's retries (host/notify/config.ts; docs/approvals.md). */
  notify: notifyConfigSchema.prefault({}),
  /** MCP server limits per session: source size, live runs, runs per minute; HTTP sessions (host/mcp/limits.ts; docs/mcp.md). */
  mcp: mcpConfigSchema.prefault({}),
  /** The run-level data-flow rule: sensitive sources, and what open-world calls do after one is read (host/gate/data-flow-config.ts; docs/data-flow.md). */
  dataFlow: dataFlowConfigSchema.prefault({}),
  /** Passkey-signed approvals: which requests need them, the console's origin and relying party id (host/approvals/config.ts; docs/approvals.md). */
  approvals: approvalsConfigSchema.prefault({}),
  /** Staged runs: most effects and bytes per run, the undo window (host/changesets/config.ts; docs/changesets.md). */
  staging: stagingConfigSchema.prefault({}),
});
/**
 * A parsed host config. `configDir` (set by `parseHostConfig`, not a key of the file) is the folder
 * relative paths in host options resolve against; absent, the working folder.
 */
export type HostConfig = z.output<typeof hostConfigSchema> & { configDir?: string };

/** Top-level keys of earlier versions, and where each went (a clear error instead of "unrecognized key"). */
const MOVED_KEYS: Readonly<Record<string, string>> = {
  mail: 'the mail transport is the outbox capability\'s host options: capabilities.<name>.host = { "smtp": … } or { "folder": … }',
  secrets: 'secrets belong to the capability that attaches them: capabilities.<name>.secrets',
  paymentsLedger: 'the ledger is the payments capability\'s host options: capabilities.<name>.host = { "ledger": { "file": …, "currency": … } }',
};

function readSmallFile(file: string, what: string): string {
  let size: number;
  try {
    size = statSync(file).size;
  } catch (cause) {
    throw new ContainedError('USAGE', `cannot read ${what} ${file}`, { cause });
  }
  if (size > MAX_CONFIG_FILE_BYTES) throw new ContainedError('INVALID_ARGUMENT', `${what} ${file} is larger than ${MAX_CONFIG_FILE_BYTES} bytes`);
  try {
    return readFileSync(file, 'utf8');
  } catch (cause) {
    throw new ContainedError('USAGE', `cannot read ${what} ${file}`, { cause });
  }
}

/** The config file a command uses: the flag, else `./contained.config.json` when it exists, else undefined. */
export function resolveConfigPath(flag: string | undefined, cwd: string = process.cwd()): string | undefined {
  if (flag !== undefined) return path.resolve(cwd, flag);
  const fallback = path.resolve(cwd, DEFAULT_CONFIG_FILE);
  return existsSync(fallback) ? fallback : undefined;
}

/** Validate a config object; relative top-level paths are resolved against `baseDir`. */
export function parseHostConfig(raw: unknown, baseDir: string, source = 'config'): HostConfig {
  if (typeof raw === 'object' && raw !== null) {
    const moved = Object.keys(MOVED_KEYS).find((key) => Object.prototype.hasOwnProperty.call(raw, key));
    if (moved !== undefined) throw new ContainedError('INVALID_ARGUMENT', `${source}: ${moved}: ${MOVED_KEYS[moved]}`, { data: { path: [moved] } });
  }
  const parsed = hostConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const at = issue?.path.map(String) ?? [];
    throw new ContainedError('INVALID_ARGUMENT', `${source}: ${at.length ? `${at.join('.')}: ` : ''}${issue?.message ?? 'does not match the schema'}`, {
      data: { path: at, issues: parsed.error.issues.map((i) => ({ path: i.path.map(String), message: i.message })) },
    });
  }
  const config: HostConfig = parsed.data;
  const abs = (p: string): string => path.resolve(baseDir, p);
  config.dataDir = abs(config.dataDir);
  config.configDir = baseDir;
  if (config.store !== undefined) checkStoreValue(config.store, source);
  for (const entry of Object.values(config.capabilities)) {
    if (entry.secrets && isSecretsFile(entry.secrets)) entry.secrets = { file: abs(entry.secrets.file) };
  }
  config.trustedKeys = config.trustedKeys.map((key, i) => {
    const pem = key.trimStart().startsWith('-----BEGIN') ? key : readSmallFile(abs(key), 'trusted key file');
    try {
      parsePublicKey(pem);
    } catch (error) {
      throw new ContainedError('INVALID_ARGUMENT', `${source}: trustedKeys.${i}: ${(error as Error).message}`, { cause: error, data: { path: ['trustedKeys', String(i)] } });
    }
    return pem;
  });
  return config;
}

/**
 * Load the host config: `file` if given (USAGE if it cannot be read), else
 * `./contained.config.json` if present, else the defaults (no capabilities).
 */
export async function loadHostConfig(file?: string): Promise<HostConfig> {
  const resolved = resolveConfigPath(file);
  if (resolved === undefined) return parseHostConfig({}, process.cwd(), 'default config');
  const text = readSmallFile(resolved, 'host config');
  let raw: unknown;
  try {
    raw = JSON.parse(text) as unknown;
  } catch (cause) {
    throw new ContainedError('INVALID_ARGUMENT', `host config ${resolved} is not valid JSON`, { cause });
  }
  return parseHostConfig(raw, path.dirname(resolved), resolved);
}

function isSecretsFile(secrets: SecretsConfig): secrets is { file: string } {
  return Object.keys(secrets).length === 1 && typeof secrets.file === 'string';
}

/** A capability's configured secrets as a lookup (a file is read now; a bad file fails here). */
export function loadSecrets(secrets: SecretsConfig | undefined): HostSecrets | undefined {
  if (secrets === undefined) return undefined;
  let values: Record<string, string>;
  if (isSecretsFile(secrets)) {
    const file = secrets.file;
    let raw: unknown;
    try {
      raw = JSON.parse(readSmallFile(file, 'secrets file')) as unknown;
    } catch (cause) {
      if (cause instanceof ContainedError) throw cause;
      throw new ContainedError('INVALID_ARGUMENT', `secrets file ${file} is not valid JSON`, { cause });
    }
    const parsed = z.record(z.string(), z.string()).safeParse(raw);
    if (!parsed.success) throw new ContainedError('INVALID_ARGUMENT', `secrets file ${file}: expected a JSON object of name → string value`);
    values = parsed.data;
  } else {
    values = secrets;
  }
  const table = new Map(Object.entries(values));
  return { get: (name) => table.get(name) };
}

export interface InstantiateDeps {
  logger?: Logger;
  /** Where kinds keep their durable documents (the host's store); none: their own files under `dataDir`. */
  documents?: CapabilityDocuments;
  /** Default: the built-in kinds. */
  registry?: CapabilityRegistry;
  now?: () => number;
}

/** The configured capability instances, with the kinds' prepared resources to close at shutdown. */
export interface OpenCapabilities {
  /** Binding name → instance. */
  readonly instances: Map<string, CapabilityInstance>;
  /** Close what the kinds' `prepare` steps started (idempotent). */
  close(): Promise<void>;
}

/** One configured instance, and what closes it. */
export interface OpenCapability {
  readonly instance: CapabilityInstance;
  close(): Promise<void>;
}

function inCapability(name: string, error: unknown): unknown {
  if (!(error instanceof ContainedError)) return error;
  const at = Array.isArray(error.data?.path) ? error.data.path.map(String) : [];
  return new ContainedError(error.code, `config: capability "${name}": ${error.message}`, { cause: error, data: { path: ['capabilities', name, ...at] } });
}

/** Open the kind of one entry (host options, secrets, prepare) and create its instance; closes what it opened when that fails. */
async function openOne(config: HostConfig, name: string, entry: CapabilityConfig, registry: CapabilityRegistry, deps: InstantiateDeps): Promise<OpenCapability> {
  const plugin = lookupKind(registry, entry.kind);
  if (!plugin) {
    throw new ContainedError('INVALID_ARGUMENT', `config: capability "${name}": unknown kind "${entry.kind}" (known: ${Object.keys(registry).join(', ')})`, {
      data: { path: ['capabilities', name, 'kind'] },
    });
  }
  const host: CapabilityHost = { dataDir: config.dataDir, configDir: config.configDir ?? process.cwd() };
  if (deps.logger) host.logger = deps.logger;
  if (deps.now) host.now = deps.now;
  if (deps.documents) host.documents = deps.documents;
  let kind: OpenKind;
  try {
    const secrets = loadSecrets(entry.secrets);
    if (secrets) host.secrets = secrets;
    kind = await openKind(entry.kind, plugin, { name, hostOptions: entry.host, host });
  } catch (error) {
    throw inCapability(name, error);
  }
  const options: InstanceOptions = { name };
  if (entry.methods) options.methods = entry.methods;
  if (entry.budgets) options.budgets = entry.budgets;
  try {
    return { instance: kind.create(entry.scope, options), close: () => kind.close() };
  } catch (error) {
    await kind.close().catch(() => undefined);
    throw inCapability(name, error);
  }
}

/** Open one configured capability instance by name (NOT_FOUND when the config has none by that name). */
export async function openCapability(config: HostConfig, name: string, deps: InstantiateDeps = {}): Promise<OpenCapability> {
  const entry = Object.prototype.hasOwnProperty.call(config.capabilities, name) ? config.capabilities[name] : undefined;
  if (!entry) {
    const known = Object.keys(config.capabilities);
    throw new ContainedError('NOT_FOUND', `the host config has no capability "${name}" (it has: ${known.length > 0 ? known.join(', ') : 'none'})`);
  }
  return openOne(config, name, entry, deps.registry ?? builtinCapabilities, deps);
}

/**
 * Open every configured capability instance, by binding name; kinds with a start-up step start
 * side by side. Fails with the first bad one in config order, after closing every one that opened.
 */
export async function openCapabilities(config: HostConfig, deps: InstantiateDeps = {}): Promise<OpenCapabilities> {
  const registry = deps.registry ?? builtinCapabilities;
  const entries = Object.entries(config.capabilities);
  const settled = await Promise.allSettled(entries.map(([name, entry]) => openOne(config, name, entry, registry, deps)));
  const opened = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const closeAll = async (): Promise<void> => {
    await Promise.allSettled(opened.map((o) => o.close()));
  };
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await closeAll();
    throw failed.reason;
  }
  const instances = new Map<string, CapabilityInstance>();
  entries.forEach(([name], i) => {
    const s = settled[i];
    if (s?.status === 'fulfilled') instances.set(name, s.value.instance);
  });
  let closing: Promise<void> | undefined;
  return { instances, close: () => (closing ??= closeAll()) };
}
