// The Stream panel: the stream workers' consumer lag and records/s, from GET /stream. Shown only
// to a token that may read it (admin, auditor) on a verifier with a stream configured; any
// other answer hides the panel without a word. Numbers and names reach the page as text.
import { el, fill, svg, text } from "./dom.js";

const KEEP = 360; // sparkline points: an hour of 10 s refreshes
const W = 300;
const H = 48;
const history = []; // {t, lag} over this page's lifetime

// The /stream answer, or null when the panel should not show (403, 404, not configured); a
// configured stream whose broker does not answer (503) shows as an error in the panel.
export async function readStream(get) {
  try {
    const got = await get("stream");
    return got && got.configured ? got : null;
  } catch (err) {
    return err.status === 503 ? { unavailable: err.message } : null;
  }
}

function rate(value) {
  return typeof value === "number" && Number.isFinite(value) ? `${value.toFixed(1)} records/s`
    : "measuring…";
}

function count(n) {
  return Number(n).toLocaleString("en");
}

// Lag over the page's lifetime; its numbers are in the label and the title too (a screen reader
// and a keyboard user get them without seeing the line).
function sparkline() {
  const lags = history.map((h) => h.lag);
  const top = Math.max(...lags, 1);
  const x = (i) => (history.length < 2 ? W / 2 : 2 + (i / (history.length - 1)) * (W - 4));
  const y = (v) => H - 4 - (v / top) * (H - 8);
  const points = lags.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const label = `total lag over this page's ${history.length} reads: now ${count(lags.at(-1))},`
    + ` lowest ${count(Math.min(...lags))}, highest ${count(Math.max(...lags))}`;
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, tabindex: 0,
    id: "stream-sparkline" },
  svg("title", {}, label),
  svg("line", { x1: 0, x2: W, y1: H - 4, y2: H - 4, stroke: "#bbb" }),
  history.length > 1
    ? svg("polyline", { points, fill: "none", stroke: "#0072b2", "stroke-width": 2 })
    : svg("circle", { cx: x(0), cy: y(lags[0]), r: 3, fill: "#0072b2" }));
}

// Growing or shrinking, in words and a glyph (not by colour).
function trend() {
  if (history.length < 2) return "";
  const d = history.at(-1).lag - history.at(-2).lag;
  if (d > 0) return ` ▲ up ${count(d)} since the last read`;
  if (d < 0) return ` ▼ down ${count(-d)} since the last read`;
  return " = unchanged since the last read";
}

export function renderStream(panel, got, now = Date.now()) {
  panel.hidden = got === null;
  if (got === null) return;
  if (got.unavailable !== undefined) {
    fill(panel, el("h2", {}, "Stream"),
      el("p", { className: "error", id: "stream-error" }, `lag unavailable: ${got.unavailable}`));
    return;
  }
  // A refresh rebuilds the panel: a keyboard user on the sparkline stays there.
  const focused = document.activeElement && document.activeElement.id === "stream-sparkline";
  history.push({ t: now, lag: got.lag_total });
  if (history.length > KEEP) history.shift();
  const rows = got.partitions.map((p) => {
    const tr = el("tr", {},
      el("td", {}, String(p.partition)), el("td", {}, count(p.committed)),
      el("td", {}, count(p.end)), el("td", { className: "lag" }, count(p.lag)));
    tr.dataset.partition = String(p.partition);
    return tr;
  });
  fill(panel,
    el("h2", {}, "Stream ", el("span", { className: "muted" },
      `(topic ${text(got.topic)}, group ${text(got.group)})`)),
    el("p", { id: "stream-summary" },
      el("strong", {}, "total lag "), el("span", { id: "stream-lag-total" }, count(got.lag_total)),
      got.lag_total === 1 ? " message" : " messages", el("span", { className: "muted" }, trend())),
    el("p", {},
      "consumed ", el("span", { id: "stream-rate" }, rate(got.records_per_s)),
      " · arriving ", el("span", { id: "stream-produced" }, rate(got.produced_per_s)),
      el("span", { className: "muted" }, typeof got.rate_span_s === "number"
        ? ` (over the last ${Math.round(got.rate_span_s)} s)` : " (after the next refresh)")),
    el("figure", { className: "plot sparkline" }, sparkline(),
      el("figcaption", { className: "muted" }, "total lag since this page opened")),
    el("table", { id: "stream-partitions" },
      el("thead", {}, el("tr", {}, el("th", {}, "partition"), el("th", {}, "committed"),
        el("th", {}, "end"), el("th", {}, "lag"))),
      el("tbody", {}, ...rows)));
  if (focused) document.getElementById("stream-sparkline").focus();
}
