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
