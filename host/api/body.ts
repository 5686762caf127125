/**
 * Reading request bodies with a byte limit. The declared `Content-Length` is checked before a byte
 * is read, and the running total while streaming (chunked bodies declare none), so an oversize
 * body costs at most `limitBytes` of memory: `PAYLOAD_TOO_LARGE` (413). JSON bodies are parsed and
 * validated with a zod schema; the first issue names its path (`INVALID_ARGUMENT`, 400, with
 * `data.path` and `data.issues`).
 */
import type { IncomingMessage } from 'node:http';
import type { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';

export async function readBody(req: IncomingMessage, limitBytes: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limitBytes) throw tooLarge(limitBytes);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > limitBytes) throw tooLarge(limitBytes);
    chunks.push(buffer);
  }
  return Buffer.concat(chunks, size);
}

function tooLarge(limitBytes: number): ContainedError {
  return new ContainedError('PAYLOAD_TOO_LARGE', `the body is larger than ${limitBytes} bytes`, { data: { limitBytes } });
}

/** The media type of a request (`application/json`), lower-cased, parameters dropped. */
export function mediaType(req: IncomingMessage): string | undefined {
  const value = req.headers['content-type'];
  if (typeof value !== 'string') return undefined;
  return value.split(';')[0]?.trim().toLowerCase();
}

export function requireMediaType(req: IncomingMessage, allowed: readonly string[]): void {
  const type = mediaType(req);
  if (type === undefined || !allowed.includes(type)) {
    throw new ContainedError('UNSUPPORTED_MEDIA_TYPE', `expected Content-Type ${allowed.join(' or ')}${type ? `, got ${type}` : ''}`, { data: { allowed: [...allowed] } });
  }
}

/** Read, parse and validate a JSON body. */
export async function readJson<S extends z.ZodType>(req: IncomingMessage, schema: S, limitBytes: number): Promise<z.output<S>> {
  requireMediaType(req, ['application/json']);
  const bytes = await readBody(req, limitBytes);
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    throw new ContainedError('INVALID_ARGUMENT', 'the body is not valid JSON', { data: { path: [] } });
  }
  return validate(schema, raw, 'body');
}

export function validate<S extends z.ZodType>(schema: S, raw: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.slice(0, 10).map((i) => ({ path: i.path.map(String), message: i.message }));
  const first = issues[0];
  const at = first && first.path.length > 0 ? first.path.join('.') : '(root)';
  throw new ContainedError('INVALID_ARGUMENT', `invalid ${what} at ${at}: ${first?.message ?? 'does not match the schema'}`, {
    data: { path: first?.path ?? [], issues },
  });
}
