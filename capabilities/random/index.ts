/**
 * random — random numbers and UUIDs, seedable so a run can be reproduced. Without a seed it draws
 * from the host's CSPRNG; with `seed` it draws from a deterministic generator (sfc32, seeded
 * through splitmix32) whose state belongs to the instance tree, never to the module.
 *
 * A seeded stream is predictable by design: never use it for secrets.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import { defineCapability, method } from '../sdk/define.js';
import { definePlugin, NO_HOST_OPTIONS } from '../plugin.js';
import { type CapabilityInstance, createInstance, type InstanceOptions } from '../sdk/instance.js';

export const randomScopeSchema = z.strictObject({
  /** Seed for a reproducible stream (an unsigned 32-bit integer). */
  seed: z.number().int().min(0).max(0xffffffff).optional(),
});
export type RandomScope = z.output<typeof randomScopeSchema>;

/** Host side of random: one generator per seed, created with the instance. */
export interface RandomDeps {
  streams: Map<number, () => number>;
}

/** sfc32: 32-bit outputs in [0, 2^32). Small, fast, well-distributed; not cryptographic. */
function sfc32(seed: number): () => number {
  let s = seed >>> 0;
  const split = (): number => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split();
  let b = split();
  let c = split();
  let d = split();
  return () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
}

/** 32 random bits from the scope's stream, or from the CSPRNG when unseeded. */
function next32(scope: RandomScope, deps: RandomDeps): number {
  if (scope.seed === undefined) return randomBytes(4).readUInt32LE(0);
  let stream = deps.streams.get(scope.seed);
  if (!stream) {
    stream = sfc32(scope.seed);
    deps.streams.set(scope.seed, stream);
  }
  return stream();
}

/** A float in [0, 1) with 53 random bits. */
function nextFloat(scope: RandomScope, deps: RandomDeps): number {
  const hi = next32(scope, deps) >>> 5; // 27 bits
  const lo = next32(scope, deps) >>> 6; // 26 bits
  return (hi * 67108864 + lo) / 9007199254740992;
}

const intArgs = z
  .strictObject({ min: z.number().int().safe(), max: z.number().int().safe() })
  .refine((a) => a.min <= a.max, { message: 'min must not exceed max', path: ['max'] })
  .refine((a) => a.max - a.min < Number.MAX_SAFE_INTEGER, { message: 'range too large', path: ['max'] });

function randomMethod<AS extends z.ZodType, RS extends z.ZodType>(m: Parameters<typeof method<AS, RS, RandomScope, RandomDeps>>[0]) {
  return method<AS, RS, RandomScope, RandomDeps>(m);
}

export const randomCapability = defineCapability<RandomScope, RandomDeps>({
  name: 'random',
  description: 'Random numbers and UUIDs.',
  scope: randomScopeSchema,
  intersect(parent, narrower) {
    if (parent.seed !== undefined && narrower.seed !== undefined && parent.seed !== narrower.seed) {
      throw new ContainedError('INVALID_SCOPE', 'random: a seeded instance cannot be re-seeded');
    }
    const seed = parent.seed ?? narrower.seed;
    return seed === undefined ? {} : { seed };
  },
  describeScope: (s) => (s.seed === undefined ? 'unpredictable (CSPRNG)' : `reproducible: seeded with ${s.seed}`),
  methods: {
    int: randomMethod({
      description: 'A uniformly random integer between min and max, both included.',
      args: intArgs,
      result: z.number().int(),
      risk: { readOnly: true, openWorld: false },
      run: (a, { scope, deps }) => a.min + Math.floor(nextFloat(scope, deps) * (a.max - a.min + 1)),
    }),
    float: randomMethod({
      description: 'A uniformly random number in [0, 1).',
      args: z.undefined(),
      result: z.number().min(0).lt(1),
      risk: { readOnly: true, openWorld: false },
      run: (_a, { scope, deps }) => nextFloat(scope, deps),
    }),
    uuid: randomMethod({
      description: 'A random version-4 UUID.',
      args: z.undefined(),
      result: z.string().uuid(),
      risk: { readOnly: true, openWorld: false },
      run(_a, { scope, deps }) {
        if (scope.seed === undefined) return randomUUID();
        const b = Buffer.alloc(16);
        for (let i = 0; i < 16; i += 4) b.writeUInt32LE(next32(scope, deps), i);
        b[6] = ((b[6] ?? 0) & 0x0f) | 0x40;
        b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
        const h = b.toString('hex');
        return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
      },
    }),
  },
});

/** Each call creates fresh streams: two instances with the same seed replay the same sequence. */
export function createRandom(scope: unknown = {}, _deps: Record<string, never> = {}, options: InstanceOptions = {}): CapabilityInstance<RandomScope, RandomDeps> {
  return createInstance(randomCapability, scope, { streams: new Map() }, options);
}

/** The registry's entry: no host options, nothing from the host. */
export const randomPlugin = definePlugin({
  definition: randomCapability,
  hostOptions: NO_HOST_OPTIONS,
  create: (scope, _context, options) => createRandom(scope, {}, options),
});
