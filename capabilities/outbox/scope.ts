/**
 * The outbox scope: the fixed sender, the recipients allowed (addresses or `@domain`), and limits
 * (messages per run, body bytes, recipients per message).
 *
 * Defends against mis-written rules (a rule that is not an address or `@domain`, a bad sender)
 * failing late: the schema compiles every rule, so `createInstance`/`attenuate` refuse them with
 * `INVALID_SCOPE`. The pure predicate `checkMessage` refuses (`OUT_OF_SCOPE`) any recipient no rule
 * allows, too many recipients, or a body over the limit. `intersectOutboxScopes` only narrows and
 * throws `INVALID_SCOPE` when the sender differs or no recipient is left.
 */
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import { IN_SCOPE, outOfScope, type ScopeCheck } from '../sdk/index.js';
import { type RecipientRule, compileRule, formatRule, intersectRules, parseAddress, ruleAllows } from './address.js';

/** Defaults of every limit (units in the names). */
export const OUTBOX_DEFAULTS = Object.freeze({
  maxPerRun: 10,
  maxBodyBytes: 64 * 1024,
  maxRecipients: 10,
});

const scopeObject = z.strictObject({
  /** The sender of every message; the agent cannot change it. */
  from: z.string().min(3).max(254),
  /** `name@example.com` (that address) or `@example.com` (any address at exactly that domain); case-insensitive. */
  allowedRecipients: z.array(z.string().min(2).max(254)).min(1).max(200),
  /** Messages one run may send through this instance (and the instances attenuated from it). Default 10. */
  maxPerRun: z.number().int().nonnegative().max(10_000).optional(),
  /** Bytes of message text (UTF-8). Default 64 KiB. */
  maxBodyBytes: z.number().int().positive().max(10 * 1024 * 1024).optional(),
  /** Recipients (to + cc) per message. Default 10. */
  maxRecipients: z.number().int().positive().max(100).optional(),
});

export type OutboxScope = z.infer<typeof scopeObject>;

export const outboxScopeSchema = scopeObject.superRefine((scope, ctx) => {
  if (!parseAddress(scope.from)) ctx.addIssue({ code: 'custom', path: ['from'], message: `"${scope.from}" is not a bare e-mail address` });
  scope.allowedRecipients.forEach((rule, i) => {
    try {
      compileRule(rule);
    } catch (error) {
      ctx.addIssue({ code: 'custom', path: ['allowedRecipients', i], message: (error as Error).message });
    }
  });
});

export interface MessageShape {
  recipients: readonly string[];
  bodyBytes: number;
}

export function limits(scope: OutboxScope): { maxPerRun: number; maxBodyBytes: number; maxRecipients: number } {
  return {
    maxPerRun: scope.maxPerRun ?? OUTBOX_DEFAULTS.maxPerRun,
    maxBodyBytes: scope.maxBodyBytes ?? OUTBOX_DEFAULTS.maxBodyBytes,
    maxRecipients: scope.maxRecipients ?? OUTBOX_DEFAULTS.maxRecipients,
  };
}

/** Compiled recipient rules, once per (never mutated) parsed scope object: a memo of a pure function. */
export function makeRuleCompiler(): (scope: OutboxScope) => readonly RecipientRule[] {
  const cache = new WeakMap<OutboxScope, readonly RecipientRule[]>();
  return (scope) => {
    let rules = cache.get(scope);
    if (!rules) {
      rules = scope.allowedRecipients.map(compileRule);
      cache.set(scope, rules);
    }
    return rules;
  };
}

/** Pure scope predicate for one message. */
export function checkMessage(scope: OutboxScope, rules: readonly RecipientRule[], msg: MessageShape): ScopeCheck {
  const lim = limits(scope);
  if (msg.recipients.length > lim.maxRecipients) return outOfScope(`outbox: ${msg.recipients.length} recipients, at most ${lim.maxRecipients} allowed`);
  for (const r of msg.recipients) {
    if (!rules.some((rule) => ruleAllows(rule, r))) return outOfScope(`outbox: recipient ${r} is not allowed`);
  }
  if (msg.bodyBytes > lim.maxBodyBytes) return outOfScope(`outbox: message text of ${msg.bodyBytes} bytes exceeds maxBodyBytes (${lim.maxBodyBytes})`);
  return IN_SCOPE;
}

export function intersectOutboxScopes(parent: OutboxScope, narrower: OutboxScope): OutboxScope {
  if (parseAddress(parent.from) !== parseAddress(narrower.from)) {
    throw new ContainedError('INVALID_SCOPE', 'outbox: an attenuated scope cannot change the sender');
  }
  const pr = parent.allowedRecipients.map(compileRule);
  const nr = narrower.allowedRecipients.map(compileRule);
  const allowed = [...new Set(pr.flatMap((a) => nr.map((b) => intersectRules(a, b))).filter((r) => r !== undefined).map(formatRule))];
  if (allowed.length === 0) throw new ContainedError('INVALID_SCOPE', 'outbox: the narrower scope shares no recipient with its parent');
  const p = limits(parent);
  return {
    from: parent.from,
    allowedRecipients: allowed,
    maxPerRun: Math.min(p.maxPerRun, narrower.maxPerRun ?? p.maxPerRun),
    maxBodyBytes: Math.min(p.maxBodyBytes, narrower.maxBodyBytes ?? p.maxBodyBytes),
    maxRecipients: Math.min(p.maxRecipients, narrower.maxRecipients ?? p.maxRecipients),
  };
}

export function describeOutboxScope(scope: OutboxScope): string {
  const lim = limits(scope);
  return `mail from ${scope.from} to ${scope.allowedRecipients.join(', ')}; at most ${lim.maxPerRun} messages per run, ${lim.maxRecipients} recipients per message, ${lim.maxBodyBytes} bytes of text`;
}
