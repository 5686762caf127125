/**
 * The host side of the call bridge. Every call from every sandbox, in-process or from a worker,
 * comes through `dispatch`: parse the copied argument, find the instance, validate against the
 * method schema, run the instance's scope check, ask the gate, and only then invoke — telling the
 * gate the outcome. Nothing reaches a capability around it.
 *
 * Fails closed: unknown capability or method, bad JSON, schema mismatch, revoked or expired
 * instance, gate denial — each is a typed error; anything unexpected is INTERNAL to the agent and
 * logged in full for the host.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { CapabilityInstance } from '../capabilities/sdk/index.js';
import { ContainedError, type ErrorInfo, toAgentError } from './errors.js';
import type { BridgeResult, EngineCall } from './engine.js';
import type { CallOutcome, Gate, GateCall, GateContext, GateDecision } from './gate.js';

export interface DispatchRun {
  runId: string;
  subject: string | undefined;
  capabilities: ReadonlyMap<string, CapabilityInstance>;
  signal: AbortSignal;
  pauseWallClock(): () => void;
}

export class Dispatcher {
  private readonly gate: Gate;
  private readonly logger: Logger | undefined;

  constructor(gate: Gate, logger: Logger | undefined) {
    this.gate = gate;
    this.logger = logger;
  }

  async dispatch(run: DispatchRun, call: EngineCall): Promise<BridgeResult> {
    try {
      if (call.capability === '$request' && call.method === 'requestCapability') return await this.requestCapability(run, call);
      const instance = run.capabilities.get(call.capability);
      if (!instance || !instance.hasMethod(call.method)) {
        throw new ContainedError('UNKNOWN_CAPABILITY', `no capability method ${call.capability}.${call.method} is granted to this run`);
      }
      const dead = instance.liveness();
      if (dead) throw dead;
      const args = instance.parseArgs(call.method, parseJson(call.argJson, `${call.capability}.${call.method}`));
      const gateCall: GateCall = {
        callId: randomUUID(),
        runId: run.runId,
        subject: run.subject,
        capability: call.capability,
        definition: instance.definition.name,
        method: call.method,
        args,
        reason: call.reason,
        risk: instance.risk(call.method),
        scope: instance.checkScope(call.method, args),
      };
      const ctx: GateContext = { signal: run.signal, pauseWallClock: run.pauseWallClock };
      const decision = await this.gate.decide(gateCall, ctx);
      if (!decision.allow) throw new ContainedError(decision.code, decision.message);
      const target = decision.via ?? instance;
      const effective = decision.args === undefined ? args : target.parseArgs(call.method, decision.args);
      const outcome = await this.perform(target, gateCall, effective, run);
      await this.gate.settle?.(gateCall, decision, outcome);
      return outcome.ok ? { ok: true, value: outcome.value } : { ok: false, error: outcome.error };
    } catch (error) {
      return { ok: false, error: this.agentError(error, run, call) };
    }
  }

  private async perform(instance: CapabilityInstance, call: GateCall, args: unknown, run: DispatchRun): Promise<CallOutcome> {
    try {
      return { ok: true, value: await instance.invoke(call.method, args, { runId: run.runId, signal: run.signal }) };
    } catch (error) {
      return { ok: false, error: this.agentError(error, run, call) };
    }
  }

  private async requestCapability(run: DispatchRun, call: EngineCall): Promise<BridgeResult> {
    const body = parseJson(call.argJson, 'requestCapability') as { name?: unknown; scope?: unknown; reason?: unknown } | null;
    if (!body || typeof body.name !== 'string' || typeof body.reason !== 'string') {
      throw new ContainedError('INVALID_ARGUMENT', 'requestCapability(name, scope, reason): name and reason must be strings');
    }
    if (!this.gate.requestCapability) {
      throw new ContainedError('CAPABILITY_DENIED', `requestCapability("${body.name}"): this host takes no capability requests`);
    }
    const decision: GateDecision = await this.gate.requestCapability(
      { callId: randomUUID(), runId: run.runId, subject: run.subject, capability: body.name, scope: body.scope, reason: body.reason },
      { signal: run.signal, pauseWallClock: run.pauseWallClock },
    );
    if (!decision.allow) throw new ContainedError(decision.code, decision.message);
    return { ok: true, value: null };
  }

  private agentError(error: unknown, run: DispatchRun, call: { capability: string; method: string }): ErrorInfo {
    if (error instanceof ContainedError && error.code === 'OUT_OF_SCOPE') {
      // The instance's own re-check refused at the moment of use: to the agent this is a denial.
      return { code: 'CAPABILITY_DENIED', message: error.message };
    }
    const info = toAgentError(error);
    if (info.code === 'INTERNAL' || (error instanceof ContainedError && error.cause !== undefined)) {
      this.logger?.error({ err: error, runId: run.runId, capability: call.capability, method: call.method }, 'capability call failed');
    }
    return info;
  }
}

function parseJson(text: string, what: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ContainedError('INVALID_ARGUMENT', `${what}: the argument is not valid JSON`);
  }
}
