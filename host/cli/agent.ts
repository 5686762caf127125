/**
 * `contained agent create|list|revoke`: agent identities for MCP clients (host/agents.ts,
 * docs/mcp.md). `create` prints the agent token once (stdout) with a warning on stderr; `list`
 * never shows hashes; `revoke` takes the agent's name (or id) and takes effect at the token's next
 * use (an open HTTP session is refused at its next request).
 *
 * Exit codes: 0 ok; 2 usage or invalid argument (bad name or subject, name in use); 1 anything else.
 */
import { ContainedError } from '../../runtime/errors.js';
import { createAgent } from '../agents.js';
import type { AgentRecord } from '../store/agents.js';
import { locateState, openForRead, openForWrite, withStore } from '../store/location.js';
import { type CliIo, parseFlags, runSubcommand, STATE_FLAGS, stringFlag } from './args.js';
import { author, isoTime, noPositionals, requireFlag, table } from './grant.js';

export const AGENT_USAGE = `Usage:
  contained agent create --name NAME --subject SUBJECT [--by NAME] [--json]
                         [--config FILE] [--data-dir DIR]
  contained agent list [--json] [--config FILE] [--data-dir DIR]
  contained agent revoke NAME|ID [--config FILE] [--data-dir DIR]

An agent is the identity of an MCP client ('contained mcp', docs/mcp.md). SUBJECT is what its runs
carry and what grants name: sha256:<64 hex> or <image name>@sha256:<signer key id>
(contained grant add --subject SUBJECT …). The agent token is printed once; only its sha256 is stored.
`;

const COMMON = STATE_FLAGS;

export async function agentCommand(argv: string[], io: CliIo): Promise<number> {
  return runSubcommand('agent', argv, io, AGENT_USAGE, { create: agentCreate, list: agentList, revoke: agentRevoke });
}

function publicView(record: AgentRecord): Omit<AgentRecord, 'hash'> {
  const { hash: _hash, ...rest } = record;
  return rest;
}

async function agentCreate(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(argv, { ...COMMON, name: { type: 'string' }, subject: { type: 'string' }, by: { type: 'string' } });
  if (values.help) {
    io.stdout(AGENT_USAGE);
    return 0;
  }
  noPositionals(positionals, AGENT_USAGE);
  const name = requireFlag(values, 'name', AGENT_USAGE);
  const subject = requireFlag(values, 'subject', AGENT_USAGE);
  const by = author(values);
  const location = await locateState({ configFlag: stringFlag(values, 'config'), dataDirFlag: stringFlag(values, 'data-dir') });
  const { token, record } = await withStore(await openForWrite(location), (store) => createAgent({ name, subject, createdBy: by }, store));
  if (values.json) {
    io.stdout(`${JSON.stringify({ ...publicView(record), token })}\n`);
  } else {
    io.stdout(`${token}\n`);
    io.stderr(`agent ${record.name} (${record.id}, subject ${record.subject}) created.\n`);
  }
  io.stderr('warning: this is the only time the agent token is shown; it is not stored (only its sha256 is). Keep it secret.\n');
  return 0;
}

async function agentList(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(argv, COMMON);
  if (values.help) {
    io.stdout(AGENT_USAGE);
    return 0;
  }
  noPositionals(positionals, AGENT_USAGE);
  const location = await locateState({ configFlag: stringFlag(values, 'config'), dataDirFlag: stringFlag(values, 'data-dir') });
  const store = await openForRead(location);
  const agents = (store ? await withStore(store, (s) => s.listAgents()) : []).map(publicView);
  if (values.json) {
    io.stdout(`${JSON.stringify(agents, null, 2)}\n`);
    return 0;
  }
  if (agents.length === 0) {
    io.stdout('no agents\n');
    return 0;
  }
  io.stdout(
    table(
      ['ID', 'NAME', 'SUBJECT', 'CREATED', 'BY', 'STATUS'],
      agents.map((a) => [a.id, a.name, a.subject, isoTime(a.createdAt), a.createdBy, a.revokedAt === undefined ? 'active' : `revoked ${isoTime(a.revokedAt)}`]),
    ),
  );
  return 0;
}

async function agentRevoke(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(argv, COMMON);
  if (values.help) {
    io.stdout(AGENT_USAGE);
    return 0;
  }
  if (positionals.length !== 1 || positionals[0] === undefined) throw new ContainedError('USAGE', `agent revoke takes one agent name or ID\n\n${AGENT_USAGE}`);
  const which = positionals[0];
  const location = await locateState({ configFlag: stringFlag(values, 'config'), dataDirFlag: stringFlag(values, 'data-dir') });
  const store = await openForRead(location);
  const result = store
    ? await withStore(store, async (s) => {
        const all = await s.listAgents();
        // A name means its active agent; an id means exactly that record (revoked or not).
        const before = all.find((a) => a.id === which) ?? all.find((a) => a.name === which && a.revokedAt === undefined);
        return before ? { before, after: await s.revokeAgent(before.id, Date.now()) } : undefined;
      })
    : undefined;
  if (!result?.after) throw new ContainedError('NOT_FOUND', `no active agent named ${which} (and no agent with that id) in ${location.storeFile}`);
  const { before, after } = result;
  if (values.json) io.stdout(`${JSON.stringify(publicView(after), null, 2)}\n`);
  else if (before.revokedAt === undefined) io.stdout(`revoked agent ${after.name} (${after.id})\n`);
  else io.stdout(`agent ${after.name} (${after.id}) was already revoked at ${isoTime(after.revokedAt)}\n`);
  return 0;
}
