/**
 * Changesets as requests: when a staged run ends with effects, one request of kind `changeset`
 * opens, whose arguments are the changeset itself ({ effects }) — so an approval is bound to the
 * digest of exactly what will be committed, as any approval is bound to its arguments
 * (gate/proposal.ts: another changeset has another digest, and STALE_REQUEST refuses an approval of
 * the old one). Two approvers when any effect is destructive or financial. It cannot be edited.
 *
 * Approved, the request manager performs it detached, exactly once (claimExecution, as for
 * recommendations; its audit hooks write the intent before and the outcome after): `commit` here.
 * `undo` reverses the local part within the undo window, from the before-images the commit kept.
 *
 * Fails: NOT_FOUND (no such changeset), FORBIDDEN (below approver), ALREADY_RESOLVED (not committed,
 * or the undo window has passed), CHANGESET_CONFLICT (something changed since the commit).
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import type { CapabilityInstance, RiskAnnotations, StagedEffect, StagingSession } from '../../capabilities/sdk/index.js';
import { needsSecondSignOff } from '../../capabilities/sdk/risk.js';
import { ContainedError } from '../../runtime/errors.js';
import type { ExecutionOutcome, OpenRequest, RequestManager } from '../gate/requests.js';
import { roleAtLeast, roleWithArticle, type Operator, type RequestRecord } from '../model.js';
import { commitChangeset, undoChangeset, type Changeset, type CommitResult } from './commit.js';
import { changesetGrantApprovals, changesetNeedsSignatures } from './staged-gate.js';

/** The capability name a changeset request carries (no instance has it: names are lower camel case). */
export const CHANGESET_CAPABILITY = '$changeset';

import { DEFAULT_UNDO_WINDOW_MS } from './config.js';

export { DEFAULT_UNDO_WINDOW_MS };

const riskShape = z.strictObject({ readOnly: z.boolean(), destructive: z.boolean(), reversible: z.boolean(), openWorld: z.boolean(), financial: z.boolean() });
const effectSchema = z.strictObject({
  seq: z.number().int().nonnegative(),
  capability: z.string().min(1),
  definition: z.string().min(1),
  method: z.string().min(1),
  args: z.unknown(),
  risk: riskShape,
  summary: z.string(),
  detail: z.unknown().optional(),
  preconditions: z.record(z.string(), z.string()),
  resources: z.array(z.string()),
  after: z.record(z.string(), z.unknown()).optional(),
});
const changesetSchema = z.strictObject({ effects: z.array(effectSchema).min(1) });

/** The changeset a request carries; INVALID_ARGUMENT when it is not one. */
export function changesetOf(request: RequestRecord): Changeset {
  const parsed = changesetSchema.safeParse(request.args);
  if (request.kind !== 'changeset' || !parsed.success) throw new ContainedError('INVALID_ARGUMENT', `request ${request.id} carries no changeset`);
  return parsed.data as Changeset;
}

/** The worst of every effect's risk: what the review is about. */
function combinedRisk(effects: readonly StagedEffect[]): RiskAnnotations {
  return {
    readOnly: false,
    destructive: effects.some((e) => e.risk.destructive),
    reversible: effects.every((e) => e.risk.reversible),
    openWorld: effects.some((e) => e.risk.openWorld),
    financial: effects.some((e) => e.risk.financial),
  };
}

/** "3 effects: fs.write ×2, outbox.send" */
function describe(effects: readonly StagedEffect[]): string {
  const counts = new Map<string, number>();
  for (const e of effects) counts.set(`${e.capability}.${e.method}`, (counts.get(`${e.capability}.${e.method}`) ?? 0) + 1);
  const parts = [...counts].map(([k, n]) => (n > 1 ? `${k} ×${n}` : k));
  return `staged run: ${effects.length} effect${effects.length === 1 ? '' : 's'} (${parts.join(', ')}), reviewed as one changeset`;
}

/** The request a staged run's effects open. */
export function changesetRequest(
  runId: string,
  subject: string | undefined,
  effects: readonly StagedEffect[],
  timeoutMs: number,
  options: { signedApprovals?: boolean; grantApprovals?: number } = {},
): OpenRequest {
  return {
    kind: 'changeset',
    runId,
    ...(subject === undefined ? {} : { subject }),
    capability: CHANGESET_CAPABILITY,
    method: 'commit',
    args: { effects: [...effects] },
    risk: combinedRisk(effects),
    why: describe(effects),
    // Two for anything destructive or financial; never fewer than an assisted grant of its calls asks.
    approvalsRequired: Math.max(effects.some((e) => needsSecondSignOff(e.risk)) ? 2 : 1, options.grantApprovals ?? 1),
    // A call of the run was allowed by a grant that requires signed approvals (staged-gate.ts).
    ...(options.signedApprovals === true ? { signedApprovals: true } : {}),
    timeoutMs,
  };
}

/**
 * The action types a changeset counts as, for the trust ledger: one assisted review of each
 * capability.method in it (a recommendation-shaped record per type, id `<request>#<capability>.<method>`).
 * A recommendation is itself; anything else counts as nothing.
 */
export function assistedReviews(request: RequestRecord): RequestRecord[] {
  if (request.kind === 'recommendation') return [request];
  if (request.kind !== 'changeset') return [];
  let effects: StagedEffect[];
  try {
    effects = changesetOf(request).effects;
  } catch {
    return [];
  }
  const byType = new Map<string, StagedEffect>();
  for (const e of effects) if (!byType.has(`${e.capability}.${e.method}`)) byType.set(`${e.capability}.${e.method}`, e);
  return [...byType].map(([type, e]) => {
    const { args: _args, ...rest } = request;
    return { ...rest, id: `${request.id}#${type}`, kind: 'recommendation' as const, capability: e.capability, definition: e.definition, method: e.method, risk: e.risk };
  });
}

export interface ChangesetServiceDeps {
  requests: Pick<RequestManager, 'file' | 'view'>;
  store: { getRequest(id: string): Promise<RequestRecord | undefined>; markUndone?(id: string, undone: { at: number; by: string; restored: number }): Promise<void> };
  /** The audit log: an undo writes `changeset.undone` (who, what was restored). */
  audit?: { append(input: { type: 'changeset.undone'; at: number; runId: string; subject?: string | undefined; data: Record<string, unknown> }): Promise<unknown> };
  instances: ReadonlyMap<string, CapabilityInstance>;
  /** How long a changeset request waits for its review. */
  requestTimeoutMs: number;
  /** How long after its commit a changeset can be undone (default `DEFAULT_UNDO_WINDOW_MS`). */
  undoWindowMs?: number;
  now?: () => number;
  logger?: Logger;
}

export class ChangesetService {
  private readonly now: () => number;
  /** Changesets being undone now: a second undo at the same time is refused, not run twice. */
  private readonly undoing = new Set<string>();

  constructor(private readonly deps: ChangesetServiceDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** A staged run ended: open its changeset request when it has effects (undefined when it has none). */
  async open(runId: string, subject: string | undefined, session: StagingSession): Promise<RequestRecord | undefined> {
    if (session.effects.length === 0) return undefined;
    return this.deps.requests.file(changesetRequest(runId, subject, session.effects, this.deps.requestTimeoutMs, { signedApprovals: changesetNeedsSignatures(session), grantApprovals: changesetGrantApprovals(session) }));
  }

  /** Commit an approved changeset request (the request manager has claimed it: exactly once). */
  commit(request: RequestRecord): Promise<ExecutionOutcome> {
    let changeset: Changeset;
    try {
      changeset = changesetOf(request);
    } catch (error) {
      return Promise.resolve({ ok: false, error: { code: 'INVALID_ARGUMENT', message: (error as Error).message } });
    }
    return commitChangeset({ instances: this.deps.instances, ...(this.deps.logger ? { logger: this.deps.logger } : {}) }, request.runId, request.subject, changeset);
  }

  /** Undo a committed changeset's local effects (approvers and admins; within the undo window). */
  async undo(operator: Operator, requestId: string): Promise<{ requestId: string; restored: number }> {
    if (!roleAtLeast(operator.role, 'approver')) {
      throw new ContainedError('FORBIDDEN', `${operator.name} is ${roleWithArticle(operator.role)}: only approvers and admins undo changesets`);
    }
    const request = await this.deps.store.getRequest(requestId);
    if (!request || request.kind !== 'changeset') throw new ContainedError('NOT_FOUND', `no changeset ${requestId}`);
    const execution = request.execution;
    if (execution?.state !== 'done' || execution.ok !== true) throw new ContainedError('ALREADY_RESOLVED', `changeset ${requestId} was not committed; there is nothing to undo`);
    if (execution.undone !== undefined) throw new ContainedError('ALREADY_RESOLVED', `changeset ${requestId} was already undone by ${execution.undone.by}`);
    if (this.undoing.has(requestId)) throw new ContainedError('ALREADY_RESOLVED', `changeset ${requestId} is being undone`);
    const window = this.deps.undoWindowMs ?? DEFAULT_UNDO_WINDOW_MS;
    if (this.now() - execution.at > window) throw new ContainedError('ALREADY_RESOLVED', `changeset ${requestId} was committed more than ${Math.round(window / 60000)} minutes ago; its undo window has passed`);
    this.undoing.add(requestId);
    try {
      const result = execution.result as CommitResult;
      const { restored } = await undoChangeset({ instances: this.deps.instances, ...(this.deps.logger ? { logger: this.deps.logger } : {}) }, result);
      const at = this.now();
      await this.deps.store.markUndone?.(requestId, { at, by: operator.name, restored });
      await this.deps.audit?.append({
        type: 'changeset.undone',
        at,
        runId: request.runId,
        subject: request.subject,
        data: { requestId, by: operator.name, restored, committedAt: execution.at, resources: result.resources.map((r) => ({ capability: r.capability, resource: r.resource })) },
      });
      this.deps.logger?.info({ requestId, by: operator.name, restored }, 'changeset undone');
      return { requestId, restored };
    } finally {
      this.undoing.delete(requestId);
    }
  }
}
