/**
 * The configured notification targets with their secrets resolved: each webhook as `webhook:<name>`,
 * the email recipients as `email`. A `{ "secret": "NAME" }` reference is looked up in
 * `notify.secrets` once, at start-up.
 *
 * Fails closed at start-up, with INVALID_ARGUMENT and `data.path`, when a reference names no host
 * secret, a resolved URL is not http(s), or a signing secret is shorter than 16 characters: a
 * webhook that could never be delivered, or whose signature anyone could guess, is a config error.
 */
import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import type { SmtpRelay } from '../../capabilities/outbox/deliver.js';
import { ContainedError } from '../../runtime/errors.js';
import type { NotifyConfig, NotifyEvent, SecretValue, WebhookConfig } from './config.js';

/** Shortest signing secret accepted, characters. */
export const MIN_SECRET_CHARS = 16;

export interface WebhookTarget {
  kind: 'webhook';
  /** `webhook:<name>`: the outbox rows' target. */
  target: string;
  name: string;
  url: URL;
  /** The URL as the console and the log show it: origin only (a Slack URL's path is a credential). */
  shownUrl: string;
  secret: string;
  events: ReadonlySet<NotifyEvent>;
  format: WebhookConfig['format'];
  includeArguments: boolean;
  timeoutMs: number;
}

export interface EmailTarget {
  kind: 'email';
  target: 'email';
  transport: { smtp: SmtpRelay } | { folder: string };
  from: string;
  to: readonly string[];
  events: ReadonlySet<NotifyEvent>;
}

export type NotifyTarget = WebhookTarget | EmailTarget;

export interface NotifySecrets {
  get(name: string): string | undefined;
}

function resolve(value: SecretValue, secrets: NotifySecrets | undefined, at: string[]): string {
  if (typeof value === 'string') return value;
  const found = secrets?.get(value.secret);
  if (found === undefined) {
    throw new ContainedError('INVALID_ARGUMENT', `config: ${at.join('.')}: the secret "${value.secret}" is not in notify.secrets`, { data: { path: at } });
  }
  return found;
}

/** Largest `notify.secrets.file` read, bytes. */
export const MAX_NOTIFY_SECRETS_FILE_BYTES = 64 * 1024;

/**
 * `notify.secrets` as a lookup: inline, or read now from its (absolute) file. INVALID_ARGUMENT when
 * the file cannot be read or is not a JSON object of strings.
 */
export function loadNotifySecrets(secrets: NotifyConfig['secrets']): NotifySecrets | undefined {
  if (secrets === undefined) return undefined;
  let values: Record<string, string>;
  const keys = Object.keys(secrets);
  if (keys.length === 1 && keys[0] === 'file' && typeof secrets.file === 'string') {
    const file = secrets.file;
    const bad = (why: string, cause?: unknown): ContainedError =>
      new ContainedError('INVALID_ARGUMENT', `config: notify.secrets.file ${file}: ${why}`, { data: { path: ['notify', 'secrets', 'file'] }, ...(cause !== undefined ? { cause } : {}) });
    let parsed: unknown;
    try {
      if (statSync(file).size > MAX_NOTIFY_SECRETS_FILE_BYTES) throw bad(`larger than ${MAX_NOTIFY_SECRETS_FILE_BYTES} bytes`);
      parsed = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    } catch (error) {
      if (error instanceof ContainedError) throw error;
      throw bad('cannot be read as JSON', error);
    }
    const checked = z.record(z.string(), z.string()).safeParse(parsed);
    if (!checked.success) throw bad('expected a JSON object of name → string value');
    values = checked.data;
  } else {
    values = secrets as Record<string, string>;
  }
  const table = new Map(Object.entries(values));
  return { get: (name) => table.get(name) };
}

const httpUrl = z.url({ protocol: /^https?$/ });

/** The targets of `config`, secrets resolved; INVALID_ARGUMENT (with `data.path`) on the first bad one. */
export function resolveTargets(config: NotifyConfig, secrets: NotifySecrets | undefined): NotifyTarget[] {
  const out: NotifyTarget[] = [];
  config.webhooks.forEach((w, i) => {
    const urlText = resolve(w.url, secrets, ['notify', 'webhooks', String(i), 'url']);
    if (!httpUrl.safeParse(urlText).success) {
      throw new ContainedError('INVALID_ARGUMENT', `config: notify.webhooks.${i}.url: not an http(s) URL`, { data: { path: ['notify', 'webhooks', String(i), 'url'] } });
    }
    const secret = resolve(w.secret, secrets, ['notify', 'webhooks', String(i), 'secret']);
    if (secret.length < MIN_SECRET_CHARS) {
      throw new ContainedError('INVALID_ARGUMENT', `config: notify.webhooks.${i}.secret: at least ${MIN_SECRET_CHARS} characters`, { data: { path: ['notify', 'webhooks', String(i), 'secret'] } });
    }
    const url = new URL(urlText);
    out.push({
      kind: 'webhook',
      target: `webhook:${w.name}`,
      name: w.name,
      url,
      shownUrl: `${url.origin}/…`,
      secret,
      events: new Set(w.events),
      format: w.format,
      includeArguments: w.includeArguments,
      timeoutMs: w.timeoutMs,
    });
  });
  const e = config.email;
  if (e) out.push({ kind: 'email', target: 'email', transport: e.smtp ? { smtp: e.smtp } : { folder: e.folder as string }, from: e.from, to: e.to, events: new Set(e.events) });
  return out;
}
