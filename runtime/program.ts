/**
 * An agent program: ES module sources keyed by POSIX path relative to the program root, and the
 * entry path. Paths are validated here (no absolute paths, no `..`, no odd characters) so a module
 * name can never point anywhere but another module of the same program.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ContainedError } from './errors.js';

export interface Program {
  /** Module sources (and `.json` / `.txt` data modules) by relative POSIX path. */
  files: Readonly<Record<string, string>>;
  /** Path of the entry module in `files`; its default export is `main(input, caps)`. */
  entry: string;
}

/** Total source bytes a program may have. */
export const MAX_PROGRAM_BYTES = 16 * 1024 * 1024;
const MODULE_EXTENSIONS = ['.js', '.mjs', '.json', '.txt'];
const SEGMENT = /^[A-Za-z0-9_@][A-Za-z0-9_.@-]*$/;

export function isValidModulePath(p: string): boolean {
  if (p.length === 0 || p.length > 512 || p.startsWith('/')) return false;
  const segments = p.split('/');
  return segments.every((s) => SEGMENT.test(s) && s !== '.' && s !== '..');
}

/** Validate a program; throws INVALID_PROGRAM naming what is wrong. */
export function validateProgram(program: Program): Program {
  if (program === null || typeof program !== 'object' || typeof program.files !== 'object' || program.files === null) {
    throw new ContainedError('INVALID_PROGRAM', 'a program needs `files` and `entry`');
  }
  let total = 0;
  for (const [p, source] of Object.entries(program.files)) {
    if (!isValidModulePath(p)) throw new ContainedError('INVALID_PROGRAM', `invalid module path "${p}"`);
    if (typeof source !== 'string') throw new ContainedError('INVALID_PROGRAM', `module "${p}" is not text`);
    total += source.length;
  }
  if (total > MAX_PROGRAM_BYTES) {
    throw new ContainedError('INVALID_PROGRAM', `program is larger than ${MAX_PROGRAM_BYTES} bytes`);
  }
  if (typeof program.entry !== 'string' || !Object.prototype.hasOwnProperty.call(program.files, program.entry)) {
    throw new ContainedError('INVALID_PROGRAM', `entry module "${String(program.entry)}" is not in the program`);
  }
  if (!/\.m?js$/.test(program.entry)) throw new ContainedError('INVALID_PROGRAM', 'the entry must be a .js or .mjs module');
  return program;
}

/**
 * Resolve an import specifier against the importing module's path. Only relative specifiers that
 * stay inside the program resolve; bare specifiers (`node:fs`, `lodash`) are refused with a clear
 * message because nothing but the program's own modules exists in a sandbox.
 */
export function resolveSpecifier(specifier: string, referrer: string, files: Readonly<Record<string, string>>): string {
  if (!specifier.startsWith('./') && !specifier.startsWith('../')) {
    throw new ContainedError(
      'INVALID_PROGRAM',
      `cannot import "${specifier}" from ${referrer}: only relative imports of the program's own modules work in a sandbox (no Node built-ins, no packages)`,
    );
  }
  const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(referrer), specifier));
  if (resolved.startsWith('../') || resolved === '..' || !isValidModulePath(resolved)) {
    throw new ContainedError('INVALID_PROGRAM', `import "${specifier}" from ${referrer} leaves the program`);
  }
  if (!Object.prototype.hasOwnProperty.call(files, resolved)) {
    throw new ContainedError('INVALID_PROGRAM', `import "${specifier}" from ${referrer}: module "${resolved}" is not in the program`);
  }
  return resolved;
}

/** A program made of one inline module. */
export function programFromSource(source: string, entry = 'main.js'): Program {
  return { files: { [entry]: source }, entry };
}

/**
 * Read an entry file and every module it imports relatively, from the entry's folder down. Used by
 * `contained run entry.js`; imports that leave the folder are refused like any other bad import.
 */
export async function loadProgramFromFile(entryPath: string): Promise<Program> {
  const root = path.dirname(path.resolve(entryPath));
  const entry = path.basename(entryPath);
  const files: Record<string, string> = {};
  const queue = [entry];
  let total = 0;
  while (queue.length > 0) {
    const rel = queue.shift() as string;
    if (Object.prototype.hasOwnProperty.call(files, rel)) continue;
    if (!isValidModulePath(rel) || !MODULE_EXTENSIONS.includes(path.posix.extname(rel))) {
      throw new ContainedError('INVALID_PROGRAM', `cannot load module "${rel}"`);
    }
    let source: string;
    try {
      source = await readFile(path.join(root, ...rel.split('/')), 'utf8');
    } catch {
      throw new ContainedError('INVALID_PROGRAM', `cannot read module "${rel}"`);
    }
    total += source.length;
    if (total > MAX_PROGRAM_BYTES) throw new ContainedError('INVALID_PROGRAM', `program is larger than ${MAX_PROGRAM_BYTES} bytes`);
    files[rel] = source;
    if (!/\.m?js$/.test(rel)) continue;
    for (const spec of staticImports(source)) {
      if (spec.startsWith('./') || spec.startsWith('../')) {
        const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(rel), spec));
        if (!resolved.startsWith('../')) queue.push(resolved);
      }
    }
  }
  return { files, entry };
}

/**
 * Import specifiers found in a source text, to know which files to read. A missed one only means
 * the file is not loaded and the import fails inside the sandbox with INVALID_PROGRAM — this is
 * discovery, not a security check (the resolver is).
 */
function staticImports(source: string): string[] {
  const out: string[] = [];
  const re = /(?:^|[;\s}])(?:import|export)\s[^'"`;]*?from\s*(['"])([^'"]+)\1|(?:^|[;\s])import\s*(['"])([^'"]+)\3/gm;
  for (let m = re.exec(source); m !== null; m = re.exec(source)) out.push((m[2] ?? m[4]) as string);
  return out;
}
