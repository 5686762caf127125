/**
 * The `notify` section of the host config: where the host tells operators that something waits for
 * them — webhook endpoints (JSON signed with HMAC-SHA256, or a Slack- or Teams-compatible message)
 * and email through an SMTP relay (or a local folder) — which events each one hears, and how the
 * durable outbox retries (docs/approvals.md).
 *
 * A strict zod schema with a default for every limit: a typo fails at start-up. Secrets (a webhook's
 * signing secret, a webhook URL that is itself a credential, as Slack's are) may be written inline
 * or named by reference, `{ "secret": "NAME" }`, to the section's own `secrets` (inline, or a JSON
 * file kept out of the config); references are resolved at start-up, where a missing one fails with
 * INVALID_ARGUMENT naming its path (targets.ts).
 */
import path from 'node:path';
import { z } from 'zod';
import { smtpRelaySchema } from '../../capabilities/outbox/deliver.js';

/** What the host notifies about. */
export const NOTIFY_EVENTS = ['request.created', 'request.decided', 'request.expired', 'demotion', 'promotion.proposed', 'mcp.tool.pending'] as const;
export const notifyEventSchema = z.enum(NOTIFY_EVENTS);
export type NotifyEvent = z.infer<typeof notifyEventSchema>;

/** A value written inline, or `{ "secret": "NAME" }`: the secret of that name in `notify.secrets`. */
export const secretValueSchema = z.union([z.string().min(1).max(4096), z.strictObject({ secret: z.string().min(1).max(200) })]);
export type SecretValue = z.infer<typeof secretValueSchema>;

/** Webhook and target names: what the outbox rows and the console call an endpoint. */
export const TARGET_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export const webhookConfigSchema = z.strictObject({
  /** Unique name (lower case, digits, `-`, `_`): the endpoint's deliveries are kept under it. */
  name: z.string().regex(TARGET_NAME, 'webhook names are lower case letters, digits, - and _'),
  /** `http(s)://…`, or `{ "secret": "NAME" }` when the URL is itself a credential (Slack, Teams). Redirects are never followed. */
  url: z.union([z.url({ protocol: /^https?$/ }).max(2048), z.strictObject({ secret: z.string().min(1).max(200) })]),
  /** Events this endpoint hears (default: all of them). */
  events: z.array(notifyEventSchema).min(1).default([...NOTIFY_EVENTS]),
  /** HMAC-SHA256 signing secret, inline or `{ "secret": "NAME" }` (at least 16 characters once resolved). */
  secret: secretValueSchema,
  /** `json` (default): the signed event; `slack`: `{ text }`; `teams`: a message with an Adaptive Card. All are signed. */
  format: z.enum(['json', 'slack', 'teams']).default('json'),
  /** Put the request's arguments in the body (default false: the digest and a console link only; arguments may hold personal data). */
  includeArguments: z.boolean().default(false),
  /** One attempt's limit, connecting to the end of the answer's headers, in ms. */
  timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
});
export type WebhookConfig = z.output<typeof webhookConfigSchema>;

/** One plain address (no display name, no spaces or line breaks). */
const EMAIL = /^[^\s@<>,;"]+@[^\s@<>,;"]+$/;

export const emailConfigSchema = z
  .strictObject({
    /** The SMTP relay (the same shape as the `outbox` capability's). */
    smtp: smtpRelaySchema.optional(),
    /** Or an absolute folder the messages are written to (maildir-style, as the outbox capability's folder transport). */
    folder: z
      .string()
      .min(1)
      .refine((p) => path.isAbsolute(p), 'folder must be an absolute host path')
      .optional(),
    from: z.string().max(320).regex(EMAIL, 'an email address'),
    to: z.array(z.string().max(320).regex(EMAIL, 'an email address')).min(1).max(100),
    /** Events mailed (default: request created, demotion, promotion proposal). */
    events: z.array(notifyEventSchema).min(1).default(['request.created', 'demotion', 'promotion.proposed']),
  })
  .refine((e) => (e.smtp === undefined) !== (e.folder === undefined), { message: 'notify.email needs exactly one of smtp or folder' });
export type EmailConfig = z.output<typeof emailConfigSchema>;

export const notifyConfigSchema = z.strictObject({
  /**
   * The secrets `{ "secret": "NAME" }` references name: inline name → value, or `{ "file": "/etc/contained/notify-secrets.json" }`
   * (an absolute path to a JSON object of name → value, kept out of the config). An object whose only key is `file` is a file reference.
   */
  secrets: z
    .union([z.strictObject({ file: z.string().min(1).refine((p) => path.isAbsolute(p), 'notify.secrets.file must be an absolute path') }), z.record(z.string(), z.string())])
    .optional(),
  webhooks: z
    .array(webhookConfigSchema)
    .max(50)
    .default([])
    .refine((list) => new Set(list.map((w) => w.name)).size === list.length, 'webhook names must be unique'),
  email: emailConfigSchema.optional(),
  /**
   * The console as operators reach it (e.g. `https://contained.example.com/console/`), for the links
   * in notifications. Default: the host's own listening address, `http://host:port/console/`.
   */
  consoleUrl: z.url({ protocol: /^https?$/ }).optional(),
  /** Attempts before a delivery is given up (it stays visible as failed). */
  maxAttempts: z.number().int().min(1).max(100).default(12),
  /** Delay before the second attempt, ms; doubled per attempt, with jitter, up to `maxDelayMs`. */
  initialDelayMs: z.number().int().min(10).max(3_600_000).default(2_000),
  /** Longest delay between two attempts, ms. */
  maxDelayMs: z.number().int().min(10).max(86_400_000).default(600_000),
  /** Deliveries in flight at once, across all endpoints. */
  maxConcurrent: z.number().int().min(1).max(64).default(4),
  /** How often the outbox is looked at for due deliveries, ms (new ones are sent at once). */
  pollMs: z.number().int().min(10).max(60_000).default(1_000),
  /** Delivered and given-up rows are removed after this long, ms (default 7 days). */
  keepMs: z.number().int().min(60_000).default(7 * 86_400_000),
});
export type NotifyConfig = z.output<typeof notifyConfigSchema>;
