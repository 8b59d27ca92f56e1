// DOM building from text only: every string from the API reaches the page as a text node or a
// DOM property, never as HTML (names, alerts and reasons are written by tenants and submitters).
const SVG_NS = "http://www.w3.org/2000/svg";

// A child that is null, undefined or false is left out: nothing ever prints as "null".
function kids(children) {
  return children.flat().filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))));
}

export function el(tag, attrs = {}, ...children) {
  const node = Object.assign(document.createElement(tag), attrs);
  node.append(...kids(children));
  return node;
}

// An SVG element; attributes set with setAttribute (presentation attributes, not style="").
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined) node.setAttribute(k, String(v));
  }
  node.append(...kids(children));
  return node;
}

// Replace a node's children, leaving out missing ones (never call replaceChildren directly:
// it prints a null child as the text "null").
export function fill(node, ...children) {
  node.replaceChildren(...kids(children));
  return node;
}

// Text for a value that may be missing.
export function text(value, missing = "-") {
  return value === null || value === undefined || value === "" ? missing : String(value);
}

// "3 min ago" from an ISO time; "never" without one.
export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

// "2026-12-06 05:02 UTC": a readable absolute time (titles and axes).
export function when(iso) {
  if (!iso) return "never";
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
}
