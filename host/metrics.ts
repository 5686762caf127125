/**
 * The host's Prometheus metrics (`GET /metrics`), on a per-host prom-client `Registry` — never the
 * global default, so several hosts in one process (tests, embedding) do not mix their counts.
 *
 * Fed by: the host when a run ends (`runFinished`), a wrapper around the host's gate (`meterGate`:
 * every capability call's decision), the request manager's events (pending requests, time to a
 * human decision), the run queue (gauges read at scrape time) and the HTTP server (`httpTimer`).
 *
 * Label values come from closed sets or from the host's own configuration, never from agent
 * input: a capability name the host does not offer is counted as `(unknown)`, so a hostile agent
 * cannot grow the series without bound.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CallOutcome, CapabilityRequest, Gate, GateCall, GateContext, GateDecision } from '../runtime/gate.js';
import type { RunOutcome } from '../runtime/outcome.js';
import type { RequestKind, RunStatus } from './model.js';
import type { RequestEvent, RequestView } from './gate/events.js';

export interface HostMetrics {
  readonly registry: Registry;
  /** The Prometheus text exposition and its content type. */
  render(): Promise<{ contentType: string; body: string }>;
  /** A run reached its final state. */
  runFinished(status: RunStatus, outcome: RunOutcome | undefined, durationMs: number): void;
  /** A submission was refused because the queue was full. */
  queueRejected(): void;
  /** Wrap a gate so each capability call's decision is counted. */
  meterGate(gate: Gate): Gate;
  /** Give this to RequestManager.subscribe. */
  onRequestEvent(event: RequestEvent): void;
  /** The requests already pending when the host started (recovered from the store). */
  seedPending(requests: readonly RequestView[]): void;
  /** Read the queue's occupancy at scrape time. */
  observeQueue(queue: { readonly running: number; readonly queued: number }): void;
  /** Start timing an HTTP request; call the result with the status code when it is answered. */
  httpTimer(method: string, route: string): (status: number) => void;
  /** An MCP tool call ended (host/mcp/): its transport, tool and error code ("" when ok). */
  mcpToolCall(transport: 'stdio' | 'http', tool: string, code: string): void;
  /** An MCP session opened (+1) or closed (-1). */
  mcpSession(transport: 'stdio' | 'http', delta: 1 | -1): void;
}

export interface HostMetricsOptions {
  /** Capability names the host offers (anything else is labelled `(unknown)`). */
  isKnownCapability?: (name: string) => boolean;
  /** Prefix of every metric name (default `contained_`). */
  prefix?: string;
}

/** Seconds: from 5 ms to 5 min (runs are usually short; some wait for people). */
const RUN_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Seconds: from 1 s to 1 day. */
const DECISION_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14_400, 43_200, 86_400];
const HTTP_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const KINDS: readonly RequestKind[] = ['recommendation', 'escalation', 'changeset'];

export function createHostMetrics(options: HostMetricsOptions = {}): HostMetrics {
  const p = options.prefix ?? 'contained_';
  const known = options.isKnownCapability ?? (() => true);
  const registry = new Registry();
  const registers = [registry];

  const runs = new Counter({ name: `${p}runs_total`, help: 'Runs that reached a final state, by status (ok, error, cancelled) and error code ("" when ok).', labelNames: ['status', 'code'], registers });
  const runDuration = new Histogram({ name: `${p}run_duration_seconds`, help: 'Wall time from the start of a run to its final state, seconds (time waiting for a human included).', labelNames: ['status'], buckets: RUN_BUCKETS, registers });
  const calls = new Counter({
    name: `${p}capability_calls_total`,
    help: 'Capability calls by capability, method and gate decision: allowed (by a grant), approved (by people), denied (by people), expired, refused, error.',
    labelNames: ['capability', 'method', 'decision'],
    registers,
  });
  const pendingGauge = new Gauge({ name: `${p}pending_requests`, help: 'Requests waiting for a human decision, by kind.', labelNames: ['kind'], registers });
  const decisionTime = new Histogram({ name: `${p}human_decision_seconds`, help: 'Time from a request being opened to its final human decision, seconds, by kind and status (approved, denied).', labelNames: ['kind', 'status'], buckets: DECISION_BUCKETS, registers });
  const queueRejections = new Counter({ name: `${p}queue_rejections_total`, help: 'Submissions refused with QUEUE_FULL.', registers });
  let queue: { readonly running: number; readonly queued: number } | undefined;
  new Gauge({
    name: `${p}runs_running`,
    help: 'Runs holding an isolate (including runs waiting for a human).',
    registers,
    collect() {
      this.set(queue?.running ?? 0);
    },
  });
  new Gauge({
    name: `${p}runs_queued`,
    help: 'Runs waiting for a free slot in the run queue.',
    registers,
    collect() {
      this.set(queue?.queued ?? 0);
    },
  });
  const http = new Histogram({ name: `${p}http_request_duration_seconds`, help: 'HTTP requests by method, route and status, seconds (event streams: until the stream ends).', labelNames: ['method', 'route', 'status'], buckets: HTTP_BUCKETS, registers });
  const mcpCalls = new Counter({ name: `${p}mcp_tool_calls_total`, help: 'MCP tool calls (run, run_image) that ended, by transport (stdio, http), tool and error code ("" when ok).', labelNames: ['transport', 'tool', 'code'], registers });
  const mcpSessions = new Gauge({ name: `${p}mcp_sessions`, help: 'MCP sessions open, by transport (stdio, http).', labelNames: ['transport'], registers });

  const pending = new Map<string, RequestKind>();
  const syncPending = (): void => {
    for (const kind of KINDS) pendingGauge.set({ kind }, [...pending.values()].filter((k) => k === kind).length);
  };
  syncPending();

  const capabilityLabel = (name: string): string => (known(name) ? name : '(unknown)');
  const count = (capability: string, method: string, decision: string): void => {
    calls.inc({ capability: capabilityLabel(capability), method, decision });
  };

  return {
    registry,
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
    runFinished(status, outcome, durationMs) {
      const code = outcome?.status === 'error' ? outcome.error.code : status === 'cancelled' ? 'CANCELLED' : '';
      runs.inc({ status, code });
      runDuration.observe({ status }, Math.max(0, durationMs) / 1000);
    },
    queueRejected() {
      queueRejections.inc();
    },
    mcpToolCall(transport, tool, code) {
      mcpCalls.inc({ transport, tool: tool === 'run' || tool === 'run_image' ? tool : '(other)', code });
    },
    mcpSession(transport, delta) {
      mcpSessions.inc({ transport }, delta);
    },
    meterGate(gate) {
      const metered: Gate = {
        async decide(call: GateCall, ctx: GateContext): Promise<GateDecision> {
          let decision: GateDecision;
          try {
            decision = await gate.decide(call, ctx);
          } catch (error) {
            count(call.capability, call.method, 'error');
            throw error;
          }
          count(call.capability, call.method, decisionLabel(decision));
          return decision;
        },
      };
      if (gate.settle) {
        const settle = gate.settle.bind(gate);
        metered.settle = (call: GateCall, decision: GateDecision & { allow: true }, outcome: CallOutcome) => settle(call, decision, outcome);
      }
      if (gate.requestCapability) {
        const request = gate.requestCapability.bind(gate);
        metered.requestCapability = async (req: CapabilityRequest, ctx: GateContext): Promise<GateDecision> => {
          let decision: GateDecision;
          try {
            decision = await request(req, ctx);
          } catch (error) {
            count(req.capability, 'requestCapability', 'error');
            throw error;
          }
          count(req.capability, 'requestCapability', decisionLabel(decision));
          return decision;
        };
      }
      return metered;
    },
    onRequestEvent(event) {
      if (event.type === 'created') {
        pending.set(event.request.id, event.request.kind);
        syncPending();
      } else if (event.type === 'resolved') {
        pending.delete(event.request.id);
        syncPending();
        const { status, createdAt, resolvedAt, kind } = event.request;
        if ((status === 'approved' || status === 'denied') && resolvedAt !== undefined) {
          decisionTime.observe({ kind, status }, Math.max(0, resolvedAt - createdAt) / 1000);
        }
      }
    },
    seedPending(requests) {
      for (const request of requests) if (request.status === 'pending') pending.set(request.id, request.kind);
      syncPending();
    },
    observeQueue(q) {
      queue = q;
    },
    httpTimer(method, route) {
      const end = http.startTimer({ method, route });
      return (status) => end({ status: String(status) });
    },
  };
}

/** A gate decision in words: who let the call through, or why not. */
function decisionLabel(decision: GateDecision): string {
  if (decision.allow) {
    const basis = decision.basis ?? '';
    return basis.startsWith('request:') || basis.startsWith('escalation:') ? 'approved' : 'allowed';
  }
  switch (decision.code) {
    case 'ESCALATION_DENIED':
      return 'denied';
    case 'ESCALATION_TIMEOUT':
      return 'expired';
    default:
      return 'refused';
  }
}
