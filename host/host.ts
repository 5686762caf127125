/**
 * The long-running host, embeddable as a library: the store, the capability instances the host
 * offers, the sandbox pool, the policy gate with its requests, the operator backend, and the HTTP
 * server (minimal run API + the operator WebSocket channel) on one port, loopback by default.
 *
 * This file is the composition root (docs/architecture.md): it builds each layer from the ones
 * below it, in order, and hands every adapter (HTTP API, web console, operator channel) only the
 * narrow ports it uses. Nothing below imports this file.
 *
 * Restart loses nothing: pending requests live in the store and are offered again; approved
 * recommendations that were never performed are performed once; runs that were live when the host
 * died are closed as crashed. Cancelling a run withdraws its pending recommendations (by default).
 */
import type { Logger } from 'pino';
import type { CapabilityRegistry } from '../capabilities/registry.js';
import type { CapabilityInstance } from '../capabilities/sdk/index.js';
import { createSandbox, type RunOutcome } from '../runtime/index.js';
import type { Manifest } from '../sandbox-images/manifest.js';
import { type HostConfig, type OpenCapabilities, openCapabilities } from './config.js';
import { createWebConsole, type WebConsole, type WebConsoleOptions } from './console/index.js';
import { createEventHub } from './event-hub.js';
import { compileDataFlow } from './gate/data-flow.js';
import { performDetached, validateEdit } from './gate/detached.js';
import type { RequestEvent } from './gate/events.js';
import { PolicyGate } from './gate/policy-gate.js';
import { fromFleet, RequestManager } from './gate/requests.js';
import { ChangesetService } from './changesets/service.js';
import { ContainedError } from '../runtime/errors.js';
import type { GrantService } from './grant-service.js';
import { createHostBackend } from './host-backend.js';
import { type HttpRoute, type HttpServer, type HttpServices, startHttpServer } from './http.js';
import { createHostLogger } from './logger.js';
import { createHostMetrics, type HostMetrics } from './metrics.js';
import { type Notifier, notifyTargets, openNotifier } from './notify/index.js';
import { createSignedApprovals } from './approvals/signed.js';
import { openPasskeyStore, openPgPasskeyStore } from './store/credentials.js';
import type { RequestRecord, RunRecord } from './model.js';
import type { OperatorBackend } from './operator/backend.js';
import { createTicketStore } from './operator/tickets.js';
import { createImageClients } from './runs/image-store.js';
import type { RunEventListener, RunFollow } from './runs/run-journal.js';
import type { RunQueue } from './runs/run-queue.js';
import { LiveRuns, RunService, type SubmitDigestInput, type SubmitInput, type SubmittedRun } from './runs/service.js';
import { acquireHostLock } from './store/host-lock.js';
import { refuseMigratedStore } from './store/migrated-marker.js';
import { storeDocuments, writerFor } from './store/documents.js';
import { openStore } from './store/open-store.js';
import { localStateFile, redactUrl, storeLocation } from './store/store-location.js';
import type { Store } from './store/store.js';
import { createFleet } from './fleet.js';
import { createTokenVerifier } from './tokens.js';
import { createAgentVerifier } from './agents.js';
import type { AuditLog } from './audit/log.js';
import { openMcpToolChanges } from './audit/mcp-tools.js';
import type { TrustService } from './trust/service.js';
import { openAuditAndTrust } from './trust/wiring.js';

export type { SubmitDigestInput, SubmitInput, SubmittedRun } from './runs/service.js';

/** What routes mounted with `HostOptions.httpRoutes` receive: the server's services, and the host itself. */
export type HostHttpServices = HttpServices & { host: Host };

export interface HostOptions {
  config: HostConfig;
  /** The capability kinds the config may name (default: the built-ins; `createRegistry({ … })` adds a platform's own). */
  registry?: CapabilityRegistry;
  logger?: Logger;
  /** Sandboxes in worker processes (default) or in this process. */
  isolation?: 'worker' | 'in-process';
  /** Start the HTTP/WebSocket server (default true). */
  listen?: boolean;
  now?: () => number;
  /** Crash-test seam, see RequestManagerOptions.afterDecision. */
  afterDecision?: (request: RequestRecord) => void;
  /** How long after its commit a staged run's changeset can be undone, in ms (default: the config's `staging.undoWindowMs`, 24 h). */
  undoWindowMs?: number;
  /**
   * Routes mounted on the HTTP server after the built-in ones and before the web console's; see
   * http.ts. An embedder's routes may use the whole host; the built-in adapters get ports only.
   */
  httpRoutes?: readonly HttpRoute[] | ((services: HostHttpServices) => readonly HttpRoute[]);
  /** Serve the web console at `/console/` (default true; `false` to leave it out). */
  console?: boolean | WebConsoleOptions;
  /** The host closed itself (HOST_REAPED: another host of the fleet declared it dead). */
  onStopped?(reason: ContainedError): void;
}

export interface Host {
  readonly store: Store;
  readonly requests: RequestManager;
  /** Staged runs' changesets: commit (through the request manager) and undo (host/changesets/). */
  readonly changesets: ChangesetService;
  readonly gate: PolicyGate;
  /** The only writer of grants: add, narrow, revoke, with the grant rules (also `gate.grants`). */
  readonly grants: GrantService;
  /** Runs: images, the queue, journals, outcomes (host/runs). `submit`… below are its methods. */
  readonly runs: RunService;
  readonly backend: OperatorBackend;
  /** The capability instances the host offers, by binding name (from the config). */
  readonly instances: ReadonlyMap<string, CapabilityInstance>;
  /** The web console, when served (one-time login links for `npm start`). */
  readonly console: WebConsole | undefined;
  /** `http://host:port` once listening. */
  readonly url: string | undefined;
  readonly queue: RunQueue;
  readonly metrics: HostMetrics;
  /** The hash-chained audit log (host/audit). */
  readonly audit: AuditLog;
  /** Review queue, trust ledger, promotions and demotions (host/trust). */
  readonly trust: TrustService;
  /** Webhook and email notifications: the outbox and its deliveries (host/notify). */
  readonly notify: Notifier;
  /** Queue a run of an image archive; QUEUE_FULL (nothing stored) when the run queue is full. */
  submit(input: SubmitInput): Promise<SubmittedRun>;
  /** Validate an image archive and store it under `<dataDir>/images/` by digest. */
  addImage(bytes: Uint8Array): Promise<{ digest: string; manifest: Manifest }>;
  /** Queue a run of an image stored with `addImage` (NOT_FOUND if there is none). */
  submitDigest(input: SubmitDigestInput): Promise<SubmittedRun>;
  /** The run's events so far, then live ones, while it is queued or running; a recently ended run's kept events (`ended`); else undefined. */
  followRun(runId: string, listener: RunEventListener): RunFollow | undefined;
  /** Resolves with the outcome when the run ends (or with the stored outcome if it already has). */
  waitForRun(runId: string): Promise<RunOutcome>;
  /**
   * Cancel a queued or running run. Its pending recommendations are withdrawn (closed as
   * `cancelled` by `by`, never performed) unless the config says `cancelledRunRecommendations: "keep"`.
   */
  cancelRun(runId: string, options?: { by?: string }): Promise<RunRecord>;
  close(): Promise<void>;
}

export async function startHost(options: HostOptions): Promise<Host> {
  const { config } = options;
  const logger = options.logger ?? createHostLogger();
  const now = options.now ?? Date.now;

  // The store, the capabilities offered, metrics, and the one event stream operators hear.
  const targets = notifyTargets(config.notify);
  // Before the store: recovery below treats every live run and pending request as this host's.
  const lock = acquireHostLock(config.dataDir);
  // SQLite in the data folder (one host), or a PostgreSQL database several hosts share (host/fleet.ts).
  const location = storeLocation(config);
  const shared = location.kind === 'postgres';
  let store: Store;
  let capabilities: OpenCapabilities;
  try {
    refuseMigratedStore(config.dataDir, location);
    store = await openStore(location, { now, logger });
  } catch (error) {
    lock.release();
    throw error;
  }
  // A fleet's capabilities keep their durable state (the mcp kind's accepted tools) in the shared store; one host's in files.
  const documents = shared ? storeDocuments(store, now, writerFor(config.dataDir)) : undefined;
  try {
    capabilities = await openCapabilities(config, { logger, ...(options.registry ? { registry: options.registry } : {}), ...(documents ? { documents } : {}) });
  } catch (error) {
    await store.close();
    lock.release();
    throw error;
  }
  const { instances } = capabilities;
  const metrics = createHostMetrics({ isKnownCapability: (name) => instances.has(name) });
  const events = createEventHub<RequestEvent>((error) => logger.error({ err: error }, 'request event listener failed'));
  const live = new LiveRuns();
  // This host among the hosts of the store: it ends what a dead one owned (onReap), and stops when reaped itself.
  const fleet = createFleet({
    store,
    config: config.fleet,
    shared,
    now,
    logger,
    onReap: async (deadHost) => {
      const crashed = await runs.recover((id) => id === deadHost);
      const taken = await requests.recover((id) => id === deadHost);
      logger.info({ deadHost, crashedRuns: crashed, ...taken }, 'fleet: took over what a dead host left');
    },
    onReaped: () => {
      const reaped = new ContainedError('HOST_REAPED', 'another host declared this host dead (no heartbeat for fleet.deadAfterMs) and ended its runs; this host stops');
      close().then(
        () => options.onStopped?.(reaped),
        (error: unknown) => logger.error({ err: error }, 'closing a reaped host failed'),
      );
    },
  });

  // Grants, audit and trust (host/trust/wiring.ts): the grant service is the only writer of grants.
  const oversight = openAuditAndTrust({ config, store, instances, logger, now, emit: (event) => events.emit(event) });
  const { grants } = oversight;

  // Passkeys and signed approvals (host/approvals/): registrations are written with their audit record.
  // Beside the audit chain, on either store: a passkey registered through one host of a fleet signs on any.
  const chainPool = oversight.audit.pgPool;
  const passkeys = chainPool ? openPgPasskeyStore(chainPool) : openPasskeyStore(localStateFile(config));
  const signed = createSignedApprovals({ config: config.approvals, passkeys, audit: oversight.audit, url: () => server?.url, now });

  // Requests and the gate. Acting on a request outside its call needs the grants, not the gate.
  const detached = { instances, grants, logger };
  const requests = new RequestManager({
    store,
    events,
    now,
    logger,
    validateEdit: (request, args) => (request.kind === 'changeset' ? Promise.reject(new ContainedError('INVALID_ARGUMENT', 'a changeset cannot be edited: approve it or deny it')) : validateEdit(detached, request, args)),
    // An approved changeset is committed (host/changesets/); anything else is performed as the call it is.
    performDetached: (request, args) => (request.kind === 'changeset' ? changesets.commit(request) : performDetached(detached, request, args)),
    ...(options.afterDecision ? { afterDecision: options.afterDecision } : {}),
    ...oversight.requestOptions,
    runLive: (runId) => live.isLive(runId),
    withdrawsOnCancel: async (runId) => config.cancelledRunRecommendations !== 'keep' && (await store.getRun(runId))?.status === 'cancelled',
    verifySignature: (operator, request, digest, assertion) => signed.verifySignature(operator, request, digest, assertion),
    hostId: fleet.hostId,
    ownerAlive: (hostId) => fleet.alive(hostId),
  });
  // Staged runs: their effects become one changeset request when they end; approved, it is committed once.
  const changesets: ChangesetService = new ChangesetService({ requests, store, audit: oversight.audit, instances, requestTimeoutMs: config.requestTimeoutMs, now, logger, undoWindowMs: options.undoWindowMs ?? config.staging.undoWindowMs });
  // The run-level data-flow rule: the sources the config marks sensitive, checked against the instances now (a bad one fails the start).
  const dataFlow = compileDataFlow(config.dataFlow, instances);
  const gate = new PolicyGate({
    requests,
    instances,
    run: (runId) => live.gateRun(runId),
    outOfScope: config.outOfScope,
    requestTimeoutMs: config.requestTimeoutMs,
    dataFlow,
    now,
    logger,
    ...oversight.gateOptions,
  });

  // Runs, in a sandbox whose every call the (metered) gate decides.
  const sandbox = createSandbox({ ...config.sandbox, isolation: options.isolation ?? 'worker', logger, gate: metrics.meterGate(gate) });
  const runs = new RunService({
    store,
    grants,
    instances,
    sandbox,
    live,
    emit: (event) => events.emit(event),
    openChangeset: (runId, subject, session) => changesets.open(runId, subject, session),
    stagingLimits: { maxEffects: config.staging.maxEffects, maxBytes: config.staging.maxBytes },
    withdrawForRun: (runId, by) => requests.withdrawForRun(runId, by),
    withdrawOnCancel: config.cancelledRunRecommendations !== 'keep',
    dataDir: config.dataDir,
    maxConcurrentRuns: config.maxConcurrentRuns,
    maxQueuedRuns: config.maxQueuedRuns,
    imageTrust: config.trustedKeys.length > 0 ? { trustedKeys: config.trustedKeys, requireSignature: config.requireSignature } : {},
    metrics,
    sensitiveReads: (run) => dataFlow.readsOf(run),
    hostId: fleet.hostId,
    now,
    logger,
  });
  metrics.observeQueue(runs.queue);
  // Another host's change (fromFleet) is recorded and notified by that host; here operators only hear of it.
  events.subscribe((event) => {
    if (!fromFleet(event)) oversight.onRequestEvent(event);
  });
  events.subscribe(runs.onRequestEvent);
  events.subscribe((event) => metrics.onRequestEvent(event));
  // Notifications: events become outbox rows; delivery starts once the server listens.
  // With PostgreSQL the fleet shares one outbox: any live host delivers, the rows a dead host left included.
  const notifier = await openNotifier({ config: config.notify, targets, storeFile: localStateFile(config), postgres: location.kind === 'postgres' ? location.url : undefined, logger, now });
  events.subscribe((event) => {
    if (!fromFleet(event)) notifier.onEvent(event);
  });
  // Tool changes of mcp capabilities: audited as the host withdraws or holds them (and notified), accepted in the console.
  const mcpTools = openMcpToolChanges({ dataDir: config.dataDir, documents, bindings: Object.keys(config.capabilities).filter((name) => config.capabilities[name]?.kind === 'mcp'), audit: oversight.audit, logger, now, onChange: (change) => notifier.onMcpToolChange(change) });
  const ownedHere = (hostId: string | undefined): boolean => !shared || hostId === undefined || hostId === fleet.hostId;
  await notifier.reconcile((await requests.pending()).filter((request) => ownedHere(request.hostId)));

  // After a restart: live runs end as crashed, requests are offered again, trust catches up. With
  // several hosts: what dead hosts left (reaped now or later by the fleet), and what was stored
  // before hosts had ids; the fleet's other pending requests get expiry timers here too.
  await fleet.start();
  logger.info({ store: location.kind === 'postgres' ? redactUrl(location.url) : location.file, hostId: fleet.hostId }, 'store opened');
  const unowned = (hostId: string | undefined): boolean => !shared || hostId === undefined;
  await runs.recover(unowned);
  const recovered = await requests.recover(unowned);
  if (recovered.pending + recovered.closed + recovered.performed > 0) logger.info(recovered, 'recovered requests from the store');
  // Changes other hosts commit: their requests reach operators here, their decisions resume runs here.
  const unwatch = store.watch((change) => {
    requests.onStoreChange(change).catch((error: unknown) => logger.error({ err: error, change }, 'fleet: a change from another host could not be applied'));
  });
  await notifier.reconcileOutcomes(async (id) => {
    const request = await store.getRequest(id);
    return request === undefined ? undefined : requests.view(request);
  });
  await oversight.start();
  metrics.seedPending(await requests.pending());

  // The operator backend: what operators may ask of the host, roles checked per operation.
  const backend = createHostBackend({ runs, store, requests, grants, logger, trust: oversight.trust, changesets });

  // The adapters: the web console and the HTTP server (platform API, operator channel).
  const listen = options.listen !== false;
  const own = typeof options.console === 'object' ? options.console : {};
  const web =
    listen && options.console !== false
      ? createWebConsole(
          { tokens: store, sessions: store, requests, grants, capabilities: instances, oversight: { audit: oversight.audit, trust: oversight.trust }, dataDir: config.dataDir, auditKeys: config.audit, notify: notifier, mcpTools, passkeys: { ...signed, request: (id: string) => store.getRequest(id) } },
          { ...config.console, ...own, sessions: { ...config.console?.sessions, ...own.sessions } },
        )
      : undefined;
  let server: HttpServer | undefined;

  async function close(): Promise<void> {
    runs.stopAccepting();
    await server?.close();
    web?.close();
    requests.close();
    await notifier.close();
    await sandbox.close();
    await runs.drained();
    unwatch();
    await fleet.stop().catch((error: unknown) => logger.error({ err: error }, 'fleet: recording the stop failed'));
    mcpTools.close();
    await oversight.close();
    await passkeys.close();
    await capabilities.close();
    await store.close();
    lock.release();
  }

  const host: Host = {
    store,
    requests,
    changesets,
    gate,
    grants,
    runs,
    backend,
    instances,
    console: web,
    get url() {
      return server?.url;
    },
    queue: runs.queue,
    metrics,
    audit: oversight.audit,
    trust: oversight.trust,
    notify: notifier,
    submit: (input) => runs.submit(input),
    addImage: (bytes) => runs.addImage(bytes),
    submitDigest: (input) => runs.submitDigest(input),
    followRun: (runId, listener) => runs.followRun(runId, listener),
    waitForRun: (runId) => runs.waitForRun(runId),
    cancelRun: (runId, cancelOptions) => runs.cancelRun(runId, cancelOptions),
    close,
  };

  if (listen) {
    const extra = options.httpRoutes;
    const mounted = (s: HttpServices): HttpRoute[] => [...(typeof extra === 'function' ? extra({ ...s, host }) : (extra ?? [])), ...(web ? web.routes(s) : [])];
    try {
      const operators = createTokenVerifier(store);
      const mcp = { runs, grants, instances, agents: createAgentVerifier(store), admin: { store, operators, now }, now };
      // Tickets live in the store: one issued here is redeemed by any host of the fleet (or by this one after a restart).
      const tickets = createTicketStore({ records: store, now });
      server = await startHttpServer({ backend, api: { runs, requests, images: createImageClients(store, config.dataDir) }, mcp, config, verifier: operators, logger, metrics, routes: mounted, tickets });
    } catch (error) {
      // A port in use must not leave sandbox workers, timers or the store open behind it.
      await close().catch((closeError: unknown) => logger.error({ err: closeError }, 'closing after a failed start failed'));
      throw error;
    }
  }
  notifier.start(() => (server?.url === undefined ? undefined : `${server.url}/console/`));
  return host;
}
