/**
 * The one registry of error codes. Every error an agent, a caller or an operator can see carries
 * one of these codes, and each code carries its metadata here, in one line (as Fastify's
 * `createError(code, message, statusCode)` does): the HTTP status it answers with, who is handed
 * it, and its doc line. `docs/errors.md` is generated from this table (`npm run docs:errors`);
 * tests fail when the two drift apart, when the source throws a code that is not here, and when a
 * code here is thrown nowhere (unless it says why it is `reserved`).
 *
 * Add a code here before throwing it anywhere, grouped by area:
 *   MY_CODE: { status: 409, audience: ['operator'], doc: 'One line: when it happens, and what data names.' },
 * The HTTP API and the console derive their status from `status` (host/api/respond.ts); there is
 * no other status map.
 */

/**
 * Who is handed an error with a code (anyone may read it later in a run record, a request or the
 * audit log). docs/errors.md prints these lines.
 */
export const AUDIENCES = {
  agent: 'agent code inside the sandbox: a capability call rejects with it.',
  caller: 'whoever runs agents: a run\'s outcome (the library, `contained run`) or an answer of the platform HTTP API.',
  operator: 'an answer on the operator channel, in the console, or to an operator CLI command (review, grant, trust, token).',
  host: 'whoever runs the host: start-up, the host\'s own CLI commands, host-side code and the host log.',
} as const;

export type Audience = keyof typeof AUDIENCES;

/** The statuses an error answer may carry. */
export type ErrorStatus = 400 | 401 | 403 | 404 | 405 | 409 | 413 | 415 | 422 | 429 | 500 | 503;

export interface ErrorSpec {
  /**
   * The HTTP status of an answer carrying this code. `null`: never an HTTP error answer (a run
   * outcome, a capability call's rejection, a start-up or client-side failure); should one ever
   * reach an HTTP answer it is a 500.
   */
  readonly status: ErrorStatus | null;
  /** Who is handed it (see `Audience`). */
  readonly audience: readonly Audience[];
  /** One line for docs/errors.md: when it happens, and what `data` names. */
  readonly doc: string;
  /** Set only when nothing throws the code (yet): why it stays registered. */
  readonly reserved?: string;
}

export const ERRORS = {
  // Outcome of a run (runtime/)
  AGENT_ERROR: { status: null, audience: ['caller'], doc: 'The agent program threw, or rejected, with its own error.' },
  CPU_LIMIT: { status: null, audience: ['caller'], doc: 'The run used more CPU time than its `cpuMs` limit (including code resumed after an `await`).' },
  MEMORY_LIMIT: { status: null, audience: ['caller'], doc: 'The sandbox heap grew past its `memoryMb` limit.' },
  WALL_LIMIT: { status: null, audience: ['caller'], doc: 'The run took longer than its `wallMs` deadline (time waiting for a human is not counted).' },
  OUTPUT_LIMIT: { status: null, audience: ['caller'], doc: 'The return value or the logs exceeded their byte limits.' },
  INVALID_OUTPUT: { status: null, audience: ['caller'], doc: 'The return value of `main` is not JSON-serialisable (BigInt, cycle, function at the top level…).' },
  CALL_LIMIT: { status: null, audience: ['agent', 'caller'], doc: 'Too many capability calls: more than `maxCalls` in total, more than `maxConcurrentCalls` at once, or one call larger than `maxCallBytes`.' },
  INVALID_PROGRAM: { status: null, audience: ['caller'], doc: 'The agent program cannot be loaded: syntax error, bare or unresolvable import, no default-exported `main`.' },
  INVALID_ARGUMENT: { status: 400, audience: ['agent', 'caller', 'operator', 'host'], doc: 'A capability call, CLI flag or API field did not match its schema; `data.path` names the offending field.' },
  SANDBOX_CRASHED: { status: null, audience: ['caller'], doc: 'The worker process hosting the sandbox died; only its own runs are affected.' },
  CANCELLED: { status: null, audience: ['caller'], doc: 'The run was cancelled by its caller before it finished.' },
  INTERNAL: { status: 500, audience: ['agent', 'caller', 'operator', 'host'], doc: 'A bug in ai-contained; the detail is in the host log, never in agent hands.' },
  // Capabilities (capabilities/)
  UNKNOWN_CAPABILITY: { status: null, audience: ['agent', 'caller'], doc: 'The agent called a capability or method it does not hold.' },
  OUT_OF_SCOPE: { status: null, audience: ['host'], doc: 'A capability call falls outside the instance scope (a scope check result; the gate turns it into a denial or an escalation).' },
  CAPABILITY_DENIED: { status: 403, audience: ['agent', 'caller', 'operator'], doc: 'The gate refused a capability call: outside every grant and not escalated, or refused by policy (for an operator: edited arguments outside the scope). A role too low is `FORBIDDEN`, never this.' },
  CAPABILITY_REVOKED: { status: null, audience: ['agent', 'caller'], doc: 'The capability instance was revoked (possibly while the run was live).' },
  CAPABILITY_EXPIRED: { status: null, audience: ['agent', 'caller'], doc: 'The capability instance expired.' },
  BUDGET_EXCEEDED: { status: null, audience: ['agent', 'caller'], doc: 'A per-method budget (calls, rate or bytes) of the capability instance is used up.' },
  CAPABILITY_FAILED: { status: null, audience: ['agent', 'caller'], doc: 'The capability tried to act and the outside world failed (file system, network, SMTP, SQL error).' },
  INVALID_SCOPE: { status: 400, audience: ['caller', 'operator', 'host'], doc: 'A scope given to a capability (or to `attenuate`) is invalid, or is not narrower than its parent; from `restrict` (grants, capability requests) `data.fields` names the fields that ask for more.' },
  QUOTA_EXCEEDED: { status: null, audience: ['agent'], doc: 'A storage quota of the capability scope (kv `maxTotalBytes`) would be exceeded; nothing was written.' },
  FS_LINK: { status: null, audience: ['agent'], doc: 'An fs path is, or passes through, a symbolic link, or names a file with several hard links; links are never followed.' },
  FS_SPECIAL_FILE: { status: null, audience: ['agent'], doc: 'An fs path names a device, FIFO or socket; only regular files and folders are served.' },
  SQL_REFUSED: { status: null, audience: ['agent'], doc: 'A SQL statement the sql capability never runs: PRAGMA, ATTACH, DDL, transactions, virtual tables, several statements.' },
  SQL_LIMIT: { status: null, audience: ['agent'], doc: 'A SQL statement was stopped at a limit: it ran past the scope `timeoutMs`, built a string or BLOB longer than SQLite allows, or needed more memory than a query process may use; `data.limit` says which (`timeoutMs`, `length`, `memory`). A stopped write is rolled back.' },
  // Staged runs and changesets (capabilities/sdk/staging.ts, host/changesets/)
  NOT_STAGEABLE: { status: null, audience: ['agent'], doc: 'In a staged run, a call to a method that cannot be staged (its real result is needed and it is not read-only); nothing was performed.' },
  STAGING_LIMIT: { status: null, audience: ['agent'], doc: 'A staged run recorded more effects, or more bytes of changeset, than the host allows; `data.limit` says which (`maxEffects`, `maxBytes`).' },
  CHANGESET_CONFLICT: { status: 409, audience: ['caller', 'operator'], doc: 'A changeset could not be committed or undone because something it touches changed since it was staged (or committed): a file, a kv value, an SQL row; `data.conflicts` names each. Nothing was applied.' },
  CHANGESET_FAILED: { status: null, audience: ['caller', 'operator'], doc: 'A changeset\'s commit failed while applying a local effect; the effects already applied were rolled back from their before-images; `data.seq` names the effect.' },
  // Escalation (host/)
  DATA_FLOW_DENIED: { status: 403, audience: ['agent', 'caller'], doc: 'An open-world call (email, HTTP, an open-world MCP tool) of a run that had read a sensitive source, on a host configured to refuse those (`dataFlow.afterSensitive: "deny"`); the message names the sources (docs/data-flow.md).' },
  ESCALATION_DENIED: { status: null, audience: ['agent', 'caller'], doc: 'An operator denied the request; the message carries their reason.' },
  ESCALATION_TIMEOUT: { status: null, audience: ['agent', 'caller'], doc: 'Nobody decided the request before it expired.' },
  ALREADY_RESOLVED: { status: 409, audience: ['agent', 'operator'], doc: 'What a decision or change names is already settled: a request resolved, performed or expired; a review or promotion proposal already decided; a grant already revoked or expired (it can no longer be narrowed).' },
  NOT_FOUND: { status: 404, audience: ['agent', 'caller', 'operator', 'host'], doc: 'The named run, request, grant, token or image does not exist.' },
  RUN_GONE: { status: null, audience: ['agent', 'caller'], doc: 'The run that opened an escalation ended before the decision.' },
  DUPLICATE_APPROVER: { status: 409, audience: ['operator'], doc: 'The same operator tried to approve the same arguments of a two-person request a second time.' },
  STALE_REQUEST: { status: 409, audience: ['operator'], doc: 'An approval named arguments (`argsDigest`) that are no longer the request\'s current proposal: someone edited them since; `data.argsDigest` is the current one, `data.proposedBy` who proposed it. Review the current arguments and approve those.' },
  SIGNATURE_REQUIRED: { status: 403, audience: ['operator'], doc: 'The request needs passkey-signed approvals (`approvals.signed` in the host config, or its grant\'s `signedApprovals`) and this approval carried no WebAuthn assertion; nothing was counted. Approve in the console with a registered passkey (docs/approvals.md).' },
  SIGNATURE_INVALID: { status: 403, audience: ['operator'], doc: 'A WebAuthn assertion or passkey registration did not verify and nothing was counted or stored: `data.reason` is `unknown-credential`, `revoked`, `not-yours` (another operator\'s credential), `challenge` (made for another request, other arguments or another verdict), `signature` (does not verify with the registered public key: forged), `origin`, `rp-id`, `user-verification`, `counter` (did not increase: a replay or a cloned key), `same-credential` (already counted on this request), `registration` or `malformed`.' },
  // Host (grants, tokens, durable state: host/)
  GRANT_REFUSED: { status: 422, audience: ['operator'], doc: 'The host refused to store a grant that breaks the risk policy (a destructive or financial method made autonomous without an admin override, `executed` for an irreversible method, too few approvals); `data.rule` names the rule.' },
  NOT_NARROWER: { status: 400, audience: ['operator'], doc: 'A grant narrowing asks for more than the grant it replaces: a method the grant lacks, a less supervised mode, fewer approvals, unsigned approvals where the grant requires signed ones, or a later (or no) expiry; `data.field` names which. Nothing was written.' },
  // Operator channel (host/operator/)
  UNAUTHENTICATED: { status: 401, audience: ['caller', 'operator'], doc: 'No valid credential: the bearer token, subprotocol token or ticket is missing, unknown, expired or revoked.' },
  RATE_LIMITED: { status: 429, audience: ['operator'], doc: 'Too many messages on one operator connection; the message was not processed (sustained abuse closes the connection 1008).' },
  HOST_UNREACHABLE: { status: null, audience: ['caller', 'operator'], doc: 'A client could not reach the host, or the connection closed or timed out before the reply.' },
  // Images (sandbox-images/)
  IMAGE_CORRUPT: { status: 422, audience: ['caller'], doc: 'The archive is not a valid gzip/tar stream, or it is truncated.' },
  IMAGE_ABSOLUTE_PATH: { status: 422, audience: ['caller'], doc: 'An entry path is absolute.' },
  IMAGE_PATH_TRAVERSAL: { status: 422, audience: ['caller'], doc: 'An entry path contains a `..` segment.' },
  IMAGE_PATH_COLLISION: { status: 422, audience: ['caller'], doc: 'Two entry paths collide after Unicode normalisation or case folding.' },
  IMAGE_DUPLICATE_ENTRY: { status: 422, audience: ['caller'], doc: 'The same path appears twice.' },
  IMAGE_LINK: { status: 422, audience: ['caller'], doc: 'The archive contains a symbolic or hard link.' },
  IMAGE_SPECIAL_FILE: { status: 422, audience: ['caller'], doc: 'The archive contains a device, FIFO or other non-regular entry.' },
  IMAGE_PATH_TOO_DEEP: { status: 422, audience: ['caller'], doc: 'An entry path is nested deeper than the limit.' },
  IMAGE_PATH_INVALID: { status: 422, audience: ['caller'], doc: 'An entry path is empty, too long, or uses characters the image format forbids.' },
  IMAGE_TOO_MANY_FILES: { status: 422, audience: ['caller'], doc: 'The archive holds more files than the limit.' },
  IMAGE_FILE_TOO_LARGE: { status: 422, audience: ['caller'], doc: 'One file decompresses past the per-file size limit.' },
  IMAGE_TOO_LARGE: { status: 422, audience: ['caller'], doc: 'The archive decompresses past the total size limit (gzip bomb).' },
  IMAGE_FILE_TYPE: { status: 422, audience: ['caller'], doc: 'A file type the format does not allow (executable bit, node_modules, unknown extension).' },
  IMAGE_MANIFEST_MISSING: { status: 422, audience: ['caller'], doc: 'The archive has no `manifest.json`.' },
  IMAGE_MANIFEST_INVALID: { status: 422, audience: ['caller'], doc: 'The manifest does not match the schema; `data.issues` lists why.' },
  IMAGE_ENTRY_MISSING: { status: 422, audience: ['caller'], doc: 'The manifest `entry` is not a module in the image.' },
  IMAGE_DIGEST_MISMATCH: { status: 422, audience: ['caller'], doc: 'The image digest differs from the one expected.' },
  IMAGE_SIGNATURE_INVALID: { status: 422, audience: ['caller'], doc: 'The signature does not verify, or is missing where one is required.' },
  IMAGE_UNTRUSTED_SIGNER: { status: 422, audience: ['caller'], doc: 'The image is signed by a key that is not in the trust store.' },
  // HTTP API (host/http.ts, host/api/)
  FORBIDDEN: { status: 403, audience: ['caller', 'operator'], doc: 'The credential is valid but may not do this: its role is too low for the endpoint, message or grant change (on every channel: HTTP API, console, operator WebSocket and CLI), or the request\'s `Host`, `Origin` or CSRF token is not this server\'s. Agents never get it: a call the gate refuses is `CAPABILITY_DENIED`.' },
  METHOD_NOT_ALLOWED: { status: 405, audience: ['caller', 'operator'], doc: 'The path exists but not with this HTTP method; the `Allow` header lists the methods.' },
  PAYLOAD_TOO_LARGE: { status: 413, audience: ['caller', 'operator'], doc: 'The request body is larger than the endpoint accepts; `data.limitBytes` is the limit.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, audience: ['caller', 'operator'], doc: 'The request body has a `Content-Type` the endpoint does not accept.' },
  QUEUE_FULL: { status: 429, audience: ['caller'], doc: 'The run queue is full; nothing was stored. Retry after `Retry-After` seconds.' },
  SHUTTING_DOWN: { status: 503, audience: ['caller'], doc: 'The host is closing and accepts no new work.' },
  SERVER_BUSY: { status: 503, audience: ['caller', 'operator'], doc: 'The host holds as many connections as `http.maxConnections` allows; the connection was answered and closed. Retry after `Retry-After` seconds.' },
  TOO_MANY_CONNECTIONS: { status: 429, audience: ['caller', 'operator'], doc: 'The client already holds as many event streams (`http.maxEventStreamsPerClient`) or operator WebSockets (`http.maxOperatorConnectionsPerToken`) as allowed; close one, or retry after `Retry-After` seconds.' },
  ADDRESS_IN_USE: { status: null, audience: ['host'], doc: 'The host cannot listen: another process holds its port (`listen.port`, `--port`). Nothing was left running.' },
  DATA_DIR_IN_USE: { status: null, audience: ['host'], doc: 'Another host process holds the data folder (`<dataDir>/host.lock`): two hosts on one folder would take over each other\'s live runs and pending requests. `data.pid` names the holder. Nothing was started.' },
  STORE_UNAVAILABLE: { status: 503, audience: ['caller', 'operator', 'host'], doc: 'The shared store (PostgreSQL, `store` in the host config) cannot be reached or refused the operation, after the retries the store makes; nothing the call asked was done (a write that may have committed before the connection broke is read back first). `data.reason` says why. Retry when the database is back.' },
  STORE_SCHEMA_NEWER: { status: null, audience: ['host'], doc: 'The store was migrated by a newer build of ai-contained than this one (`data.found`, `data.supported`); this build will not write to it. Upgrade this host.' },
  STORE_MOVED: { status: null, audience: ['host'], doc: 'The data folder\'s SQLite store was copied to PostgreSQL by `contained store migrate` (`<dataDir>/store-migrated.json`, `data.to`): a host or CLI write on the old file would decide on a copy the fleet no longer reads. Set `store` (or `CONTAINED_STORE`) to the database, or delete the marker to go back to SQLite. Nothing was started or written.' },
  HOST_REAPED: { status: null, audience: ['host'], doc: 'Another host of the fleet declared this host dead (its heartbeat stopped for longer than `fleet.deadAfterMs`) and ended its runs; this host stops rather than act on requests it no longer owns. Restart it.' },
  LISTEN_FAILED: { status: null, audience: ['host'], doc: 'The host cannot listen on its address for another reason (permission denied, address not on this machine); `data.reason` says which. Nothing was left running.' },
  // MCP server (host/mcp/, docs/mcp.md): per-session limits, answered as tool errors
  MCP_SOURCE_TOO_LARGE: { status: null, audience: ['caller'], doc: 'The `code` of an MCP `run` call is larger than `mcp.maxSourceBytes`; nothing ran. `data.limitBytes` is the limit.' },
  MCP_TOO_MANY_RUNS: { status: null, audience: ['caller'], doc: 'The MCP session already has `mcp.maxConcurrentRuns` runs live; nothing ran. Wait for one to finish.' },
  MCP_RATE_LIMITED: { status: null, audience: ['caller'], doc: 'The MCP session started `mcp.runsPerMinute` runs in the last minute; nothing ran. `data.retryAfterMs` says when the next may start.' },
  // Notifications (host/notify/, docs/approvals.md)
  NOTIFY_DELIVERY_FAILED: { status: null, audience: ['operator', 'host'], doc: 'A webhook or email notification could not be delivered this attempt (shown as the delivery\'s last error in the console and the host log; it is retried with backoff, then given up): `data.reason` is `timeout`, `network`, `status` (with `data.status`), `redirect` (never followed), `smtp` or `folder`.' },
  // MCP servers as capabilities (capabilities/mcp/, docs/mcp-capability.md)
  MCP_TIMEOUT: { status: null, audience: ['agent', 'caller'], doc: 'An `mcp` capability\'s tool call got no answer within `limits.callTimeoutMs` (`data.timeoutMs`); the request was cancelled, and a server that no longer answers a ping is restarted.' },
  MCP_SERVER_FAILED: { status: null, audience: ['agent', 'caller', 'host'], doc: 'The MCP server behind an `mcp` capability failed: `data.reason` is `crashed` (it exited or was killed; it is restarted with backoff), `too-large` (a message over `limits.maxMessageBytes`, or a result over `limits.maxResultBytes`), `unavailable` (cannot be started or reached, or still restarting) or `invalid-response` (an answer that is not a valid tool result, or no usable tool at start).' },
  MCP_TOOL_ERROR: { status: null, audience: ['agent', 'caller'], doc: 'The MCP tool itself answered with an error (`isError`, or a JSON-RPC error such as unknown tool or invalid params); the message carries its text, cut at 2000 characters.' },
  MCP_TOOL_WITHDRAWN: { status: null, audience: ['agent', 'caller'], doc: 'The MCP tool changed (description, schema or annotations) or disappeared since an operator accepted it, or an accepted change to its risk waits for the next host start; `data.tool` and `data.status` say which. `contained mcp-tools accept` re-enables it.' },
  // Audit and trust (host/audit/, host/trust/)
  AUDIT_FAILED: { status: 500, audience: ['agent', 'operator', 'host'], doc: 'The audit record could not be made durable (disk full, lock timeout, closed log); the action it was to precede was not performed.' },
  AUDIT_TAMPERED: { status: null, audience: ['host'], doc: '`contained audit verify` found the chain broken (a record edited, deleted, inserted or moved) or a checkpoint that does not match; `data.firstBad` names the first bad record.' },
  PROMOTION_REFUSED: { status: 409, audience: ['operator'], doc: 'A promotion to executed was refused: the action is destructive, financial or irreversible (the ceiling), or its evidence no longer meets the bar.' },
  // The resident sandbox process (`contained sandbox`, runtime/resident-*.ts, docs/performance.md)
  RESIDENT_DIR_UNSAFE: { status: null, audience: ['caller'], doc: 'The folder of the resident sandbox process\'s socket is not private to this user (owned by another user, writable by group or others, a symbolic link) or cannot be created; `data.dir` names it and `data.reason` says why. Nothing was started; `contained run` forks a worker instead.' },
  RESIDENT_START_FAILED: { status: null, audience: ['caller'], doc: '`contained sandbox start` started the resident sandbox process but it did not answer on its socket in time (`data.log` names its log file); it was stopped again.' },
  // CLI / usage
  USAGE: { status: 400, audience: ['caller', 'operator', 'host'], doc: 'The command line is malformed (unknown command or flag, missing value).' },
  AMBIGUOUS_ID: { status: null, audience: ['operator'], doc: 'An id prefix given on the command line matches several pending requests; `data.candidates` lists them and nothing was decided.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** Code → doc line (the registry's docs alone; kept for library users who read them). */
export const ERROR_CODES: Readonly<Record<ErrorCode, string>> = Object.freeze(
  Object.fromEntries(Object.entries(ERRORS).map(([code, spec]) => [code, spec.doc])) as Record<ErrorCode, string>,
);

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERRORS, value);
}

/** The registry entry of a code. */
export function errorSpec(code: ErrorCode): ErrorSpec {
  return ERRORS[code];
}

/** The HTTP status an answer carrying `code` has: the registry's, or 500 for a code that is never an HTTP answer. */
export function httpStatus(code: ErrorCode): ErrorStatus {
  return ERRORS[code].status ?? 500;
}

export interface ContainedErrorOptions {
  data?: Record<string, unknown>;
  cause?: unknown;
}

/**
 * The one error class of the project. `code` is stable and documented; `message` is for people;
 * `data` holds structured detail safe to show the caller (never host paths or secrets when the
 * caller is an agent: see `toAgentError`).
 */
export class ContainedError extends Error {
  readonly code: ErrorCode;
  readonly data: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: ContainedErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ContainedError';
    this.code = code;
    this.data = options.data;
  }

  toJSON(): { code: ErrorCode; message: string; data?: Record<string, unknown> } {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }
}

/** The plain shape in which an error crosses into a sandbox or over a wire. */
export interface ErrorInfo {
  code: ErrorCode;
  message: string;
  data?: Record<string, unknown>;
}

/**
 * Reduce anything thrown host-side to what an agent may see: a known code and its message, or
 * `INTERNAL` with a generic message (the detail belongs in the host log).
 */
export function toAgentError(error: unknown): ErrorInfo {
  if (error instanceof ContainedError) {
    return error.data === undefined
      ? { code: error.code, message: error.message }
      : { code: error.code, message: error.message, data: error.data };
  }
  return { code: 'INTERNAL', message: 'internal error in the host (see the host log)' };
}

/**
 * The message of anything thrown, without touching getters beyond `message`, capped at 4096
 * characters. For host-side logging and for wrapping isolated-vm's errors; never for agent values.
 */
export function messageOf(error: unknown): string {
  if (error !== null && typeof error === 'object' && typeof (error as { message?: unknown }).message === 'string') {
    return (error as { message: string }).message.slice(0, 4096);
  }
  return String(error).slice(0, 4096);
}
