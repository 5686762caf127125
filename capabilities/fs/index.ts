/**
 * fs — files under one host folder. The scope names the folder (`root`), and optionally makes it
 * read-only, caps file size, restricts file extensions and the `paths` reachable under the root; a
 * narrower scope may name a subfolder (narrowing rules: scope.ts).
 *
 * Defends: traversal and absolute paths (pure check, `OUT_OF_SCOPE`); symbolic links anywhere in a
 * path and hard-linked files (`FS_LINK`); devices, FIFOs and sockets (`FS_SPECIAL_FILE`); a link
 * swapped in between check and use (see resolve.ts). Writes are atomic: a temp file in the same
 * folder, flushed, then renamed over the target. Every error names only root-relative paths.
 */
import { randomBytes } from 'node:crypto';
import { constants as C, existsSync, realpathSync, statSync } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import { type CapabilityDefinition, defineCapability, IN_SCOPE, method, outOfScope, type ScopeCheck } from '../sdk/define.js';
import { definePlugin, NO_HOST_OPTIONS, scopeWithDataDir } from '../plugin.js';
import { type CapabilityInstance, createInstance, type InstanceOptions } from '../sdk/instance.js';
import { formatBytes } from '../sdk/json.js';
import { extensionAllowed, isWithin, normalizeExtension, parseAgentPath } from './paths.js';
import { classify, type DirHandle, type FsRoot, type FsStrategy, fsFailure, lstatOrNull, mapFsError, openDir, openFile } from './resolve.js';
import { fsMethodStaging, fsResourceStaging } from './staging.js';
import { DEFAULT_MAX_FILE_BYTES, describePaths, fsScopesOverlap, intersectFsScopes, MAX_SCOPE_PATHS, narrowestFsScope, pathAllowed, reframeFsScope, scopePathSchema } from './scope.js';

export { DEFAULT_MAX_FILE_BYTES } from './scope.js';

export const fsScopeSchema = z.strictObject({
  /** Absolute host folder; every agent path is relative to it. */
  root: z
    .string()
    .min(1)
    .refine((p) => path.isAbsolute(p), 'root must be an absolute host path')
    .transform((p) => path.resolve(p)),
  readOnly: z.boolean().optional(),
  /** Largest file, in bytes, that may be read, written or grown by append. */
  maxFileBytes: z.number().int().positive().optional(),
  /** Only files with these extensions (`"md"` or `".md"`, case-insensitive) are visible. */
  extensions: z.array(z.string().regex(/^\.?[A-Za-z0-9_+-]{1,16}$/, 'an extension like "md" or ".md"')).max(64).optional(),
  /** Only these root-relative paths, and what lies under them (`["sub", "notes/today.md"]`); the root stays the root. */
  paths: z.array(scopePathSchema).min(1).max(MAX_SCOPE_PATHS).optional(),
});
export type FsScope = z.output<typeof fsScopeSchema>;

/** Host resources of an fs instance (after `createFs` resolved them). */
export interface FsHostDeps {
  /** The top root as given (lexically normalised); child scopes are subfolders of it. */
  rootLexical: string;
  root: FsRoot;
}

/** What a caller may pass to `createFs`. */
export interface FsDeps {
  /** Default: `procfd` on Linux when `/proc/self/fd` exists, else `paths`. */
  strategy?: FsStrategy;
}

const pathArg = z.string().max(4096);
const nullResult = z.null();
const writeArgs = z.strictObject({ path: pathArg, content: z.string() });
const writeResult = z.strictObject({ path: z.string(), size: z.number().int().nonnegative() });
const entryType = z.enum(['file', 'dir']);
const listResult = z.array(z.strictObject({ name: z.string(), type: entryType, size: z.number().int().nonnegative() }));
const statResult = z.strictObject({ path: z.string(), type: entryType, size: z.number().int().nonnegative(), modified: z.string() });
const moveArgs = z.strictObject({ from: pathArg, to: pathArg });

/** `method()` with this capability's scope and deps types, so `run` and `inScope` are typed. */
function fsMethod<AS extends z.ZodType, RS extends z.ZodType>(m: Parameters<typeof method<AS, RS, FsScope, FsHostDeps>>[0]) {
  return method<AS, RS, FsScope, FsHostDeps>(m);
}

const maxBytes = (s: FsScope): number => s.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;

/** Lexical check of a path, plus the extension rule when the path must name a file. */
function checkPath(p: string, scope: FsScope, opts: { allowRoot?: boolean; file?: boolean; write?: boolean }): ScopeCheck {
  if (opts.write && scope.readOnly) return outOfScope('fs: this folder is read-only');
  const parsed = parseAgentPath(p, opts.allowRoot ?? false);
  if (!parsed.ok) return outOfScope(`fs: ${parsed.message}`);
  if (!pathAllowed(parsed.segments, scope.paths)) return outOfScope(`fs: "${parsed.display}" is outside the paths this scope allows (${scope.paths?.join(', ') ?? ''})`);
  if (opts.file && !extensionAllowed(parsed.segments.at(-1) ?? '', scope.extensions)) {
    return outOfScope(`fs: "${parsed.display}" does not have an allowed extension (${describeExtensions(scope)})`);
  }
  return IN_SCOPE;
}

function describeExtensions(scope: FsScope): string {
  return scope.extensions === undefined ? 'any' : scope.extensions.map((e) => `.${normalizeExtension(e)}`).join(', ') || 'none';
}

/** Segments from the top root to the agent path (the scope root may be a subfolder). */
function locate(p: string, scope: FsScope, deps: FsHostDeps, allowRoot: boolean): { segments: string[]; display: string } {
  const parsed = parseAgentPath(p, allowRoot);
  if (!parsed.ok) throw new ContainedError('OUT_OF_SCOPE', `fs: ${parsed.message}`);
  const sub = path.relative(deps.rootLexical, scope.root);
  // intersect() keeps every scope root inside the top root; re-check rather than trust.
  if (!isWithin(deps.rootLexical, scope.root)) throw new ContainedError('INTERNAL', 'fs: scope root outside the top root');
  const prefix = sub === '' ? [] : sub.split(path.sep);
  return { segments: [...prefix, ...parsed.segments], display: parsed.display };
}

async function withDir<T>(deps: FsHostDeps, segments: string[], display: string, create: boolean, f: (dir: DirHandle) => Promise<T>): Promise<T> {
  const dir = await openDir(deps.root, segments, display, create);
  try {
    return await f(dir);
  } catch (e) {
    throw mapFsError(e, display);
  } finally {
    await dir.close().catch(() => undefined);
  }
}

/**
 * The folder a write goes into, opened as for `withDir`; a missing folder fails naming the folder
 * (the file not existing yet is the point of a write), with `data.folder` for callers.
 */
async function withParentDir<T>(deps: FsHostDeps, parent: string[], display: string, f: (dir: DirHandle) => Promise<T>): Promise<T> {
  let opened = false;
  try {
    return await withDir(deps, parent, display, false, (dir) => {
      opened = true;
      return f(dir);
    });
  } catch (e) {
    if (opened || !(e instanceof ContainedError) || e.data?.reason !== 'ENOENT') throw e;
    const folder = display.includes('/') ? display.slice(0, display.lastIndexOf('/')) : '.';
    throw new ContainedError('CAPABILITY_FAILED', `fs: cannot write "${display}": the folder "${folder}" does not exist (create it with mkdir first)`, {
      data: { reason: 'ENOENT', path: display, folder },
      cause: e,
    });
  }
}

function split(segments: string[]): { parent: string[]; name: string } {
  return { parent: segments.slice(0, -1), name: segments.at(-1) ?? '' };
}

function reWrite(scope: FsScope): void {
  if (scope.readOnly) throw new ContainedError('OUT_OF_SCOPE', 'fs: this folder is read-only');
}

async function atomicWrite(deps: FsHostDeps, scope: FsScope, p: string, content: string): Promise<{ path: string; size: number }> {
  reWrite(scope);
  const { segments, display } = locate(p, scope, deps, false);
  const bytes = Buffer.from(content, 'utf8');
  if (bytes.length > maxBytes(scope)) throw new ContainedError('OUT_OF_SCOPE', `fs: content is larger than ${maxBytes(scope)} bytes`);
  const { parent, name } = split(segments);
  return withParentDir(deps, parent, display, async (dir) => {
    const existing = await lstatOrNull(dir.at(name));
    if (existing !== null && classify(existing, display) === 'dir') throw fsFailure('EISDIR', display);
    // Same folder, so the rename is atomic; O_EXCL never follows or reuses an existing entry.
    const tmpName = `.${name.slice(0, 64)}.${randomBytes(6).toString('hex')}.tmp`;
    const tmp = dir.at(tmpName);
    const fh = await fsp.open(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o666);
    let renamed = false;
    try {
      await fh.writeFile(bytes);
      await fh.datasync();
      await fh.close();
      await dir.verify();
      await fsp.rename(tmp, dir.at(name));
      renamed = true;
    } finally {
      if (!renamed) {
        await fh.close().catch(() => undefined);
        await fsp.unlink(tmp).catch(() => undefined);
      }
    }
    return { path: display, size: bytes.length };
  });
}

export const fsCapability: CapabilityDefinition<FsScope, FsHostDeps> = defineCapability<FsScope, FsHostDeps>({
  name: 'fs',
  description: 'Text files in one folder; paths are relative to it, with "/" separators.',
  scope: fsScopeSchema as unknown as z.ZodType<FsScope>,
  intersect: intersectFsScopes,
  reframe: reframeFsScope,
  methodUsable: (s, m) => !s.readOnly || m.risk.readOnly,
  narrowestScope: narrowestFsScope,
  overlaps: fsScopesOverlap,
  staging: fsResourceStaging(() => fsCapability),
  describeScope(s) {
    const parts = [s.readOnly ? 'read-only' : 'read-write', `files up to ${formatBytes(maxBytes(s))}`];
    if (s.extensions !== undefined) parts.push(`only files ending ${describeExtensions(s)}`);
    const paths = describePaths(s.paths);
    if (paths !== undefined) parts.push(paths);
    return `${parts.join('; ')}; symbolic links, hard-linked files and special files are refused`;
  },
  methods: {
    read: fsMethod({
      staging: fsMethodStaging.read,
      description: 'Read a UTF-8 text file and return its content.',
      argName: 'path',
      args: pathArg,
      result: z.string(),
      risk: { readOnly: true, openWorld: false },
      inScope: (p, s) => checkPath(p, s, { file: true }),
      async run(p, { scope, deps }) {
        const { segments, display } = locate(p, scope, deps, false);
        const { parent, name } = split(segments);
        return withDir(deps, parent, display, false, async (dir) => {
          const { fh, st } = await openFile(dir, name, display, C.O_RDONLY);
          try {
            const limit = maxBytes(scope);
            if (st.size > limit) throw new ContainedError('OUT_OF_SCOPE', `fs: "${display}" is larger than ${limit} bytes`);
            // Read at most limit + 1 bytes: the file may have grown since fstat.
            const buf = Buffer.alloc(Math.min(st.size, limit) + 1);
            let n = 0;
            for (;;) {
              const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
              if (bytesRead === 0 || n + bytesRead >= buf.length) {
                n += bytesRead;
                break;
              }
              n += bytesRead;
            }
            if (n > limit) throw new ContainedError('OUT_OF_SCOPE', `fs: "${display}" is larger than ${limit} bytes`);
            try {
              return new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, n));
            } catch {
              throw fsFailure('NOT_UTF8', display);
            }
          } finally {
            await fh.close();
          }
        });
      },
    }),
    write: fsMethod({
      staging: fsMethodStaging.write,
      description: 'Create or replace a text file atomically with the given UTF-8 content.',
      args: writeArgs,
      result: writeResult,
      risk: { readOnly: false, destructive: true, reversible: false, openWorld: false },
      inScope: (a, s) =>
        Buffer.byteLength(a.content, 'utf8') > maxBytes(s)
          ? outOfScope(`fs: content is larger than ${maxBytes(s)} bytes`)
          : checkPath(a.path, s, { file: true, write: true }),
      run: (a, { scope, deps }) => atomicWrite(deps, scope, a.path, a.content),
    }),
    append: fsMethod({
      staging: fsMethodStaging.append,
      description: 'Append UTF-8 text to a file, creating it if missing; returns the new size.',
      args: writeArgs,
      result: writeResult,
      risk: { readOnly: false, destructive: false, reversible: false, openWorld: false },
      inScope: (a, s) =>
        Buffer.byteLength(a.content, 'utf8') > maxBytes(s)
          ? outOfScope(`fs: content is larger than ${maxBytes(s)} bytes`)
          : checkPath(a.path, s, { file: true, write: true }),
      async run(a, { scope, deps }) {
        reWrite(scope);
        const { segments, display } = locate(a.path, scope, deps, false);
        const { parent, name } = split(segments);
        const bytes = Buffer.from(a.content, 'utf8');
        return withParentDir(deps, parent, display, async (dir) => {
          const { fh, st } = await openFile(dir, name, display, C.O_WRONLY | C.O_APPEND | C.O_CREAT);
          try {
            if (st.size + bytes.length > maxBytes(scope)) {
              throw new ContainedError('OUT_OF_SCOPE', `fs: "${display}" would grow past ${maxBytes(scope)} bytes`);
            }
            await fh.writeFile(bytes);
            return { path: display, size: st.size + bytes.length };
          } finally {
            await fh.close();
          }
        });
      },
    }),
    list: fsMethod({
      staging: fsMethodStaging.list,
      description: 'List a folder (default: the root): files and subfolders with their sizes.',
      argName: 'path',
      args: pathArg.optional(),
      result: listResult,
      risk: { readOnly: true, openWorld: false },
      inScope: (p, s) => checkPath(p ?? '', s, { allowRoot: true }),
      async run(p, { scope, deps }) {
        const { segments, display } = locate(p ?? '', scope, deps, true);
        return withDir(deps, segments, display, false, async (dir) => {
          const names = (await fsp.readdir(dir.at('.'))).sort();
          const out: z.input<typeof listResult> = [];
          for (const name of names) {
            const st = await lstatOrNull(dir.at(name)).catch(() => null);
            // Entries the agent could not act on (links, special files, other extensions) are hidden.
            if (st === null) continue;
            if (st.isDirectory()) out.push({ name, type: 'dir', size: 0 });
            else if (st.isFile() && st.nlink === 1 && extensionAllowed(name, scope.extensions)) out.push({ name, type: 'file', size: st.size });
          }
          await dir.verify();
          return out;
        });
      },
    }),
    stat: fsMethod({
      staging: fsMethodStaging.stat,
      description: 'Describe a file or folder: type, size in bytes, last modification time (ISO).',
      argName: 'path',
      args: pathArg,
      result: statResult,
      risk: { readOnly: true, openWorld: false },
      inScope: (p, s) => checkPath(p, s, { allowRoot: true }),
      async run(p, { scope, deps }) {
        const { segments, display } = locate(p, scope, deps, true);
        const { parent, name } = split(segments);
        const isRoot = display === '.';
        return withDir(deps, isRoot ? segments : parent, display, false, async (dir) => {
          const st = await fsp.lstat(dir.at(isRoot ? '.' : name));
          const type = classify(st, display);
          if (type === 'file' && !extensionAllowed(name, scope.extensions)) {
            throw new ContainedError('OUT_OF_SCOPE', `fs: "${display}" does not have an allowed extension`);
          }
          await dir.verify();
          return { path: display, type, size: type === 'file' ? st.size : 0, modified: st.mtime.toISOString() };
        });
      },
    }),
    remove: fsMethod({
      staging: fsMethodStaging.remove,
      description: 'Delete a file or an empty folder. Irreversible.',
      argName: 'path',
      args: pathArg,
      result: nullResult,
      risk: { readOnly: false, destructive: true, reversible: false, openWorld: false },
      inScope: (p, s) => checkPath(p, s, { write: true }),
      async run(p, { scope, deps }) {
        reWrite(scope);
        const { segments, display } = locate(p, scope, deps, false);
        const { parent, name } = split(segments);
        return withDir(deps, parent, display, false, async (dir) => {
          const st = await fsp.lstat(dir.at(name));
          const type = classify(st, display);
          if (type === 'file' && !extensionAllowed(name, scope.extensions)) {
            throw new ContainedError('OUT_OF_SCOPE', `fs: "${display}" does not have an allowed extension`);
          }
          await dir.verify();
          // If the entry was swapped since lstat, unlink removes at most a link itself, never its
          // target, and rmdir refuses anything but an empty folder.
          if (type === 'dir') await fsp.rmdir(dir.at(name));
          else await fsp.unlink(dir.at(name));
          return null;
        });
      },
    }),
    mkdir: fsMethod({
      staging: fsMethodStaging.mkdir,
      description: 'Create a folder, and any missing parent folders; no error if it exists.',
      argName: 'path',
      args: pathArg,
      result: nullResult,
      risk: { readOnly: false, destructive: false, reversible: true, openWorld: false },
      inScope: (p, s) => checkPath(p, s, { write: true }),
      async run(p, { scope, deps }) {
        reWrite(scope);
        const { segments, display } = locate(p, scope, deps, false);
        return withDir(deps, segments, display, true, async () => null);
      },
    }),
    move: fsMethod({
      staging: fsMethodStaging.move,
      description: 'Move or rename a file or folder; fails if the destination exists.',
      args: moveArgs,
      result: nullResult,
      risk: { readOnly: false, destructive: false, reversible: true, openWorld: false },
      inScope(a, s) {
        // With an extension rule, only files move (both names checked), never whole folders.
        const from = checkPath(a.from, s, { write: true, file: s.extensions !== undefined });
        return from.ok ? checkPath(a.to, s, { write: true, file: s.extensions !== undefined }) : from;
      },
      async run(a, { scope, deps }) {
        reWrite(scope);
        const from = locate(a.from, scope, deps, false);
        const to = locate(a.to, scope, deps, false);
        if (to.segments.length > from.segments.length && from.segments.every((s, i) => to.segments[i] === s)) {
          throw fsFailure('EINVAL', to.display);
        }
        const f = split(from.segments);
        const t = split(to.segments);
        return withDir(deps, f.parent, from.display, false, (fromDir) =>
          withDir(deps, t.parent, to.display, false, async (toDir) => {
            const type = classify(await fsp.lstat(fromDir.at(f.name)).catch((e: unknown) => {
              throw mapFsError(e, from.display);
            }), from.display);
            if (type === 'dir' && scope.extensions !== undefined) throw new ContainedError('OUT_OF_SCOPE', 'fs: only files move under an extension rule');
            if ((await lstatOrNull(toDir.at(t.name))) !== null) throw fsFailure('EEXIST', to.display);
            await fromDir.verify();
            await toDir.verify();
            if (type === 'file') {
              // link + unlink: link(2) fails with EEXIST atomically, so nothing is ever overwritten.
              await fsp.link(fromDir.at(f.name), toDir.at(t.name)).catch((e: unknown) => {
                throw mapFsError(e, to.display);
              });
              await fsp.unlink(fromDir.at(f.name));
            } else {
              await fsp.rename(fromDir.at(f.name), toDir.at(t.name));
            }
            return null;
          }),
        );
      },
    }),
  },
});

/** The host folder a parsed scope names, opened once: must exist; its `realpath` is taken now. */
function openRoot(scope: FsScope, deps: FsDeps): FsHostDeps {
  let real: string;
  try {
    real = realpathSync(scope.root);
    if (!statSync(real).isDirectory()) throw new Error('not a folder');
  } catch (e) {
    throw new ContainedError('INVALID_SCOPE', 'fs: root must be an existing folder', { cause: e });
  }
  if (C.O_NOFOLLOW === undefined || C.O_DIRECTORY === undefined) {
    throw new ContainedError('INVALID_SCOPE', 'fs: this platform lacks O_NOFOLLOW/O_DIRECTORY; refusing to serve files');
  }
  const strategy = deps.strategy ?? (process.platform === 'linux' && existsSync('/proc/self/fd') ? 'procfd' : 'paths');
  return { rootLexical: scope.root, root: { real, strategy } };
}

/** Bind fs to a host folder. The folder must exist; its `realpath` is taken once, now. */
export function createFs(scope: unknown, deps: FsDeps = {}, options: InstanceOptions = {}): CapabilityInstance<FsScope, FsHostDeps> {
  return createInstance(fsCapability, scope, (parsed) => openRoot(parsed, deps), options);
}

/** The registry's entry: no host options; a relative `root` is relative to the host's data folder. */
export const fsPlugin = definePlugin({
  definition: fsCapability,
  hostOptions: NO_HOST_OPTIONS,
  create: (scope, context, options) => createFs(scopeWithDataDir(scope, 'root', context.dataDir), {}, options),
});
