/**
 * The `contained` command line: one dispatcher for every subcommand. Errors become one line
 * `CODE: message` on stderr and an exit code (2 for usage errors); never a stack trace.
 * Commands other than `version` are imported when invoked, so `contained run` never loads the host,
 * its store or the console (test/package-entry-imports.test.ts), and starts its sandbox worker
 * before it loads anything else (run-early.ts).
 */
import { ContainedError } from '../../runtime/errors.js';
import { type CliIo, processIo } from './args.js';
import { startRunWorkerEarly } from './run-early.js';
import { versionCommand } from './version.js';

const HELP = `contained — a sandboxed runtime for AI agents

Usage: contained <command> [options]

Commands:
  run <entry.js|image.tgz>   run an agent program in a sandbox and print its outcome
  sandbox start|stop|status  a resident sandbox process that makes contained run start faster
  image build|inspect|verify|sign|keygen
                             build, inspect, sign and verify sandbox images
  caps docs --grant SPEC…    print the agent-facing API of a set of grants (caps.d.ts / Markdown)
  caps docs --config FILE    … of the capabilities a host config offers, mcp servers' tools included
  host [--config FILE]       start the host: grants, modes, escalation to operators, run API
  submit <image.tgz>         submit a run to a running host and wait for its outcome
  demo                       build the example images and run report-digest (what npm start does)
  operator                   interactive operator terminal: pending requests, approve/edit/deny
  approve ID | deny ID       decide one request from a script (--span, --args / --reason)
  undo ID                    undo a committed changeset of a staged run (docs/changesets.md)
  grant add|list|revoke      manage the stored grants (subject, capability, methods, mode)
  token create|list|revoke   manage operator tokens (shown once, stored hashed)
  store migrate --to URL     copy the SQLite store (grants, tokens, requests, audit chain) into PostgreSQL
  agent create|list|revoke   manage agent identities for MCP clients (token shown once, stored hashed)
  mcp --agent NAME           an MCP server over stdio that runs contained code as that agent (docs/mcp.md)
  mcp-tools list|accept      tool changes of mcp capabilities waiting for an operator (docs/mcp-capability.md)
  audit verify|dangling|tail|query|export
                             the hash-chained audit log: verify it, find interrupted actions, read it
  review list|mark           after-the-fact review of executed actions (ok / error / critical)
  trust report|proposals|accept|decline
                             the trust ledger, phases, and promotion proposals
  version [--json]           print the versions of ai-contained, Node and isolated-vm

Run 'contained <command> --help' for a command's options.
`;

type Command = (argv: string[], io: CliIo) => Promise<number>;

const commands: Record<string, Command> = {
  run: async (argv, io) => (await import('./run.js')).runCommand(argv, io),
  sandbox: async (argv, io) => (await import('./sandbox.js')).sandboxCommand(argv, io),
  demo: async (argv, io) => (await import('./demo.js')).demoCommand(argv, io),
  image: async (argv, io) => (await import('../../sandbox-images/cli.js')).imageCommand(argv, io),
  caps: async (argv, io) => (await import('./caps-docs.js')).capsDocsCommand(argv, io),
  host: async (argv, io) => (await import('./host.js')).hostCommand(argv, io),
  submit: async (argv, io) => (await import('./host.js')).submitCommand(argv, io),
  operator: async (argv, io) => (await import('./operator.js')).operatorCommand(argv, io),
  approve: async (argv, io) => (await import('./operator.js')).approveCommand(argv, io),
  deny: async (argv, io) => (await import('./operator.js')).denyCommand(argv, io),
  undo: async (argv, io) => (await import('./operator.js')).undoCommand(argv, io),
  grant: async (argv, io) => (await import('./grant.js')).grantCommand(argv, io),
  token: async (argv, io) => (await import('./token.js')).tokenCommand(argv, io),
  store: async (argv, io) => (await import('./store.js')).storeCommand(argv, io),
  agent: async (argv, io) => (await import('./agent.js')).agentCommand(argv, io),
  mcp: async (argv, io) => (await import('./mcp.js')).mcpCommand(argv, io),
  'mcp-tools': async (argv, io) => (await import('./mcp-tools.js')).mcpToolsCommand(argv, io),
  audit: async (argv, io) => (await import('./audit.js')).auditCommand(argv, io),
  review: async (argv, io) => (await import('./review.js')).reviewCommand(argv, io),
  trust: async (argv, io) => (await import('./trust.js')).trustCommand(argv, io),
  version: versionCommand,
  '--version': versionCommand,
};

export async function main(argv: string[], io: CliIo = processIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(HELP);
    return name === undefined ? 2 : 0;
  }
  const command = Object.prototype.hasOwnProperty.call(commands, name) ? commands[name] : undefined;
  if (!command) {
    io.stderr(`USAGE: unknown command "${name}"\n\n${HELP}`);
    return 2;
  }
  // The sandbox worker starts while the run command is still being loaded (run-early.ts).
  if (name === 'run') startRunWorkerEarly(rest);
  try {
    return await command(rest, io);
  } catch (error) {
    if (error instanceof ContainedError) {
      io.stderr(`${error.code}: ${error.message}\n`);
      return error.code === 'USAGE' || error.code === 'AMBIGUOUS_ID' || error.code === 'INVALID_ARGUMENT' || error.code === 'INVALID_SCOPE' ? 2 : 1;
    }
    io.stderr(`INTERNAL: ${(error as Error)?.message ?? String(error)}\n`);
    return 1;
  }
}

const invokedDirectly = process.argv[1] !== undefined && /host[/\\]cli[/\\]main\.(ts|js)$/.test(process.argv[1]);
if (invokedDirectly) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
