// JSON calls to the service and the saved session of a page.

import { t } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// One JSON call to the service. Errors carry the HTTP status and the server's message.
export async function api(method, path, options) {
  const opts = options || {};
  const headers = { Accept: "application/json" };
  if (opts.token) headers.Authorization = "Bearer " + opts.token;
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
  } catch (err) {
    throw new ApiError(0, t("error.offline"));
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    const message = (data && data.error) || response.statusText || String(response.status);
    const error = new ApiError(response.status, message);
    error.retryAfter = Number(response.headers.get("Retry-After") || 0);
    throw error;
  }
  return data;
}

// The logged-in session of one page kind ("desk", "wallboard"), kept across reloads.
export function savedSession(kind) {
  const key = "cityline." + kind + ".session";
  return {
    load() {
      try {
        return JSON.parse(localStorage.getItem(key) || "null");
      } catch (err) {
        return null;
      }
    },
    save(value) {
      localStorage.setItem(key, JSON.stringify(value));
    },
    clear() {
      localStorage.removeItem(key);
    },
  };
}
