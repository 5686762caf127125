/**
 * The interactive terminal client (`contained operator`): prints pending requests as they arrive
 * and reads commands with node:readline. It only formats and forwards; every decision is checked
 * by the host, and a refusal is printed as `CODE: message` without ending the session.
 *
 *   list                              pending requests
 *   approve ID [once|run|always]      approve the arguments shown (escalations: how far it reaches)
 *   edit ID <json-args>               approve with edited arguments (a new proposal)
 *   deny ID <reason…>                 deny, with the reason the agent will see
 *   help, quit
 *
 * IDs may be shortened to any unique prefix of a pending request's id.
 *
 * An approval names the digest of the arguments this terminal last printed for the request (and
 * an edit, the arguments it was made from): if they changed since — someone edited them — the host
 * refuses it STALE_REQUEST instead of counting it for arguments nobody here read. A change of the
 * arguments is printed in full as it arrives (terminal-format.ts).
 */
import { createInterface } from 'node:readline';
import { ContainedError } from '../../runtime/errors.js';
import { GRANT_SPANS, type GrantSpan } from '../model.js';
import type { DecideInput } from './backend.js';
import type { OperatorClient } from './client.js';
import { formatDecision, formatEvent, formatNewProposal, formatPending, formatRequest } from './terminal-format.js';
import type { WireRequestView } from './protocol.js';

export { formatEvent, formatPending, formatRequest } from './terminal-format.js';

export interface TerminalIo {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  /** Treat the streams as a TTY (prompt redraws); default: whether output is one. */
  terminal?: boolean;
  now?: () => number;
}

const HELP = `commands:
  list                              show pending requests
  approve ID [once|run|always]      approve the arguments shown (escalations: once, for this run, or always)
  edit ID <json-args>               approve with edited arguments (a new proposal: others must approve it again)
  deny ID <reason…>                 deny with a reason (the agent sees it)
  help                              this text
  quit                              leave
`;

/** Run the terminal until `quit`, end of input (0) or the connection is lost (1). */
export function runOperatorTerminal(client: OperatorClient, io: TerminalIo): Promise<number> {
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

    // The digest of the arguments last printed per request: what an approval from here approves.
    const shownDigest = new Map<string, string>();
    const show = (requests: WireRequestView[]): void => {
      for (const r of requests) shownDigest.set(r.id, r.proposal.argsDigest);
    };
    // Your own decision arrives twice (its reply and the event everyone gets): print it once.
    const shown = new Set<string>();
    const once = (request: WireRequestView, text: string): void => {
      const key = `${request.id}:${request.status}:${request.approvals.length}`;
      if (shown.has(key)) return;
      shown.add(key);
      print(text);
    };
    /** A decision or progress; a pending request whose arguments changed since it was shown is shown again in full. */
    const progress = (request: WireRequestView): void => {
      const changed = request.status === 'pending' && shownDigest.get(request.id) !== request.proposal.argsDigest;
      if (request.status !== 'pending') shownDigest.delete(request.id);
      if (!changed) return once(request, formatDecision(request));
      show([request]);
      once(request, formatNewProposal(request, now()));
    };
    const offEvent = client.onEvent((event) => {
      if (event.type === 'updated' || event.type === 'resolved') progress(event.request);
      else {
        if (event.type === 'created') show([event.request]);
        print(formatEvent(event, now()));
      }
    });
    const offClose = client.onClose((error) => {
      print(`${error.code}: ${error.message}\n`);
      finish(1);
    });

    out(`connected as ${client.operator.name} (${client.operator.role})\n`);
    show([...client.pending.values()]);
    out(formatPending([...client.pending.values()], now()));
    out('type "help" for commands\n');
    rl.prompt();

    // One command at a time, in order, even if lines arrive faster than the host answers.
    let queue = Promise.resolve();
    rl.on('line', (line) => {
      queue = queue.then(async () => {
        if (done) return;
        const result = await execute(client, line.trim(), { now, shownDigest, show });
        if (result === 'quit') return finish(0);
        if (typeof result === 'string') print(result);
        else progress(result);
      });
    });
    rl.on('close', () => {
      void queue.then(() => finish(0));
    });
  });
}

interface Shown {
  now: () => number;
  /** The digest of the arguments last printed per request. */
  shownDigest: ReadonlyMap<string, string>;
  show(requests: WireRequestView[]): void;
}

/** Text to print, 'quit', or the request a decision returned. */
async function execute(client: OperatorClient, line: string, { now, shownDigest, show }: Shown): Promise<string | WireRequestView> {
  // What an approval from here approves: the arguments printed here (none printed: what the agent asked).
  const seen = (requestId: string): { argsDigest?: string } => {
    const digest = shownDigest.get(requestId);
    return digest === undefined ? {} : { argsDigest: digest };
  };
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
        show([...client.pending.values()]);
        return formatPending([...client.pending.values()], now());
      case 'approve': {
        const requestId = resolveId(client, idArg);
        if (rest.length > 1 || (rest[0] !== undefined && !(GRANT_SPANS as readonly string[]).includes(rest[0]))) {
          return 'usage: approve ID [once|run|always]\n';
        }
        const input: DecideInput = { requestId, verdict: 'approve', ...seen(requestId), ...(rest[0] ? { span: rest[0] as GrantSpan } : {}) };
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
        return await client.decide({ requestId, verdict: 'approve', args, ...seen(requestId) });
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
