/**
 * One connection to an MCP server, through the official SDK client: a stdio child process or a
 * Streamable HTTP endpoint. It keeps the server usable, or says precisely why not:
 *
 * - a call gets no answer within `callTimeoutMs` → `MCP_TIMEOUT` (the SDK sends
 *   `notifications/cancelled`); a server that then misses a ping within `pingTimeoutMs` is killed;
 * - the process exits, the stream closes, or a message is larger than `maxMessageBytes` (the SDK's
 *   read buffer stops at that size, so memory stays bounded) → calls in flight fail
 *   `MCP_SERVER_FAILED` (`data.reason`: `crashed`, `too-large`) and the server is restarted after a
 *   delay doubling from `restartMinMs` to `restartMaxMs`, reset once a call succeeds again;
 * - an answer that is not a valid tool result → `MCP_SERVER_FAILED` (`invalid-response`); lines that
 *   are not JSON-RPC at all are dropped by the SDK (the call then times out);
 * - while it is down, calls wait for the restart within their own time limit, then fail
 *   `MCP_SERVER_FAILED` (`unavailable`).
 *
 * Host-side secrets (env values, HTTP headers) are resolved here, at each (re)connect, and never
 * leave the host. The server's stderr is drained (a full pipe would stall it) and its tail logged.
 */
import type { Logger } from 'pino';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ErrorCode, McpError, ToolListChangedNotificationSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { ContainedError } from '../../runtime/errors.js';
import { type McpHttpServer, isStdio, type McpLimits, type McpOptions, type SecretOrValue, type McpStdioServer } from './options.js';

export interface SecretLookup {
  get(name: string): string | undefined;
}

export interface McpConnectionOptions {
  /** The binding name, for messages and logs. */
  name: string;
  server: McpOptions['server'];
  limits: McpLimits;
  secrets?: SecretLookup | undefined;
  logger?: Logger | undefined;
  /** Called with the full tool list after a `tools/list_changed` notification or a restart. */
  onTools?: (tools: unknown[]) => void;
}

export interface ServerHello {
  tools: unknown[];
  serverName: string;
  instructions?: string;
}

type State = 'idle' | 'connecting' | 'ready' | 'down' | 'closed';

export type FailureReason = 'crashed' | 'too-large' | 'unavailable' | 'invalid-response';

function failed(name: string, reason: FailureReason, message: string, cause?: unknown): ContainedError {
  return new ContainedError('MCP_SERVER_FAILED', `${name}: ${message}`, { data: { reason }, cause });
}

/** A fetch whose response bodies stop with an error past `maxBytes`. */
export function cappedFetch(maxBytes: number): typeof fetch {
  return async (input, init) => {
    const response = await fetch(input, init);
    if (!response.body) return response;
    let seen = 0;
    const capped = response.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          seen += chunk.byteLength;
          if (seen > maxBytes) controller.error(new Error(`message exceeded maximum size of ${maxBytes} bytes`));
          else controller.enqueue(chunk);
        },
      }),
    );
    return new Response(capped, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}

export class McpConnection {
  private state: State = 'idle';
  private client: Client | undefined;
  private transport: Transport | undefined;
  private generation = 0;
  private attempts = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private readyWaiters = new Set<() => void>();
  private lastCloseReason: FailureReason = 'crashed';
  private stderrTail = '';
  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;
  /** Restarts so far (tests, metrics). */
  restarts = 0;

  constructor(private readonly options: McpConnectionOptions) {}

  get status(): State {
    return this.state;
  }

  private isClosed(): boolean {
    return this.state === 'closed';
  }

  /** First connection: start (or reach) the server, initialize, list its tools. Throws MCP_SERVER_FAILED. */
  async start(): Promise<ServerHello> {
    if (this.state !== 'idle') throw new ContainedError('INTERNAL', 'mcp: start called twice');
    return this.connect();
  }

  private resolve(value: SecretOrValue, what: string): string {
    if (typeof value === 'string') return value;
    const secret = this.options.secrets?.get(value.secret);
    if (secret === undefined) {
      throw new ContainedError('INVALID_ARGUMENT', `${this.options.name}: ${what} names the secret "${value.secret}", which the host does not have`);
    }
    return secret;
  }

  private makeTransport(): Transport {
    const { server, limits } = this.options;
    if (isStdio(server)) {
      const s = server as McpStdioServer;
      const env: Record<string, string> = { ...getDefaultEnvironment() };
      for (const [k, v] of Object.entries(s.env)) env[k] = this.resolve(v, `env ${k}`);
      const t = new StdioClientTransport({ command: s.command, args: s.args, env, stderr: 'pipe', maxBufferSize: limits.maxMessageBytes, ...(s.cwd ? { cwd: s.cwd } : {}) });
      t.stderr?.on('data', (chunk: Buffer) => {
        if (limits.stderrTailBytes === 0) return;
        this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-limits.stderrTailBytes);
      });
      return t;
    }
    const h = server as McpHttpServer;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(h.headers)) headers[k] = this.resolve(v, `header ${k}`);
    return new StreamableHTTPClientTransport(new URL(h.url), { requestInit: { headers }, fetch: cappedFetch(limits.maxMessageBytes) });
  }

  private async connect(): Promise<ServerHello> {
    this.state = 'connecting';
    const gen = ++this.generation;
    const { limits, name } = this.options;
    const client = new Client({ name: 'ai-contained', version: '1' }, { capabilities: {} });
    let transport: Transport;
    try {
      transport = this.makeTransport();
    } catch (error) {
      this.state = 'down';
      throw error;
    }
    const deadline = AbortSignal.timeout(limits.connectTimeoutMs);
    try {
      client.onerror = (error) => {
        if (gen !== this.generation) return;
        if (/exceeded maximum size/.test(String(error?.message))) {
          // The SDK dropped the message and closes gently (stdin, then 2 s, then SIGTERM): kill now,
          // so the calls in flight fail at once rather than at their timeout.
          this.kill('too-large');
        }
        this.options.logger?.debug({ capability: name, err: String(error?.message ?? error) }, 'mcp: transport error');
      };
      client.onclose = () => this.closed(gen);
      client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
        if (gen === this.generation) void this.refreshTools();
      });
      await client.connect(transport, { timeout: limits.connectTimeoutMs, signal: deadline });
      const tools = await this.listAll(client, deadline);
      if (gen !== this.generation || this.isClosed()) {
        await client.close().catch(() => undefined);
        throw failed(name, 'unavailable', 'the connection was closed while starting');
      }
      this.client = client;
      this.transport = transport;
      this.state = 'ready';
      this.lastCloseReason = 'crashed';
      for (const w of this.readyWaiters) w();
      this.readyWaiters.clear();
      const info = client.getServerVersion();
      const instructions = client.getInstructions();
      return { tools, serverName: info?.name ?? name, ...(instructions ? { instructions } : {}) };
    } catch (error) {
      if (gen === this.generation && !this.isClosed()) this.state = 'down';
      this.killTransport(transport);
      await client.close().catch(() => undefined);
      if (error instanceof ContainedError) throw error;
      throw failed(name, 'unavailable', `cannot start or reach the MCP server (${(error as Error)?.message ?? String(error)})${this.tail()}`, error);
    }
  }

  private async listAll(client: Client, signal: AbortSignal): Promise<unknown[]> {
    const tools: unknown[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 1000; page++) {
      const res = await client.listTools(cursor === undefined ? {} : { cursor }, { timeout: this.options.limits.connectTimeoutMs, signal });
      tools.push(...res.tools);
      if (tools.length >= this.options.limits.maxTools) return tools.slice(0, this.options.limits.maxTools);
      cursor = res.nextCursor;
      if (cursor === undefined) break;
    }
    return tools;
  }

  private tail(): string {
    const t = this.stderrTail.trim();
    return t ? `; stderr: ${t.slice(-500)}` : '';
  }

  /** The connection of generation `gen` closed: unless we are closing, restart with backoff. */
  private closed(gen: number): void {
    if (gen !== this.generation || this.state === 'closed') return;
    const wasReady = this.state === 'ready';
    this.state = 'down';
    this.client = undefined;
    this.transport = undefined;
    this.options.logger?.warn({ capability: this.options.name, reason: this.lastCloseReason, stderr: this.stderrTail.slice(-2000) }, 'mcp: server connection closed; restarting');
    if (wasReady) this.scheduleRestart();
  }

  private scheduleRestart(): void {
    if (this.state === 'closed' || this.restartTimer) return;
    const { restartMinMs, restartMaxMs } = this.options.limits;
    const delay = Math.min(restartMaxMs, restartMinMs * 2 ** Math.min(this.attempts, 30));
    this.attempts++;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.state === 'closed') return;
      this.restarts++;
      this.connect().then(
        (hello) => this.options.onTools?.(hello.tools),
        (error: unknown) => {
          this.options.logger?.warn({ capability: this.options.name, err: (error as Error)?.message }, 'mcp: restart failed');
          this.scheduleRestart();
        },
      );
    }, delay);
    this.restartTimer.unref?.();
  }

  private killTransport(transport: Transport | undefined): void {
    if (transport instanceof StdioClientTransport && transport.pid !== null) {
      try {
        process.kill(transport.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    void transport?.close().catch(() => undefined);
  }

  /** Kill the server now (it stopped answering); it is restarted like after a crash. */
  private kill(reason: FailureReason): void {
    this.lastCloseReason = reason;
    if (this.state !== 'ready') return;
    const transport = this.transport;
    this.killTransport(transport);
  }

  private async ready(deadline: number, signal: AbortSignal): Promise<Client> {
    while (true) {
      if (this.state === 'ready' && this.client) return this.client;
      if (this.state === 'closed') throw failed(this.options.name, 'unavailable', 'the capability is closed');
      const left = deadline - Date.now();
      if (left <= 0 || signal.aborted) throw failed(this.options.name, 'unavailable', 'the MCP server is restarting');
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          this.readyWaiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        signal.addEventListener('abort', done);
        this.readyWaiters.add(done);
      });
    }
  }

  /** Call a tool. Every failure is a ContainedError: MCP_TIMEOUT, MCP_SERVER_FAILED, MCP_TOOL_ERROR, CANCELLED. */
  async callTool(tool: string, args: Record<string, unknown>, signal: AbortSignal): Promise<CallToolResult> {
    const { limits, name } = this.options;
    const deadline = Date.now() + limits.callTimeoutMs;
    const client = await this.ready(deadline, signal);
    if (signal.aborted) throw new ContainedError('CANCELLED', 'the run ended before the tool was called');
    const timeout = Math.max(1, deadline - Date.now());
    try {
      const result = (await client.callTool({ name: tool, arguments: args }, undefined, { signal, timeout, maxTotalTimeout: timeout })) as CallToolResult;
      this.attempts = 0;
      return result;
    } catch (error) {
      throw this.classify(client, tool, error, signal);
    }
  }

  private classify(client: Client, tool: string, error: unknown, signal: AbortSignal): ContainedError {
    const { name, limits } = this.options;
    if (signal.aborted) return new ContainedError('CANCELLED', `${name}.${tool}: the call was cancelled`, { cause: error });
    if (error instanceof McpError) {
      if (error.code === ErrorCode.RequestTimeout) {
        void this.checkAlive(client);
        return new ContainedError('MCP_TIMEOUT', `${name}.${tool}: no answer within ${limits.callTimeoutMs} ms`, { data: { timeoutMs: limits.callTimeoutMs }, cause: error });
      }
      if (error.code === ErrorCode.ConnectionClosed) {
        const reason = this.lastCloseReason;
        return failed(name, reason, reason === 'too-large' ? `${tool}: the server sent a message larger than ${limits.maxMessageBytes} bytes; it is restarted` : `${tool}: the server closed the connection; it is restarted`, error);
      }
      // An error answer of the server itself (unknown tool, invalid params, internal error).
      return new ContainedError('MCP_TOOL_ERROR', `${name}.${tool}: ${clip(error.message)}`, { data: { mcpCode: error.code }, cause: error });
    }
    const text = String((error as Error)?.message ?? error);
    if (/exceeded maximum size/.test(text)) {
      return failed(name, 'too-large', `${tool}: the server sent a message larger than ${limits.maxMessageBytes} bytes`, error);
    }
    // Streamable HTTP: the endpoint cannot be reached or answers with an HTTP error (the next call tries again).
    if (/fetch failed|ECONNREFUSED|ECONNRESET|socket hang up|Error POSTing|HTTP \d{3}/i.test(text)) {
      return failed(name, 'unavailable', `${tool}: the MCP server cannot be reached`, error);
    }
    if (this.state !== 'ready' || client !== this.client || /not connected/i.test(text)) {
      return failed(name, this.lastCloseReason, `${tool}: the server connection failed; it is restarted`, error);
    }
    return failed(name, 'invalid-response', `${tool}: the server's answer is not a valid tool result`, error);
  }

  /** After a timeout: a server that does not answer a ping either is killed (and restarted). */
  private async checkAlive(client: Client): Promise<void> {
    if (client !== this.client) return;
    try {
      await client.ping({ timeout: this.options.limits.pingTimeoutMs });
    } catch {
      if (client === this.client) {
        this.options.logger?.warn({ capability: this.options.name }, 'mcp: the server does not answer a ping; killing it');
        this.kill('crashed');
      }
    }
  }

  /** Re-list the tools (after `tools/list_changed`); coalesces notifications that arrive meanwhile. */
  refreshTools(): Promise<void> {
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      do {
        this.refreshAgain = false;
        const client = this.client;
        if (!client) break;
        try {
          const tools = await this.listAll(client, AbortSignal.timeout(this.options.limits.connectTimeoutMs));
          if (client === this.client) this.options.onTools?.(tools);
        } catch (error) {
          this.options.logger?.warn({ capability: this.options.name, err: (error as Error)?.message }, 'mcp: cannot re-list tools');
        }
      } while (this.refreshAgain);
    })().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  async close(): Promise<void> {
    this.state = 'closed';
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    for (const w of this.readyWaiters) w();
    this.readyWaiters.clear();
    const client = this.client;
    const transport = this.transport;
    this.client = undefined;
    this.transport = undefined;
    // Gracefully: the SDK ends stdin, then SIGTERM, then SIGKILL (2 s apart).
    if (client) await client.close().catch(() => undefined);
    else await transport?.close().catch(() => undefined);
  }
}

export function clip(text: string, max = 2000): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
