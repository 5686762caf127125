/**
 * log — the agent writes structured lines into the host's pino log. The line is tagged with the
 * binding name and run id, the agent's data is nested under `agentData` (so it cannot overwrite
 * `level`, `time` or `msg`), and message and data sizes are capped by the argument schema.
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import { defineCapability, method } from '../sdk/define.js';
import { definePlugin, NO_HOST_OPTIONS } from '../plugin.js';
import { type CapabilityInstance, createInstance, type InstanceOptions } from '../sdk/instance.js';
import { jsonValueSchema } from '../sdk/json.js';

/** Longest message, in characters. */
export const MAX_MESSAGE_CHARS = 4096;
/** Largest `data`, as JSON, in bytes. */
export const MAX_DATA_BYTES = 16 * 1024;

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
const level = z.enum(LEVELS);

export const logScopeSchema = z.strictObject({
  /** Lines below this level are dropped (`written: false`). Default `debug`. */
  minLevel: level.optional(),
});
export type LogScope = z.output<typeof logScopeSchema>;

export interface LogDeps {
  logger: Logger;
}

const writeArgs = z.strictObject({
  level,
  message: z.string().max(MAX_MESSAGE_CHARS),
  data: z
    .record(z.string(), jsonValueSchema)
    .refine((d) => Buffer.byteLength(JSON.stringify(d), 'utf8') <= MAX_DATA_BYTES, `data larger than ${MAX_DATA_BYTES} bytes`)
    .optional(),
});

const writeResult = z.strictObject({ written: z.boolean() });

const rank = (l: (typeof LEVELS)[number] | undefined): number => LEVELS.indexOf(l ?? 'debug');

export const logCapability = defineCapability<LogScope, LogDeps>({
  name: 'log',
  description: 'Write lines to the operator-visible host log.',
  scope: logScopeSchema,
  intersect(parent, narrower) {
    const min = rank(parent.minLevel) >= rank(narrower.minLevel) ? parent.minLevel : narrower.minLevel;
    // "debug" is the default: leave it unset, so equal scopes give one answer (see defineCapability).
    return min === undefined || min === 'debug' ? {} : { minLevel: min };
  },
  describeScope: (s) => `levels ${LEVELS.slice(rank(s.minLevel)).join(', ')} are kept`,
  methods: {
    write: method<typeof writeArgs, typeof writeResult, LogScope, LogDeps>({
      description: 'Write one log line (level, message, optional JSON data) for the operators.',
      args: writeArgs,
      result: writeResult,
      risk: { readOnly: true, openWorld: false },
      run(a, { scope, deps, capability, runId }) {
        if (rank(a.level) < rank(scope.minLevel)) return { written: false };
        const child = deps.logger.child({ capability, runId, source: 'agent' });
        child[a.level](a.data === undefined ? {} : { agentData: a.data }, a.message);
        return { written: true };
      },
    }),
  },
});

export function createLog(scope: unknown, deps: LogDeps, options: InstanceOptions = {}): CapabilityInstance<LogScope, LogDeps> {
  return createInstance(logCapability, scope, deps, options);
}

/** The registry's entry: no host options; writes to the host's logger (stderr when it has none). */
export const logPlugin = definePlugin({
  definition: logCapability,
  hostOptions: NO_HOST_OPTIONS,
  create: (scope, context, options) => createLog(scope, { logger: context.logger }, options),
});
