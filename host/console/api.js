// The REST client and the tab's credential. The operator token or manager key lives in
// sessionStorage only: it dies with the tab and is never written anywhere else.

const KEY = 'posbridge.session';

/** The signed-in session: {role: 'operator', token} or {role: 'manager', tenant, key}. */
export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || 'null');
  } catch {
    return null;
  }
}

/** Remembers the session for this tab. */
export function signIn(value) {
  sessionStorage.setItem(KEY, JSON.stringify(value));
}

/** Forgets the session. */
export function signOut() {
  sessionStorage.removeItem(KEY);
}

/** An error answer of the API, with its status, code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Percent-encodes one path segment. */
export const seg = s => encodeURIComponent(s);

/** A query string of the non-empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

/**
 * Calls the API. Operator paths start with `/admin`; manager paths are relative to the
 * tenant (`/pos/rules/x` → `/api/{tenant}/pos/rules/x`). Answers the parsed JSON (null for
 * 204); throws ApiError with the API's own code and message otherwise.
 */
export async function call(method, path, body, { raw, contentType } = {}) {
  const s = session();
  const headers = {};
  let url = path;
  if (s && s.role === 'operator') headers.Authorization = `Bearer ${s.token}`;
  if (s && s.role === 'manager') {
    headers['X-API-Key'] = s.key;
    url = `/api/${seg(s.tenant)}${path}`;
  }
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (raw !== undefined) {
    init.body = raw;
    headers['Content-Type'] = contentType || 'application/octet-stream';
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch (err) {
    throw new ApiError(0, 'network_error', `the server did not answer (${err.message})`);
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const e = data && data.error;
    throw new ApiError(res.status, (e && e.code) || `http_${res.status}`, (e && e.message) || text || res.statusText);
  }
  return data;
}

export const get = path => call('GET', path);
export const post = (path, body) => call('POST', path, body);
export const patch = (path, body) => call('PATCH', path, body);
export const put = (path, body) => call('PUT', path, body);
export const del = path => call('DELETE', path);
