/**
 * The shape of a capability kind as the host sees it — a plugin, as Miniflare's are: the host
 * options the kind needs (a zod schema: an SMTP relay, a ledger file, an MCP server to start), an
 * optional async `prepare` step run once per configured instance before any is created (start a
 * server, discover the definition), `create(scope, context, options)` with a typed context, and an
 * optional `close` at host shutdown. The registry (registry.ts) is a table of these; the host config
 * (`capabilities.<binding>.host`), grant specs and `contained run`'s flags all feed the same shape.
 *
 * Fails closed: host options that do not match the kind's schema are `INVALID_ARGUMENT` (see
 * `openKind` in registry.ts); a scope is parsed once, by `createInstance`, and a bad one is
 * `INVALID_SCOPE`.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { CapabilityDefinition } from './sdk/define.js';
import type { CapabilityInstance, InstanceOptions } from './sdk/instance.js';

/** A host-side secret store (names to values); capabilities never hand values to agents. */
export interface HostSecrets {
  get(name: string): string | undefined;
}

/**
 * Durable text documents by key, kept by whoever hosts the kind: the host's store (with several
 * hosts on one PostgreSQL, shared by all of them). A kind keeps its own small state here (the
 * `mcp` kind: its accepted tool versions) instead of in files of one machine.
 */
export interface CapabilityDocuments {
  /** The document and a stamp that changes with every write; undefined when there is none. */
  get(key: string): Promise<{ text: string; stamp: string } | undefined>;
  /**
   * Write the document. With `expect` (a stamp `get` returned, or null: "not there yet"), only if
   * it is still that: false when someone else wrote it meanwhile.
   */
  put(key: string, text: string, expect?: string | null): Promise<boolean>;
  /** The keys that start with `prefix`, sorted. */
  keys(prefix: string): Promise<string[]>;
  /**
   * A stable id of the host writing (its data folder's), for what each host keeps a copy of its own
   * (what it observed), beside what the hosts share. Undefined: one host.
   */
  readonly writer?: string;
}

/**
 * What every kind may use, whoever hosts it (the long-running host, `contained run`, a library
 * caller). Fixed: a kind that needs anything else declares it as host options.
 */
export interface CapabilityHost {
  /** Folder against which relative file paths in scopes (`fs.root`, `kv.file`, `sql.file`) resolve; none: they are refused. */
  dataDir?: string;
  /** Folder against which relative paths in host options resolve (the config file's folder); default `process.cwd()`. */
  configDir?: string;
  /** The host's logger (the `log` capability writes to it); default JSON lines on stderr. */
  logger?: Logger;
  /** Injected clock, epoch ms (clock capability, budgets, expiry); default `Date.now`. */
  now?: () => number;
  /** Credentials the instance may attach on the agent's behalf (http; an MCP server's headers). */
  secrets?: HostSecrets;
  /** Durable documents the kind may keep its state in (the host's store); none: the kind's own default (files under `dataDir`). */
  documents?: CapabilityDocuments;
}

/** What `prepare`, `create` and `close` receive: the host's services and this instance's host options. */
export interface CapabilityContext<H = unknown> {
  /** The binding name (`caps.<name>`; the config key). */
  readonly name: string;
  /** See `CapabilityHost.dataDir`. */
  readonly dataDir: string | undefined;
  /** An absolute path for `p`, relative ones against the config file's folder (host option paths). */
  resolvePath(p: string): string;
  /** The host's logger; JSON lines on stderr when the host gave none (pino loaded only then). */
  readonly logger: Logger;
  readonly now: () => number;
  /** The instance's host options, parsed by the kind's `hostOptions` schema. */
  readonly hostOptions: H;
  /** The instance's secrets; none configured: undefined. */
  readonly secrets: HostSecrets | undefined;
  /** See `CapabilityHost.documents`. */
  readonly documents: CapabilityDocuments | undefined;
}

/** What every kind declares. `H`: its parsed host options. */
interface PluginBase<H> {
  /**
   * The kind's definition when it is known before the host starts (every built-in): `contained caps
   * docs` and the registry's readers use it. A kind that discovers its methods (mcp: a server's
   * tool list) leaves it out and builds its definition in `prepare`.
   */
  readonly definition?: CapabilityDefinition;
  /** The host options one instance of the kind takes (`capabilities.<binding>.host`); `NO_HOST_OPTIONS` when none. */
  readonly hostOptions: z.ZodType<H>;
}

/** A kind that needs nothing started: `create` is all. */
export interface StaticPlugin<H = unknown> extends PluginBase<H> {
  readonly prepare?: undefined;
  readonly close?: undefined;
  /**
   * Bind the kind to a scope as given (not yet parsed: the kind's `create<Name>` hands it to
   * `createInstance`, which parses it once). Relative scope paths are the kind's to resolve against
   * `context.dataDir` (`scopeWithDataDir`). Throws `INVALID_SCOPE` or `INVALID_ARGUMENT`.
   */
  create(scope: unknown, context: CapabilityContext<H>, options: InstanceOptions): CapabilityInstance;
}

/** A kind with a start-up step (`P`: what it produced, e.g. a connected client and its tool list) and a shutdown step. */
export interface PreparedPlugin<H = unknown, P = unknown> extends PluginBase<H> {
  /** At host start, once per configured instance, before `create`: start what the kind needs, discover its definition. */
  prepare(context: CapabilityContext<H>): Promise<P>;
  /** As `StaticPlugin.create`, with what `prepare` produced. */
  create(scope: unknown, context: CapabilityContext<H>, options: InstanceOptions, prepared: P): CapabilityInstance;
  /** At host shutdown (or when another instance fails to start): release what `prepare` took. Called once. */
  close?(prepared: P, context: CapabilityContext<H>): Promise<void>;
}

/** A capability kind: static, or with a `prepare` step (and optional `close`). */
export type CapabilityPlugin<H = unknown, P = unknown> = StaticPlugin<H> | PreparedPlugin<H, P>;

/** A plugin with its types inferred from its schema and hooks; frozen. */
export function definePlugin<H>(plugin: StaticPlugin<H>): StaticPlugin<H>;
export function definePlugin<H, P>(plugin: PreparedPlugin<H, P>): PreparedPlugin<H, P>;
export function definePlugin<H, P>(plugin: CapabilityPlugin<H, P>): CapabilityPlugin<H, P> {
  return Object.freeze(plugin);
}

/** The host options of a kind that needs none: absent, or `{}`. */
export const NO_HOST_OPTIONS = z.strictObject({}).optional();

/** `scope[key]` resolved against `dataDir` when it is a relative path; anything else is left to the scope schema. */
export function scopeWithDataDir(scope: unknown, key: string, dataDir: string | undefined): unknown {
  if (typeof scope !== 'object' || scope === null || Array.isArray(scope)) return scope;
  const value: unknown = Object.getOwnPropertyDescriptor(scope, key)?.value;
  if (typeof value !== 'string' || path.isAbsolute(value) || dataDir === undefined) return scope;
  return { ...scope, [key]: path.resolve(dataDir, value) };
}
