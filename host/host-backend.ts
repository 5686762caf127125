/**
 * The host's implementation of the operator backend: what the WebSocket channel (and the console,
 * and the terminal client) may ask of the host. Roles are checked here, server-side, for every
 * operation — the channel only authenticates. It takes the services it calls (requests, grants,
 * runs, trust, and the store's token, grant and run lists), never the host.
 */
import type { Logger } from 'pino';
import { ContainedError } from '../runtime/errors.js';
import type { RequestManager } from './gate/requests.js';
import type { GrantService } from './grant-service.js';
import { type Operator, type Role, roleAtLeast, roleWithArticle } from './model.js';
import type { OperatorBackend } from './operator/backend.js';
import type { RunService } from './runs/service.js';
import type { Store } from './store/store.js';
import type { TrustService } from './trust/service.js';
import type { ChangesetService } from './changesets/service.js';

export interface HostBackendDeps {
  /** Tokens are re-read per state change; grants and runs are listed from the store. */
  store: Pick<Store, 'listTokens' | 'listGrants' | 'listRuns'>;
  requests: Pick<RequestManager, 'pending' | 'decide' | 'subscribe'>;
  /** Revocations go through the grant service (the only writer of grants). */
  grants: Pick<GrantService, 'revoke'>;
  runs: Pick<RunService, 'cancelRun'>;
  logger?: Logger;
  /** The review queue and promotions (host/trust); without it those operations are NOT_FOUND. */
  trust?: TrustService;
  /** Staged runs' changesets (undo); without it that operation is NOT_FOUND. */
  changesets?: Pick<ChangesetService, 'undo'>;
}

function requireRole(operator: Operator, needed: Exclude<Role, 'platform'>, what: string): void {
  if (!roleAtLeast(operator.role, needed)) {
    throw new ContainedError('FORBIDDEN', `${what} needs the ${needed} role; ${operator.name} is ${roleWithArticle(operator.role)}`);
  }
}

export function createHostBackend(deps: HostBackendDeps): OperatorBackend {
  const { store, requests, grants } = deps;
  /**
   * A token revoked while its connection is open (`contained token revoke` runs in another
   * process) must stop deciding at once: every state change re-reads the token's record.
   */
  async function assertLive(operator: Operator): Promise<void> {
    const token = (await store.listTokens()).find((t) => t.id === operator.tokenId);
    if (!token || token.revokedAt !== undefined) throw new ContainedError('UNAUTHENTICATED', `the token of ${operator.name} was revoked`);
  }
  return {
    async pending(operator) {
      requireRole(operator, 'viewer', 'seeing requests');
      return requests.pending();
    },
    async decide(operator, input) {
      await assertLive(operator);
      return requests.decide(operator, input);
    },
    async listGrants(operator) {
      requireRole(operator, 'viewer', 'listing grants');
      return store.listGrants();
    },
    async revokeGrant(operator, grantId, reason) {
      requireRole(operator, 'admin', 'revoking a grant');
      await assertLive(operator);
      if (typeof reason !== 'string' || reason.trim() === '') throw new ContainedError('INVALID_ARGUMENT', 'revoking a grant needs a reason');
      const grant = await grants.revoke(grantId, operator.name, reason);
      if (!grant) throw new ContainedError('NOT_FOUND', `no grant ${grantId}`);
      deps.logger?.info({ grantId, by: operator.name, reason }, 'grant revoked');
      return grant;
    },
    async listRuns(operator, limit) {
      requireRole(operator, 'viewer', 'listing runs');
      return store.listRuns({ limit: limit ?? 100 });
    },
    async cancelRun(operator, runId) {
      requireRole(operator, 'admin', 'cancelling a run');
      await assertLive(operator);
      return deps.runs.cancelRun(runId, { by: operator.name });
    },
    subscribe(listener) {
      return requests.subscribe(listener);
    },
    ...(deps.trust ? trustOperations(deps.trust) : {}),
    ...(deps.changesets ? { undoChangeset: (operator: Operator, requestId: string) => (deps.changesets as Pick<ChangesetService, 'undo'>).undo(operator, requestId) } : {}),
  };
}

/** Review queue and promotions: approvers review, admins decide promotions (checked here, not only in the channel). */
function trustOperations(trust: TrustService): Pick<OperatorBackend, 'listReviews' | 'markReview' | 'listPromotions' | 'decidePromotion'> {
  return {
    async listReviews(operator, filter) {
      requireRole(operator, 'approver', 'seeing the review queue');
      return trust.listReviews(filter);
    },
    async markReview(operator, input) {
      requireRole(operator, 'approver', 'reviewing executed actions');
      return trust.markReview(operator.name, input.reviewId, input.verdict, input.note);
    },
    async listPromotions(operator, status) {
      requireRole(operator, 'viewer', 'seeing promotion proposals');
      return trust.promotions.list(status);
    },
    async decidePromotion(operator, input) {
      requireRole(operator, 'admin', 'deciding a promotion');
      return trust.promotions.decide(operator.name, input.proposalId, input.verdict, input.reason);
    },
  };
}
