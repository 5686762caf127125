/**
 * Delivery of one already-checked message: over SMTP to the configured relay (nodemailer), or into
 * a local maildir-style folder (`tmp/` then atomic rename into `new/`, one `.eml` per message).
 *
 * Defends against: the SMTP envelope drifting from the checked recipients (the envelope is set
 * explicitly to exactly the checked `to` + `cc`), nodemailer reading files or URLs on the message's
 * behalf (`disableFileAccess`/`disableUrlAccess`), a relay that hangs (connection, greeting and
 * socket timeouts), and half-written files in the folder (write + fsync in `tmp/`, then rename).
 * No pooled connection outlives a call.
 *
 * Fails with `CAPABILITY_FAILED` (`data.reason`: `smtp` with nodemailer's error code, or `folder`).
 * nodemailer is imported on the first delivery, not with this module: the package entry and the
 * host config import this file, and most programs that import it never send mail.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type Nodemailer from 'nodemailer';
import type Mail from 'nodemailer/lib/mailer/index.js';
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';

export const smtpRelaySchema = z.strictObject({
  host: z.string().min(1).max(253),
  port: z.number().int().min(1).max(65535),
  /** TLS from the first byte (port 465). Otherwise STARTTLS is used when the relay offers it. */
  secure: z.boolean().optional(),
  /** Refuse to send unless STARTTLS succeeds. */
  requireTLS: z.boolean().optional(),
  auth: z.strictObject({ user: z.string(), pass: z.string() }).optional(),
  /** Milliseconds for connecting, for the greeting, and of socket inactivity. Default 10 000. */
  timeoutMs: z.number().int().positive().max(300_000).optional(),
});
export type SmtpRelay = z.infer<typeof smtpRelaySchema>;

export const transportSchema = z.union([
  z.strictObject({ smtp: smtpRelaySchema }),
  z.strictObject({ folder: z.string().min(1).refine((p) => path.isAbsolute(p), 'folder must be an absolute host path') }),
]);
export type OutboxTransport = z.infer<typeof transportSchema>;

export interface OutgoingMessage {
  from: string;
  to: readonly string[];
  cc: readonly string[];
  subject: string;
  text: string;
}

export interface Delivered {
  messageId: string;
  accepted: string[];
}

const DEFAULT_TIMEOUT_MS = 10_000;

function mailOptions(msg: OutgoingMessage): Mail.Options {
  return {
    from: msg.from,
    to: [...msg.to],
    ...(msg.cc.length > 0 ? { cc: [...msg.cc] } : {}),
    subject: msg.subject,
    text: msg.text,
    envelope: { from: msg.from, to: [...msg.to, ...msg.cc] },
    disableFileAccess: true,
    disableUrlAccess: true,
  };
}

function addressText(a: string | Mail.Address): string {
  return typeof a === 'string' ? a : a.address;
}

/** nodemailer, imported on first use (the module cache keeps the one copy). */
async function loadNodemailer(): Promise<typeof Nodemailer> {
  return (await import('nodemailer')).default;
}

async function sendSmtp(relay: SmtpRelay, msg: OutgoingMessage): Promise<Delivered> {
  const timeout = relay.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const nodemailer = await loadNodemailer();
  const transporter = nodemailer.createTransport({
    host: relay.host,
    port: relay.port,
    secure: relay.secure ?? false,
    requireTLS: relay.requireTLS ?? false,
    ...(relay.auth ? { auth: relay.auth } : {}),
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
    disableFileAccess: true,
    disableUrlAccess: true,
    logger: false,
    debug: false,
  });
  try {
    const info = await transporter.sendMail(mailOptions(msg));
    return { messageId: info.messageId, accepted: info.accepted.map(addressText) };
  } catch (error) {
    const e = error as { code?: unknown; responseCode?: unknown };
    const code = typeof e.code === 'string' ? e.code : 'ESMTP';
    throw new ContainedError('CAPABILITY_FAILED', `outbox: the mail relay failed (${code}${typeof e.responseCode === 'number' ? ` ${e.responseCode}` : ''})`, {
      data: { reason: 'smtp', smtpCode: code },
      cause: error,
    });
  } finally {
    transporter.close();
  }
}

async function writeToFolder(folder: string, msg: OutgoingMessage): Promise<Delivered> {
  const nodemailer = await loadNodemailer();
  const composer = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'windows' });
  const info = await composer.sendMail(mailOptions(msg));
  const raw = info.message as Buffer;
  const name = `${Date.now()}.${randomUUID()}.eml`;
  const tmp = path.join(folder, 'tmp', name);
  try {
    for (const sub of ['tmp', 'new', 'cur']) await mkdir(path.join(folder, sub), { recursive: true, mode: 0o700 });
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(raw);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path.join(folder, 'new', name));
  } catch (error) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw new ContainedError('CAPABILITY_FAILED', 'outbox: could not write the message to the outbox folder', { data: { reason: 'folder' }, cause: error });
  }
  // The envelope as nodemailer normalised it (domains lower-cased), as the SMTP path reports it.
  const envelopeTo = (info.envelope as { to?: unknown }).to;
  return { messageId: info.messageId, accepted: Array.isArray(envelopeTo) ? envelopeTo.map(String) : [...msg.to, ...msg.cc] };
}

export function deliver(transport: OutboxTransport, msg: OutgoingMessage): Promise<Delivered> {
  return 'smtp' in transport ? sendSmtp(transport.smtp, msg) : writeToFolder(transport.folder, msg);
}
