/**
 * The fs scope's narrowing rules, pure: `paths` (only these root-relative paths and what lies
 * under them — narrows without moving the root), the intersection of two scopes, the same
 * narrowing kept in the parent's frame (for grants: a subfolder `root` becomes `paths`), and the
 * narrowest scope that admits one call (what an "always" answer grants).
 *
 * Defends: a child that raises a limit past its parent's default, reaches a path outside its
 * parent's `paths` (lookalike prefixes such as `subway` for `sub` included: entries match whole
 * segments), or names a root outside its parent's (`INVALID_SCOPE`). Lexical only: links are
 * refused at use by resolve.ts, so a path's segments are where it leads.
 */
import path from 'node:path';
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import { narrowerLimit } from '../sdk/narrowing.js';
import { pathsNest } from '../sdk/overlap.js';
import { isWithin, normalizeExtension, parseAgentPath } from './paths.js';

/** Largest file read or written when the scope sets no `maxFileBytes`: 8 MiB. */
export const DEFAULT_MAX_FILE_BYTES = 8 * 1024 * 1024;

/** Most entries in a scope's `paths`. */
export const MAX_SCOPE_PATHS = 64;

/** One `paths` entry: a root-relative path naming a file or folder (not the root), normalised. */
export const scopePathSchema = z
  .string()
  .max(4096)
  .superRefine((p, ctx) => {
    const parsed = parseAgentPath(p, false);
    if (!parsed.ok) ctx.addIssue({ code: 'custom', message: parsed.message });
  })
  .transform((p) => {
    const parsed = parseAgentPath(p, false);
    return parsed.ok ? parsed.display : p;
  });

/** The scope fields these rules read (the schema lives in index.ts). */
export interface FsScopeFields {
  root: string;
  readOnly?: boolean | undefined;
  maxFileBytes?: number | undefined;
  extensions?: string[] | undefined;
  paths?: string[] | undefined;
}

const segmentsOf = (p: string): string[] => (p === '' ? [] : p.split('/'));
const isPrefix = (prefix: readonly string[], of: readonly string[]): boolean => prefix.length <= of.length && prefix.every((s, i) => of[i] === s);

/** Does a `paths` list admit these (root-relative) segments? Unset: everything. */
export function pathAllowed(segments: readonly string[], paths: readonly string[] | undefined): boolean {
  return paths === undefined || paths.some((entry) => isPrefix(segmentsOf(entry), segments));
}

/** Drop duplicates and entries that lie under another entry; keeps first-seen order. */
function minimal(entries: string[][]): string[] {
  const keys = [...new Set(entries.map((e) => e.join('/')))].map(segmentsOf);
  return keys.filter((e, i) => !keys.some((o, j) => j !== i && o.length < e.length && isPrefix(o, e))).map((e) => e.join('/'));
}

/** `paths` of a scope rooted at `from`, seen from `to` (a subfolder or the same): `undefined` = all of `to`. */
function pathsSeenFrom(from: string, paths: readonly string[] | undefined, to: string): string[][] | undefined {
  if (paths === undefined) return undefined;
  const rel = path.relative(from, to);
  const prefix = rel === '' ? [] : rel.split(path.sep);
  const out: string[][] = [];
  for (const entry of paths) {
    const e = segmentsOf(entry);
    if (isPrefix(e, prefix)) return undefined; // all of `to` lies under this entry
    if (isPrefix(prefix, e)) out.push(e.slice(prefix.length));
  }
  return out;
}

/** Entries both lists admit: for each pair, the deeper one when one lies under the other. */
function bothAdmit(a: string[][], b: string[][]): string[][] {
  return a.flatMap((x) => b.map((y) => (isPrefix(x, y) ? y : isPrefix(y, x) ? x : undefined))).filter((e): e is string[] => e !== undefined);
}

/** The intersection (attenuation): a root at or under the parent's, and every field at least as strict. */
export function intersectFsScopes<S extends FsScopeFields>(parent: S, narrower: S): S {
  if (!isWithin(parent.root, narrower.root)) {
    throw new ContainedError('INVALID_SCOPE', 'fs: a narrower scope must name the same folder or a subfolder of it');
  }
  const scope: FsScopeFields = { root: narrower.root };
  if (parent.readOnly || narrower.readOnly) scope.readOnly = true;
  const max = narrowerLimit(parent.maxFileBytes, narrower.maxFileBytes, DEFAULT_MAX_FILE_BYTES);
  if (max !== undefined) scope.maxFileBytes = max;
  if (parent.extensions && narrower.extensions) {
    const allowed = new Set(parent.extensions.map(normalizeExtension));
    scope.extensions = [...new Set(narrower.extensions.map(normalizeExtension))].filter((e) => allowed.has(e));
  } else if (parent.extensions || narrower.extensions) {
    scope.extensions = [...new Set((parent.extensions ?? narrower.extensions ?? []).map(normalizeExtension))];
  }
  const fromParent = pathsSeenFrom(parent.root, parent.paths, narrower.root);
  const own = narrower.paths?.map(segmentsOf);
  const paths = fromParent === undefined ? own : own === undefined ? fromParent : bothAdmit(fromParent, own);
  if (paths !== undefined) {
    if (paths.length === 0) throw new ContainedError('INVALID_SCOPE', 'fs: the narrower scope shares no path with its parent');
    scope.paths = minimal(paths);
  }
  return scope as S;
}

/**
 * `narrower` in the parent's frame: a subfolder root becomes `paths` under the parent's root, so a
 * path the agent passes keeps its meaning. `paths` inherited unchanged from the parent stay
 * relative to the parent's root; `paths` the narrower scope names are relative to its own root.
 */
export function reframeFsScope<S extends FsScopeFields>(parent: S, narrower: S): S {
  if (narrower.root === parent.root || !isWithin(parent.root, narrower.root)) return narrower;
  const rel = path.relative(parent.root, narrower.root).split(path.sep);
  const inherited = JSON.stringify(narrower.paths) === JSON.stringify(parent.paths);
  let paths: string[][];
  if (inherited && parent.paths !== undefined) {
    paths = bothAdmit(parent.paths.map(segmentsOf), [rel]);
    if (paths.length === 0) paths = [rel]; // shares nothing with the parent: the intersection refuses it
  } else {
    paths = (narrower.paths ?? ['']).map((p) => [...rel, ...segmentsOf(p)]);
  }
  return { ...narrower, root: parent.root, paths: minimal(paths) };
}

/** The paths one call touches (root-relative, normalised), or `undefined` when one is the root or invalid. */
function touched(method: string, args: unknown): string[] | undefined {
  const raw: unknown[] =
    method === 'move' ? [(args as { from?: unknown } | null)?.from, (args as { to?: unknown } | null)?.to]
    : method === 'write' || method === 'append' ? [(args as { path?: unknown } | null)?.path]
    : [args ?? ''];
  const out: string[] = [];
  for (const p of raw) {
    if (typeof p !== 'string') return undefined;
    const parsed = parseAgentPath(p, true);
    if (!parsed.ok || parsed.segments.length === 0) return undefined;
    out.push(parsed.display);
  }
  return out;
}

/** The scope that admits exactly the paths this call touches (and what lies under them). */
export function narrowestFsScope<S extends FsScopeFields>(scope: S, method: string, args: unknown): S | undefined {
  const paths = touched(method, args);
  return paths === undefined ? undefined : { ...scope, paths: minimal(paths.map(segmentsOf)) };
}

/** `only sub, notes/today.md`, for describeScope. */
export function describePaths(paths: readonly string[] | undefined): string | undefined {
  return paths === undefined ? undefined : `only ${paths.join(', ')} (and what lies under them)`;
}

/** The host folders (or files) a scope reaches: its root, or each of its `paths` under the root. */
function reach(scope: FsScopeFields): string[] {
  return scope.paths === undefined ? [scope.root] : scope.paths.map((p) => path.join(scope.root, ...segmentsOf(p)));
}

/** Could two fs scopes reach the same file? When a folder of one is (after links) the same as, above or under a folder of the other. */
export function fsScopesOverlap(a: FsScopeFields, b: FsScopeFields): boolean {
  const theirs = reach(b);
  return reach(a).some((x) => theirs.some((y) => pathsNest(x, y)));
}
