/**
 * What a one-shot `contained run` offers the capability kinds in place of a host: relative scope
 * paths (`fs.root`, `kv.file`, `sql.file`) resolve against the working directory, and every outbox
 * grant gets the host options `{ smtp }` from `--smtp URL`, `{ folder }` from `--maildir DIR`, or by
 * default the maildir `./.contained/outbox` (announced on stderr, so mail never silently goes
 * nowhere) — the same host options a host config gives an outbox capability.
 *
 * Defends against: an SMTP password on the command line (argv is visible to other local users; it
 * comes from CONTAINED_SMTP_PASSWORD) and credentials sent in clear (a user name makes STARTTLS
 * required on smtp://). Every mistake is a USAGE error naming the flag.
 */
import path from 'node:path';
import type { OutboxHostOptions, SmtpRelay } from '../../capabilities/outbox/index.js';
import type { CapabilityHost } from '../../capabilities/plugin.js';
import { ContainedError } from '../../runtime/errors.js';

/** The run command's flags for mail delivery (merged into its flag spec). */
export const MAIL_FLAGS = { smtp: { type: 'string' }, maildir: { type: 'string' } } as const;

export const MAIL_USAGE = `  --smtp URL           outbox grants send through this relay: smtp://[USER@]HOST[:PORT] (STARTTLS when
                       offered, required with a USER; port 587) or smtps://[USER@]HOST[:PORT] (TLS, 465);
                       the password comes from CONTAINED_SMTP_PASSWORD
  --maildir DIR        outbox grants write each message into DIR/new/ (default ./.contained/outbox)`;

type Env = Record<string, string | undefined>;

export interface RunHost {
  /** What every kind gets: the working directory as data and config folder (secrets are added by the run command). */
  host: CapabilityHost;
  /** Host options per kind, for every grant of that kind. */
  hostOptions: { outbox: NonNullable<OutboxHostOptions> };
  /** Said on stderr when an outbox grant uses the default maildir. */
  maildirNotice: string | undefined;
}

export function runHostDeps(values: Record<string, unknown>, env: Env, cwd: string = process.cwd()): RunHost {
  const smtp = typeof values.smtp === 'string' ? values.smtp : undefined;
  const maildir = typeof values.maildir === 'string' ? values.maildir : undefined;
  const host: CapabilityHost = { dataDir: cwd, configDir: cwd };
  if (smtp !== undefined && maildir !== undefined) throw new ContainedError('USAGE', 'give --smtp or --maildir, not both');
  if (smtp !== undefined) return { host, hostOptions: { outbox: { smtp: parseSmtpUrl(smtp, env) } }, maildirNotice: undefined };
  if (maildir !== undefined) {
    if (maildir.trim() === '') throw new ContainedError('USAGE', '--maildir takes a folder (created if missing)');
    return { host, hostOptions: { outbox: { folder: path.resolve(cwd, maildir) } }, maildirNotice: undefined };
  }
  const folder = path.resolve(cwd, '.contained', 'outbox');
  return {
    host,
    hostOptions: { outbox: { folder } },
    maildirNotice: `outbox: mail goes to the maildir ${folder} (new/ holds one .eml per message); --smtp URL sends it instead\n`,
  };
}

const SMTP_FORMS = '--smtp takes smtp://HOST[:PORT] or smtps://HOST[:PORT] (optionally USER@ before HOST)';

export function parseSmtpUrl(raw: string, env: Env): SmtpRelay {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ContainedError('USAGE', `${SMTP_FORMS} (got ${JSON.stringify(raw)})`);
  }
  const secure = url.protocol === 'smtps:';
  if ((!secure && url.protocol !== 'smtp:') || url.hostname === '' || (url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '') {
    throw new ContainedError('USAGE', `${SMTP_FORMS} (got ${JSON.stringify(raw)})`);
  }
  if (url.password !== '') {
    throw new ContainedError('USAGE', '--smtp: put the password in CONTAINED_SMTP_PASSWORD, not in the URL (the command line is visible to other local users)');
  }
  const relay: SmtpRelay = { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: url.port === '' ? (secure ? 465 : 587) : Number(url.port), secure };
  if (url.username !== '') {
    const pass = env.CONTAINED_SMTP_PASSWORD;
    if (pass === undefined || pass === '') throw new ContainedError('USAGE', `--smtp names the user ${JSON.stringify(decodeURIComponent(url.username))}: set CONTAINED_SMTP_PASSWORD to the password`);
    relay.auth = { user: decodeURIComponent(url.username), pass };
    // Credentials never travel in clear: without smtps, the relay must accept STARTTLS.
    if (!secure) relay.requireTLS = true;
  }
  return relay;
}
