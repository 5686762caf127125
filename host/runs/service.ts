/**
 * The run service: everything about runs of images on the host, in one place. It stores uploaded
 * images (image-store.ts), queues runs (run-queue.ts: QUEUE_FULL before anything is stored),
 * starts them in the sandbox with the capabilities their manifest and grants name, journals their
 * events for followers (run-journal.ts), records their outcome, waits for and cancels them, and
 * after a restart closes runs that were live when the host stopped (they cannot resume).
 *
 * It does not decide calls: the gate does, reading the live runs through `LiveRuns` (shared with
 * the gate and the request manager, which are built before the sandbox this service runs in).
 * Cancelling a run withdraws its pending recommendations unless told to keep them.
 *
 * Fails: SHUTTING_DOWN once closing; NOT_FOUND for a run or image it does not have; RUN_GONE for
 * a run that ended without an outcome; the image loader's IMAGE_* refusals. A run itself never
 * throws: a failure to start it is its outcome (INTERNAL), logged with the run id.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { type CapabilityInstance, StagingSession, type StagingLimits } from '../../capabilities/sdk/index.js';
import { ContainedError } from '../../runtime/errors.js';
import type { Program, RunOutcome, Sandbox } from '../../runtime/index.js';
import type { LimitsInput } from '../../runtime/limits.js';
import { loadImage, type LoadedImage, type LoadImageOptions } from '../../sandbox-images/load.js';
import type { Manifest } from '../../sandbox-images/manifest.js';
import { imageProgram } from '../../sandbox-images/program.js';
import type { RequestEvent } from '../gate/events.js';
import type { GateRun } from '../gate/policy-gate.js';
import type { GrantService } from '../grant-service.js';
import { subjectMatches } from '../grants.js';
import type { RunRecord, RunStatus, RunSubject } from '../model.js';
import type { Store } from '../store/store.js';
import { createImageStore, type ImageRecords, type ImageStore } from './image-store.js';
import { type RunEventListener, type RunFollow, RunJournal } from './run-journal.js';
import { RunQueue, type RunSlot } from './run-queue.js';

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
  /**
   * Run the image's program for this subject instead of as itself: its grants, not the image's,
   * decide its calls (the MCP server's `run_image`: an agent must not borrow an image's grants).
   */
  as?: RunSubject & { text: string };
  /** Stage the run: reads run, every other call goes into its changeset (host/changesets/). */
  staged?: boolean;
}

export interface SubmitInput {
  /** The image archive (.tgz bytes). */
  image: Uint8Array;
  input?: unknown;
  submittedBy?: string;
  /** Stage the run (see SubmitDigestInput.staged). */
  staged?: boolean;
}

export interface SubmitCodeInput {
  /** The agent's modules (validated by the sandbox: INVALID_PROGRAM). */
  program: Program;
  input?: unknown;
  /** Whom the run acts for: what grants see, and its text for the run record and requests. */
  subject: RunSubject & { text: string };
  submittedBy?: string;
  limits?: LimitsInput;
  /** Stage the run (see SubmitDigestInput.staged). */
  staged?: boolean;
}

/** What a run is made of, whatever it came from (an image, or code with a subject). */
interface RunSource {
  program: Program;
  digest: string;
  subject: RunSubject;
  subjectText: string;
  name: string | undefined;
  /** Capabilities the program asks for by itself (an image manifest's requests). */
  requested: readonly string[];
  limits: LimitsInput;
}

/** A live run as the host keeps it: what the gate reads (subject, allowances) and what the run service needs to end it. */
export interface LiveRunEntry extends GateRun {
  done: Promise<RunOutcome>;
  slot?: RunSlot;
  cancelled?: boolean;
}

/**
 * The runs that are queued or running, by id. Made before the gate (which reads a run's subject
 * and allowances per call) and the request manager (which says whether a request's run still
 * lives); filled and emptied by the run service.
 */
export class LiveRuns {
  private readonly runs = new Map<string, LiveRunEntry>();

  /** What the gate knows of a run (PolicyGateOptions.run). */
  gateRun(runId: string): GateRun | undefined {
    return this.runs.get(runId);
  }

  /** Queued or running and not cancelled (RequestManagerOptions.runLive). */
  isLive(runId: string): boolean {
    const entry = this.runs.get(runId);
    return entry !== undefined && entry.cancelled !== true;
  }

  get(runId: string): LiveRunEntry | undefined {
    return this.runs.get(runId);
  }

  set(runId: string, entry: LiveRunEntry): void {
    this.runs.set(runId, entry);
  }

  delete(runId: string): void {
    this.runs.delete(runId);
  }

  entries(): LiveRunEntry[] {
    return [...this.runs.values()];
  }
}

export interface RunServiceDeps {
  store: Pick<Store, 'insertRun' | 'updateRun' | 'getRun' | 'listRuns'> & ImageRecords;
  /** The grants that put capabilities in a run's `caps`. */
  grants: Pick<GrantService, 'active'>;
  /** Capability instances the host offers, by name. */
  instances: ReadonlyMap<string, CapabilityInstance>;
  /** Where runs execute (its gate decides their calls). */
  sandbox: Pick<Sandbox, 'run' | 'cancel'>;
  live: LiveRuns;
  /** Run changes go to operators (the host's event hub). */
  emit(event: RequestEvent & { type: 'run' }): void;
  /** Withdraw a cancelled run's pending recommendations (RequestManager.withdrawForRun). */
  withdrawForRun(runId: string, by: string): Promise<unknown>;
  /** Withdraw on cancel (default true; the config's `cancelledRunRecommendations: "keep"` says false). */
  withdrawOnCancel?: boolean;
  /** Where uploaded images are kept (`<dataDir>/images/`). */
  dataDir: string;
  /** Several hosts on one store: this host's id, stamped on its runs (a run lives and ends on the host that started it). */
  hostId?: string;
  /** Runs holding an isolate at once; more wait in the queue. */
  maxConcurrentRuns: number;
  /** Runs waiting for a slot; more are refused QUEUE_FULL. */
  maxQueuedRuns: number;
  /** Signature checks on every image loaded (trusted keys, whether a signature is required). */
  imageTrust?: LoadImageOptions;
  /** Most effects and bytes one staged run may record (the config's `staging`; default StagingSession's). */
  stagingLimits?: StagingLimits;
  /** A staged run ended `ok` with its changeset: open its review (ChangesetService.open). */
  openChangeset?(runId: string, subject: string, session: StagingSession): Promise<unknown>;
  metrics?: {
    queueRejected(): void;
    runFinished(status: RunStatus, outcome: RunOutcome | undefined, durationMs: number): void;
  };
  /** The sensitive sources a live run has read (the gate's data-flow rule, DataFlowRule.readsOf); recorded on the run when it ends. */
  sensitiveReads?(run: LiveRunEntry): readonly string[];
  now?: () => number;
  logger?: Logger;
}

const NO_USAGE = { cpuMs: 0, wallMs: 0, heapBytes: 0, calls: 0 };

export class RunService {
  readonly queue: RunQueue;
  readonly journal: RunJournal;
  readonly images: ImageStore;
  private readonly now: () => number;
  private readonly withdrawOnCancel: boolean;
  private readonly imageTrust: LoadImageOptions;
  private closing = false;

  constructor(private readonly deps: RunServiceDeps) {
    this.now = deps.now ?? Date.now;
    this.withdrawOnCancel = deps.withdrawOnCancel ?? true;
    this.imageTrust = deps.imageTrust ?? {};
    this.queue = new RunQueue({ maxConcurrentRuns: deps.maxConcurrentRuns, maxQueuedRuns: deps.maxQueuedRuns });
    this.journal = new RunJournal();
    this.images = createImageStore(deps.store, deps.dataDir, this.now);
  }

  /** Give to the event hub: a run's request events go into its journal. */
  readonly onRequestEvent = (event: RequestEvent): void => this.journal.onRequestEvent(event);

  /**
   * After a restart: runs that were live when the host went down cannot resume; they end as crashed.
   * With several hosts, only the runs of hosts that are gone (`gone`; undefined: runs stored before
   * hosts had ids): the fleet calls this for each host it reaps.
   */
  async recover(gone: (hostId: string | undefined) => boolean = () => true): Promise<number> {
    const { store } = this.deps;
    const stale = [...(await store.listRuns({ status: 'running' })), ...(await store.listRuns({ status: 'queued' }))].filter((run) => gone(run.hostId));
    for (const run of stale) {
      await store.updateRun(run.id, {
        status: 'error',
        endedAt: this.now(),
        outcome: { status: 'error', error: { code: 'SANDBOX_CRASHED', message: 'the host stopped while the run was live' }, logs: [], usage: NO_USAGE },
      });
    }
    return stale.length;
  }

  /** Queue a run of an image archive; QUEUE_FULL (nothing stored) when the run queue is full. */
  async submit({ image: bytes, input = null, submittedBy, staged = false }: SubmitInput): Promise<SubmittedRun> {
    return this.startImage(await loadImage(bytes, this.imageTrust), input, submittedBy, undefined, staged);
  }

  /** Validate an image archive and store it under `<dataDir>/images/` by digest. */
  async addImage(bytes: Uint8Array): Promise<{ digest: string; manifest: Manifest }> {
    if (this.closing) throw new ContainedError('SHUTTING_DOWN', 'the host is closing');
    const image = await this.images.add(bytes, this.imageTrust);
    return { digest: image.digest, manifest: image.manifest };
  }

  /** Queue a run of an image stored with `addImage` (NOT_FOUND if there is none). */
  async submitDigest({ digest, input = null, submittedBy, as, staged = false }: SubmitDigestInput): Promise<SubmittedRun> {
    return this.startImage(await this.images.load(digest, this.imageTrust), input, submittedBy, as, staged);
  }

  /** The stored run, or undefined. */
  get(runId: string): Promise<RunRecord | undefined> {
    return this.deps.store.getRun(runId);
  }

  /** The run's events so far, then live ones, while it is queued or running; a recently ended run's kept events (`ended`); else undefined. */
  followRun(runId: string, listener: RunEventListener): RunFollow | undefined {
    return this.journal.follow(runId, listener);
  }

  /** Resolves with the outcome when the run ends (or with the stored outcome if it already has). */
  async waitForRun(runId: string): Promise<RunOutcome> {
    const running = this.deps.live.get(runId);
    if (running) return running.done;
    const record = await this.deps.store.getRun(runId);
    if (!record) throw new ContainedError('NOT_FOUND', `no run ${runId}`);
    if (record.outcome) return record.outcome as RunOutcome;
    throw new ContainedError('RUN_GONE', `run ${runId} has no outcome`);
  }

  /**
   * Cancel a queued or running run. Its pending recommendations are withdrawn (closed as
   * `cancelled` by `by`, never performed) unless the service was told to keep them.
   */
  async cancelRun(runId: string, { by = 'host' }: { by?: string } = {}): Promise<RunRecord> {
    const { store } = this.deps;
    const record = await store.getRun(runId);
    if (!record) throw new ContainedError('NOT_FOUND', `no run ${runId}`);
    const entry = this.deps.live.get(runId);
    if (entry) {
      entry.cancelled = true;
      // Stored first: a request the run opens from here on is withdrawn as it opens (requests.ts).
      await store.updateRun(runId, { status: 'cancelled' });
      if (this.withdrawOnCancel) await this.deps.withdrawForRun(runId, by);
      if (!entry.slot?.cancel()) this.deps.sandbox.cancel(runId, 'cancelled by an operator');
    }
    return (await store.getRun(runId)) ?? record;
  }

  /** Refuse new runs and images from now on; cancel every live run (queued ones leave the queue). */
  stopAccepting(): void {
    this.closing = true;
    for (const entry of this.deps.live.entries()) {
      entry.cancelled = true;
      entry.slot?.cancel();
    }
  }

  /** Resolves when every live run has ended (after the sandbox closed). */
  async drained(): Promise<void> {
    await Promise.allSettled(this.deps.live.entries().map((r) => r.done));
  }

  private announce(run: RunRecord): void {
    this.deps.emit({ type: 'run', run });
    this.journal.push(run.id, { type: 'run', run });
  }

  /**
   * Queue a run of agent code under a given subject (the MCP server's `run` tool: the agent's
   * subject, not the code's digest, is what grants name). Its `caps` holds what grants give the
   * subject. QUEUE_FULL (nothing stored) when the run queue is full.
   */
  async submitCode({ program, input = null, subject, submittedBy, limits, staged = false }: SubmitCodeInput): Promise<SubmittedRun> {
    if (this.closing) throw new ContainedError('SHUTTING_DOWN', 'the host is closing');
    const files = Object.keys(program.files).sort().map((p) => `${p}\0${program.files[p] ?? ''}`).join('\0');
    const digest = `sha256:${createHash('sha256').update(files, 'utf8').digest('hex')}`;
    return this.start({ program, digest, subject, subjectText: subject.text, name: subject.name, requested: [], limits: limits ?? {} }, input, submittedBy, staged);
  }

  /** Queue (or start) a run of a loaded image. QUEUE_FULL before anything is stored. */
  private async startImage(image: LoadedImage, input: unknown, submittedBy: string | undefined, as?: RunSubject & { text: string }, staged = false): Promise<SubmittedRun> {
    const subject: RunSubject = as ?? { digest: image.digest, name: image.manifest.name, signers: image.signatures.filter((s) => s.trusted).map((s) => s.keyId) };
    return this.start(
      { program: imageProgram(image), digest: image.digest, subject, subjectText: as?.text ?? image.digest, name: image.manifest.name, requested: image.manifest.requests.map((r) => r.capability), limits: image.manifest.limits ?? {} },
      input,
      submittedBy,
      staged,
    );
  }

  /** Queue (or start) a run. QUEUE_FULL before anything is stored. */
  private async start(source: RunSource, input: unknown, submittedBy: string | undefined, staged = false): Promise<SubmittedRun> {
    if (this.closing) throw new ContainedError('SHUTTING_DOWN', 'the host is closing');
    const { store, live, logger } = this.deps;
    const runId = randomUUID();
    const { subject } = source;
    // A grant of the subject with `stageRuns` stages the run even when it was not submitted staged.
    const { capabilities, stageRuns } = await this.capabilitiesFor(source.requested, subject);
    const staging = staged || stageRuns ? new StagingSession(runId, this.deps.stagingLimits) : undefined;
    let slot: RunSlot;
    try {
      slot = this.queue.reserve();
    } catch (error) {
      this.deps.metrics?.queueRejected();
      throw error;
    }
    const record: RunRecord = { id: runId, subject: source.subjectText, imageName: source.name, status: slot.queued ? 'queued' : 'running', input, createdAt: this.now() };
    if (submittedBy !== undefined) record.submittedBy = submittedBy;
    if (this.deps.hostId !== undefined) record.hostId = this.deps.hostId;
    try {
      await store.insertRun(record);
    } catch (error) {
      slot.release();
      throw error;
    }
    this.journal.open(runId);
    this.announce(record);
    let startedAt = this.now();
    const execute = async (): Promise<RunOutcome> => {
      const entry = live.get(runId);
      if (slot.queued && (await slot.started) && !entry?.cancelled) {
        await store.updateRun(runId, { status: 'running' });
        if (!entry?.cancelled) this.announce({ ...record, status: 'running' });
      }
      if (entry?.cancelled) return { status: 'error', error: { code: 'CANCELLED', message: 'cancelled before it started' }, logs: [], usage: NO_USAGE };
      startedAt = this.now(); // run duration excludes the time spent in the queue
      return this.deps.sandbox.run({
        runId,
        program: source.program,
        input,
        capabilities,
        limits: source.limits,
        subject: source.subjectText,
        onLog: (line) => this.journal.push(runId, { type: 'log', line }),
      });
    };
    const done = Promise.resolve()
      .then(execute)
      .catch((error: unknown): RunOutcome => {
        logger?.error({ err: error, runId }, 'starting a run failed');
        return { status: 'error', error: { code: 'INTERNAL', message: 'the host could not start the run' }, logs: [], usage: NO_USAGE };
      })
      .then(async (outcome) => {
        slot.release();
        this.queue.observe(this.now() - startedAt);
        const entry = live.get(runId);
        const read = entry && this.deps.sensitiveReads ? this.deps.sensitiveReads(entry) : [];
        live.delete(runId);
        const current = await store.getRun(runId);
        const status = current?.status === 'cancelled' ? 'cancelled' : outcome.status === 'ok' ? 'ok' : 'error';
        await store.updateRun(runId, { status, endedAt: this.now(), outcome, ...(read.length > 0 ? { sensitiveSources: [...read] } : {}) });
        // A staged run that finished opens its changeset's review (a failed or cancelled one's effects are dropped).
        if (staging !== undefined && status === 'ok' && this.deps.openChangeset) {
          await this.deps.openChangeset(runId, source.subjectText, staging).catch((error: unknown) => logger?.error({ err: error, runId }, 'opening a changeset failed'));
        }
        await staging?.close();
        const updated = (await store.getRun(runId)) ?? { ...record, status, endedAt: this.now(), outcome };
        this.deps.emit({ type: 'run', run: updated });
        this.deps.metrics?.runFinished(status, outcome, this.now() - startedAt);
        this.journal.end(runId, { type: 'outcome', run: updated });
        return outcome;
      });
    live.set(runId, { subject, allowances: [], done, slot, ...(staging === undefined ? {} : { staging }) });
    return { runId, digest: source.digest, status: slot.queued ? 'queued' : 'running' };
  }

  /**
   * What the agent's `caps` holds: every capability its manifest requests and every capability a
   * grant gives it, as the host's instances. Whether a call may run is the gate's question, per call.
   */
  private async capabilitiesFor(requested: readonly string[], subject: RunSubject): Promise<{ capabilities: CapabilityInstance[]; stageRuns: boolean }> {
    const names = new Set(requested);
    let stageRuns = false;
    for (const grant of await this.deps.grants.active(this.now())) {
      if (!subjectMatches(grant.subject, subject)) continue;
      names.add(grant.capability);
      if (grant.stageRuns === true) stageRuns = true;
    }
    return { capabilities: [...names].map((n) => this.deps.instances.get(n)).filter((i): i is CapabilityInstance => i !== undefined), stageRuns };
  }
}
