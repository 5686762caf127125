/**
 * Acting on a request outside the call that opened it: checking an operator's edited arguments
 * against the instance the action would run through, and performing an approved recommendation
 * nobody waits for (its run ended, or the host restarted). The RequestManager calls these; they
 * need the grant service and the host's instances, never the gate or the host, so the request
 * manager can be built before the gate that uses it.
 *
 * An approved recommendation goes through the same Dispatcher as every sandbox call (schema,
 * liveness, scope, gate, invoke, error mapping and logging); its gate allows just that request
 * (`approvedRequestGate`). Nothing reaches a capability around the dispatcher.
 *
 * Fails: NOT_FOUND when the host no longer offers the capability or the grant is gone;
 * INVALID_ARGUMENT for a request without arguments; CAPABILITY_DENIED for edited arguments
 * outside the scope. `performDetached` never throws for a refusal: it returns the outcome.
 */
import type { Logger } from 'pino';
import type { CapabilityInstance } from '../../capabilities/sdk/index.js';
import { Dispatcher } from '../../runtime/dispatcher.js';
import { ContainedError } from '../../runtime/errors.js';
import type { Gate, GateDecision } from '../../runtime/gate.js';
import type { GrantService } from '../grant-service.js';
import type { RequestRecord } from '../model.js';
import type { ExecutionOutcome } from './requests.js';

export interface DetachedDeps {
  /** Capability instances the host offers, by name. */
  instances: ReadonlyMap<string, CapabilityInstance>;
  /** A request's grant and its attenuated instance. */
  grants: Pick<GrantService, 'get' | 'instanceFor'>;
  logger?: Logger;
}

/**
 * The instance a request's action is performed through: its grant's attenuated instance for a
 * recommendation (also after a restart), the host instance for an escalation.
 */
export async function viaForRequest(deps: Pick<DetachedDeps, 'grants'>, request: RequestRecord, host: CapabilityInstance): Promise<CapabilityInstance> {
  if (request.grantId === undefined) return host;
  const grant = await deps.grants.get(request.grantId);
  if (!grant) throw new ContainedError('NOT_FOUND', `grant ${request.grantId} no longer exists`);
  return deps.grants.instanceFor(grant, host);
}

/**
 * The gate an approved recommendation nobody waits for is dispatched through: the runtime's
 * Dispatcher validates the call as it does every sandbox call, and this allows exactly that
 * request's capability and method, within the host's scope, through its grant's attenuated
 * instance (`viaForRequest`). The decision was the operators'; its audit and completion are the
 * RequestManager's (beforeDetached, afterDetached, complete).
 */
export function approvedRequestGate(deps: Pick<DetachedDeps, 'grants' | 'instances'>, request: RequestRecord): Gate {
  return {
    decide: async (call): Promise<GateDecision> => {
      const host = deps.instances.get(call.capability);
      if (!host || call.runId !== request.runId || call.capability !== request.capability || call.method !== request.method) {
        return { allow: false, code: 'CAPABILITY_DENIED', message: `${call.capability}.${call.method} is not what request ${request.id} approved` };
      }
      if (!call.scope.ok) return { allow: false, code: 'CAPABILITY_DENIED', message: `${call.capability}.${call.method}: ${call.scope.message} (outside what this host offers)` };
      return { allow: true, basis: `request:${request.id}`, via: await viaForRequest(deps, request, host) };
    },
  };
}

/** An operator's edited arguments, parsed and checked against the scope of the instance they would run through. */
export async function validateEdit(deps: DetachedDeps, request: RequestRecord, args: unknown): Promise<unknown> {
  if (request.method === undefined) throw new ContainedError('INVALID_ARGUMENT', 'this request has no arguments to edit');
  const host = deps.instances.get(request.capability);
  if (!host) throw new ContainedError('NOT_FOUND', `this host no longer offers ${request.capability}`);
  const via = await viaForRequest(deps, request, host);
  const parsed = via.parseArgs(request.method, args);
  const check = via.checkScope(request.method, parsed);
  if (!check.ok) throw new ContainedError('CAPABILITY_DENIED', `the edited arguments are outside the scope: ${check.message}`);
  return parsed;
}

/** Perform an approved recommendation nobody waits for, through the Dispatcher and `approvedRequestGate`. */
export async function performDetached(deps: DetachedDeps, request: RequestRecord, args: unknown): Promise<ExecutionOutcome> {
  if (request.method === undefined) return { ok: false, error: { code: 'INVALID_ARGUMENT', message: 'nothing to perform' } };
  if (!deps.instances.has(request.capability)) return { ok: false, error: { code: 'NOT_FOUND', message: `this host no longer offers ${request.capability}` } };
  const dispatcher = new Dispatcher(approvedRequestGate(deps, request), deps.logger);
  const result = await dispatcher.dispatch(
    { runId: request.runId, subject: request.subject, capabilities: deps.instances, signal: new AbortController().signal, pauseWallClock: () => () => undefined },
    { seq: 0, capability: request.capability, method: request.method, argJson: args === undefined ? '' : JSON.stringify(args), reason: request.reason },
  );
  return result.ok ? { ok: true, result: result.value } : { ok: false, error: { code: result.error.code, message: result.error.message } };
}
