/**
 * The host's logger (host/logger.ts) redacts tokens, cookies, passwords, secrets and SMTP
 * credentials: an object carrying each is logged through the real pino logger into a stream, the
 * JSON lines are parsed, and every secret value reads `[Redacted]` while the fields around it
 * (and `argsDigest`) are logged as they are.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createHostLogger, REDACTED } from '../../host/logger.js';

function capture(): { stream: Writable; lines: () => Record<string, unknown>[]; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString('utf8'));
      done();
    },
  });
  const text = () => chunks.join('');
  return { stream, text, lines: () => text().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const SECRETS = ['Bearer tok_live_abc', 'sid=s3cr3t', 'sid=new; HttpOnly', 'tok_plain', 'tok_nested', 'hunter2', 'nested-pass', 'shh', 'smtp-pass', 'k-123'];

describe('host logger redaction', () => {
  it('logs every token, cookie, password, secret and SMTP credential as [Redacted]', () => {
    const out = capture();
    const logger = createHostLogger({}, out.stream);
    const digest = `sha256:${'a'.repeat(64)}`;
    logger.info(
      {
        req: { method: 'GET', url: '/v1/runs', headers: { authorization: 'Bearer tok_live_abc', cookie: 'sid=s3cr3t', host: 'localhost' } },
        res: { statusCode: 200, headers: { 'set-cookie': 'sid=new; HttpOnly' } },
        token: 'tok_plain',
        operator: { name: 'alice', token: 'tok_nested' },
        password: 'hunter2',
        user: { password: 'nested-pass' },
        secrets: { apiKey: 'shh' },
        mail: { smtp: { host: 'smtp.example.com', port: 587, auth: { user: 'bot', pass: 'smtp-pass' } } },
        apiKey: 'k-123',
        argsDigest: digest,
      },
      'request',
    );
    const [line] = out.lines();
    expect(line).toBeDefined();
    const l = line as Record<string, any>;
    expect(l.req.headers.authorization).toBe(REDACTED);
    expect(l.req.headers.cookie).toBe(REDACTED);
    expect(l.req.headers.host).toBe('localhost');
    expect(l.res.headers['set-cookie']).toBe(REDACTED);
    expect(l.token).toBe(REDACTED);
    expect(l.operator).toEqual({ name: 'alice', token: REDACTED });
    expect(l.password).toBe(REDACTED);
    expect(l.user.password).toBe(REDACTED);
    expect(l.secrets).toBe(REDACTED);
    expect(l.mail.smtp.auth).toBe(REDACTED);
    expect(l.mail.smtp.host).toBe('smtp.example.com');
    expect(l.apiKey).toBe(REDACTED);
    expect(l.argsDigest).toBe(digest);
    expect(l.msg).toBe('request');
    for (const secret of SECRETS) expect(out.text()).not.toContain(secret);
  });

  it('child loggers redact too, and top-level headers / secret fields are caught', () => {
    const out = capture();
    const logger = createHostLogger({}, out.stream).child({ component: 'operator-channel' });
    logger.warn({ headers: { authorization: 'Bearer tok_live_abc', cookie: 'sid=s3cr3t' }, secret: 'shh', smtp: { auth: { pass: 'smtp-pass' } } }, 'refused');
    const [line] = out.lines() as Record<string, any>[];
    expect(line?.component).toBe('operator-channel');
    expect(line?.headers).toEqual({ authorization: REDACTED, cookie: REDACTED });
    expect(line?.secret).toBe(REDACTED);
    expect(line?.smtp.auth).toBe(REDACTED);
    for (const secret of SECRETS) expect(out.text()).not.toContain(secret);
  });

  it('keeps the default level (info) and takes extra redact paths', () => {
    const out = capture();
    const logger = createHostLogger({ redact: ['run.input.card'] }, out.stream);
    logger.debug({ token: 'tok_plain' }, 'hidden');
    logger.info({ run: { input: { card: '4111', note: 'ok' } }, token: 'tok_plain' }, 'shown');
    const lines = out.lines() as Record<string, any>[];
    expect(lines).toHaveLength(1);
    expect(lines[0]?.run.input).toEqual({ card: REDACTED, note: 'ok' });
    expect(lines[0]?.token).toBe(REDACTED);
  });
});
