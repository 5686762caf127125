/**
 * Committing and undoing a changeset: the effects a staged run recorded, approved as one request.
 *
 * Commit, in this order:
 * 1. every precondition is checked (a file's hash, a kv value's fingerprint, as the run first saw
 *    them); on any difference nothing is applied and the outcome is `CHANGESET_CONFLICT`;
 * 2. the before-image of every resource the effects change is taken;
 * 3. local effects (not open-world) are performed in the run's order, each through the runtime's
 *    Dispatcher with a gate that allows exactly that recorded call within the host's scope (nothing
 *    reaches a capability around it) — or, for an effect that recorded after-images (SQL rows), by
 *    writing exactly those through the capability's `restore`; if one fails, those already applied are restored from their
 *    before-images and the outcome is `CHANGESET_FAILED` — nothing open-world was sent;
 * 4. open-world effects (e-mail, HTTP) last, in order; one that fails is reported in the result
 *    (what was sent cannot be called back).
 * The result keeps each resource's before-image and after-fingerprint: undo (`undoChangeset`)
 * refuses with `CHANGESET_CONFLICT` when anything changed since, and restores nothing then.
 *
 * Exactly once: the request manager claims the execution before calling this (as for
 * recommendations), so a restart never commits twice; the audit log has the intent and outcome.
 */
import type { Logger } from 'pino';
import type { CapabilityInstance, StagedEffect } from '../../capabilities/sdk/index.js';
import { Dispatcher } from '../../runtime/dispatcher.js';
import { ContainedError } from '../../runtime/errors.js';
import type { Gate } from '../../runtime/gate.js';
import { argsDigest } from '../gate/proposal.js';
import type { ExecutionOutcome } from '../gate/requests.js';

/** What a changeset request carries as its arguments (its digest is what approvals are bound to). */
export interface Changeset {
  effects: StagedEffect[];
}

/** One resource as the commit left it: for undo. */
export interface CommittedResource {
  capability: string;
  resource: string;
  before: unknown;
  after: string;
}

export interface EffectOutcome {
  seq: number;
  ok: boolean;
  result?: unknown;
  error?: { code: string; message: string };
}

/** A committed changeset's result (the request's `execution.result`). */
export interface CommitResult {
  effects: EffectOutcome[];
  /** Open-world effects that failed (local ones never fail here: they roll back). */
  failed: number;
  resources: CommittedResource[];
}

export interface ChangesetDeps {
  instances: ReadonlyMap<string, CapabilityInstance>;
  logger?: Logger;
}

export interface Conflict {
  capability: string;
  resource: string;
  expected: string;
  found: string;
}

function hooksOf(deps: ChangesetDeps, capability: string): NonNullable<ReturnType<CapabilityInstance['resourceHooks']>> {
  const host = deps.instances.get(capability);
  const hooks = host?.resourceHooks();
  if (!hooks) throw new ContainedError('NOT_FOUND', `this host no longer offers ${capability} (or it stages no resources)`);
  return hooks;
}

function conflictError(what: string, conflicts: Conflict[], nothing: string): ContainedError {
  const names = conflicts.map((c) => `${c.capability}:${c.resource}`).join(', ');
  return new ContainedError('CHANGESET_CONFLICT', `${what}: changed since: ${names}; ${nothing}`, { data: { conflicts } });
}

/** Preconditions of every effect, against the real resources now. */
export async function checkPreconditions(deps: ChangesetDeps, changeset: Changeset): Promise<Conflict[]> {
  const conflicts: Conflict[] = [];
  for (const effect of changeset.effects) {
    for (const [resource, expected] of Object.entries(effect.preconditions)) {
      const found = await hooksOf(deps, effect.capability).observe(resource);
      if (found !== expected) conflicts.push({ capability: effect.capability, resource, expected, found });
    }
  }
  return conflicts;
}

/** A gate that allows exactly one recorded call, within the host's own scope. */
function effectGate(effect: StagedEffect): Gate {
  const digest = argsDigest(effect.args);
  return {
    decide: async (call) => {
      if (call.capability !== effect.capability || call.method !== effect.method || argsDigest(call.args) !== digest) {
        return { allow: false, code: 'CAPABILITY_DENIED', message: `${call.capability}.${call.method} is not what the changeset recorded` };
      }
      if (!call.scope.ok) return { allow: false, code: 'CAPABILITY_DENIED', message: `${call.capability}.${call.method}: ${call.scope.message} (outside what this host offers)` };
      return { allow: true, basis: 'changeset' };
    },
  };
}

async function perform(deps: ChangesetDeps, runId: string, subject: string | undefined, effect: StagedEffect): Promise<EffectOutcome> {
  const result = await new Dispatcher(effectGate(effect), deps.logger).dispatch(
    { runId, subject, capabilities: deps.instances, signal: new AbortController().signal, pauseWallClock: () => () => undefined },
    { seq: effect.seq, capability: effect.capability, method: effect.method, argJson: effect.args === undefined ? '' : JSON.stringify(effect.args), reason: undefined },
  );
  return result.ok ? { seq: effect.seq, ok: true, result: result.value } : { seq: effect.seq, ok: false, error: { code: result.error.code, message: result.error.message } };
}

/**
 * Effects that recorded their after-images (SQL statements' rows), consecutive on one binding, are
 * committed by writing those images — in one transaction where the capability can (sql) — never by
 * running the calls again: what was reviewed is what is written.
 */
async function writeImages(deps: ChangesetDeps, effects: readonly StagedEffect[]): Promise<EffectOutcome[]> {
  const first = effects[0];
  if (first === undefined) return [];
  try {
    await hooksOf(deps, first.capability).restoreAll(effects.flatMap((e) => Object.entries(e.after ?? {})));
    return effects.map((e) => ({ seq: e.seq, ok: true, result: { written: Object.keys(e.after ?? {}).length } }));
  } catch (error) {
    deps.logger?.error({ err: error, seq: first.seq }, 'writing staged effects failed');
    const info = error instanceof ContainedError ? { code: error.code, message: error.message } : { code: 'CAPABILITY_FAILED', message: `${first.capability}: writing the staged rows failed` };
    return effects.map((e) => ({ seq: e.seq, ok: false, error: info }));
  }
}

/** Consecutive entries of one binding, so each run can be restored at once (`restoreAll`). */
function byBinding<T extends { capability: string }>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (const item of items) {
    const last = out.at(-1);
    if (last?.[0]?.capability === item.capability) last.push(item);
    else out.push([item]);
  }
  return out;
}

/** Every (capability, resource) the effects change, in first-touch order. */
function resourcesOf(changeset: Changeset): Array<{ capability: string; resource: string }> {
  const seen = new Map<string, { capability: string; resource: string }>();
  for (const e of changeset.effects) for (const resource of e.resources) seen.set(`${e.capability}\0${resource}`, { capability: e.capability, resource });
  return [...seen.values()];
}

/** Commit an approved changeset (see the module comment). Never throws for a refusal: it returns the outcome. */
export async function commitChangeset(deps: ChangesetDeps, runId: string, subject: string | undefined, changeset: Changeset): Promise<ExecutionOutcome> {
  try {
    for (const e of changeset.effects) {
      if (!deps.instances.has(e.capability)) return { ok: false, error: { code: 'NOT_FOUND', message: `this host no longer offers ${e.capability}; nothing was applied` } };
    }
    const conflicts = await checkPreconditions(deps, changeset);
    if (conflicts.length > 0) {
      const error = conflictError('the changeset cannot be committed', conflicts, 'nothing was applied');
      return { ok: false, error: { code: error.code, message: error.message } };
    }
    const touched = resourcesOf(changeset);
    const befores = new Map<string, unknown>();
    for (const { capability, resource } of touched) befores.set(`${capability}\0${resource}`, await hooksOf(deps, capability).snapshot(resource));

    const local = changeset.effects.filter((e) => !e.risk.openWorld);
    const open = changeset.effects.filter((e) => e.risk.openWorld);
    const outcomes: EffectOutcome[] = [];
    for (let i = 0; i < local.length; ) {
      const effect = local[i] as StagedEffect;
      // A run of effects that recorded after-images on one binding (SQL statements) is written at once.
      let j = i + 1;
      if (effect.after !== undefined) while (j < local.length && local[j]?.after !== undefined && local[j]?.capability === effect.capability) j++;
      const batch = effect.after === undefined ? [await perform(deps, runId, subject, effect)] : await writeImages(deps, local.slice(i, j));
      i = effect.after === undefined ? i + 1 : j;
      outcomes.push(...batch);
      const outcome = batch.find((o) => !o.ok) ?? { ok: true, seq: effect.seq };
      if (!outcome.ok) {
        await rollback(deps, touched, befores);
        return {
          ok: false,
          error: { code: 'CHANGESET_FAILED', message: `effect ${effect.seq} (${effect.summary}) failed: ${outcome.error?.code ?? 'INTERNAL'}: ${outcome.error?.message ?? ''}; the effects applied before it were rolled back, nothing open-world was sent` },
        };
      }
    }
    for (const effect of open) outcomes.push(await perform(deps, runId, subject, effect));

    const resources: CommittedResource[] = [];
    for (const { capability, resource } of touched) {
      resources.push({ capability, resource, before: befores.get(`${capability}\0${resource}`), after: await hooksOf(deps, capability).observe(resource) });
    }
    const result: CommitResult = { effects: outcomes.sort((a, b) => a.seq - b.seq), failed: outcomes.filter((o) => !o.ok).length, resources };
    return { ok: true, result };
  } catch (error) {
    deps.logger?.error({ err: error, runId }, 'committing a changeset failed');
    return { ok: false, error: error instanceof ContainedError ? { code: error.code, message: error.message } : { code: 'INTERNAL', message: 'the commit failed in the host' } };
  }
}

async function rollback(deps: ChangesetDeps, touched: Array<{ capability: string; resource: string }>, befores: Map<string, unknown>): Promise<void> {
  for (const group of byBinding([...touched].reverse())) {
    const capability = group[0]?.capability ?? '';
    try {
      await hooksOf(deps, capability).restoreAll(group.map(({ resource }) => [resource, befores.get(`${capability}\0${resource}`)] as const));
    } catch (error) {
      deps.logger?.error({ err: error, capability }, 'rolling back changeset effects failed');
    }
  }
}

/**
 * Undo a committed changeset's local effects from their before-images: refused `CHANGESET_CONFLICT`
 * (nothing restored) when any resource changed since the commit. Open-world effects are never undone.
 */
export async function undoChangeset(deps: ChangesetDeps, result: CommitResult): Promise<{ restored: number }> {
  const conflicts: Conflict[] = [];
  for (const r of result.resources) {
    const found = await hooksOf(deps, r.capability).observe(r.resource);
    if (found !== r.after) conflicts.push({ capability: r.capability, resource: r.resource, expected: r.after, found });
  }
  if (conflicts.length > 0) throw conflictError('the changeset cannot be undone', conflicts, 'nothing was restored');
  for (const group of byBinding([...result.resources].reverse())) {
    await hooksOf(deps, group[0]?.capability ?? '').restoreAll(group.map((r) => [r.resource, r.before] as const));
  }
  return { restored: result.resources.length };
}
