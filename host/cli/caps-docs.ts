/**
 * `contained caps docs --config FILE`: the agent-facing API (caps.d.ts or Markdown) of the
 * capabilities a host config offers, as the host would start them — including `mcp` capabilities,
 * whose methods and types exist only once their server has listed its tools (grant specs cannot
 * name them: their kind is started by the host). Starts the configured capabilities (an mcp server
 * is started and stopped again), prints, closes. Without `--config`, `contained caps` as before
 * (capabilities/cli.ts: grant specs).
 *
 * Exit codes: 0 ok; 2 usage or invalid config; 1 anything else (an mcp server that cannot start).
 */
import { capsCommand } from '../../capabilities/cli.js';
import { generateCapsDts, generateCapsMarkdown } from '../../capabilities/docs.js';
import type { CapabilityInstance } from '../../capabilities/sdk/instance.js';
import { ContainedError } from '../../runtime/errors.js';
import { type CliIo, listFlag, parseFlags, stringFlag } from './args.js';

export const CAPS_CONFIG_USAGE = `Usage: contained caps docs --config FILE [--capability NAME…] [--format ts|md]

Print the agent-facing API of the capabilities the host config offers (all, or those named), as
the host starts them: mcp capabilities get one method per tool of their server, with TypeScript
types generated from each tool's JSON Schema.
`;

export async function capsDocsCommand(argv: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'docs' || !rest.some((a) => a === '--config' || a.startsWith('--config='))) return capsCommand(argv, io);
  const { values, positionals } = parseFlags(rest, {
    config: { type: 'string' },
    capability: { type: 'string', multiple: true },
    format: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    io.stdout(CAPS_CONFIG_USAGE);
    return 0;
  }
  if (positionals.length > 0) throw new ContainedError('USAGE', `unexpected argument "${positionals[0]}"\n\n${CAPS_CONFIG_USAGE}`);
  const format = stringFlag(values, 'format') ?? 'ts';
  if (format !== 'ts' && format !== 'md') throw new ContainedError('USAGE', `--format must be ts or md, not "${format}"`);
  // Loaded only here: `contained caps docs --grant …` does not load the host config module.
  const { loadHostConfig, openCapabilities, openCapability } = await import('../config.js');
  const config = await loadHostConfig(stringFlag(values, 'config'));
  const names = listFlag(values, 'capability');
  const instances: CapabilityInstance[] = [];
  const closers: (() => Promise<void>)[] = [];
  try {
    if (names.length === 0) {
      const opened = await openCapabilities(config);
      closers.push(() => opened.close());
      instances.push(...opened.instances.values());
    } else {
      for (const name of names) {
        const opened = await openCapability(config, name);
        closers.push(() => opened.close());
        instances.push(opened.instance);
      }
    }
    io.stdout(format === 'md' ? generateCapsMarkdown(instances) : generateCapsDts(instances));
    return 0;
  } finally {
    await Promise.allSettled(closers.map((c) => c()));
  }
}
