/**
 * The one registry of error codes. Every error a caller, an agent or an operator can see carries
 * one of these codes; `docs/errors.md` is generated from this table (`npm run docs:errors`) and a
 * test fails when the two drift apart.
 *
 * Add a code here (one line of doc, grouped by area) before throwing it anywhere.
 */
export const ERROR_CODES = {
  // Outcome of a run (runtime/)
  AGENT_ERROR: 'The agent program threw, or rejected, with its own error.',
  CPU_LIMIT: 'The run used more CPU time than its `cpuMs` limit (including code resumed after an `await`).',
  MEMORY_LIMIT: 'The sandbox heap grew past its `memoryMb` limit.',
  WALL_LIMIT: 'The run took longer than its `wallMs` deadline (time waiting for a human is not counted).',
  OUTPUT_LIMIT: 'The return value or the logs exceeded their byte limits.',
  INVALID_OUTPUT: 'The return value of `main` is not JSON-serialisable (BigInt, cycle, function at the top level…).',
  CALL_LIMIT: 'Too many capability calls: more than `maxCalls` in total, more than `maxConcurrentCalls` at once, or one call larger than `maxCallBytes`.',
  INVALID_PROGRAM: 'The agent program cannot be loaded: syntax error, bare or unresolvable import, no default-exported `main`.',
  INVALID_ARGUMENT: 'A capability call, CLI flag or API field did not match its schema; `data.path` names the offending field.',
  SANDBOX_CRASHED: 'The worker process hosting the sandbox died; only its own runs are affected.',
  CANCELLED: 'The run was cancelled by its caller before it finished.',
  INTERNAL: 'A bug in ai-contained; the detail is in the host log, never in agent hands.',
  // Capabilities (capabilities/)
  UNKNOWN_CAPABILITY: 'The agent called a capability or method it does not hold.',
  OUT_OF_SCOPE: 'A capability call falls outside the instance scope (a scope check result; the gate turns it into a denial or an escalation).',
  CAPABILITY_DENIED: 'The gate refused the call: outside every grant and not escalated, or refused by policy.',
  CAPABILITY_REVOKED: 'The capability instance was revoked (possibly while the run was live).',
  CAPABILITY_EXPIRED: 'The capability instance expired.',
  BUDGET_EXCEEDED: 'A per-method budget (calls, rate or bytes) of the capability instance is used up.',
  CAPABILITY_FAILED: 'The capability tried to act and the outside world failed (file system, network, SMTP, SQL error).',
  INVALID_SCOPE: 'A scope given to a capability (or to `attenuate`) is invalid, or is not narrower than its parent; from `restrict` (grants, capability requests) `data.fields` names the fields that ask for more.',
  QUOTA_EXCEEDED: 'A storage quota of the capability scope (kv `maxTotalBytes`) would be exceeded; nothing was written.',
  FS_LINK: 'An fs path is, or passes through, a symbolic link, or names a file with several hard links; links are never followed.',
  FS_SPECIAL_FILE: 'An fs path names a device, FIFO or socket; only regular files and folders are served.',
  SQL_REFUSED: 'A SQL statement the sql capability never runs: PRAGMA, ATTACH, DDL, transactions, virtual tables, several statements.',
  SQL_LIMIT: 'A SQL statement was stopped at a limit: it ran past the scope `timeoutMs`, built a string or BLOB longer than SQLite allows, or needed more memory than a query process may use; `data.limit` says which (`timeoutMs`, `length`, `memory`). A stopped write is rolled back.',
  // Escalation (host/)
  ESCALATION_DENIED: 'An operator denied the request; the message carries their reason.',
  ESCALATION_TIMEOUT: 'Nobody decided the request before it expired.',
  ALREADY_RESOLVED: 'A decision arrived for a request that is already resolved or expired.',
  NOT_FOUND: 'The named run, request, grant, token or image does not exist.',
  RUN_GONE: 'The run that opened an escalation ended before the decision.',
  DUPLICATE_APPROVER: 'The same operator tried to approve the same arguments of a two-person request a second time.',
  STALE_REQUEST: 'An approval named arguments (`argsDigest`) that are no longer the request\'s current proposal: someone edited them since; `data.argsDigest` is the current one, `data.proposedBy` who proposed it. Review the current arguments and approve those.',
  // Host (grants, tokens, durable state: host/)
  GRANT_REFUSED: 'The host refused to store a grant that breaks the risk policy (a destructive or financial method made autonomous without an admin override, `executed` for an irreversible method, too few approvals); `data.rule` names the rule.',
  // Operator channel (host/operator/)
  UNAUTHENTICATED: 'No valid credential: the bearer token, subprotocol token or ticket is missing, unknown, expired or revoked (HTTP 401).',
  RATE_LIMITED: 'Too many messages on one operator connection; the message was not processed (sustained abuse closes the connection 1008).',
  HOST_UNREACHABLE: 'A client could not reach the host, or the connection closed or timed out before the reply.',
  // Images (sandbox-images/)
  IMAGE_CORRUPT: 'The archive is not a valid gzip/tar stream, or it is truncated.',
  IMAGE_ABSOLUTE_PATH: 'An entry path is absolute.',
  IMAGE_PATH_TRAVERSAL: 'An entry path contains a `..` segment.',
  IMAGE_PATH_COLLISION: 'Two entry paths collide after Unicode normalisation or case folding.',
  IMAGE_DUPLICATE_ENTRY: 'The same path appears twice.',
  IMAGE_LINK: 'The archive contains a symbolic or hard link.',
  IMAGE_SPECIAL_FILE: 'The archive contains a device, FIFO or other non-regular entry.',
  IMAGE_PATH_TOO_DEEP: 'An entry path is nested deeper than the limit.',
  IMAGE_PATH_INVALID: 'An entry path is empty, too long, or uses characters the image format forbids.',
  IMAGE_TOO_MANY_FILES: 'The archive holds more files than the limit.',
  IMAGE_FILE_TOO_LARGE: 'One file decompresses past the per-file size limit.',
  IMAGE_TOO_LARGE: 'The archive decompresses past the total size limit (gzip bomb).',
  IMAGE_FILE_TYPE: 'A file type the format does not allow (executable bit, node_modules, unknown extension).',
  IMAGE_MANIFEST_MISSING: 'The archive has no `manifest.json`.',
  IMAGE_MANIFEST_INVALID: 'The manifest does not match the schema; `data.issues` lists why.',
  IMAGE_ENTRY_MISSING: 'The manifest `entry` is not a module in the image.',
  IMAGE_DIGEST_MISMATCH: 'The image digest differs from the one expected.',
  IMAGE_SIGNATURE_INVALID: 'The signature does not verify, or is missing where one is required.',
  IMAGE_UNTRUSTED_SIGNER: 'The image is signed by a key that is not in the trust store.',
  // HTTP API (host/http.ts, host/api/)
  FORBIDDEN: 'The credential is valid but its role may not use this endpoint (HTTP 403).',
  METHOD_NOT_ALLOWED: 'The path exists but not with this HTTP method; the `Allow` header lists the methods (HTTP 405).',
  PAYLOAD_TOO_LARGE: 'The request body is larger than the endpoint accepts; `data.limitBytes` is the limit (HTTP 413).',
  UNSUPPORTED_MEDIA_TYPE: 'The request body has a `Content-Type` the endpoint does not accept (HTTP 415).',
  QUEUE_FULL: 'The run queue is full; nothing was stored. Retry after `Retry-After` seconds (HTTP 429).',
  SHUTTING_DOWN: 'The host is closing and accepts no new work (HTTP 503).',
  SERVER_BUSY: 'The host holds as many connections as `http.maxConnections` allows; the connection was answered and closed. Retry after `Retry-After` seconds (HTTP 503).',
  TOO_MANY_CONNECTIONS: 'The client already holds as many event streams (`http.maxEventStreamsPerClient`) or operator WebSockets (`http.maxOperatorConnectionsPerToken`) as allowed; close one, or retry after `Retry-After` seconds (HTTP 429).',
  ADDRESS_IN_USE: 'The host cannot listen: another process holds its port (`listen.port`, `--port`). Nothing was left running.',
  LISTEN_FAILED: 'The host cannot listen on its address for another reason (permission denied, address not on this machine); `data.reason` says which. Nothing was left running.',
  // Audit and trust (host/audit/, host/trust/)
  AUDIT_FAILED: 'The audit record could not be made durable (disk full, lock timeout, closed log); the action it was to precede was not performed.',
  AUDIT_TAMPERED: '`contained audit verify` found the chain broken (a record edited, deleted, inserted or moved) or a checkpoint that does not match; `data.firstBad` names the first bad record.',
  PROMOTION_REFUSED: 'A promotion to executed was refused: the action is destructive, financial or irreversible (the ceiling), or its evidence no longer meets the bar.',
  // CLI / usage
  USAGE: 'The command line is malformed (unknown command or flag, missing value).',
  AMBIGUOUS_ID: 'An id prefix given on the command line matches several pending requests; `data.candidates` lists them and nothing was decided.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, value);
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
