/** The runtime's public API. */
export { createSandbox } from './sandbox.js';
export type { RunRequest, Sandbox, SandboxOptions } from './sandbox.js';
export { passThroughGate } from './gate.js';
export type { CallOutcome, CapabilityRequest, Gate, GateCall, GateContext, GateDecision } from './gate.js';
export { DEFAULT_LIMITS, limitsSchema } from './limits.js';
export type { Limits, LimitsInput } from './limits.js';
export { LIMIT_CODES } from './outcome.js';
export type { LogLine, RunError, RunOutcome, RunUsage } from './outcome.js';
export { loadProgramFromFile, programFromSource, validateProgram } from './program.js';
export type { Program } from './program.js';
export { ContainedError, ERROR_CODES, isErrorCode, toAgentError } from './errors.js';
export type { ErrorCode, ErrorInfo } from './errors.js';
