/**
 * Where the host's pino logger is made, so every logger the host writes through redacts the same
 * secrets: bearer tokens and cookies in request/response headers, `token`, `password`, `secret(s)`
 * fields (at the top level and one level down), and SMTP relay credentials (`auth`). A redacted
 * value is logged as `"[Redacted]"`; the key stays, so a line still shows that one was present.
 *
 * Not redacted on purpose: `argsDigest` (a SHA-256 of arguments, what an approval names) and
 * token *names* (`tokenName`, `operator`), which say who did something without granting anything.
 *
 * pino's paths match exact keys at a fixed depth (`*` is one level), so a secret nested deeper
 * than listed here is not caught: log identifiers, not whole config or credential objects.
 */
import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';

/** The value a redacted field is logged as. */
export const REDACTED = '[Redacted]';

/** Header keys as path accessors (a hyphenated key needs the bracket form). */
const HEADER_KEYS = ['.authorization', '.cookie', '["set-cookie"]', '["proxy-authorization"]'];
const SECRET_KEYS = ['token', 'accessToken', 'refreshToken', 'password', 'pass', 'secret', 'secrets', 'apiKey', 'credential', 'credentials'];

/** Every path the host's loggers redact (pino `redact.paths`, fast-redact syntax). */
export const LOG_REDACT_PATHS: readonly string[] = Object.freeze([
  // HTTP headers, as logged by request handlers and error serializers.
  ...HEADER_KEYS.flatMap((h) => ['headers', '*.headers', 'req.headers', 'res.headers', 'request.headers', 'response.headers'].map((at) => `${at}${h}`)),
  'authorization',
  'cookie',
  '*.authorization',
  '*.cookie',
  // Tokens, passwords and secrets, at the top level and one level down.
  ...SECRET_KEYS.flatMap((k) => [k, `*.${k}`]),
  // SMTP relay credentials ({ smtp: { auth: { user, pass } } }) wherever a mail config is logged.
  'auth',
  '*.auth',
  'smtp.auth',
  '*.smtp.auth',
  'mail.smtp.auth',
  '*.mail.smtp.auth',
  // The same inside a host config: a capability's host options and secrets (host/config.ts).
  'capabilities.*.host.smtp.auth',
  '*.capabilities.*.host.smtp.auth',
  'capabilities.*.secrets',
  '*.capabilities.*.secrets',
]);

/** pino options with the host's redaction; `options` may add more paths (they are appended). */
export function hostLoggerOptions(options: LoggerOptions = {}): LoggerOptions {
  const extra = options.redact === undefined ? [] : Array.isArray(options.redact) ? options.redact : options.redact.paths;
  return { level: 'info', ...options, redact: { paths: [...LOG_REDACT_PATHS, ...extra], censor: REDACTED } };
}

/** The host's logger: pino with `hostLoggerOptions`, to `destination` (default stdout). */
export function createHostLogger(options: LoggerOptions = {}, destination?: DestinationStream): Logger {
  return destination === undefined ? pino(hostLoggerOptions(options)) : pino(hostLoggerOptions(options), destination);
}
