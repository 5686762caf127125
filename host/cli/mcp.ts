/**
 * `contained mcp --agent NAME [--config FILE] [--port N] [--in-process]`: an MCP server over stdio
 * that runs contained code as one agent (docs/mcp.md). The identity comes from the command line:
 * whoever can start this process with this config can act as the agent (the same trust as reading
 * the host's data folder), so no token is asked for; the agent must exist and not be revoked.
 *
 * The process IS a host: it opens the config's store, capabilities and gate exactly as `contained
 * host` does, and listens on the config's port (or `--port`; 0 picks a free one) so operators
 * decide assisted and escalated calls as for any host — over the operator WebSocket
 * (`contained operator --url …`), the web console or `contained approve|deny`. stdout carries
 * MCP only; the host's log and its URL go to stderr. When the client closes stdin the live runs
 * are cancelled and the host closes.
 */
import pino from 'pino';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { ContainedError } from '../../runtime/errors.js';
import { findActiveAgent } from '../agents.js';
import { loadHostConfig } from '../config.js';
import { startHost } from '../host.js';
import { createHostLogger } from '../logger.js';
import { createMcpSession } from '../mcp/server.js';
import { openStore } from '../store/open-store.js';
import { storeLocation } from '../store/store-location.js';
import { type CliIo, parseFlags, stringFlag } from './args.js';
import { versions } from './version.js';

export const MCP_USAGE = `Usage: contained mcp --agent NAME [--config FILE] [--port N] [--in-process]

An MCP server over stdio (for an MCP client's "mcpServers": command "contained", args ["mcp", …])
whose tool "run" runs JavaScript in a sandbox as agent NAME (contained agent create), under that
agent's grants; "run_image" runs a stored image. The process is a host on the config's port (--port
to change it, 0 for a free one): operators decide assisted calls there, over the operator channel
or the web console. stdout carries MCP only; logs and the host's URL go to stderr. docs/mcp.md.
`;

export async function mcpCommand(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    agent: { type: 'string' },
    config: { type: 'string' },
    port: { type: 'string' },
    'in-process': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    io.stdout(MCP_USAGE);
    return 0;
  }
  if (positionals.length > 0) throw new ContainedError('USAGE', `unexpected argument "${positionals[0]}"\n\n${MCP_USAGE}`);
  const name = stringFlag(values, 'agent');
  if (name === undefined || name === '') throw new ContainedError('USAGE', `--agent is required\n\n${MCP_USAGE}`);
  const config = await loadHostConfig(stringFlag(values, 'config'));
  const portText = stringFlag(values, 'port');
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw new ContainedError('USAGE', `--port must be 0-65535 (got ${JSON.stringify(portText)})`);
    config.listen.port = Number(portText);
  }
  // Who is asking comes first: an unknown agent is refused before a host starts (or finds its
  // data folder held by another host).
  const lookup = await openStore(storeLocation(config));
  try {
    if (!(await findActiveAgent(lookup, name))) throw new ContainedError('UNAUTHENTICATED', `no active agent named "${name}" (contained agent create --name ${name} --subject …)`);
  } finally {
    await lookup.close();
  }
  // stdout is the MCP channel: the log goes to stderr.
  const logger = createHostLogger({}, pino.destination(2));
  let host;
  try {
    host = await startHost({ config, logger, isolation: values['in-process'] ? 'in-process' : 'worker' });
  } catch (error) {
    if (error instanceof ContainedError && error.code === 'ADDRESS_IN_USE') {
      // Most likely `contained host` with this config: two hosts must not share one data folder.
      throw new ContainedError(
        'ADDRESS_IN_USE',
        `${error.message}\nIf a contained host already serves this config, connect the MCP client to it over HTTP instead: ` +
          `url http://${config.listen.host}:${config.listen.port}/v1/mcp with "Authorization: Bearer <agent token>" (docs/mcp.md).`,
        { cause: error },
      );
    }
    throw error;
  }
  let session;
  try {
    const agent = await findActiveAgent(host.store, name);
    if (!agent) throw new ContainedError('UNAUTHENTICATED', `no active agent named "${name}" (contained agent create --name ${name} --subject …)`);
    session = await createMcpSession(
      {
        runs: host.runs,
        grants: host.grants,
        instances: host.instances,
        metrics: host.metrics,
        logger,
        version: versions()['ai-contained'],
        agentActive: async (id) => (await host.store.listAgents()).some((a) => a.id === id && a.revokedAt === undefined),
      },
      agent,
      config.mcp,
      'stdio',
    );
  } catch (error) {
    await host.close();
    throw error;
  }
  io.stderr(`contained mcp: agent ${name} over stdio; operators decide at ${host.url?.replace(/^http/, 'ws')}/v1/operator and ${host.url}/console/\n`);
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
    process.stdin.once('end', () => resolve());
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await session.server.connect(transport);
  await closed;
  await session.cancelAll('the MCP client went away');
  await session.server.close().catch(() => undefined);
  await host.close();
  return 0;
}
