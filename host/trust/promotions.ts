/**
 * Promotion by evidence: after every assisted verdict the action is checked against the bar
 * (policy.ts); the first time it is met — and only while the action is assisted, has no open
 * proposal and is under no ceiling — a proposal is stored, audited and announced. An admin accepts
 * it (a new executed grant for that one method) or declines it; with `trust.autoAccept` the host
 * accepts it itself, still audited and announced. Never silent.
 *
 * Acceptance re-checks everything (the ceiling, the bar, the assisted grant, the current mode) and
 * refuses with PROMOTION_REFUSED — withdrawing the proposal — when the evidence no longer holds.
 * The decision and its audit record commit first; the grant is written next (by the grant service),
 * and if the host dies in between, start-up writes it (`restoreAcceptedGrants`).
 */
import type { Logger } from 'pino';
import { ContainedError } from '../../runtime/errors.js';
import type { AuditLog } from '../audit/log.js';
import type { GrantService } from '../grant-service.js';
import { actionFigures, type FigureSources } from './figures.js';
import { promotionGrant } from './grant-changes.js';
import type { ActionKey } from './ledger.js';
import { newId, type Proposal, type ProposalStatus, type TrustOutEvent } from './model.js';
import { ceilingReason, pct, type TrustConfig } from './policy.js';
import { mapStep, type TrustTables } from './tables.js';

export const AUTO_ACCEPT_BY = 'host (autoAccept)';

/** What the promotion flow uses of the trust service (given, not reached back for). */
export interface PromotionDeps {
  tables: TrustTables;
  sources: FigureSources;
  grants: GrantService;
  audit: AuditLog;
  config: TrustConfig;
  logger?: Logger | undefined;
  /** Tell operators (and drop cached figures). */
  emit(event: TrustOutEvent): void;
  /** Run after every earlier grant-changing step of the trust service. */
  serial<T>(f: () => Promise<T>): Promise<T>;
  now(): number;
}

export class PromotionFlow {
  constructor(private readonly deps: PromotionDeps) {}

  private now(): number {
    return this.deps.now();
  }

  list(status?: ProposalStatus): Promise<Proposal[]> {
    return this.deps.tables.proposals(status);
  }

  /** Propose when the bar is met (call inside `serial`). Returns the proposal made, if any. */
  async check(key: ActionKey): Promise<Proposal | undefined> {
    const deps = this.deps;
    const { tables } = deps;
    if (await tables.openProposal(key)) return undefined;
    const now = this.now();
    const f = await actionFigures(deps.sources, key, now);
    if (f.mode !== 'assisted' || !f.grant || !f.bar.met) return undefined;
    // A grant that requires passkey-signed approvals keeps its calls with people: never proposed.
    if (f.grant.signedApprovals === true) return undefined;
    const s = f.stats;
    const proposal: Proposal = {
      id: newId('prm'),
      ...key,
      grantId: f.grant.id,
      status: 'proposed',
      evidence: {
        assistedReviews: s.lifetime.approved + s.lifetime.edited + s.lifetime.denied,
        approvedAsIs: s.lifetime.approved,
        edited: s.lifetime.edited,
        denied: s.lifetime.denied,
        editRate: pct(f.bar.editRate),
        window: s.recentAssisted,
        critical: s.lifetime.critical,
        shadow: s.shadow,
        risk: f.risk,
      },
      createdAt: now,
    };
    const count = await tables.assistedCount(key);
    // Another host may have proposed it meanwhile (the partial unique index decides): then no record.
    await deps.audit.append(
      { type: 'promotion.proposed', ...key, data: { proposalId: proposal.id, grantId: proposal.grantId, evidence: proposal.evidence } },
      mapStep(tables.insertProposal(proposal, count), (inserted) => {
        if (!inserted) throw new ContainedError('ALREADY_RESOLVED', 'a proposal is already open for this action');
      }),
    );
    deps.emit({ type: 'promotion', change: 'proposed', proposal });
    deps.logger?.info({ ...key, proposalId: proposal.id }, 'trust: promotion proposed');
    if (deps.config.autoAccept) return this.decideNow(AUTO_ACCEPT_BY, proposal.id, 'accept', 'trust.autoAccept: the evidence met the bar');
    return proposal;
  }

  /** An admin's (or the CLI's) decision on a proposal. */
  decide(by: string, id: string, verdict: 'accept' | 'decline', reason: string): Promise<Proposal> {
    return this.deps.serial(() => this.decideNow(by, id, verdict, reason));
  }

  private async decideNow(by: string, id: string, verdict: 'accept' | 'decline', reason: string): Promise<Proposal> {
    const deps = this.deps;
    const { tables } = deps;
    if (reason.trim() === '') throw new ContainedError('INVALID_ARGUMENT', 'a promotion decision needs a reason');
    const proposal = await tables.proposal(id);
    if (!proposal) throw new ContainedError('NOT_FOUND', `no promotion proposal ${id}`);
    if (proposal.status !== 'proposed') throw new ContainedError('ALREADY_RESOLVED', `promotion proposal ${id} is already ${proposal.status}`);
    const key = { subject: proposal.subject, capability: proposal.capability, method: proposal.method };
    const now = this.now();
    if (verdict === 'decline') return this.close(proposal, 'declined', by, reason, now);

    const f = await actionFigures(deps.sources, key, now, undefined, proposal.id);
    const ceiling = ceilingReason(f.risk);
    const base = await deps.grants.get(proposal.grantId);
    const refusal = ceiling
      ? `${key.capability}.${key.method} can never be promoted: ${ceiling}`
      : !f.bar.met
        ? `the evidence no longer meets the bar: ${f.bar.missing.join('; ')}`
        : !base || base.revokedAt !== undefined || (base.expiresAt !== undefined && base.expiresAt <= now)
          ? `the assisted grant ${proposal.grantId} is no longer active`
          : f.mode !== 'assisted'
            ? `${key.capability}.${key.method} is already ${f.mode}`
            : base.signedApprovals === true || f.grant?.signedApprovals === true
              ? `the grant of ${key.capability}.${key.method} requires passkey-signed approvals: its calls stay with people`
              : undefined;
    if (refusal !== undefined || !base) {
      await this.close(proposal, 'withdrawn', by, `refused: ${refusal ?? 'no assisted grant'}`, now);
      throw new ContainedError('PROMOTION_REFUSED', refusal ?? 'no assisted grant', { data: { proposalId: id } });
    }
    const grant = promotionGrant(base, key.method, by, `promotion ${id} accepted by ${by}: ${reason}`, deps.config.promotedReviewSample, now);
    const { value: decided } = await deps.audit.appendWith(
      { type: 'promotion.accepted', ...key, data: { proposalId: id, by, reason, newGrantId: grant.id, evidence: proposal.evidence } },
      tables.decideProposal(id, 'accepted', by, reason, now, grant.id),
    );
    await deps.grants.issue(grant);
    deps.emit({ type: 'promotion', change: 'accepted', proposal: decided });
    deps.logger?.warn({ ...key, proposalId: id, by, grantId: grant.id }, 'trust: action promoted to executed');
    return decided;
  }

  /** Withdraw the open proposal of an action (a demotion or a critical review makes its evidence stale). */
  async withdrawOpen(key: ActionKey, by: string, reason: string): Promise<void> {
    const open = await this.deps.tables.openProposal(key);
    if (open) await this.close(open, 'withdrawn', by, reason, this.now());
  }

  /** Accepted proposals whose executed grant was never written (host died in between): write it now. */
  async restoreAcceptedGrants(): Promise<number> {
    const deps = this.deps;
    let restored = 0;
    for (const p of await deps.tables.proposals('accepted')) {
      if (p.newGrantId === undefined || (await deps.grants.get(p.newGrantId))) continue;
      const base = await deps.grants.get(p.grantId);
      if (!base) continue;
      const by = p.decidedBy ?? 'host';
      const grant = promotionGrant(base, p.method, by, `promotion ${p.id} accepted by ${by}: ${p.reason ?? ''} (written at start-up)`, deps.config.promotedReviewSample, p.decidedAt ?? this.now(), p.newGrantId);
      await deps.grants.issue(grant, { announce: false });
      restored += 1;
    }
    return restored;
  }

  private async close(proposal: Proposal, status: 'declined' | 'withdrawn', by: string, reason: string, now: number): Promise<Proposal> {
    const { tables, audit } = this.deps;
    const { value: decided } = await audit.appendWith(
      { type: status === 'declined' ? 'promotion.declined' : 'promotion.withdrawn', subject: proposal.subject, capability: proposal.capability, method: proposal.method, data: { proposalId: proposal.id, by, reason } },
      tables.decideProposal(proposal.id, status, by, reason, now),
    );
    this.deps.emit({ type: 'promotion', change: status, proposal: decided });
    return decided;
  }
}
