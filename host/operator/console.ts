/**
 * The interactive terminal client (`contained operator`): prints pending requests as they arrive
 * and reads commands with node:readline. It only formats and forwards; every decision is checked
 * by the host, and a refusal is printed as `CODE: message` without ending the session.
 *
 *   list                              pending requests
 *   approve ID [once|run|always]      approve (escalations: how far it reaches)
 *   edit ID <json-args>               approve with edited arguments
 *   deny ID <reason…>                 deny, with the reason the agent will see
 *   help, quit
 *
 * IDs may be shortened to any unique prefix of a pending request's id.
 */
import { createInterface } from 'node:readline';
import { ContainedError } from '../../runtime/errors.js';
import { GRANT_SPANS, type GrantSpan } from '../model.js';
import type { DecideInput } from './backend.js';
import type { OperatorClient, OperatorEvent } from './client.js';
import type { RequestView } from './protocol.js';

export interface ConsoleIo {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  /** Treat the streams as a TTY (prompt redraws); default: whether output is one. */
  terminal?: boolean;
  now?: () => number;
}

const HELP = `commands:
  list                              show pending requests
  approve ID [once|run|always]      approve (escalations: once, for this run, or always)
  edit ID <json-args>               approve with edited arguments
  deny ID <reason…>                 deny with a reason (the agent sees it)
  help                              this text
  quit                              leave
`;

/** Run the console until `quit`, end of input (0) or the connection is lost (1). */
export function runOperatorConsole(client: OperatorClient, io: ConsoleIo): Promise<number> {
  const now = io.now ?? Date.now;
  const out = (text: string): void => void io.output.write(text);
  const terminal = io.terminal ?? Boolean((io.output as { isTTY?: boolean }).isTTY);
  const rl = createInterface({ input: io.input, output: io.output, terminal, prompt: 'operator> ' });

  return new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number): void => {
      if (done) return;
      done = true;
      offEvent();
      offClose();
      rl.close();
      resolve(code);
    };
    const print = (text: string): void => {
      if (done) return;
      if (terminal) out('\r\x1b[K');
      out(text);
      rl.prompt(true);
    };

    // Your own decision arrives twice (its reply and the event everyone gets): print it once.
    const shown = new Set<string>();
    const once = (request: RequestView, text: string): void => {
      const key = `${request.id}:${request.status}:${request.approvals.length}`;
      if (shown.has(key)) return;
      shown.add(key);
      print(text);
    };
    const offEvent = client.onEvent((event) => {
      if (event.type === 'updated' || event.type === 'resolved') once(event.request, formatEvent(event, now()));
      else print(formatEvent(event, now()));
    });
    const offClose = client.onClose((error) => {
      print(`${error.code}: ${error.message}\n`);
      finish(1);
    });

    out(`connected as ${client.operator.name} (${client.operator.role})\n`);
    out(formatPending([...client.pending.values()], now()));
    out('type "help" for commands\n');
    rl.prompt();

    // One command at a time, in order, even if lines arrive faster than the host answers.
    let queue = Promise.resolve();
    rl.on('line', (line) => {
      queue = queue.then(async () => {
        if (done) return;
        const result = await execute(client, line.trim(), now);
        if (result === 'quit') return finish(0);
        if (typeof result === 'string') print(result);
        else once(result, formatDecision(result));
      });
    });
    rl.on('close', () => {
      void queue.then(() => finish(0));
    });
  });
}

/** Text to print, 'quit', or the request a decision returned. */
async function execute(client: OperatorClient, line: string, now: () => number): Promise<string | RequestView> {
  const [command = '', idArg, ...rest] = line.split(/\s+/);
  try {
    switch (command) {
      case '':
        return '';
      case 'help':
      case '?':
        return HELP;
      case 'quit':
      case 'exit':
        return 'quit';
      case 'list':
      case 'ls':
        return formatPending([...client.pending.values()], now());
      case 'approve': {
        const requestId = resolveId(client, idArg);
        if (rest.length > 1 || (rest[0] !== undefined && !(GRANT_SPANS as readonly string[]).includes(rest[0]))) {
          return 'usage: approve ID [once|run|always]\n';
        }
        const input: DecideInput = { requestId, verdict: 'approve', ...(rest[0] ? { span: rest[0] as GrantSpan } : {}) };
        return await client.decide(input);
      }
      case 'edit': {
        const requestId = resolveId(client, idArg);
        const json = /^\S+\s+\S+\s+([\s\S]+)$/.exec(line)?.[1]?.trim();
        if (!json) return 'usage: edit ID <json-args>\n';
        let args: unknown;
        try {
          args = JSON.parse(json);
        } catch (error) {
          return `INVALID_ARGUMENT: edited arguments are not JSON (${(error as Error).message})\n`;
        }
        return await client.decide({ requestId, verdict: 'approve', args });
      }
      case 'deny': {
        const requestId = resolveId(client, idArg);
        const reason = rest.join(' ').trim();
        if (!reason) return 'usage: deny ID <reason…>\n';
        return await client.decide({ requestId, verdict: 'deny', reason });
      }
      default:
        return `unknown command "${command}"; type "help"\n`;
    }
  } catch (error) {
    if (error instanceof ContainedError) return `${error.code}: ${error.message}\n`;
    return `INTERNAL: ${(error as Error).message}\n`;
  }
}

/** A full id, or the one pending id the prefix names. */
function resolveId(client: OperatorClient, id: string | undefined): string {
  if (!id) throw new ContainedError('USAGE', 'which request? give its ID');
  if (client.pending.has(id)) return id;
  const matches = [...client.pending.keys()].filter((k) => k.startsWith(id));
  if (matches.length > 1) throw new ContainedError('USAGE', `"${id}" matches ${matches.length} requests; type more of the id`);
  return matches[0] ?? id;
}

export function formatPending(requests: RequestView[], now: number): string {
  if (requests.length === 0) return 'no pending requests\n';
  const sorted = [...requests].sort((a, b) => a.createdAt - b.createdAt);
  return `${sorted.length} pending request${sorted.length === 1 ? '' : 's'}:\n${sorted.map((r) => formatRequest(r, now)).join('')}`;
}

export function formatRequest(r: RequestView, now: number): string {
  const target = r.method ? `${r.capability}.${r.method}` : `${r.capability} (capability requested)`;
  const risk = r.risk ? Object.entries(r.risk).filter(([, v]) => v).map(([k]) => k).join(', ') || 'none' : 'unknown (treated as worst case)';
  const lines = [
    `── ${r.id}  ${r.kind}  ${target}`,
    `   agent ${shortSubject(r.subject)}  run ${r.runId}${r.runEnded ? ' (run ended: approving performs the action without it)' : ''}`,
    `   risk: ${risk}   approvals ${r.approvals.length}/${r.approvalsRequired}${r.approvals.length ? ` (${r.approvals.map((a) => a.operator).join(', ')})` : ''}   expires in ${duration(r.expiresAt - now)}`,
    `   why: ${r.why}`,
  ];
  if (r.reason) lines.push(`   reason: ${JSON.stringify(r.reason)}`);
  if (r.args !== undefined) lines.push(`   args: ${indent(JSON.stringify(r.args, null, 2))}`);
  if (r.requestedScope !== undefined) lines.push(`   scope: ${indent(JSON.stringify(r.requestedScope, null, 2))}`);
  return `${lines.join('\n')}\n`;
}

export function formatEvent(event: OperatorEvent, now: number): string {
  switch (event.type) {
    case 'created':
      return `new request:\n${formatRequest(event.request, now)}`;
    case 'updated':
    case 'resolved':
      return formatDecision(event.request);
    case 'grant':
      return `grant ${event.grant.id} ${event.change} (${event.grant.capability}, ${event.grant.mode})\n`;
    case 'run':
      return `run ${event.run.id}: ${event.run.status}\n`;
  }
}

function formatDecision(r: RequestView): string {
  switch (r.status) {
    case 'pending':
      return `${r.id}: approvals ${r.approvals.length}/${r.approvalsRequired} (${r.approvals.map((a) => a.operator).join(', ')}); waiting for another approver\n`;
    case 'approved':
      return `${r.id}: approved by ${(r.resolvedBy ?? r.approvals.map((a) => a.operator)).join(', ')}\n`;
    case 'denied':
      return `${r.id}: denied${r.resolvedBy?.length ? ` by ${r.resolvedBy.join(', ')}` : ''}: ${r.denyReason ?? ''}\n`;
    case 'expired':
      return `${r.id}: expired\n`;
    case 'run_gone':
      return `${r.id}: closed (run gone)\n`;
    case 'cancelled':
      return `${r.id}: withdrawn (its run was cancelled${r.resolvedBy?.length ? ` by ${r.resolvedBy.join(', ')}` : ''})\n`;
  }
}

function shortSubject(subject: string | undefined): string {
  if (subject === undefined) return 'unknown';
  return /^sha256:[0-9a-f]{64}$/.test(subject) ? `${subject.slice(0, 19)}…` : subject;
}

function duration(ms: number): string {
  if (ms <= 0) return 'now';
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s}s` : `${Math.round(s / 60)}m`;
}

function indent(text: string): string {
  return text.replace(/\n/g, '\n   ');
}
