/**
 * An agent program: ES module sources keyed by POSIX path relative to the program root, and the
 * entry path. A module path is a key of the program's own file map, never a host path, so it may
 * hold any character a file name may (`my+agent.js`, spaces, accents). What is refused, each with a
 * message naming the rule (see `checkModulePath`): empty, absolute, an empty / `.` / `..` segment
 * (a name could then point outside the program, or two names at one module), a segment longer than
 * a file name may be, an over-long path, and control characters (a module name ends up in error
 * messages and stack traces that people read in a terminal).
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
/** UTF-8 bytes one path segment may have (a file name, as on Linux and macOS). */
export const MAX_SEGMENT_BYTES = 255;
/** UTF-8 bytes a whole module path may have. */
export const MAX_MODULE_PATH_BYTES = 4096;

export type ModulePathVerdict = { ok: true } | { ok: false; rule: string };

/**
 * The rules a module path must follow; pure, never throws. On refusal `rule` says which rule, in
 * words fit for the end of "module path … is refused: ".
 */
export function checkModulePath(p: string): ModulePathVerdict {
  if (typeof p !== 'string' || p.length === 0) return { ok: false, rule: 'it is empty' };
  const control = /[\u0000-\u001f\u007f-\u009f]/.exec(p);
  if (control) {
    const code = (control[0].codePointAt(0) as number).toString(16).toUpperCase().padStart(4, '0');
    return { ok: false, rule: `it contains a control character (U+${code})` };
  }
  if (p.startsWith('/')) return { ok: false, rule: 'it is absolute (starts with "/"); module paths are relative to the program root' };
  if (Buffer.byteLength(p, 'utf8') > MAX_MODULE_PATH_BYTES) return { ok: false, rule: `it is longer than ${MAX_MODULE_PATH_BYTES} bytes` };
  for (const segment of p.split('/')) {
    if (segment === '') return { ok: false, rule: 'it has an empty segment ("//" or a trailing "/")' };
    if (segment === '.' || segment === '..') return { ok: false, rule: 'it has a "." or ".." segment' };
    if (Buffer.byteLength(segment, 'utf8') > MAX_SEGMENT_BYTES) return { ok: false, rule: `a segment is longer than ${MAX_SEGMENT_BYTES} bytes` };
  }
  return { ok: true };
}

export function isValidModulePath(p: string): boolean {
  return checkModulePath(p).ok;
}

/** A path as it may appear in a message: quoted, control characters escaped, length capped. */
function shown(p: string): string {
  // JSON escapes C0 controls only; DEL and C1 controls (U+009B is a terminal's CSI) too.
  const quoted = JSON.stringify(p).replace(/[\u007f-\u009f]/g, (c) => `\\u${(c.codePointAt(0) as number).toString(16).padStart(4, '0')}`);
  return quoted.length > 160 ? `${quoted.slice(0, 150)}…" (${Buffer.byteLength(p)} bytes)` : quoted;
}

function refusedPath(p: string, rule: string, context = ''): ContainedError {
  return new ContainedError('INVALID_PROGRAM', `module path ${shown(p)}${context} is refused: ${rule}`);
}

/** Validate a program; throws INVALID_PROGRAM naming what is wrong. */
export function validateProgram(program: Program): Program {
  if (program === null || typeof program !== 'object' || typeof program.files !== 'object' || program.files === null) {
    throw new ContainedError('INVALID_PROGRAM', 'a program needs `files` and `entry`');
  }
  let total = 0;
  for (const [p, source] of Object.entries(program.files)) {
    const verdict = checkModulePath(p);
    if (!verdict.ok) throw refusedPath(p, verdict.rule);
    if (typeof source !== 'string') throw new ContainedError('INVALID_PROGRAM', `module ${shown(p)} is not text`);
    total += source.length;
  }
  if (total > MAX_PROGRAM_BYTES) {
    throw new ContainedError('INVALID_PROGRAM', `program is larger than ${MAX_PROGRAM_BYTES} bytes`);
  }
  if (typeof program.entry !== 'string' || !Object.prototype.hasOwnProperty.call(program.files, program.entry)) {
    throw new ContainedError('INVALID_PROGRAM', `entry module ${typeof program.entry === 'string' ? shown(program.entry) : String(typeof program.entry)} is not in the program`);
  }
  if (!/\.m?js$/.test(program.entry)) throw new ContainedError('INVALID_PROGRAM', entryExtensionMessage(program.entry));
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
      `cannot import ${shown(specifier)} from ${shown(referrer)}: only relative imports of the program's own modules work in a sandbox (no Node built-ins, no packages)`,
    );
  }
  const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(referrer), specifier));
  if (resolved.startsWith('../') || resolved === '..') {
    throw new ContainedError('INVALID_PROGRAM', `import ${shown(specifier)} from ${shown(referrer)} leaves the program`);
  }
  const verdict = checkModulePath(resolved);
  if (!verdict.ok) throw refusedPath(resolved, verdict.rule, ` (import ${shown(specifier)} from ${shown(referrer)})`);
  if (!Object.prototype.hasOwnProperty.call(files, resolved)) {
    throw new ContainedError('INVALID_PROGRAM', `import ${shown(specifier)} from ${shown(referrer)}: module ${shown(resolved)} is not in the program`);
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
  if (!/\.m?js$/.test(entry)) throw new ContainedError('INVALID_PROGRAM', entryExtensionMessage(entry));
  const files: Record<string, string> = {};
  const queue: Array<{ rel: string; from: string | undefined }> = [{ rel: entry, from: undefined }];
  let total = 0;
  while (queue.length > 0) {
    const { rel, from } = queue.shift() as { rel: string; from: string | undefined };
    if (Object.prototype.hasOwnProperty.call(files, rel)) continue;
    const importedBy = from === undefined ? '' : ` imported by ${from}`;
    const verdict = checkModulePath(rel);
    if (!verdict.ok) throw refusedPath(rel, verdict.rule, importedBy);
    // On Windows a backslash separates folders: a name holding one would read outside the root.
    if (path.sep === '\\' && rel.includes('\\')) throw refusedPath(rel, 'it contains a backslash, a folder separator on this system', importedBy);
    if (!MODULE_EXTENSIONS.includes(path.posix.extname(rel))) {
      throw new ContainedError('INVALID_PROGRAM', `cannot load module ${shown(rel)}${importedBy}: only .js, .mjs, .json and .txt files are modules`);
    }
    let source: string;
    try {
      source = await readFile(path.join(root, ...rel.split('/')), 'utf8');
    } catch (error) {
      throw new ContainedError('INVALID_PROGRAM', `cannot read module ${shown(rel)}${importedBy}: ${readFailure(error)}`);
    }
    total += source.length;
    if (total > MAX_PROGRAM_BYTES) throw new ContainedError('INVALID_PROGRAM', `program is larger than ${MAX_PROGRAM_BYTES} bytes`);
    files[rel] = source;
    if (!/\.m?js$/.test(rel)) continue;
    for (const spec of staticImports(source)) {
      if (spec.startsWith('./') || spec.startsWith('../')) {
        const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(rel), spec));
        if (!resolved.startsWith('../')) queue.push({ rel: resolved, from: rel });
      }
    }
  }
  return { files, entry };
}

function entryExtensionMessage(entry: string): string {
  return `the entry ${shown(entry)} must be a .js or .mjs file (the extension decides how a module is loaded)`;
}

/** Why a module file could not be read, without the host path. */
function readFailure(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EISDIR') return 'it is a folder';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ENAMETOOLONG') return 'the name is too long for the file system';
  return typeof code === 'string' ? code : 'unreadable';
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
