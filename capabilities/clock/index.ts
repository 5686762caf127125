/**
 * clock — the current time. The smallest built-in, and the template for new ones: a strict scope
 * schema (empty here), a pure intersection, methods with strict argument/result schemas, risk
 * annotations and a one-line description, `create<Name>(scope, deps, options)`, and the plugin the
 * registry lists (`<name>Plugin`: host options, if any, and how the host's context becomes deps).
 *
 * Defends nothing, exposes nothing but the time; the clock is injected so runs can be replayed.
 */
import { z } from 'zod';
import { defineCapability, method } from '../sdk/define.js';
import { definePlugin, NO_HOST_OPTIONS } from '../plugin.js';
import { type CapabilityInstance, createInstance, type InstanceOptions } from '../sdk/instance.js';

export const clockScopeSchema = z.strictObject({});
export type ClockScope = z.output<typeof clockScopeSchema>;

export interface ClockDeps {
  /** Epoch milliseconds; default `Date.now`. */
  now?: () => number;
}

const nowResult = z.strictObject({ iso: z.string(), epochMs: z.number().int() });

export const clockCapability = defineCapability<ClockScope, ClockDeps>({
  name: 'clock',
  description: 'The current time.',
  scope: clockScopeSchema,
  intersect: () => ({}),
  describeScope: () => 'the current time of the host',
  methods: {
    now: method<z.ZodUndefined, typeof nowResult, ClockScope, ClockDeps>({
      description: 'The current time, as an ISO-8601 UTC string and as epoch milliseconds.',
      args: z.undefined(),
      result: nowResult,
      risk: { readOnly: true, openWorld: false },
      run(_args, { deps }) {
        const epochMs = Math.trunc((deps.now ?? Date.now)());
        return { iso: new Date(epochMs).toISOString(), epochMs };
      },
    }),
  },
});

export function createClock(scope: unknown = {}, deps: ClockDeps = {}, options: InstanceOptions = {}): CapabilityInstance<ClockScope, ClockDeps> {
  return createInstance(clockCapability, scope, { ...deps }, options);
}

/** The registry's entry: no host options; the host's clock. */
export const clockPlugin = definePlugin({
  definition: clockCapability,
  hostOptions: NO_HOST_OPTIONS,
  create: (scope, context, options) => createClock(scope, { now: context.now }, options),
});
