/**
 * The `outbox` built-in capability: send a plain-text e-mail from a fixed sender to allowed
 * recipients, through the host's SMTP relay or into a local outbox folder.
 *
 * Defends against: mail to anyone outside `allowedRecipients` (exact, case-insensitive address or
 * domain match; lookalikes and display-name tricks fail the address syntax), header injection
 * (CR/LF or other control characters in the subject or an address fail the schema), a changed
 * sender (the scope fixes `from`), mass mailing (`maxPerRun` messages per run, `maxRecipients` per
 * message, `maxBodyBytes` of text). The per-run count is state of the instance tree (created by
 * `createOutbox`, shared with instances attenuated from it), keyed by run id, reserved before the
 * send so concurrent calls cannot both slip under the limit; a failed send still counts (it may
 * have reached someone).
 *
 * Fails closed: `INVALID_ARGUMENT` (syntax, injection), `OUT_OF_SCOPE` (recipient, size),
 * `BUDGET_EXCEEDED` (`maxPerRun`, `data.budget = 'maxPerRun'`), `CAPABILITY_FAILED` (relay/folder).
 */
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { type CapabilityContext, definePlugin } from '../plugin.js';
import { type CapabilityInstance, type InstanceOptions, createInstance, defineCapability, method } from '../sdk/index.js';
import { addressSchema } from './address.js';
import { type OutboxTransport, deliver, smtpRelaySchema, transportSchema } from './deliver.js';
import { type OutboxScope, checkMessage, describeOutboxScope, intersectOutboxScopes, limits, makeRuleCompiler, outboxScopeSchema } from './scope.js';

export type { OutboxTransport, SmtpRelay } from './deliver.js';
export type { OutboxScope } from './scope.js';
export { OUTBOX_DEFAULTS, outboxScopeSchema } from './scope.js';

/** Host resources of an outbox instance. */
export interface OutboxDeps {
  transport: OutboxTransport;
}

/** Runs remembered by the per-run counter before the oldest is forgotten. */
export const MAX_TRACKED_RUNS = 10_000;

/** Messages sent per run id, oldest run forgotten first past `MAX_TRACKED_RUNS`. */
export class RunCounter {
  private readonly counts = new Map<string, number>();

  /** Take one slot for `runId` if fewer than `limit` are taken; false otherwise. */
  reserve(runId: string, limit: number): boolean {
    const n = this.counts.get(runId) ?? 0;
    if (n >= limit) return false;
    this.counts.delete(runId);
    this.counts.set(runId, n + 1);
    if (this.counts.size > MAX_TRACKED_RUNS) {
      const oldest = this.counts.keys().next().value;
      if (oldest !== undefined) this.counts.delete(oldest);
    }
    return true;
  }

  sent(runId: string): number {
    return this.counts.get(runId) ?? 0;
  }
}

/** What the definition's methods receive: the host's deps plus the instance tree's counter. */
export interface OutboxInstanceDeps extends OutboxDeps {
  sentPerRun: RunCounter;
}

const recipients = z.union([addressSchema, z.array(addressSchema).min(1).max(100)]);

const sendArgs = z.strictObject({
  to: recipients,
  cc: recipients.optional(),
  subject: z
    .string()
    .min(1)
    .max(998)
    .regex(/^[^\u0000-\u001f\u007f\u0085\u2028\u2029]*$/, 'subject must be one line without control characters'),
  text: z
    .string()
    .max(10 * 1024 * 1024)
    .regex(/^[^\u0000]*$/, 'text must not contain NUL characters'),
});
type SendArgs = z.output<typeof sendArgs>;

/** `staged: true` only in a staged run: the message is queued in the run's changeset, sent if it is approved. */
const sendResult = z.strictObject({ messageId: z.string(), accepted: z.array(z.string()), staged: z.literal(true).optional() });

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

function makeDefinition() {
  const rules = makeRuleCompiler();
  return defineCapability<OutboxScope, OutboxInstanceDeps>({
    name: 'outbox',
    description: 'Send plain-text e-mail from a fixed sender to allowed recipients.',
    scope: outboxScopeSchema,
    intersect: intersectOutboxScopes,
    describeScope: describeOutboxScope,
    methods: {
      send: method({
        description: 'Send one plain-text e-mail to bare addresses (to, optional cc) with a one-line subject; returns the message id and accepted recipients.',
        args: sendArgs,
        result: sendResult,
        risk: { readOnly: false, destructive: false, reversible: false, openWorld: true, financial: false },
        staging: {
          // Queued in the changeset; the agent learns it is staged, with a placeholder id.
          async stage(a: SendArgs, ctx) {
            const recipients = [...list(a.to), ...list(a.cc)];
            const scope = ctx.scope as OutboxScope;
            await ctx.record({
              summary: `e-mail to ${recipients.join(', ')}: ${a.subject}`,
              detail: { from: scope.from, to: list(a.to), cc: list(a.cc), subject: a.subject, text: a.text },
            });
            return { staged: true as const, messageId: `staged:${randomUUID()}`, accepted: recipients };
          },
        },
        inScope: (a: SendArgs, scope: OutboxScope) =>
          checkMessage(scope, rules(scope), { recipients: [...list(a.to), ...list(a.cc)], bodyBytes: Buffer.byteLength(a.text, 'utf8') }),
        run: async (a: SendArgs, ctx) => {
          const deps = ctx.deps as OutboxInstanceDeps;
          if (!(deps.sentPerRun instanceof RunCounter)) {
            throw new ContainedError('INTERNAL', 'outbox instances must be created with createOutbox (no per-run counter)');
          }
          const scope = ctx.scope as OutboxScope;
          const max = limits(scope).maxPerRun;
          if (!deps.sentPerRun.reserve(ctx.runId, max)) {
            throw new ContainedError('BUDGET_EXCEEDED', `outbox.send: ${max} messages per run used up`, { data: { budget: 'maxPerRun', limit: max } });
          }
          if (ctx.signal.aborted) throw new ContainedError('CANCELLED', 'the run ended before the message was sent');
          return deliver(deps.transport, { from: scope.from, to: list(a.to), cc: list(a.cc), subject: a.subject, text: a.text });
        },
      }),
    },
  });
}

export const outboxCapability = makeDefinition();

/**
 * Bind the outbox definition to a scope and a transport. Each call makes a fresh per-run counter
 * for the new instance tree. Bad scope → `INVALID_SCOPE`; bad deps → `INVALID_ARGUMENT`.
 */
export function createOutbox(scope: unknown, deps: OutboxDeps, options: InstanceOptions = {}): CapabilityInstance<OutboxScope, OutboxInstanceDeps> {
  const transport = transportSchema.safeParse(deps.transport);
  if (!transport.success) {
    throw new ContainedError('INVALID_ARGUMENT', `outbox: invalid transport: ${transport.error.issues[0]?.message ?? 'does not match the schema'}`);
  }
  return createInstance(outboxCapability, scope, { transport: transport.data, sentPerRun: new RunCounter() }, options);
}

/**
 * Where one outbox instance delivers (`capabilities.<binding>.host` in the host config): an SMTP
 * relay, or a local folder (relative to the config file's folder). Absent: `<dataDir>/outbox`.
 * `contained run --smtp URL | --maildir DIR` give the same options to every outbox grant.
 */
export const outboxHostOptionsSchema = z.union([z.strictObject({ smtp: smtpRelaySchema }), z.strictObject({ folder: z.string().min(1) })]).optional();
export type OutboxHostOptions = z.output<typeof outboxHostOptionsSchema>;

function transportFor(context: CapabilityContext<OutboxHostOptions>): OutboxTransport {
  const options = context.hostOptions;
  if (options !== undefined) return 'smtp' in options ? options : { folder: context.resolvePath(options.folder) };
  // Said in the words of who configures it: the host config key, or the run command's flags.
  if (context.dataDir === undefined) {
    throw new ContainedError('INVALID_ARGUMENT', `outbox: no mail transport is configured: set "host": { "smtp": … } or { "folder": … } on the capability "${context.name}" in the host config (contained run: --smtp URL or --maildir DIR)`);
  }
  return { folder: path.resolve(context.dataDir, 'outbox') };
}

/** The registry's entry: the transport is the instance's host options. */
export const outboxPlugin = definePlugin({
  definition: outboxCapability,
  hostOptions: outboxHostOptionsSchema,
  create: (scope, context, options) => createOutbox(scope, { transport: transportFor(context) }, options),
});
