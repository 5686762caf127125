/**
 * The capabilities package: the SDK (define, instantiate, attenuate, revoke, budget), the built-in
 * capabilities, the registry of grantable kinds, grant specs, and agent-facing docs. Explicit
 * named exports only, so the whole public surface is visible here.
 */

// SDK
export { defineCapability, method, IN_SCOPE, outOfScope } from './sdk/define.js';
export type {
  CapabilityDefinition,
  CapabilityDefinitionInput,
  MethodContext,
  MethodDefinition,
  ResolvedMethod,
  ScopeCheck,
} from './sdk/define.js';
export { CapabilityInstance, createInstance } from './sdk/instance.js';
export type { CapabilityDescription, InstanceOptions, InvokeContext, MethodDescription } from './sdk/instance.js';
export { budgetSchema } from './sdk/budget.js';
export type { Budget } from './sdk/budget.js';
export { WORST_CASE_RISK, needsSecondSignOff, resolveRisk } from './sdk/risk.js';
export type { RiskAnnotations } from './sdk/risk.js';
export { formatBytes, jsonValueSchema } from './sdk/json.js';
export { narrowerLimit, sameScope } from './sdk/narrowing.js';
export type { WithinCheck } from './sdk/narrowing.js';

// Built-ins
export { createFs, DEFAULT_MAX_FILE_BYTES, fsCapability, fsPlugin, fsScopeSchema } from './fs/index.js';
export type { FsDeps, FsHostDeps, FsScope } from './fs/index.js';
export type { FsStrategy } from './fs/resolve.js';
export {
  createKv,
  DEFAULT_MAX_TOTAL_BYTES as KV_DEFAULT_MAX_TOTAL_BYTES,
  DEFAULT_MAX_VALUE_BYTES as KV_DEFAULT_MAX_VALUE_BYTES,
  kvCapability,
  kvPlugin,
  kvScopeSchema,
} from './kv/index.js';
export type { KvDeps, KvScope } from './kv/index.js';
export {
  createSql,
  createSqlEngine,
  DEFAULT_MAX_BYTES as SQL_DEFAULT_MAX_BYTES,
  DEFAULT_MAX_ROWS as SQL_DEFAULT_MAX_ROWS,
  DEFAULT_TIMEOUT_MS as SQL_DEFAULT_TIMEOUT_MS,
  SQL_ENGINE_DEFAULTS,
  sqlCapability,
  sqlPlugin,
  sqlScopeSchema,
} from './sql/index.js';
export type { SqlDeps, SqlEngine, SqlEngineOptions, SqlScope } from './sql/index.js';
export { clockCapability, clockPlugin, clockScopeSchema, createClock } from './clock/index.js';
export type { ClockDeps, ClockScope } from './clock/index.js';
export { createRandom, randomCapability, randomPlugin, randomScopeSchema } from './random/index.js';
export type { RandomDeps, RandomScope } from './random/index.js';
export { createLog, logCapability, logPlugin, logScopeSchema } from './log/index.js';
export type { LogDeps, LogScope } from './log/index.js';

// Plugins and the registry, grant specs, docs, CLI
export { definePlugin, NO_HOST_OPTIONS, scopeWithDataDir } from './plugin.js';
export type { CapabilityContext, CapabilityHost, CapabilityPlugin, HostSecrets, PreparedPlugin, StaticPlugin } from './plugin.js';
export { builtinCapabilities, capabilityContext, createRegistry, lookupKind, openKind, parseHostOptions } from './registry.js';
export type { CapabilityRegistry, OpenKind, OpenKindInput } from './registry.js';
export { parseGrantSpec, parseGrantSpecText } from './grant-spec.js';
export type { GrantSpec, GrantSpecOptions } from './grant-spec.js';
export { budgetInWords, generateCapsDts, generateCapsMarkdown, methodSignature, riskInWords, schemaToTs } from './docs.js';
export { capsCommand } from './cli.js';
export type { CapsIo } from './cli.js';
