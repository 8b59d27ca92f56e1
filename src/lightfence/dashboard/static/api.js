// The verifier API with the signed-in token. The token lives in sessionStorage only (gone when
// the tab closes); every answer is whatever the API lets this token see.
const KEY = "lightfence.token";
// The API is the app the dashboard is mounted on: one level up from /dashboard/.
const BASE = new URL("../", location.href);

export function token() {
  return sessionStorage.getItem(KEY);
}

export function signIn(value) {
  sessionStorage.setItem(KEY, value.trim());
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function request(path) {
  const reply = await fetch(new URL(path, BASE), { headers: { Authorization: `Bearer ${token()}` } });
  if (!reply.ok) {
    let message = `${reply.status} ${reply.statusText}`;
    try {
      const body = await reply.json();
      message = typeof body.detail === "string" ? body.detail : message;
    } catch (_) { /* not JSON: keep the status line */ }
    throw new ApiError(reply.status, message);
  }
  return reply;
}

export async function get(path) {
  return (await request(path)).json();
}

// Fetch with the token and hand the browser a file to save (a plain link cannot send a header).
export async function download(path, filename) {
  const blob = await (await request(path)).blob();
  const url = URL.createObjectURL(blob);
  const a = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
