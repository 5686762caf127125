/**
 * Audit, trust and grants, assembled for the host: the audit log (own connection to the store
 * file, the host key from the data folder), the gate's audit hooks, the host's one grant service
 * (shared by the gate, trust, the operator channel and the console), the trust service, and what
 * startHost hands to the RequestManager and the PolicyGate. Kept here so host.ts only spreads the
 * options in.
 *
 * Why a separate connection over the same SQLite file instead of more Store methods: the audit
 * writer batches appends into its own IMMEDIATE transactions (group commit) and runs ledger and
 * review changes inside them; the Store's one-call-one-transaction contract stays as it is, and
 * both see one file, one WAL, one backup.
 *
 * With a PostgreSQL store (a fleet): the audit records and checkpoints, and beside them the trust
 * ledger, review queue and promotions (tables-for.ts), go to that database — one chain and one
 * trust record for every host, each trust change committed with its record; trust reads the active
 * grants through the grant service.
 */
import type { Logger } from 'pino';
import type { CapabilityInstance } from '../../capabilities/sdk/index.js';
import type { CallOutcome, GateCall } from '../../runtime/gate.js';
import { createGateAudit } from '../audit/gate-audit.js';
import { loadOrCreateAuditKey } from '../audit/keys.js';
import { AuditLog } from '../audit/log.js';
import type { HostConfig } from '../config.js';
import { GrantService } from '../grant-service.js';
import type { ExecutionOutcome } from '../gate/requests.js';
import type { Grant, RequestRecord } from '../model.js';
import type { RequestEvent } from '../gate/events.js';
import { localStateFile, storeLocation } from '../store/store-location.js';
import type { Store } from '../store/store.js';
import { type TrustOutEvent, TrustService } from './service.js';

export interface AuditAndTrustOptions {
  config: HostConfig;
  store: Store;
  instances: ReadonlyMap<string, CapabilityInstance>;
  logger: Logger;
  now: () => number;
  /** Fan an event out to operators (the host's event hub). Called only after start-up. */
  emit(event: TrustOutEvent): void;
}

export interface AuditAndTrust {
  readonly audit: AuditLog;
  readonly trust: TrustService;
  /** The only writer of grants (also `PolicyGate.grants`, through `gateOptions`). */
  readonly grants: GrantService;
  /** Spread into RequestManagerOptions. */
  readonly requestOptions: {
    trustFor(request: RequestRecord): Record<string, unknown> | undefined;
    prepareTrust(requests: readonly RequestRecord[]): Promise<void>;
    beforeDetached(request: RequestRecord, args: unknown): Promise<void>;
    afterDetached(request: RequestRecord, outcome: ExecutionOutcome): Promise<void>;
  };
  /** Spread into PolicyGateOptions. */
  readonly gateOptions: {
    grants: GrantService;
    audit: ReturnType<typeof createGateAudit>;
    onExecuted(call: GateCall, grant: Grant, outcome: CallOutcome): Promise<void>;
  };
  /** Give to RequestManager.subscribe: request lifecycle into the audit log and the ledger. */
  onRequestEvent(event: RequestEvent): void;
  /** After RequestManager.recover(): ledger verdicts, demotions and promotion grants a crash left undone. */
  start(): Promise<void>;
  /** Flush, sign a final checkpoint, close the connection. */
  close(): Promise<void>;
}

export function openAuditAndTrust(options: AuditAndTrustOptions): AuditAndTrust {
  const { config, store, instances, logger, now } = options;
  const location = storeLocation(config);
  const postgres = location.kind === 'postgres' ? location.url : undefined;
  const audit = new AuditLog({
    ...config.audit,
    file: localStateFile(config),
    ...(postgres === undefined ? {} : { postgres }),
    key: loadOrCreateAuditKey(config.dataDir, config.audit.keyFile),
    logger,
    now,
    role: 'host',
  });
  const gateAudit = createGateAudit({ audit, store, logger });
  const grants = new GrantService({ store, instances, now, logger, emit: (event) => options.emit(event) });
  const trust = new TrustService({
    audit,
    store,
    grants,
    config: config.trust,
    riskOf: (capability, method) => {
      const instance = instances.get(capability);
      return instance?.hasMethod(method) ? instance.risk(method) : undefined;
    },
    methodsOf: (capability) => instances.get(capability)?.methodNames(),
    emit: (event) => options.emit(event),
    now,
    logger,
  });
  return {
    audit,
    trust,
    grants,
    requestOptions: {
      trustFor: (request) => trust.trustFor(request),
      prepareTrust: (requests) => trust.prepareFigures(requests),
      beforeDetached: (request, args) => gateAudit.beforeDetached(request, args),
      afterDetached: (request, outcome) => gateAudit.afterDetached(request, outcome),
    },
    gateOptions: {
      grants,
      audit: gateAudit,
      onExecuted: async (call, grant, outcome) => {
        // Not awaited: the agent gets its result at once; the review is queued with the next
        // audit batch. A failure is logged, not thrown at the agent (the action already happened).
        trust.onExecuted(call, grant, outcome).catch((error: unknown) => logger.error({ err: error, callId: call.callId }, 'trust: could not queue the executed action for review'));
      },
    },
    onRequestEvent(event) {
      gateAudit.onRequestEvent(event);
      trust.onRequestEvent(event);
    },
    async start() {
      const done = await trust.reconcile();
      if (done.verdicts + done.demotions + done.grants > 0) logger.info(done, 'trust: reconciled the ledger after a restart');
    },
    async close() {
      await audit.flush();
      await audit.close();
    },
  };
}
