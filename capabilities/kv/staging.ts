/**
 * kv in a staged run: `set` and `delete` go to an overlay (the run's staged view) and are recorded
 * as effects; `get` and `list` in the same run see the overlay over the real store. Resources are
 * keys; a key's fingerprint is `absent` or `sha256:<hex>` of its value's JSON (its version: any
 * change to the value changes it). The quota is checked at commit, by the real `set`.
 */
import { createHash } from 'node:crypto';
import { ContainedError } from '../../runtime/errors.js';
import type { CapabilityDefinition, MethodContext } from '../sdk/define.js';
import type { CapabilityStaging, MethodStaging, StageContext } from '../sdk/staging.js';

type Json = unknown;
type Entry = { value: Json } | null;
// Structural, so this module does not import the definition's own file: what staging reads of the scope.
type KvScope = { prefix?: string };
type KvDeps = unknown;
type Ctx = StageContext<KvScope, KvDeps>;

function overlay(ctx: Ctx): Map<string, Entry> {
  return ctx.view(() => new Map<string, Entry>());
}

async function current(ctx: Ctx, key: string): Promise<Json | null> {
  const staged = overlay(ctx).get(key);
  if (staged !== undefined) return staged === null ? null : staged.value;
  return ctx.real('get', key);
}

type Stage = MethodStaging<KvScope, KvDeps>;

const set: Stage = {
  async stage(a: { key: string; value: Json }, ctx) {
    const before = await current(ctx, a.key);
    overlay(ctx).set(a.key, { value: a.value });
    await ctx.record({ summary: `set ${a.key}`, detail: { key: a.key, before, after: a.value }, resources: [a.key] });
    return null;
  },
};

const del: Stage = {
  async stage(key: string, ctx) {
    const before = await current(ctx, key);
    if (before === null) return { deleted: false };
    overlay(ctx).set(key, null);
    await ctx.record({ summary: `delete ${key}`, detail: { key, before, after: null }, resources: [key] });
    return { deleted: true };
  },
};

const get: Stage = {
  stage: (key: string, ctx) => current(ctx, key),
};

const list: Stage = {
  async stage(a: { prefix?: string; after?: string; limit?: number } | undefined, ctx) {
    const page = (await ctx.real('list', a)) as { keys: string[]; more: boolean };
    const limit = a?.limit ?? 100;
    const want = `${ctx.scope.prefix ?? ''}`;
    const prefix = (a?.prefix ?? '').length > want.length ? (a?.prefix ?? '') : want;
    const last = page.keys.at(-1);
    const keys = new Set(page.keys);
    for (const [key, entry] of overlay(ctx)) {
      if (!key.startsWith(prefix) || key <= (a?.after ?? '')) continue;
      // Past the real page's end there are real keys this page did not read: leave those to the next page.
      if (page.more && last !== undefined && key > last) continue;
      if (entry === null) keys.delete(key);
      else keys.add(key);
    }
    const sorted = [...keys].sort();
    return { keys: sorted.slice(0, limit), more: page.more || sorted.length > limit };
  },
};

/** The stage hooks of each kv method. */
export const kvMethodStaging = { get, set, delete: del, list } as const;

function fingerprint(value: Json | null): string {
  return value === null ? 'absent' : `sha256:${createHash('sha256').update(JSON.stringify(value), 'utf8').digest('hex')}`;
}

/** kv's resource hooks, through the real methods of the definition (given lazily, as fs does). */
export function kvResourceStaging<S, D>(definition: () => CapabilityDefinition<S, D>): CapabilityStaging<S, D> {
  const real = (c: { scope: S; deps: D }) => async (method: string, args: unknown): Promise<unknown> => {
    const m = definition().methods[method];
    if (m === undefined) throw new ContainedError('INTERNAL', `kv has no method ${method}`);
    const ctx: MethodContext<S, D> = { ...c, capability: 'kv', runId: 'changeset', signal: new AbortController().signal };
    return m.run(args, ctx);
  };
  return {
    observe: async (key, c) => fingerprint(await real(c)('get', key)),
    snapshot: async (key, c) => ({ value: await real(c)('get', key) }),
    async restore(key, image, c) {
      const { value } = image as { value: Json | null };
      await (value === null ? real(c)('delete', key) : real(c)('set', { key, value }));
    },
  };
}
