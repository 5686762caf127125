/**
 * `contained operator` (interactive console), `contained approve ID` and `contained deny ID` (for
 * scripts), all clients of the operator channel. The token comes from `--token` or, better (argv
 * is visible to other local users), from `CONTAINED_TOKEN`; the URL from `--url` or `CONTAINED_URL`,
 * the host's http(s):// address or its ws(s):// channel (endpoint.ts). `approve`/`deny` take a full
 * id or an unambiguous prefix of a pending request's id (request-id.ts).
 *
 * Exit codes: 0 success; 1 and one line `CODE: message` when the host refuses (a typed error,
 * including INVALID_ARGUMENT from the host) or cannot be reached (HOST_UNREACHABLE); 2 for usage
 * errors (including AMBIGUOUS_ID).
 */
import { ContainedError } from '../../runtime/errors.js';
import { ARGS_DIGEST_PATTERN } from '../gate/proposal.js';
import { GRANT_SPANS, type GrantSpan } from '../model.js';
import type { DecideInput } from '../operator/backend.js';
import { OperatorClient } from '../operator/client.js';
import { runOperatorTerminal } from '../operator/terminal.js';
import type { WireRequestView } from '../operator/protocol.js';
import { type CliIo, parseFlags, stringFlag } from './args.js';
import { endpointFrom } from './endpoint.js';
import { resolveRequestId } from './request-id.js';

export const DEFAULT_OPERATOR_URL = 'ws://127.0.0.1:7420/v1/operator';

type Env = Record<string, string | undefined>;

const CONNECTION_FLAGS = { url: { type: 'string' }, token: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const;

const OPERATOR_HELP = `Usage: contained operator [--url URL] [--token TOKEN]

Interactive operator terminal: lists pending requests as they arrive; approve, edit or deny them.
  --url URL       the host: http://HOST:PORT or ws://HOST:PORT/v1/operator (default $CONTAINED_URL, else ${DEFAULT_OPERATOR_URL})
  --token TOKEN   operator token (default $CONTAINED_TOKEN; prefer the variable: argv is visible to others)
`;

const APPROVE_HELP = `Usage: contained approve ID [--digest sha256:HEX] [--span once|run|always] [--args JSON] [--note TEXT] [--url URL] [--token TOKEN]

Approve a pending request. ID is its id, or at least 4 leading characters that name exactly one
pending request. An approval approves exact arguments: without --digest, the arguments the agent
asked for; with --digest, the arguments of that digest (as \`contained operator\` shows it, "args
digest"), e.g. after someone edited them. If the request's arguments are no longer those, the host
refuses STALE_REQUEST and nothing is approved. --args replaces the arguments (approve with edits, a
new proposal that every other approver must approve again; the host re-validates them); --span says
how far an escalation's approval reaches (default once).
Exit 0 when the approval was recorded, 1 with "CODE: message" when the host refused it, 2 on usage errors.
`;

const DENY_HELP = `Usage: contained deny ID --reason TEXT [--url URL] [--token TOKEN]

Deny a pending request (ID as for approve); the agent sees the reason.
Exit 0 when the denial was recorded, 1 with "CODE: message" when the host refused it, 2 on usage errors.
`;

export async function operatorCommand(argv: string[], io: CliIo, env: Env = process.env): Promise<number> {
  const { values, positionals } = parseFlags(argv, CONNECTION_FLAGS);
  if (values.help) return help(io, OPERATOR_HELP);
  if (positionals.length) throw new ContainedError('USAGE', `operator takes no arguments (got ${JSON.stringify(positionals[0])})`);
  const target = connection(values, env);
  return withClient(io, target, (client) => runOperatorTerminal(client, { input: process.stdin, output: process.stdout }));
}

export async function approveCommand(argv: string[], io: CliIo, env: Env = process.env): Promise<number> {
  const { values, positionals } = parseFlags(argv, { ...CONNECTION_FLAGS, digest: { type: 'string' }, span: { type: 'string' }, args: { type: 'string' }, note: { type: 'string' } });
  if (values.help) return help(io, APPROVE_HELP);
  const requestId = onePositional(positionals, 'approve');
  const span = stringFlag(values, 'span');
  if (span !== undefined && !(GRANT_SPANS as readonly string[]).includes(span)) {
    throw new ContainedError('USAGE', `--span takes once, run or always (got ${JSON.stringify(span)})`);
  }
  const rawArgs = stringFlag(values, 'args');
  let args: unknown;
  if (rawArgs !== undefined) {
    try {
      args = JSON.parse(rawArgs);
    } catch (error) {
      throw new ContainedError('USAGE', `--args is not JSON: ${(error as Error).message}`);
    }
  }
  const note = stringFlag(values, 'note');
  const digest = stringFlag(values, 'digest');
  if (digest !== undefined && !ARGS_DIGEST_PATTERN.test(digest)) {
    throw new ContainedError('USAGE', `--digest takes sha256: and 64 lower-case hex digits, as \`contained operator\` prints it (got ${JSON.stringify(digest.slice(0, 80))})`);
  }
  const input: DecideInput = {
    requestId,
    verdict: 'approve',
    ...(digest !== undefined ? { argsDigest: digest } : {}),
    ...(span !== undefined ? { span: span as GrantSpan } : {}),
    ...(rawArgs !== undefined ? { args } : {}),
    ...(note !== undefined ? { note } : {}),
  };
  const target = connection(values, env);
  return withClient(io, target, async (client) => report(io, await client.decide({ ...input, requestId: resolveRequestId(client.pending, requestId) })));
}

export async function denyCommand(argv: string[], io: CliIo, env: Env = process.env): Promise<number> {
  const { values, positionals } = parseFlags(argv, { ...CONNECTION_FLAGS, reason: { type: 'string' } });
  if (values.help) return help(io, DENY_HELP);
  const requestId = onePositional(positionals, 'deny');
  const reason = stringFlag(values, 'reason')?.trim();
  if (!reason) throw new ContainedError('USAGE', 'deny needs --reason TEXT (the agent sees it)');
  const target = connection(values, env);
  return withClient(io, target, async (client) => report(io, await client.decide({ requestId: resolveRequestId(client.pending, requestId), verdict: 'deny', reason })));
}

const UNDO_HELP = `Usage: contained undo ID [--url URL] [--token TOKEN]

Undo a committed changeset (a staged run's effects, docs/changesets.md): its fs, kv and sql effects
are restored from the before-images the commit kept, within the host's undo window. Refused with
CHANGESET_CONFLICT, restoring nothing, when anything it changed has changed since. E-mail and HTTP
requests it sent are never undone. ID is the changeset request's full id. Approvers and admins.
`;

/** \`contained undo ID\`: undo a committed changeset's local effects. */
export async function undoCommand(argv: string[], io: CliIo, env: Env = process.env): Promise<number> {
  const { values, positionals } = parseFlags(argv, CONNECTION_FLAGS);
  if (values.help) return help(io, UNDO_HELP);
  const requestId = onePositional(positionals, 'undo');
  const target = connection(values, env);
  return withClient(io, target, async (client) => {
    const undone = await client.undoChangeset(requestId);
    io.stdout(`${undone.requestId}: undone (${undone.restored} resource${undone.restored === 1 ? '' : 's'} restored from before-images)\n`);
    return 0;
  });
}

function help(io: CliIo, text: string): number {
  io.stdout(text);
  return 0;
}

function onePositional(positionals: string[], command: string): string {
  if (positionals.length !== 1 || !positionals[0]) throw new ContainedError('USAGE', `${command} takes exactly one request ID`);
  return positionals[0];
}

function connection(values: Record<string, unknown>, env: Env): { url: string; token: string } {
  const url = endpointFrom(values, env).operator;
  const token = (typeof values.token === 'string' ? values.token : undefined) ?? env.CONTAINED_TOKEN;
  if (!token) throw new ContainedError('USAGE', 'no operator token: pass --token or set CONTAINED_TOKEN');
  return { url, token };
}

/** Connect, run, close; a typed failure from the host is `CODE: message` and exit 1. */
async function withClient(io: CliIo, target: { url: string; token: string }, body: (client: OperatorClient) => Promise<number>): Promise<number> {
  let client: OperatorClient | undefined;
  try {
    client = await OperatorClient.connect(target);
    return await body(client);
  } catch (error) {
    if (!(error instanceof ContainedError)) throw error;
    io.stderr(`${error.code}: ${error.message}\n`);
    return error.code === 'USAGE' || error.code === 'AMBIGUOUS_ID' ? 2 : 1;
  } finally {
    await client?.close();
  }
}

function report(io: CliIo, request: WireRequestView): number {
  if (request.status === 'pending') {
    io.stdout(`${request.id}: approval recorded (${request.approvals.length}/${request.approvalsRequired}); waiting for another approver\n`);
  } else if (request.status === 'denied') {
    io.stdout(`${request.id}: denied: ${request.denyReason ?? ''}\n`);
  } else if (request.status === 'approved' && request.kind === 'changeset') {
    io.stdout(`${request.id}: approved; the host commits the changeset\n`);
  } else if (request.status === 'approved' && request.kind === 'recommendation' && request.runEnded === true) {
    io.stdout(`${request.id}: approved (its run had ended: the host performs the action on its own)\n`);
  } else {
    io.stdout(`${request.id}: ${request.status}\n`);
  }
  return 0;
}
