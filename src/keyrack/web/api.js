// The keyrack HTTP API as the dashboard uses it: session, requests, problem+json errors, paging.

const SESSION_ORG = "keyrack.org";
const SESSION_KEY = "keyrack.key";

export const session = {
  // sessionStorage only: the key disappears with the tab and is never written to disk cookies.
  get org() { return sessionStorage.getItem(SESSION_ORG); },
  get key() { return sessionStorage.getItem(SESSION_KEY); },
  save(org, key) {
    sessionStorage.setItem(SESSION_ORG, org);
    sessionStorage.setItem(SESSION_KEY, key);
  },
  clear() {
    sessionStorage.removeItem(SESSION_ORG);
    sessionStorage.removeItem(SESSION_KEY);
  },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || `HTTP_${status}`;
    this.problem = problem;
  }

  // A route this server does not have yet (older keyrack): 404 NOT_FOUND on an unknown path,
  // or 405 when the path exists for other methods. Unknown keys and orgs have their own codes.
  get endpointMissing() {
    return this.status === 405 || (this.status === 404 && this.code === "NOT_FOUND");
  }
}

export function orgPath(suffix = "") {
  return `/orgs/${encodeURIComponent(session.org)}${suffix}`;
}

async function problemOf(response) {
  try {
    const body = await response.json();
    if (body && typeof body === "object") return body;
  } catch (_ignored) {
    // not JSON (a proxy's error page): fall through to a generic problem
  }
  return { title: response.statusText, detail: `the server answered ${response.status}` };
}

export async function request(method, path, { body, idempotencyKey, key } = {}) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${key || session.key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (_error) {
    throw new ApiError(0, { code: "NETWORK", detail: "the server could not be reached" });
  }
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  return { data: await response.json(), next: nextLink(response.headers.get("Link")) };
}

// RFC 8288 `Link: <url>; rel="next"`. Only same-origin links are followed: the admin key is
// sent with every request and must never go to another host.
export function nextLink(header) {
  if (!header) return null;
  for (const part of header.split(",")) {
    const match = part.match(/<([^>]*)>\s*;(.*)/);
    if (!match || !/rel="?next"?/.test(match[2])) continue;
    const url = new URL(match[1], window.location.origin);
    if (url.origin !== window.location.origin) return null;
    return url.pathname + url.search;
  }
  return null;
}

export function newIdempotencyKey() {
  return crypto.randomUUID();
}

// Local datetime-local value -> RFC 3339 UTC (`2023-11-18T12:00:00Z`), or undefined when empty.
export function toUtc(localValue) {
  if (!localValue) return undefined;
  return new Date(localValue).toISOString().replace(/\.\d{3}Z$/, "Z");
}
