/**
 * One HTTP exchange to an address that was already checked: the socket connects to that IP (no
 * second DNS lookup, so DNS rebinding between check and connect cannot redirect it), TLS still
 * verifies the certificate against the URL's host name (SNI + identity check), no connection pool
 * (`agent: false`, so a socket opened for one address is never reused for another), no proxy
 * environment variables, no automatic redirects (node:http never follows them).
 *
 * Bodies are read as a stream and reading stops at `maxBytes` of decoded data (the socket is then
 * destroyed): a huge or endless response, or a compression bomb, costs at most `maxBytes`.
 *
 * Fails with the underlying Node error (the caller maps it to a ContainedError and redacts it).
 */
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { pipeline, type Readable } from 'node:stream';
import zlib from 'node:zlib';
import { effectivePort } from './policy.js';

export interface PinnedRequest {
  url: URL;
  method: string;
  /** Lower-case names; `host` is added here from the URL. */
  headers: Record<string, string>;
  body: Buffer | undefined;
  /** The validated address to connect to. */
  address: string;
  family: 4 | 6;
  signal: AbortSignal;
}

export interface RawResponse {
  status: number;
  statusText: string;
  headers: http.IncomingHttpHeaders;
  stream: http.IncomingMessage;
}

/** Open the exchange; resolves once the status line and headers arrived. */
export function openExchange(req: PinnedRequest): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const isHttps = req.url.protocol === 'https:';
    const hostname = req.url.hostname.replace(/^\[|\]$/g, '');
    const headers: Record<string, string> = { ...req.headers, host: req.url.host, 'accept-encoding': 'identity' };
    if (req.body !== undefined) headers['content-length'] = String(req.body.length);
    const options: https.RequestOptions = {
      host: req.address,
      family: req.family,
      port: effectivePort(req.url),
      method: req.method,
      path: `${req.url.pathname}${req.url.search}`,
      headers,
      setHost: false,
      agent: false,
      signal: req.signal,
    };
    // Certificate identity is checked against `servername` when set: the name, not the IP we dialled.
    if (isHttps && isIP(hostname) === 0) options.servername = hostname;
    const request = (isHttps ? https : http).request(options, (res) => {
      resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', headers: res.headers, stream: res });
    });
    request.on('error', reject);
    request.end(req.body);
  });
}

export class UnsupportedEncodingError extends Error {
  constructor(readonly encoding: string) {
    super(`unsupported content-encoding "${encoding}"`);
  }
}

function decoderFor(encoding: string | undefined): zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress | undefined {
  const e = (encoding ?? 'identity').trim().toLowerCase();
  if (e === '' || e === 'identity') return undefined;
  if (e === 'gzip' || e === 'x-gzip') return zlib.createGunzip();
  if (e === 'deflate') return zlib.createInflate();
  if (e === 'br') return zlib.createBrotliDecompress();
  throw new UnsupportedEncodingError(e);
}

/** Read at most `maxBytes` of decoded body; stop reading (and destroy the socket) past it. */
export async function readCapped(res: RawResponse, maxBytes: number): Promise<{ body: Buffer; truncated: boolean }> {
  const raw = res.stream;
  let source: Readable = raw;
  try {
    const decoder = decoderFor(res.headers['content-encoding']);
    if (decoder) source = pipeline(raw, decoder, () => {});
    const chunks: Buffer[] = [];
    let size = 0;
    let truncated = false;
    for await (const chunk of source) {
      const buf = chunk as Buffer;
      const room = maxBytes - size;
      if (buf.length > room) {
        chunks.push(buf.subarray(0, room));
        size += room;
        truncated = true;
        break;
      }
      chunks.push(buf);
      size += buf.length;
    }
    return { body: Buffer.concat(chunks, size), truncated };
  } finally {
    source.destroy();
    raw.destroy();
  }
}

/** Drop a response without reading it (redirects, HEAD). */
export function discard(res: RawResponse): void {
  res.stream.destroy();
}
