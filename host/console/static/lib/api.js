// The console's small JSON API (same origin). The session lives in an HttpOnly cookie the page
// cannot read; the CSRF token is held here, in memory only, and sent on every state change.

let csrf = '';

export function setCsrf(token) {
  csrf = token ?? '';
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, body) {
  const headers = { accept: 'application/json' };
  if (method !== 'GET') {
    headers['content-type'] = 'application/json';
    if (csrf) headers['x-csrf-token'] = csrf;
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: method === 'GET' ? undefined : JSON.stringify(body ?? {}), credentials: 'same-origin', cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'HOST_UNREACHABLE', 'cannot reach the host');
  }
  if (res.status === 204) return undefined;
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, data?.error?.code ?? 'INTERNAL', data?.error?.message ?? `HTTP ${res.status}`);
  return data;
}

export const api = {
  get: (path) => call('GET', path),
  post: (path, body) => call('POST', path, body),
};
