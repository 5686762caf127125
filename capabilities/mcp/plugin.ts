/**
 * The `mcp` kind as a plugin (capabilities/plugin.ts): its host options are the server and the
 * operator's settings (`capabilities.<binding>.host` in the host config, options.ts), its `prepare`
 * step starts (or reaches) the server and defines the capability from its tool list, `create` binds
 * that definition to a scope, `close` stops the server at host shutdown.
 *
 * Accepted tool versions live in `<dataDir>/mcp-tools/` (approvals-file.ts), where
 * `contained mcp-tools` reads and accepts pending changes; without a data folder (a library caller)
 * they are kept in memory. A relative `command` (one with a slash) or `cwd` resolves against the
 * config file's folder. The MCP SDK, ajv and the rest load only when an mcp capability is prepared:
 * importing the registry (every `contained run`, every library user) costs a zod schema.
 */
import path from 'node:path';
import { definePlugin } from '../plugin.js';
import type { McpCapability } from './index.js';
import { isStdio, type McpOptions, mcpOptionsSchema } from './options.js';
import type { ToolEvent } from './tools.js';

/** The folder of accepted tool versions under a host's data folder. */
export function mcpToolsFolder(dataDir: string): string {
  return path.join(dataDir, 'mcp-tools');
}

export const mcpPlugin = definePlugin<McpOptions, McpCapability>({
  hostOptions: mcpOptionsSchema,
  prepare: async (context) => {
    const [{ startMcp }, { documentApprovals, fileApprovals, STORE_PREFIX }, { memoryApprovals }] = await Promise.all([import('./index.js'), import('./approvals-file.js'), import('./tools.js')]);
    const options = context.hostOptions;
    let server = options.server;
    if (isStdio(server)) {
      const command = server.command.includes('/') && !path.isAbsolute(server.command) ? context.resolvePath(server.command) : server.command;
      server = { ...server, command, ...(server.cwd !== undefined ? { cwd: context.resolvePath(server.cwd) } : {}) };
    }
    const logger = context.logger;
    const onToolEvent = (event: ToolEvent): void => {
      if (event.type === 'tool.withdrawn' || event.type === 'tool.new') {
        logger.warn({ ...event }, `mcp: ${event.type === 'tool.new' ? 'a new tool waits' : 'a tool is withdrawn and waits'} for an operator (contained mcp-tools list)`);
      } else {
        logger.info({ ...event }, `mcp: ${event.type}`);
      }
    };
    return startMcp(context.name, { ...options, server }, {
      secrets: context.secrets,
      logger,
      now: context.now,
      // The host's documents (a fleet's store: accepted once for every host), else files under the data folder.
      approvals: context.documents
        ? documentApprovals(context.documents, STORE_PREFIX, 'the host store')
        : context.dataDir === undefined
          ? memoryApprovals()
          : fileApprovals(mcpToolsFolder(context.dataDir)),
      onToolEvent,
    });
  },
  create: (scope, _context, options, prepared) => prepared.create(scope, options),
  close: (prepared) => prepared.close(),
});
