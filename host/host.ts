/**
 * The long-running host, embeddable as a library: the store, the capability instances the host
 * offers, the sandbox pool, the policy gate with its requests, the operator backend, and the HTTP
 * server (minimal run API + the operator WebSocket channel) on one port, loopback by default.
 *
 * Restart loses nothing: pending requests live in the store and are offered again; approved
 * recommendations that were never performed are performed once; runs that were live when the host
 * died are closed as crashed. Cancelling a run withdraws its pending recommendations (by default).
 */
import type { Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { CapabilityInstance } from '../capabilities/sdk/index.js';
import { Dispatcher } from '../runtime/dispatcher.js';
import { ContainedError } from '../runtime/errors.js';
import { createSandbox, type RunOutcome, type Sandbox } from '../runtime/index.js';
import { loadImage, type LoadedImage } from '../sandbox-images/load.js';
import { imageProgram } from '../sandbox-images/program.js';
import type { Manifest } from '../sandbox-images/manifest.js';
import { createImageStore } from './api/image-store.js';
import { type RunEventListener, type RunFollow, RunJournal } from './api/run-journal.js';
import { RunQueue, type RunSlot } from './api/run-queue.js';
import { subjectMatches } from './grants.js';
import { type HostConfig, instantiateCapabilities } from './config.js';
import { createHostLogger } from './logger.js';
import { PolicyGate, type LiveRun } from './gate/policy-gate.js';
import { type ExecutionOutcome, RequestManager } from './gate/requests.js';
import { createHostBackend } from './host-backend.js';
import { type HttpServer, type RoutesOption, startHttpServer } from './http.js';
import { createWebConsole, type WebConsole, type WebConsoleOptions } from './console/index.js';
import { createHostMetrics, type HostMetrics } from './metrics.js';
import type { RequestRecord, RunRecord, RunSubject } from './model.js';
import type { OperatorBackend } from './operator/backend.js';
import { defaultStorePath, openSqliteStore } from './store/sqlite-store.js';
import type { Store } from './store/store.js';
import { createTokenVerifier } from './tokens.js';
import type { AuditLog } from './audit/log.js';
import type { TrustService } from './trust/service.js';
import { openAuditAndTrust } from './trust/wiring.js';

export interface HostOptions {
  config: HostConfig;
  logger?: Logger;
  /** Sandboxes in worker processes (default) or in this process. */
  isolation?: 'worker' | 'in-process';
  /** Start the HTTP/WebSocket server (default true). */
  listen?: boolean;
  now?: () => number;
  /** Crash-test seam, see RequestManagerOptions.afterDecision. */
  afterDecision?: (request: RequestRecord) => void;
  /** Routes mounted on the HTTP server after the built-in ones (the web console…); see http.ts. */
  httpRoutes?: RoutesOption;
  /** Serve the web console at `/console/` (default true; `false` to leave it out). */
  console?: boolean | WebConsoleOptions;
}

export interface SubmittedRun {
  runId: string;
  digest: string;
  /** `queued` when the run waits for a free slot in the run queue. */
  status: 'queued' | 'running';
}

export interface SubmitDigestInput {
  /** `sha256:<hex>` of an image stored with `addImage` (`POST /v1/images`). */
  digest: string;
  input?: unknown;
  submittedBy?: string;
}

export interface SubmitInput {
  /** The image archive (.tgz bytes). */
  image: Uint8Array;
  input?: unknown;
  submittedBy?: string;
}

export interface Host {
  readonly store: Store;
  readonly requests: RequestManager;
  readonly gate: PolicyGate;
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
  const store = await openSqliteStore(defaultStorePath(config.dataDir));
  const instances = instantiateCapabilities(config, { logger });
  const live = new Map<string, LiveRun & { done: Promise<RunOutcome>; slot?: RunSlot; cancelled?: boolean }>();
  const metrics = createHostMetrics({ isKnownCapability: (name) => instances.has(name) });
  const queue = new RunQueue({ maxConcurrentRuns: config.maxConcurrentRuns, maxQueuedRuns: config.maxQueuedRuns });
  metrics.observeQueue(queue);
  const journal = new RunJournal();
  const images = createImageStore(config.dataDir);
  const trust = config.trustedKeys.length > 0 ? { trustedKeys: config.trustedKeys, requireSignature: config.requireSignature } : {};
  let closing = false;
  const withdrawOnCancel = config.cancelledRunRecommendations !== 'keep';

  let gate!: PolicyGate;
  // Audit and trust (host/trust/wiring.ts); its closures run only after start-up.
  const oversight = openAuditAndTrust({ config, store, instances, logger, now, emit: (event) => requests.emit(event), onGrantRevoked: (id, why) => gate.revokeGrant(id, why) });
  const requests = new RequestManager({
    store,
    now,
    logger,
    validateEdit: (request, args) => validateEdit(request, args, instances, gate),
    performDetached: (request, args) => performDetached(request, args, instances, gate, logger),
    ...(options.afterDecision ? { afterDecision: options.afterDecision } : {}),
    ...oversight.requestOptions,
    runLive: (runId) => {
      const entry = live.get(runId);
      return entry !== undefined && entry.cancelled !== true;
    },
    withdrawsOnCancel: async (runId) => withdrawOnCancel && (await store.getRun(runId))?.status === 'cancelled',
  });
  gate = new PolicyGate({
    store,
    requests,
    instances,
    run: (runId) => live.get(runId),
    outOfScope: config.outOfScope,
    requestTimeoutMs: config.requestTimeoutMs,
    now,
    logger,
    ...oversight.gateOptions,
  });
  requests.subscribe(oversight.onRequestEvent);
  requests.subscribe(journal.onRequestEvent);
  requests.subscribe((event) => metrics.onRequestEvent(event));

  const sandbox: Sandbox = createSandbox({ ...config.sandbox, isolation: options.isolation ?? 'worker', logger, gate: metrics.meterGate(gate) });

  // Runs that were live when the host went down cannot resume.
  for (const run of [...(await store.listRuns({ status: 'running' })), ...(await store.listRuns({ status: 'queued' }))]) {
    await store.updateRun(run.id, {
      status: 'error',
      endedAt: now(),
      outcome: { status: 'error', error: { code: 'SANDBOX_CRASHED', message: 'the host stopped while the run was live' }, logs: [], usage: { cpuMs: 0, wallMs: 0, heapBytes: 0, calls: 0 } },
    });
  }
  const recovered = await requests.recover();
  if (recovered.pending + recovered.closed + recovered.performed > 0) logger.info(recovered, 'recovered requests from the store');
  await oversight.start();
  metrics.seedPending(await requests.pending());

  const announce = (run: RunRecord): void => {
    requests.emit({ type: 'run', run });
    journal.push(run.id, { type: 'run', run });
  };

  /** Queue (or start) a run of a loaded image. QUEUE_FULL before anything is stored. */
  async function start(image: LoadedImage, input: unknown, submittedBy: string | undefined): Promise<SubmittedRun> {
    if (closing) throw new ContainedError('SHUTTING_DOWN', 'the host is closing');
    const runId = randomUUID();
    const subject: RunSubject = { digest: image.digest, name: image.manifest.name, signers: image.signatures.filter((s) => s.trusted).map((s) => s.keyId) };
    const capabilities = await capabilitiesFor(image, subject, instances, store, now());
    let slot: RunSlot;
    try {
      slot = queue.reserve();
    } catch (error) {
      metrics.queueRejected();
      throw error;
    }
    const record: RunRecord = { id: runId, subject: image.digest, imageName: image.manifest.name, status: slot.queued ? 'queued' : 'running', input, createdAt: now() };
    if (submittedBy !== undefined) record.submittedBy = submittedBy;
    try {
      await store.insertRun(record);
    } catch (error) {
      slot.release();
      throw error;
    }
    journal.open(runId);
    announce(record);
    let startedAt = now();
    const execute = async (): Promise<RunOutcome> => {
      const entry = live.get(runId);
      if (slot.queued && (await slot.started) && !entry?.cancelled) {
        await store.updateRun(runId, { status: 'running' });
        if (!entry?.cancelled) announce({ ...record, status: 'running' });
      }
      if (entry?.cancelled) return { status: 'error', error: { code: 'CANCELLED', message: 'cancelled before it started' }, logs: [], usage: { cpuMs: 0, wallMs: 0, heapBytes: 0, calls: 0 } };
      startedAt = now(); // run duration excludes the time spent in the queue
      return sandbox.run({
        runId,
        program: imageProgram(image),
        input,
        capabilities,
        limits: image.manifest.limits ?? {},
        subject: image.digest,
        onLog: (line) => journal.push(runId, { type: 'log', line }),
      });
    };
    const done = Promise.resolve()
      .then(execute)
      .catch((error: unknown): RunOutcome => {
        logger.error({ err: error, runId }, 'starting a run failed');
        return { status: 'error', error: { code: 'INTERNAL', message: 'the host could not start the run' }, logs: [], usage: { cpuMs: 0, wallMs: 0, heapBytes: 0, calls: 0 } };
      })
      .then(async (outcome) => {
        slot.release();
        queue.observe(now() - startedAt);
        live.delete(runId);
        const current = await store.getRun(runId);
        const status = current?.status === 'cancelled' ? 'cancelled' : outcome.status === 'ok' ? 'ok' : 'error';
        await store.updateRun(runId, { status, endedAt: now(), outcome });
        const updated = (await store.getRun(runId)) ?? { ...record, status, endedAt: now(), outcome };
        requests.emit({ type: 'run', run: updated });
        metrics.runFinished(status, outcome, now() - startedAt);
        journal.end(runId, { type: 'outcome', run: updated });
        return outcome;
      });
    live.set(runId, { subject, allowances: [], done, slot });
    return { runId, digest: image.digest, status: slot.queued ? 'queued' : 'running' };
  }

  const host: Host & { url: string | undefined } = {
    store,
    requests,
    gate,
    backend: undefined as unknown as OperatorBackend,
    instances,
    console: undefined,
    url: undefined,
    queue,
    metrics,
    audit: oversight.audit,
    trust: oversight.trust,
    async submit({ image: bytes, input = null, submittedBy }) {
      return start(await loadImage(bytes, trust), input, submittedBy);
    },
    async addImage(bytes) {
      if (closing) throw new ContainedError('SHUTTING_DOWN', 'the host is closing');
      const image = await images.add(bytes, trust);
      return { digest: image.digest, manifest: image.manifest };
    },
    async submitDigest({ digest, input = null, submittedBy }) {
      return start(await images.load(digest, trust), input, submittedBy);
    },
    followRun(runId, listener) {
      return journal.follow(runId, listener);
    },
    async waitForRun(runId) {
      const running = live.get(runId);
      if (running) return running.done;
      const record = await store.getRun(runId);
      if (!record) throw new ContainedError('NOT_FOUND', `no run ${runId}`);
      if (record.outcome) return record.outcome as RunOutcome;
      throw new ContainedError('RUN_GONE', `run ${runId} has no outcome`);
    },
    async cancelRun(runId, { by = 'host' } = {}) {
      const record = await store.getRun(runId);
      if (!record) throw new ContainedError('NOT_FOUND', `no run ${runId}`);
      const entry = live.get(runId);
      if (entry) {
        entry.cancelled = true;
        // Stored first: a request the run opens from here on is withdrawn as it opens (requests.ts).
        await store.updateRun(runId, { status: 'cancelled' });
        if (withdrawOnCancel) await requests.withdrawForRun(runId, by);
        if (!entry.slot?.cancel()) sandbox.cancel(runId, 'cancelled by an operator');
      }
      return (await store.getRun(runId)) ?? record;
    },
    async close() {
      closing = true;
      for (const entry of live.values()) {
        entry.cancelled = true;
        entry.slot?.cancel();
      }
      await server?.close();
      host.console?.close();
      requests.close();
      await sandbox.close();
      await Promise.allSettled([...live.values()].map((r) => r.done));
      await oversight.close();
      await store.close();
    },
  };
  (host as { backend: OperatorBackend }).backend = createHostBackend({ host, store, requests, gate, instances, logger, trust: oversight.trust });
  let server: HttpServer | undefined;
  if (options.listen !== false) {
    const own = typeof options.console === 'object' ? options.console : {};
    const web = options.console === false ? undefined : createWebConsole({ ...config.console, ...own, sessions: { ...config.console?.sessions, ...own.sessions } });
    (host as { console: WebConsole | undefined }).console = web;
    const extra = options.httpRoutes;
    const routes: RoutesOption | undefined = web ? (s) => [...(typeof extra === 'function' ? extra(s) : (extra ?? [])), ...web.routes(s)] : extra;
    try {
      server = await startHttpServer({ host, config, verifier: createTokenVerifier(store), logger, metrics, ...(routes ? { routes } : {}) });
    } catch (error) {
      // A port in use must not leave sandbox workers, timers or the store open behind it.
      await host.close().catch((closeError: unknown) => logger.error({ err: closeError }, 'closing after a failed start failed'));
      throw error;
    }
    host.url = server.url;
  }
  return host;
}

/**
 * What the agent's `caps` holds: every capability its manifest requests and every capability a
 * grant gives it, as the host's instances. Whether a call may run is the gate's question, per call.
 */
async function capabilitiesFor(
  image: LoadedImage,
  subject: RunSubject,
  instances: ReadonlyMap<string, CapabilityInstance>,
  store: Store,
  now: number,
): Promise<CapabilityInstance[]> {
  const names = new Set(image.manifest.requests.map((r) => r.capability));
  for (const grant of await store.listGrants({ activeAt: now })) {
    if (subjectMatches(grant.subject, subject)) names.add(grant.capability);
  }
  return [...names].map((n) => instances.get(n)).filter((i): i is CapabilityInstance => i !== undefined);
}

async function instanceForRequest(request: RequestRecord, instances: ReadonlyMap<string, CapabilityInstance>, gate: PolicyGate): Promise<CapabilityInstance> {
  const host = instances.get(request.capability);
  if (!host) throw new ContainedError('NOT_FOUND', `this host no longer offers ${request.capability}`);
  return gate.viaForRequest(request, host);
}

async function validateEdit(request: RequestRecord, args: unknown, instances: ReadonlyMap<string, CapabilityInstance>, gate: PolicyGate): Promise<unknown> {
  if (request.method === undefined) throw new ContainedError('INVALID_ARGUMENT', 'this request has no arguments to edit');
  const via = await instanceForRequest(request, instances, gate);
  const parsed = via.parseArgs(request.method, args);
  const check = via.checkScope(request.method, parsed);
  if (!check.ok) throw new ContainedError('CAPABILITY_DENIED', `the edited arguments are outside the scope: ${check.message}`);
  return parsed;
}

/**
 * An approved recommendation nobody waits for goes through the same Dispatcher as every sandbox
 * call (schema, liveness, scope, gate, invoke, error mapping and logging); its gate allows just
 * that request (PolicyGate.approvedRequestGate). Nothing reaches a capability around the dispatcher.
 */
async function performDetached(
  request: RequestRecord,
  args: unknown,
  instances: ReadonlyMap<string, CapabilityInstance>,
  gate: PolicyGate,
  logger: Logger,
): Promise<ExecutionOutcome> {
  if (request.method === undefined) return { ok: false, error: { code: 'INVALID_ARGUMENT', message: 'nothing to perform' } };
  if (!instances.has(request.capability)) return { ok: false, error: { code: 'NOT_FOUND', message: `this host no longer offers ${request.capability}` } };
  const dispatcher = new Dispatcher(gate.approvedRequestGate(request), logger);
  const result = await dispatcher.dispatch(
    { runId: request.runId, subject: request.subject, capabilities: instances, signal: new AbortController().signal, pauseWallClock: () => () => undefined },
    { seq: 0, capability: request.capability, method: request.method, argJson: args === undefined ? '' : JSON.stringify(args), reason: request.reason },
  );
  return result.ok ? { ok: true, result: result.value } : { ok: false, error: { code: result.error.code, message: result.error.message } };
}
