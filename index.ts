/**
 * The package entry (`import … from 'ai-contained'`): the sandbox, the capability SDK, the built-in
 * capabilities and sandbox images. Explicit named exports only. The host (store, operator channel, HTTP
 * API, web console) is the separate entry `ai-contained/host` (host-entry.ts), so a library user does not
 * load SQLite, ws and the console by default.
 */
// First, before anything loads isolated-vm: refuse a Node started without --no-node-snapshot.
import './preflight.js';
export {
  ContainedError,
  DEFAULT_LIMITS,
  ERROR_CODES,
  LIMIT_CODES,
  createSandbox,
  isErrorCode,
  limitsSchema,
  loadProgramFromFile,
  passThroughGate,
  programFromSource,
  toAgentError,
  validateProgram,
} from './runtime/index.js';
export type {
  CallOutcome,
  CapabilityRequest,
  ErrorCode,
  ErrorInfo,
  Gate,
  GateCall,
  GateContext,
  GateDecision,
  Limits,
  LimitsInput,
  LogLine,
  Program,
  RunError,
  RunOutcome,
  RunRequest,
  RunUsage,
  Sandbox,
  SandboxOptions,
} from './runtime/index.js';
export {
  CapabilityInstance,
  IN_SCOPE,
  WORST_CASE_RISK,
  budgetSchema,
  createInstance,
  defineCapability,
  method,
  needsSecondSignOff,
  outOfScope,
  resolveRisk,
} from './capabilities/sdk/index.js';
export type {
  Budget,
  CapabilityDefinition,
  CapabilityDescription,
  InstanceOptions,
  MethodDefinition,
  RiskAnnotations,
  ScopeCheck,
} from './capabilities/sdk/index.js';
// Built-in capabilities, the registry and grant specs, the agent-facing docs generator.
export {
  builtinCapabilities,
  createClock,
  createFs,
  createKv,
  createLog,
  createRandom,
  createRegistry,
  createSql,
  definePlugin,
  NO_HOST_OPTIONS,
  scopeWithDataDir,
  generateCapsDts,
  generateCapsMarkdown,
  parseGrantSpec,
} from './capabilities/index.js';
export { createHttp } from './capabilities/http/index.js';
export { createOutbox } from './capabilities/outbox/index.js';
export type { CapabilityContext, CapabilityHost, CapabilityPlugin, CapabilityRegistry, HostSecrets, PreparedPlugin, StaticPlugin } from './capabilities/index.js';
// Sandbox images.
export { buildImage, computeDigest, loadImage, writeImage } from './sandbox-images/index.js';
export type { LoadImageOptions, LoadedImage } from './sandbox-images/index.js';
