/**
 * A small, strict argument parser for the CLI: known flags only, typed values, every mistake a
 * `USAGE` error naming the flag. (Node's util.parseArgs does the tokenising.)
 */
import { parseArgs } from 'node:util';
import { ContainedError } from '../../runtime/errors.js';

export type FlagSpec = Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

export function parseFlags(argv: string[], spec: FlagSpec): Parsed {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: spec, allowPositionals: true, strict: true });
    return { values: values as Parsed['values'], positionals };
  } catch (error) {
    throw new ContainedError('USAGE', (error as Error).message.replace(/\. To specify a positional.*$/s, ''));
  }
}

export function intFlag(values: Parsed['values'], name: string): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || !/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw)) || Number(raw) <= 0) {
    throw new ContainedError('USAGE', `--${name} takes a positive whole number (got ${JSON.stringify(raw)})`);
  }
  return Number(raw);
}

export function stringFlag(values: Parsed['values'], name: string): string | undefined {
  const raw = values[name];
  return typeof raw === 'string' ? raw : undefined;
}

export function listFlag(values: Parsed['values'], name: string): string[] {
  const raw = values[name];
  return Array.isArray(raw) ? raw : typeof raw === 'string' ? [raw] : [];
}

/** The CLI's output streams, injectable for tests. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

export const processIo: CliIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

/** Flags of every command that works on the host's data folder without a running host. */
export const STATE_FLAGS = {
  config: { type: 'string' },
  'data-dir': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/**
 * Dispatch `contained <command> <sub> …` to one of `subs`: no sub prints the usage and exits 2,
 * `--help`/`help` prints it and exits 0, an unknown sub is `USAGE` naming the known ones.
 */
export async function runSubcommand(
  command: string,
  argv: string[],
  io: CliIo,
  usage: string,
  subs: Readonly<Record<string, (rest: string[], io: CliIo) => Promise<number>>>,
): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    io.stdout(usage);
    return sub === undefined ? 2 : 0;
  }
  const run = Object.prototype.hasOwnProperty.call(subs, sub) ? subs[sub] : undefined;
  if (!run) throw new ContainedError('USAGE', `unknown ${command} command "${sub}" (${Object.keys(subs).join(', ')})\n\n${usage}`);
  return run(rest, io);
}
