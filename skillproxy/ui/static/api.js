// The one way the page talks to the proxy: the admin API, same origin, JSON bodies sent as
// `application/json` (the API refuses form-like bodies and cross-site calls), the admin token
// as a bearer token. The token lives in sessionStorage only: gone when the tab closes, never
// in localStorage or a cookie, so no other page can make the browser send it.

const TOKEN_KEY = "skillproxy.admin-token";
const ACTOR = "review-page";

export class ApiError extends Error {
  constructor(status, code, message, refused) {
    super(message);
    this.status = status;
    this.code = code;
    this.refused = refused || null;
  }

  /** The proxy wants a (different) admin token: the login form answers this. */
  get auth() {
    return this.status === 401 || ["invalid_token", "missing_token"].includes(this.code);
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** One path segment, escaped so an id can never climb out of its route (`..`). */
export function segment(value) {
  const escaped = encodeURIComponent(value);
  return escaped.replace(/^\.+$/, (dots) => "%2E".repeat(dots.length));
}

/** `query({limit: 50, before: null})` -> `?limit=50`; empty and null values are left out. */
export function query(params) {
  const pairs = Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== "");
  return pairs.length ? "?" + new URLSearchParams(pairs.map(([k, v]) => [k, String(v)])) : "";
}

async function call(method, path, body, accept) {
  const headers = { Accept: accept, "X-Admin-Actor": ACTOR };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(`/admin${path}`, init);
  } catch (exc) {
    throw new ApiError(0, "unreachable", `The proxy could not be reached: ${exc.message}`);
  }
  if (!response.ok) {
    let error = {};
    try {
      error = (await response.json()).error || {};
    } catch {
      // not JSON: the status says enough
    }
    const message = error.message || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, error.code || "http_error", message, error.refused);
  }
  return response;
}

/** A call answered with JSON: `await api("GET", "/skillbooks")`. */
export async function api(method, path, body) {
  const response = await call(method, path, body, "application/json");
  return response.status === 204 ? null : response.json();
}

/** A call answered with a file (an export): its bytes as a Blob. */
export async function download(path) {
  const response = await call("GET", path, undefined, "*/*");
  return response.blob();
}

export const get = (path) => api("GET", path);
export const post = (path, body = {}) => api("POST", path, body);
export const patch = (path, body) => api("PATCH", path, body);
