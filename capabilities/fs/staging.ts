/**
 * fs in a staged run: writes, appends, removes, mkdirs and file moves go to an overlay (the run's
 * staged view) and are recorded as effects; reads, stats and listings in the same run see the
 * overlay over the real folder. Resources are root-relative paths; a resource's fingerprint is
 * `absent`, `dir` or `sha256:<hex>` of the file's bytes, taken through the real methods (so every
 * link, special-file and scope defence applies to the commit's checks as to any call).
 *
 * Not stageable: moving a folder (its whole subtree would have to be overlaid) — `NOT_STAGEABLE`.
 */
import { createHash } from 'node:crypto';
import { ContainedError } from '../../runtime/errors.js';
import type { CapabilityDefinition, MethodContext } from '../sdk/define.js';
import type { CapabilityStaging, MethodStaging, StageContext } from '../sdk/staging.js';
import { parseAgentPath } from './paths.js';
import { fsFailure } from './resolve.js';

/** A path's state: in the overlay, or as the real folder has it. */
export type FsEntry = { type: 'file'; content: string } | { type: 'dir' } | { type: 'absent' };
type Overlay = Map<string, FsEntry>;
// Structural, so this module does not import the definition's own file: what staging reads of the scope.
type FsScope = { maxFileBytes?: number };
type FsHostDeps = unknown;
type Ctx = StageContext<FsScope, FsHostDeps>;

/** The root-relative display form of an agent path (`.` for the root); OUT_OF_SCOPE when it cannot be one. */
function norm(p: string): string {
  const parsed = parseAgentPath(p, true);
  if (!parsed.ok) throw new ContainedError('OUT_OF_SCOPE', `fs: ${parsed.message}`);
  return parsed.display;
}

function parentOf(display: string): string {
  return display.includes('/') ? display.slice(0, display.lastIndexOf('/')) : '.';
}

function isEnoent(e: unknown): boolean {
  return e instanceof ContainedError && e.code === 'CAPABILITY_FAILED' && (e.data as { reason?: unknown } | undefined)?.reason === 'ENOENT';
}

/** The real state of a path, through a reader of the real methods. */
async function realEntry(real: (method: string, args: unknown) => Promise<unknown>, display: string): Promise<FsEntry> {
  try {
    const st = (await real('stat', display)) as { type: 'file' | 'dir' };
    if (st.type === 'dir') return { type: 'dir' };
    return { type: 'file', content: (await real('read', display)) as string };
  } catch (e) {
    if (isEnoent(e)) return { type: 'absent' };
    throw e;
  }
}

function overlay(ctx: Ctx): Overlay {
  return ctx.view(() => new Map<string, FsEntry>());
}

async function entry(ctx: Ctx, display: string): Promise<FsEntry> {
  if (display === '.') return { type: 'dir' };
  return overlay(ctx).get(display) ?? realEntry(ctx.real, display);
}

async function requireFolder(ctx: Ctx, display: string): Promise<void> {
  const parent = parentOf(display);
  if ((await entry(ctx, parent)).type !== 'dir') {
    throw new ContainedError('CAPABILITY_FAILED', `fs: cannot write "${display}": the folder "${parent}" does not exist (create it with mkdir first)`, {
      data: { reason: 'ENOENT', path: display, folder: parent },
    });
  }
}

function bytes(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

function before(e: FsEntry): string | null {
  return e.type === 'file' ? e.content : null;
}

type Stage = MethodStaging<FsScope, FsHostDeps>;

const write: Stage = {
  async stage(a: { path: string; content: string }, ctx) {
    const display = norm(a.path);
    const cur = await entry(ctx, display);
    if (cur.type === 'dir') throw fsFailure('EISDIR', display);
    await requireFolder(ctx, display);
    overlay(ctx).set(display, { type: 'file', content: a.content });
    await ctx.record({ summary: `write ${display} (${bytes(a.content)} bytes)`, detail: { path: display, before: before(cur), after: a.content }, resources: [display] });
    return { path: display, size: bytes(a.content) };
  },
};

const append: Stage = {
  async stage(a: { path: string; content: string }, ctx) {
    const display = norm(a.path);
    const cur = await entry(ctx, display);
    if (cur.type === 'dir') throw fsFailure('EISDIR', display);
    await requireFolder(ctx, display);
    const after = before(cur) ?? '';
    const next = after + a.content;
    const limit = ctx.scope.maxFileBytes;
    if (limit !== undefined && bytes(next) > limit) throw new ContainedError('OUT_OF_SCOPE', `fs: "${display}" would grow past ${limit} bytes`);
    overlay(ctx).set(display, { type: 'file', content: next });
    await ctx.record({ summary: `append ${bytes(a.content)} bytes to ${display}`, detail: { path: display, before: before(cur), after: next }, resources: [display] });
    return { path: display, size: bytes(next) };
  },
};

const remove: Stage = {
  async stage(p: string, ctx) {
    const display = norm(p);
    const cur = await entry(ctx, display);
    if (cur.type === 'absent') throw fsFailure('ENOENT', display);
    if (cur.type === 'dir' && (await listing(ctx, display)).length > 0) throw fsFailure('ENOTEMPTY', display);
    overlay(ctx).set(display, { type: 'absent' });
    await ctx.record({ summary: `remove ${display}${cur.type === 'dir' ? '/' : ''}`, detail: { path: display, before: before(cur), after: null }, resources: [display] });
    return null;
  },
};

const mkdir: Stage = {
  async stage(p: string, ctx) {
    const display = norm(p);
    const created: string[] = [];
    const segments = display === '.' ? [] : display.split('/');
    for (let i = 1; i <= segments.length; i++) {
      const prefix = segments.slice(0, i).join('/');
      const cur = await entry(ctx, prefix);
      if (cur.type === 'file') throw fsFailure('ENOTDIR', prefix);
      if (cur.type === 'absent') {
        overlay(ctx).set(prefix, { type: 'dir' });
        created.push(prefix);
      }
    }
    if (created.length > 0) await ctx.record({ summary: `mkdir ${display}`, detail: { path: display, created }, resources: created });
    return null;
  },
};

const move: Stage = {
  async stage(a: { from: string; to: string }, ctx) {
    const from = norm(a.from);
    const to = norm(a.to);
    const src = await entry(ctx, from);
    if (src.type === 'absent') throw fsFailure('ENOENT', from);
    if (src.type === 'dir') throw new ContainedError('NOT_STAGEABLE', `fs.move of a folder ("${from}") cannot be staged; nothing was performed`);
    if ((await entry(ctx, to)).type !== 'absent') throw fsFailure('EEXIST', to);
    await requireFolder(ctx, to);
    overlay(ctx).set(from, { type: 'absent' });
    overlay(ctx).set(to, src);
    await ctx.record({ summary: `move ${from} → ${to}`, detail: { from, to, content: src.content }, resources: [from, to] });
    return null;
  },
};

const read: Stage = {
  async stage(p: string, ctx) {
    const display = norm(p);
    const staged = overlay(ctx).get(display);
    if (staged === undefined) return ctx.real('read', p);
    if (staged.type === 'absent') throw fsFailure('ENOENT', display);
    if (staged.type === 'dir') throw fsFailure('EISDIR', display);
    return staged.content;
  },
};

const stat: Stage = {
  async stage(p: string, ctx) {
    const display = norm(p);
    const staged = overlay(ctx).get(display);
    if (staged === undefined) return ctx.real('stat', p);
    if (staged.type === 'absent') throw fsFailure('ENOENT', display);
    const size = staged.type === 'file' ? bytes(staged.content) : 0;
    return { path: display, type: staged.type, size, modified: new Date().toISOString() };
  },
};

type ListEntry = { name: string; type: 'file' | 'dir'; size: number };

/** A folder's entries: the real ones (none for a folder only the overlay has), with the overlay over them. */
async function listing(ctx: Ctx, display: string): Promise<ListEntry[]> {
  const staged = overlay(ctx).get(display);
  if (staged !== undefined && staged.type !== 'dir') throw fsFailure(staged.type === 'absent' ? 'ENOENT' : 'ENOTDIR', display);
  let real: ListEntry[] = [];
  if (staged === undefined) real = (await ctx.real('list', display)) as ListEntry[];
  else {
    try {
      real = (await ctx.real('list', display)) as ListEntry[];
    } catch (e) {
      if (!isEnoent(e)) throw e;
    }
  }
  const out = new Map(real.map((e) => [e.name, e]));
  for (const [p, e] of overlay(ctx)) {
    if (p === '.' || parentOf(p) !== display) continue;
    const name = p.slice(p.lastIndexOf('/') + 1);
    if (e.type === 'absent') out.delete(name);
    else out.set(name, { name, type: e.type, size: e.type === 'file' ? bytes(e.content) : 0 });
  }
  return [...out.values()].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
}

const list: Stage = {
  stage: (p: string | undefined, ctx) => listing(ctx, norm(p ?? '')),
};

/** The stage hooks of each fs method. */
export const fsMethodStaging = { read, list, stat, write, append, remove, mkdir, move } as const;

/** Fingerprint of a real entry: what the commit's precondition compares. */
function fingerprint(e: FsEntry): string {
  if (e.type !== 'file') return e.type;
  return `sha256:${createHash('sha256').update(e.content, 'utf8').digest('hex')}`;
}

/**
 * fs's resource hooks, through the real methods of the definition (given lazily: this module is
 * imported by the definition's own file).
 */
export function fsResourceStaging<S, D>(definition: () => CapabilityDefinition<S, D>): CapabilityStaging<S, D> {
  const real = (c: { scope: S; deps: D }) => async (method: string, args: unknown): Promise<unknown> => {
    const m = definition().methods[method];
    if (m === undefined) throw new ContainedError('INTERNAL', `fs has no method ${method}`);
    const ctx: MethodContext<S, D> = { ...c, capability: 'fs', runId: 'changeset', signal: new AbortController().signal };
    return m.run(args, ctx);
  };
  return {
    observe: async (resource, c) => fingerprint(await realEntry(real(c), resource)),
    snapshot: (resource, c) => realEntry(real(c), resource),
    async restore(resource, image, c) {
      const want = image as FsEntry;
      const run = real(c);
      const cur = await realEntry(run, resource);
      if (want.type === 'file') {
        if (cur.type === 'dir') await run('remove', resource);
        await run('write', { path: resource, content: want.content });
      } else if (want.type === 'dir') {
        if (cur.type === 'file') await run('remove', resource);
        if (cur.type !== 'dir') await run('mkdir', resource);
      } else if (cur.type !== 'absent') {
        await run('remove', resource);
      }
    },
  };
}
