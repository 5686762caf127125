/**
 * Entry-path and file-type policy of sandbox images, shared by the builder and the loader so that
 * an image that builds always loads, and an archive made by any other tool is held to the same
 * rules.
 *
 * Defends against: tar-slip (absolute paths, `..` segments), paths that name the same file on a
 * case-insensitive or Unicode-normalising file system, a name that is both a file and a directory,
 * control and Windows-reserved characters, and file types the format does not carry (executables,
 * `node_modules`, unknown extensions).
 *
 * How it fails: every predicate here is pure and returns `{ ok: false, code, message }` (deny on
 * anything it cannot parse); it never throws. Callers turn a failure into a `ContainedError`.
 */
import path from 'node:path';
import type { ErrorCode } from '../runtime/errors.js';

/** The manifest's path at the image root. */
export const MANIFEST_PATH = 'manifest.json';
/** Reserved root entry holding the signatures; excluded from the digest and from `files`. */
export const SIGNATURES_PATH = '.signatures.json';
/** The only file extensions an image may hold (all text: modules and static data). */
export const ALLOWED_EXTENSIONS: readonly string[] = ['.js', '.mjs', '.json', '.txt', '.md', '.csv'];
/** Extensions an `entry` module may have. */
export const MODULE_EXTENSIONS: readonly string[] = ['.js', '.mjs'];

export type Verdict<T> = { ok: true; value: T } | { ok: false; code: ErrorCode; message: string };

const ok = <T>(value: T): Verdict<T> => ({ ok: true, value });
const no = (code: ErrorCode, message: string): Verdict<never> => ({ ok: false, code, message });

/** A path as it may appear in a message: quoted, control characters escaped, length capped. */
export function describePath(p: string): string {
  const quoted = JSON.stringify(p);
  return quoted.length > 160 ? `${quoted.slice(0, 150)}…" (${Buffer.byteLength(p)} bytes)` : quoted;
}

/** Order of paths everywhere (tar entries, digest listing): by UTF-8 bytes, locale-independent. */
export function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

// C0/C1 controls, DEL, backslash, the characters Windows refuses in names, and U+FFFD (what an
// invalid UTF-8 sequence in a tar header decodes to).
const FORBIDDEN_CHARS = /[\u0000-\u001f\u007f-\u009f\\<>:"|?*\ufffd]/u;

export interface PathLimits {
  /** Segments a path may have (`manifest.json` has 1). */
  maxDepth: number;
  /** UTF-8 bytes a path may have. */
  maxPathBytes: number;
}

/**
 * Check one archive entry path and return its canonical form: no leading `./`, no trailing `/`.
 * Returns `''` for the root directory entry (`./`), which callers skip.
 */
export function normaliseEntryPath(raw: string, isDirectory: boolean, limits: PathLimits): Verdict<string> {
  const shown = describePath(raw);
  if (raw.length === 0) return no('IMAGE_PATH_INVALID', 'an entry has an empty path');
  if (raw.startsWith('/') || raw.startsWith('\\') || /^[A-Za-z]:/.test(raw)) {
    return no('IMAGE_ABSOLUTE_PATH', `entry ${shown} has an absolute path`);
  }
  // Checked on both separators so `..\x` is called what it is, even though `\` is refused anyway.
  if (raw.split(/[\\/]/).includes('..')) {
    return no('IMAGE_PATH_TRAVERSAL', `entry ${shown} has a ".." segment`);
  }
  let p = raw;
  while (p.startsWith('./')) p = p.slice(2);
  if (isDirectory && p.endsWith('/')) p = p.slice(0, -1);
  if (isDirectory && (p === '' || p === '.')) return ok('');
  if (FORBIDDEN_CHARS.test(p)) {
    return no('IMAGE_PATH_INVALID', `entry ${shown} contains a control, reserved or invalid character`);
  }
  if (Buffer.byteLength(p, 'utf8') > limits.maxPathBytes) {
    return no('IMAGE_PATH_INVALID', `entry ${shown} is longer than ${limits.maxPathBytes} bytes`);
  }
  const segments = p.split('/');
  if (segments.some((s) => s === '' || s === '.')) {
    return no('IMAGE_PATH_INVALID', `entry ${shown} has an empty or "." segment`);
  }
  if (segments.length > limits.maxDepth) {
    return no('IMAGE_PATH_TOO_DEEP', `entry ${shown} is ${segments.length} levels deep (limit ${limits.maxDepth})`);
  }
  return ok(p);
}

/**
 * The name two paths share when a file system would treat them as one: NFKC normalisation, then
 * upper- and lower-casing, an approximation of Unicode full case folding (`ß` and `SS` meet).
 */
export function collisionKey(p: string): string {
  return p.normalize('NFKC').toUpperCase().toLowerCase().normalize('NFKC');
}

/**
 * Files and directories seen so far, to refuse duplicates, case/normalisation collisions and a
 * name used both as a file and as a directory. Every collision key has exactly one spelling.
 */
export class PathIndex {
  readonly #explicit = new Map<string, 'file' | 'directory'>();
  readonly #files = new Map<string, string>();
  readonly #dirs = new Map<string, string>();

  add(p: string, kind: 'file' | 'directory'): Verdict<void> {
    const before = this.#explicit.get(p);
    if (before !== undefined) {
      return before === kind
        ? no('IMAGE_DUPLICATE_ENTRY', `entry ${describePath(p)} appears twice`)
        : no('IMAGE_PATH_COLLISION', `entry ${describePath(p)} is both a file and a directory`);
    }
    const segments = p.split('/');
    // Every ancestor is a directory: it must not be a file, and must have a single spelling.
    for (let i = 1; i < segments.length; i++) {
      const verdict = this.#addDirectory(segments.slice(0, i).join('/'), p);
      if (!verdict.ok) return verdict;
    }
    const key = collisionKey(p);
    if (kind === 'directory') {
      const verdict = this.#addDirectory(p, p);
      if (!verdict.ok) return verdict;
    } else {
      const clash = this.#files.get(key) ?? this.#dirs.get(key);
      if (clash !== undefined) return collision(p, clash);
      this.#files.set(key, p);
    }
    this.#explicit.set(p, kind);
    return ok(undefined);
  }

  #addDirectory(dir: string, entry: string): Verdict<void> {
    const key = collisionKey(dir);
    const file = this.#files.get(key);
    if (file !== undefined) return collision(entry, file);
    const spelling = this.#dirs.get(key);
    if (spelling === undefined) this.#dirs.set(key, dir);
    else if (spelling !== dir) return collision(entry, spelling);
    return ok(undefined);
  }
}

function collision(entry: string, other: string): Verdict<never> {
  return no(
    'IMAGE_PATH_COLLISION',
    `entry ${describePath(entry)} collides with ${describePath(other)} (same name after Unicode normalisation and case folding, or a file used as a directory)`,
  );
}

/** File-type policy: allowed extension, not under `node_modules`, no executable bit. */
export function checkFileType(p: string, mode: number | undefined): Verdict<void> {
  const shown = describePath(p);
  if (p.split('/').some((s) => collisionKey(s) === 'node_modules')) {
    return no('IMAGE_FILE_TYPE', `entry ${shown} is inside node_modules (images carry no packages)`);
  }
  if (mode !== undefined && (mode & 0o111) !== 0) {
    return no('IMAGE_FILE_TYPE', `entry ${shown} is executable (mode ${mode.toString(8)})`);
  }
  if (!ALLOWED_EXTENSIONS.includes(path.posix.extname(p))) {
    return no('IMAGE_FILE_TYPE', `entry ${shown} has a file type images do not carry (allowed: ${ALLOWED_EXTENSIONS.join(' ')})`);
  }
  return ok(undefined);
}

/** A directory name the format refuses (`node_modules`). */
export function checkDirectoryType(p: string): Verdict<void> {
  if (p.split('/').some((s) => collisionKey(s) === 'node_modules')) {
    return no('IMAGE_FILE_TYPE', `entry ${describePath(p)} is a node_modules folder (images carry no packages)`);
  }
  return ok(undefined);
}
