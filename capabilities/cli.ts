/**
 * `contained caps …`: capability commands for operators. Today one: `docs`, which prints the
 * agent-facing API (caps.d.ts or Markdown) of a set of grant specs — exactly what a platform puts
 * into a model's prompt for those grants.
 *
 * Exit codes: 0 ok, 2 usage error (unknown flag, missing value, bad grant spec or scope),
 * 1 anything else. Errors are one line `CODE: message` on stderr.
 */
import path from 'node:path';
import { ContainedError } from '../runtime/errors.js';
import { generateCapsDts, generateCapsMarkdown } from './docs.js';
import { parseGrantSpec } from './grant-spec.js';
import type { CapabilityInstance } from './sdk/instance.js';

export interface CapsIo {
  stdout(s: string): void;
  stderr(s: string): void;
}

export const CAPS_HELP = `Usage: contained caps docs --grant SPEC [--grant SPEC…] [--format ts|md] [--data-dir DIR]

Print the agent-facing API of a set of grants: a TypeScript declaration (caps.d.ts, default)
or a compact Markdown reference, ready for a model's prompt.

  --grant SPEC     <name>=<kind>[:<json-scope>|:@<scope.json>][;methods=a,b][;expires=+1h][;budget.<m>=maxCalls:N]
                   e.g. reports=fs:{"root":"/srv/reports","readOnly":true};methods=read,list
  --format ts|md   output format (default ts)
  --data-dir DIR   resolve relative file paths in scopes (fs root, kv/sql file) against DIR

Kinds: fs, kv, sql, clock, random, log (and any the host registers).
`;

function usage(message: string): ContainedError {
  return new ContainedError('USAGE', message);
}

interface DocsArgs {
  grants: string[];
  format: 'ts' | 'md';
  dataDir?: string;
}

function parseDocsArgs(argv: string[]): DocsArgs | 'help' {
  const out: DocsArgs = { grants: [], format: 'ts' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--help' || arg === '-h') return 'help';
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const take = (): string => {
      if (eq > 0) return arg.slice(eq + 1);
      const v = argv[++i];
      if (v === undefined) throw usage(`${flag} needs a value`);
      return v;
    };
    if (flag === '--grant') out.grants.push(take());
    else if (flag === '--format') {
      const f = take();
      if (f !== 'ts' && f !== 'md') throw usage(`--format must be ts or md, not "${f}"`);
      out.format = f;
    } else if (flag === '--data-dir') out.dataDir = take();
    else throw usage(`unknown argument "${arg}"`);
  }
  if (out.grants.length === 0) throw usage('give at least one --grant SPEC');
  return out;
}

/** Entry point for `contained caps <argv…>`. Never throws. */
export async function capsCommand(argv: string[], io: CapsIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    (sub === undefined ? io.stderr : io.stdout)(CAPS_HELP);
    return sub === undefined ? 2 : 0;
  }
  try {
    if (sub !== 'docs') throw usage(`unknown caps command "${sub}" (known: docs)`);
    const args = parseDocsArgs(rest);
    if (args === 'help') {
      io.stdout(CAPS_HELP);
      return 0;
    }
    const instances: CapabilityInstance[] = [];
    const seen = new Set<string>();
    for (const spec of args.grants) {
      // Documenting an outbox grant sends nothing; a transport only lets its instance be built.
      const hostOptions = { outbox: { folder: path.resolve(args.dataDir ?? '.contained', 'outbox') } };
      const inst = await parseGrantSpec(spec, { host: args.dataDir === undefined ? {} : { dataDir: args.dataDir }, hostOptions });
      if (seen.has(inst.name)) throw usage(`two grants are named "${inst.name}"`);
      seen.add(inst.name);
      instances.push(inst);
    }
    io.stdout(args.format === 'md' ? generateCapsMarkdown(instances) : generateCapsDts(instances));
    return 0;
  } catch (error) {
    if (error instanceof ContainedError) {
      io.stderr(`${error.code}: ${error.message}\n`);
      if (error.code === 'USAGE') io.stderr(`\n${CAPS_HELP}`);
      return error.code === 'USAGE' || error.code === 'INVALID_ARGUMENT' || error.code === 'INVALID_SCOPE' ? 2 : 1;
    }
    io.stderr(`INTERNAL: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}
