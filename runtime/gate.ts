/**
 * The gate: the single interception point every capability call from a sandbox passes through.
 * The runtime's dispatcher copies the argument out of the isolate, validates it against the
 * method's schema and runs the instance's scope check; then it asks the gate for a decision, and
 * only on `allow` does it perform the call (with the gate's possibly edited argument). The gate is
 * told the outcome afterwards (`settle`), so intent and outcome can be audited around the action.
 *
 * This file holds the interface and the pass-through gate. Policy, escalation, audit and trust
 * (host/) implement the same interface; a decision may stay pending for minutes.
 */
import type { CapabilityInstance, RiskAnnotations, ScopeCheck } from '../capabilities/sdk/index.js';
import type { ErrorCode, ErrorInfo } from './errors.js';

export interface GateCall {
  /** Unique per call within the host. */
  callId: string;
  runId: string;
  /** Who is acting (an image digest), when the run has one. */
  subject: string | undefined;
  /** Binding name the agent used: `caps.<capability>`. */
  capability: string;
  /** Definition name behind the binding (e.g. `fs` for `caps.reports`). */
  definition: string;
  method: string;
  /** The validated argument (a plain copy; never a reference into the isolate). */
  args: unknown;
  /** The agent's stated reason (second argument `{ reason }`), if any. */
  reason: string | undefined;
  risk: RiskAnnotations;
  /** The instance's own verdict on the argument. */
  scope: ScopeCheck;
}

/** A capability the agent asked for from inside the sandbox with `requestCapability`. */
export interface CapabilityRequest {
  callId: string;
  runId: string;
  subject: string | undefined;
  capability: string;
  scope: unknown;
  reason: string;
}

export type GateDecision =
  | {
      allow: true;
      /** Replacement argument (an operator's edit); re-validated by the dispatcher before use. */
      args?: unknown;
      /** Which grant or decision allowed it, for the audit. */
      basis?: string;
      /**
       * The instance to perform the call through — e.g. the run's instance attenuated to the
       * grant's narrower scope. Default: the instance the agent called.
       */
      via?: CapabilityInstance;
    }
  | { allow: false; code: ErrorCode; message: string };

export type CallOutcome = { ok: true; value: unknown } | { ok: false; error: ErrorInfo };

export interface GateContext {
  /** Aborted when the run ends (finished, cancelled, crashed or killed by a limit). */
  signal: AbortSignal;
  /**
   * Stop the run's wall clock while a human decides; call the returned function to restart it.
   * Waiting for a person never counts against `wallMs`.
   */
  pauseWallClock(): () => void;
}

export interface Gate {
  decide(call: GateCall, ctx: GateContext): Promise<GateDecision>;
  /** Told once per allowed call, after the capability ran (or failed). */
  settle?(call: GateCall, decision: GateDecision & { allow: true }, outcome: CallOutcome): void | Promise<void>;
  /** `requestCapability(name, scope, reason)` from inside a sandbox. Absent: refused. */
  requestCapability?(request: CapabilityRequest, ctx: GateContext): Promise<GateDecision>;
}

/** Allows every in-scope call and refuses every out-of-scope one with `CAPABILITY_DENIED`. */
export const passThroughGate: Gate = {
  async decide(call) {
    if (call.scope.ok) return { allow: true, basis: 'pass-through' };
    return { allow: false, code: 'CAPABILITY_DENIED', message: `${call.capability}.${call.method}: ${call.scope.message}` };
  },
};
