// Thin client of the daemon's HTTP API (API.md). Sends the session's CSRF token on every
// state-changing call; a 401 outside /api/auth/ means the session is gone.

let csrf = null;
let onLoggedOut = () => {};

export function setCsrf(token) { csrf = token; }
export function whenLoggedOut(fn) { onLoggedOut = fn; }

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  let res;
  try {
    res = await fetch(path, {
      method, headers, signal, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'The NAS cannot be reached. Is harddrive-party running?');
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const message = (data && data.error) || text || `HTTP ${res.status}`;
    if (res.status === 401 && !path.startsWith('/api/auth/')) onLoggedOut();
    throw new ApiError(res.status, message);
  }
  return data;
}

// A streamed listing: a JSON array, possibly followed by a newline and {"error": …} when
// it was cut short (API.md). Serialized JSON never holds a raw newline, so the first one
// separates the two.
export async function listing(endpoint, params, signal) {
  const query = new URLSearchParams(params).toString();
  let res;
  try {
    res = await fetch(`${endpoint}?${query}`, { signal, credentials: 'same-origin' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'The NAS cannot be reached.');
  }
  const text = await res.text();
  if (!res.ok) {
    let message = `HTTP ${res.status}`;
    try { message = JSON.parse(text).error || message; } catch { /* plain text */ }
    if (res.status === 401) onLoggedOut();
    throw new ApiError(res.status, message);
  }
  const nl = text.indexOf('\n');
  const entries = JSON.parse(nl < 0 ? text : text.slice(0, nl));
  let error = null;
  if (nl >= 0) {
    try { error = JSON.parse(text.slice(nl + 1)).error || 'listing incomplete'; } catch { error = 'listing incomplete'; }
  }
  return { entries, error };
}
