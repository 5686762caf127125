/** The capability SDK: define a capability, bind it to a scope, attenuate, revoke, budget. */
export { defineCapability, method, IN_SCOPE, outOfScope } from './define.js';
export type {
  CapabilityDefinition,
  CapabilityDefinitionInput,
  MethodContext,
  MethodDefinition,
  ResolvedMethod,
  ScopeCheck,
} from './define.js';
export { CapabilityInstance, createInstance } from './instance.js';
export { changedFields, differingFields, mergeScopeFields, narrowerLimit, sameScope } from './narrowing.js';
export type { WithinCheck } from './narrowing.js';
export type { CapabilityDescription, InstanceOptions, InvokeContext, MethodDescription } from './instance.js';
export { DEFAULT_MAX_STAGED_BYTES, DEFAULT_MAX_STAGED_EFFECTS, StagingSession } from './staging.js';
export type { CapabilityStaging, MethodStaging, StageContext, StagedEffect, StagingLimits } from './staging.js';
export { budgetSchema } from './budget.js';
export { formatBytes, jsonValueSchema } from './json.js';
export type { Budget } from './budget.js';
export { WORST_CASE_RISK, needsSecondSignOff, resolveRisk } from './risk.js';
export type { RiskAnnotations } from './risk.js';
