/**
 * `contained mcp`: an MCP server whose tools run contained code (docs/mcp.md). One more adapter on
 * the host's ports: it gets the run service's submit, wait, follow and cancel, the active grants
 * and the capability instances (for the tool description), never the host.
 *
 * One `McpServer` (the official SDK) per MCP session, bound to one agent (host/agents.ts): every
 * run it starts carries the agent's subject, so the agent's grants — and nothing else — decide
 * its calls, through the same gate, modes, escalation, audit and trust as any run.
 *
 * Tools:
 * - `run` `{ code, input? }`: `code` is an ES module whose default export is `main(input, caps)`.
 *   Its description carries the generated `caps.d.ts` for the agent's grants at session start.
 * - `run_image` `{ digest, input? }`: runs the program of an image stored on the host (`POST
 *   /v1/images`) under the AGENT's subject and grants, like `run`: an agent never borrows the
 *   grants an image was given (that is what `contained submit` by a platform client is for).
 *
 * The result is `structuredContent` `{ value, logs, usage }`; a failed run is a tool error
 * (`isError: true`) whose text starts with the stable error code (`ESCALATION_DENIED: …`).
 *
 * Waiting for a human: while the run has a pending request, the call stays open and the client
 * gets `notifications/progress` (when it sent a `progressToken`) on every change of the request
 * and at least every `progressIntervalMs`: "waiting for an operator: mail.send, request 9480dd03…,
 * 0 of 2 approvals". `notifications/cancelled` (the SDK aborts `extra.signal`) cancels the run;
 * closing the session cancels its live runs.
 *
 * Limits per session (host/mcp/limits.ts): source size, live runs, runs per rolling minute — each
 * its own error code, answered as a tool error before anything runs.
 */
import { readFileSync } from 'node:fs';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult, ServerNotification } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from 'pino';
import { z } from 'zod';
import { generateCapsDts } from '../../capabilities/docs.js';
import type { CapabilityInstance } from '../../capabilities/sdk/index.js';
import { ContainedError } from '../../runtime/errors.js';
import type { RunOutcome } from '../../runtime/outcome.js';
import { programFromSource } from '../../runtime/program.js';
import { type Agent, agentRunSubject } from '../agents.js';
import type { RequestView } from '../gate/events.js';
import type { GrantService } from '../grant-service.js';
import { formatSubject, subjectMatches } from '../grants.js';
import type { Grant } from '../model.js';
import type { HostMetrics } from '../metrics.js';
import type { RunService, SubmittedRun } from '../runs/service.js';
import type { McpConfig } from './limits.js';

export const MCP_SERVER_NAME = 'ai-contained';

/** This package's version (the sources or dist/ layout), for `serverInfo`. */
function ownVersion(): string {
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'ai-contained' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not this layout
    }
  }
  return 'unknown';
}

/** What the MCP server uses of the host (Pick<>s of the services; host/host.ts builds it). */
export interface McpPorts {
  runs: Pick<RunService, 'submitCode' | 'submitDigest' | 'waitForRun' | 'cancelRun' | 'followRun'>;
  grants: Pick<GrantService, 'active'>;
  instances: ReadonlyMap<string, CapabilityInstance>;
  metrics?: Pick<HostMetrics, 'mcpToolCall' | 'mcpSession'> | undefined;
  /**
   * Whether the agent is still active (not revoked), asked before every run. Over HTTP the token is
   * verified on every request anyway; over stdio the identity came from the command line, so a
   * `contained agent revoke` must still stop the next run of a server that is already up.
   */
  agentActive?: (agentId: string) => Promise<boolean>;
  logger?: Logger | undefined;
  now?: () => number;
  version?: string;
}

export interface McpSession {
  server: McpServer;
  /** Runs this session has live. */
  readonly liveRuns: number;
  /** Cancel every live run of the session (the session closed). */
  cancelAll(reason: string): Promise<void>;
}

type Extra = {
  signal: AbortSignal;
  _meta?: { progressToken?: string | number } & Record<string, unknown>;
  sendNotification: (notification: ServerNotification) => Promise<void>;
};

const outputShape = {
  value: z.unknown().describe('What main returned (JSON).'),
  logs: z.array(z.object({ level: z.string(), message: z.string(), atMs: z.number() })).describe('console output of the run'),
  usage: z.object({ cpuMs: z.number(), wallMs: z.number(), heapBytes: z.number(), calls: z.number() }).passthrough().describe('what the run used'),
};

const MODE_WORDS: Readonly<Record<Grant['mode'], string>> = {
  contained: 'runs at once',
  executed: 'runs at once; reviewed afterwards',
  assisted: 'an operator approves each call first (the tool call waits)',
};

/** One line per grant of the agent: which methods, and how a call under it goes. */
export async function grantLines(ports: Pick<McpPorts, 'grants' | 'now'>, agent: Agent): Promise<string[]> {
  const subject = agentRunSubject(agent.subject);
  const grants = (await ports.grants.active((ports.now ?? Date.now)())).filter((g) => subjectMatches(g.subject, subject));
  return grants.map((g) => {
    const methods = g.methods.includes('*') ? `${g.capability}.*` : g.methods.map((m) => `${g.capability}.${m}`).join(', ');
    return `- ${methods}: ${g.mode}, ${MODE_WORDS[g.mode]}${g.mode === 'assisted' ? ` (${g.approvals} approval${g.approvals === 1 ? '' : 's'}, more for destructive methods)` : ''}`;
  });
}

/** The agent-facing API of the agent's active grants: what `contained caps docs` prints for them. */
export async function capsDtsFor(ports: Pick<McpPorts, 'grants' | 'instances' | 'now'>, agent: Agent): Promise<string> {
  const subject = agentRunSubject(agent.subject);
  const now = (ports.now ?? Date.now)();
  const byCapability = new Map<string, Grant[]>();
  for (const grant of await ports.grants.active(now)) {
    if (!subjectMatches(grant.subject, subject)) continue;
    byCapability.set(grant.capability, [...(byCapability.get(grant.capability) ?? []), grant]);
  }
  const instances: CapabilityInstance[] = [];
  for (const [name, grants] of [...byCapability].sort(([a], [b]) => a.localeCompare(b))) {
    const instance = ports.instances.get(name);
    if (!instance) continue;
    const all = grants.some((g) => g.methods.includes('*'));
    const methods = all ? undefined : [...new Set(grants.flatMap((g) => g.methods))].filter((m) => instance.hasMethod(m));
    const only = grants.length === 1 ? grants[0] : undefined;
    try {
      // One grant: its scope is the agent's view; several: the instance (each grant narrows it per call).
      instances.push(instance.restrict(only?.scope ?? {}, { name, ...(methods && methods.length > 0 ? { methods } : {}) }, { exact: false }));
    } catch {
      instances.push(instance);
    }
  }
  return generateCapsDts(instances);
}

function runDescription(agent: Agent, capsDts: string, grants: readonly string[]): string {
  return [
    `Run JavaScript in a contained sandbox as agent "${agent.name}" and return what it returns.`,
    '`code` is an ES module whose default export is `async function main(input, caps)`; `input` is passed to it;',
    'return JSON. There is no network, file system or process: the only authority is `caps`, typed below.',
    'A call an operator must approve keeps this tool call open (progress notifications say so) until they decide.',
    'A failed run is a tool error whose text starts with its error code (e.g. `ESCALATION_DENIED: …`).',
    '',
    'Your grants:',
    ...(grants.length > 0 ? grants : ['- none yet: every capability call needs an operator (or is refused)']),
    '',
    '```ts',
    capsDts.trimEnd(),
    '```',
  ].join('\n');
}

/** Text of a waiting notice. */
export function waitingMessage(request: Pick<RequestView, 'id' | 'capability' | 'method' | 'approvals' | 'approvalsRequired' | 'kind'>): string {
  const what = request.method ? `${request.capability}.${request.method}` : `${request.capability} (capability request)`;
  return `waiting for an operator: ${what}, request ${request.id.slice(0, 8)}…, ${request.approvals.length} of ${request.approvalsRequired} approval${request.approvalsRequired === 1 ? '' : 's'}`;
}

function toolError(code: string, message: string): CallToolResult {
  return { isError: true, content: [{ type: 'text', text: `${code}: ${message}` }] };
}

function outcomeResult(outcome: RunOutcome): CallToolResult {
  if (outcome.status === 'ok') {
    const structured = { value: outcome.value ?? null, logs: outcome.logs, usage: outcome.usage };
    return { content: [{ type: 'text', text: JSON.stringify(structured) }], structuredContent: structured };
  }
  const logs = outcome.logs.length > 0 ? `\nlogs:\n${outcome.logs.map((l) => `[${l.level}] ${l.message}`).join('\n')}` : '';
  return { ...toolError(outcome.error.code, outcome.error.message), structuredContent: undefined, content: [{ type: 'text', text: `${outcome.error.code}: ${outcome.error.message}${logs}` }] };
}

/** Build the MCP server for one session of one agent. */
export async function createMcpSession(ports: McpPorts, agent: Agent, limits: McpConfig, transport: 'stdio' | 'http'): Promise<McpSession> {
  const now = ports.now ?? Date.now;
  const live = new Set<string>();
  const started: number[] = [];
  /** Admitted runs not yet submitted (they count against maxConcurrentRuns). */
  let starting = 0;
  const by = `agent:${agent.name}`;
  const server = new McpServer(
    { name: MCP_SERVER_NAME, version: ports.version ?? ownVersion() },
    {
      capabilities: { tools: {}, logging: {} },
      instructions: `Tools run JavaScript in a contained sandbox as agent "${agent.name}" (subject ${formatSubject(agent.subject)}). The run tool's description has the typed caps API this agent holds.`,
    },
  );

  /** Check the session's limits and reserve a slot; throws the typed error. */
  function admit(sourceBytes: number): void {
    if (sourceBytes > limits.maxSourceBytes) {
      throw new ContainedError('MCP_SOURCE_TOO_LARGE', `code is ${sourceBytes} bytes; this server takes at most ${limits.maxSourceBytes}`, { data: { limitBytes: limits.maxSourceBytes } });
    }
    if (live.size + starting >= limits.maxConcurrentRuns) {
      throw new ContainedError('MCP_TOO_MANY_RUNS', `this session already has ${live.size + starting} runs live (at most ${limits.maxConcurrentRuns}); wait for one to finish`, { data: { limit: limits.maxConcurrentRuns } });
    }
    const t = now();
    while (started.length > 0 && (started[0] ?? 0) <= t - 60_000) started.shift();
    if (started.length >= limits.runsPerMinute) {
      const retryAfterMs = Math.max(0, (started[0] ?? t) + 60_000 - t);
      throw new ContainedError('MCP_RATE_LIMITED', `this session started ${started.length} runs in the last minute (at most ${limits.runsPerMinute}); retry in ${Math.ceil(retryAfterMs / 1000)} s`, {
        data: { limit: limits.runsPerMinute, retryAfterMs },
      });
    }
    started.push(t);
  }

  /** Wait for the run, telling the client while a request waits for an operator; cancel on abort. */
  async function follow(run: SubmittedRun, extra: Extra): Promise<RunOutcome> {
    const { runId } = run;
    live.add(runId);
    const token = extra._meta?.progressToken;
    let progress = 0;
    const pending = new Map<string, RequestView>();
    const notify = (message: string): void => {
      if (token === undefined || extra.signal.aborted) return;
      progress += 1;
      extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress, message } }).catch((error: unknown) => {
        ports.logger?.debug({ err: error, runId }, 'mcp progress notification failed');
      });
    };
    const following = ports.runs.followRun(runId, (event) => {
      if (event.type !== 'request') return;
      const request = event.request;
      if (request.status === 'pending') {
        pending.set(request.id, request);
        notify(waitingMessage(request));
      } else if (pending.delete(request.id)) {
        notify(`operator decision on request ${request.id.slice(0, 8)}…: ${request.status}${request.denyReason ? ` (${request.denyReason})` : ''}`);
      }
    });
    for (const event of following?.replay ?? []) {
      if (event.type === 'request' && event.request.status === 'pending') {
        pending.set(event.request.id, event.request);
        notify(waitingMessage(event.request));
      }
    }
    const heartbeat = setInterval(() => {
      for (const request of pending.values()) notify(waitingMessage(request));
    }, limits.progressIntervalMs);
    heartbeat.unref();
    const onAbort = (): void => {
      ports.runs.cancelRun(runId, { by }).catch((error: unknown) => ports.logger?.warn({ err: error, runId }, 'mcp: cancelling a run failed'));
    };
    extra.signal.addEventListener('abort', onAbort, { once: true });
    if (extra.signal.aborted) onAbort();
    try {
      return await ports.runs.waitForRun(runId);
    } finally {
      clearInterval(heartbeat);
      extra.signal.removeEventListener('abort', onAbort);
      following?.stop();
      live.delete(runId);
    }
  }

  async function call(tool: 'run' | 'run_image', extra: Extra, sourceBytes: number, start: () => Promise<SubmittedRun>): Promise<CallToolResult> {
    let result: CallToolResult;
    let code = '';
    try {
      if (ports.agentActive && !(await ports.agentActive(agent.id))) throw new ContainedError('UNAUTHENTICATED', `agent "${agent.name}" has been revoked`);
      admit(sourceBytes);
      // Counted from admission, so calls arriving together cannot all pass the live-runs check.
      starting += 1;
      let run: SubmittedRun;
      try {
        run = await start();
      } finally {
        starting -= 1;
      }
      const outcome = await follow(run, extra);
      if (outcome.status === 'error') code = outcome.error.code;
      result = outcomeResult(outcome);
    } catch (error) {
      if (!(error instanceof ContainedError)) {
        ports.logger?.error({ err: error, agent: agent.name, tool }, 'mcp tool call failed');
        code = 'INTERNAL';
        result = toolError('INTERNAL', 'the host could not run this');
      } else {
        code = error.code;
        result = toolError(error.code, error.message);
      }
    }
    ports.metrics?.mcpToolCall(transport, tool, code);
    return result;
  }

  const [capsDts, grants] = await Promise.all([capsDtsFor(ports, agent), grantLines(ports, agent)]);
  server.registerTool(
    'run',
    {
      title: 'Run contained code',
      description: runDescription(agent, capsDts, grants),
      inputSchema: {
        code: z.string().describe('An ES module: `export default async function main(input, caps) { … }`.'),
        input: z.any().optional().describe('JSON passed to main as `input` (default null).'),
        staged: z
          .boolean()
          .optional()
          .describe('Stage the run: reads happen, every other call is recorded and answered from a staged view (outbox and http.send answer `staged: true` placeholders); when the run ends its effects wait for one human review as a changeset. Default false.'),
      },
      outputSchema: outputShape,
      annotations: { title: 'Run contained code', readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    },
    async ({ code, input, staged }, extra) =>
      call('run', extra, Buffer.byteLength(code, 'utf8'), async () => {
        return ports.runs.submitCode({
          program: programFromSource(code, 'main.js'),
          input: input ?? null,
          subject: { ...agentRunSubject(agent.subject), text: formatSubject(agent.subject) },
          submittedBy: by,
          staged: staged === true,
        });
      }),
  );
  server.registerTool(
    'run_image',
    {
      title: 'Run a stored image',
      description:
        'Run the program of a sandbox image stored on the host (by its digest, sha256:<64 hex>) with `input`, under your own grants (the same `caps` as `run`). ' +
        'The result is what its main returned, its logs and usage; a failed run is a tool error whose text starts with its error code.',
      inputSchema: {
        digest: z.string().regex(/^sha256:[0-9a-f]{64}$/).describe('The image digest (contained image inspect prints it).'),
        input: z.any().optional().describe('JSON passed to main as `input` (default null).'),
      },
      outputSchema: outputShape,
      annotations: { title: 'Run a stored image', readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    },
    async ({ digest, input }, extra) =>
      call('run_image', extra, 0, async () => {
        return ports.runs.submitDigest({ digest, input: input ?? null, submittedBy: by, as: { ...agentRunSubject(agent.subject), text: formatSubject(agent.subject) } });
      }),
  );

  ports.metrics?.mcpSession(transport, 1);
  let closed = false;
  return {
    server,
    get liveRuns() {
      return live.size;
    },
    async cancelAll(reason) {
      if (!closed) {
        closed = true;
        ports.metrics?.mcpSession(transport, -1);
      }
      await Promise.allSettled(
        [...live].map((runId) => ports.runs.cancelRun(runId, { by }).catch((error: unknown) => ports.logger?.warn({ err: error, runId, reason }, 'mcp: cancelling a run failed'))),
      );
    },
  };
}
