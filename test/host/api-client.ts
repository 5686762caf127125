/**
 * A tiny HTTP client for the platform API tests: JSON requests with a bearer token, raw uploads,
 * and a Server-Sent Events reader that parses `id`/`event`/`data` messages until the stream ends.
 */
export interface ApiResponse<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

export interface CallOptions {
  token?: string;
  json?: unknown;
  body?: Uint8Array | string;
  contentType?: string;
  headers?: Record<string, string>;
}

export async function call<T = any>(base: string, method: string, path: string, options: CallOptions = {}): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  let body: RequestInit['body'];
  if (options.json !== undefined) {
    body = JSON.stringify(options.json);
    headers['content-type'] = options.contentType ?? 'application/json';
  } else if (options.body !== undefined) {
    body = options.body as RequestInit['body'];
    headers['content-type'] = options.contentType ?? 'application/gzip';
  }
  const res = await fetch(`${base}${path}`, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  if ((res.headers.get('content-type') ?? '').includes('json')) parsed = JSON.parse(text) as unknown;
  return { status: res.status, headers: res.headers, body: parsed as T };
}

export interface SseMessage {
  id: string | undefined;
  event: string;
  data: any;
}

/** Open an event stream; `messages` fills as events arrive, `done` resolves when the server ends it. */
export async function openEvents(
  base: string,
  path: string,
  token: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; messages: SseMessage[]; done: Promise<SseMessage[]>; next(event: string, match?: (m: SseMessage) => boolean): Promise<SseMessage>; close(): void }> {
  const controller = new AbortController();
  const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', ...headers }, signal: controller.signal });
  const messages: SseMessage[] = [];
  const waiters: { event: string; match: (m: SseMessage) => boolean; resolve: (m: SseMessage) => void }[] = [];
  const deliver = (m: SseMessage): void => {
    messages.push(m);
    for (const w of [...waiters]) {
      if (w.event === m.event && w.match(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  };
  const done = (async () => {
    if (!res.body || res.status !== 200) return messages;
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let id: string | undefined;
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const [field, ...rest] = line.split(':');
            const value = rest.join(':').replace(/^ /, '');
            if (field === 'id') id = value;
            else if (field === 'event') event = value;
            else if (field === 'data') data.push(value);
          }
          if (data.length > 0) deliver({ id, event, data: JSON.parse(data.join('\n')) });
        }
      }
    } catch {
      // aborted by close()
    }
    return messages;
  })();
  return {
    status: res.status,
    headers: res.headers,
    messages,
    done,
    next(event, match = () => true) {
      const seen = messages.find((m) => m.event === event && match(m));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve) => waiters.push({ event, match, resolve }));
    },
    close: () => controller.abort(),
  };
}
