/**
 * Pure path rules of the fs capability: what an agent-supplied path may look like, and which file
 * names a scope's extension list admits. Defends against traversal (`..`), absolute paths, NUL
 * bytes and backslash lookalikes before anything touches the disk. Fails closed: anything odd is
 * refused with a message that names only the agent's own (root-relative) path.
 */
import path from 'node:path';

/** Longest agent path accepted, in characters. */
export const MAX_PATH_CHARS = 4096;
/** Longest single path segment accepted, in UTF-8 bytes (the usual NAME_MAX). */
export const MAX_PATH_SEGMENT_BYTES = 255;

export type PathCheck = { ok: true; segments: string[]; display: string } | { ok: false; message: string };

/**
 * Split a root-relative POSIX path into segments. `.` and empty segments are dropped, `..` is
 * refused outright (even when it would stay inside: simpler to reason about, and agents never need
 * it). The empty path names the root itself and is allowed only when `allowRoot`.
 */
export function parseAgentPath(p: string, allowRoot: boolean): PathCheck {
  if (p.length > MAX_PATH_CHARS) return { ok: false, message: `path is longer than ${MAX_PATH_CHARS} characters` };
  if (p.includes('\0')) return { ok: false, message: 'path contains a NUL byte' };
  // A backslash is a legal POSIX name character but a separator on Windows: refuse the ambiguity.
  if (p.includes('\\')) return { ok: false, message: `path "${clip(p)}" contains a backslash; use "/"` };
  if (p.startsWith('/')) return { ok: false, message: 'path is absolute; paths are relative to the capability folder' };
  const segments: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') return { ok: false, message: `path "${clip(p)}" contains "..": paths cannot leave the capability folder` };
    if (Buffer.byteLength(seg, 'utf8') > MAX_PATH_SEGMENT_BYTES) return { ok: false, message: `a segment of "${clip(p)}" is too long` };
    segments.push(seg);
  }
  if (segments.length === 0 && !allowRoot) return { ok: false, message: 'path names the capability folder itself; name a file in it' };
  return { ok: true, segments, display: segments.length === 0 ? '.' : segments.join('/') };
}

/** Normalise an extension rule: lower case, no leading dot. */
export function normalizeExtension(ext: string): string {
  return (ext.startsWith('.') ? ext.slice(1) : ext).toLowerCase();
}

/** The extension of a file name (lower case, no dot), or '' for none (`Makefile`, `.env`). */
export function extensionOf(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot <= 0 ? '' : name.slice(dot + 1).toLowerCase();
}

/** True when the scope admits a file with this name. `undefined` extensions admit every name. */
export function extensionAllowed(name: string, extensions: readonly string[] | undefined): boolean {
  if (extensions === undefined) return true;
  const ext = extensionOf(name);
  return ext !== '' && extensions.some((e) => normalizeExtension(e) === ext);
}

/** True when `inner` is `outer` or a folder below it (both absolute, normalised). Lexical only. */
export function isWithin(outer: string, inner: string): boolean {
  const rel = path.relative(outer, inner);
  if (rel === '') return true;
  return !path.isAbsolute(rel) && rel.split(path.sep)[0] !== '..';
}

function clip(p: string): string {
  return p.length > 120 ? `${p.slice(0, 117)}...` : p;
}
