// Plots as inline SVG built from the API's numbers (no library, nothing from another origin):
// a device's verdict timeline and its RTT per landmark against the speed-of-light floor; the
// fleet's verdict counts over time and the coverage map of its landmarks. Every mark carries
// its status glyph or a text label as well as its colour.
import { el, svg, when } from "./dom.js";
import { STATUSES, colour, glyph } from "./verdicts.js";

const W = 600; // viewBox width; the SVG scales to its container

function axisTime(x0, x1, t0, t1, y) {
  return [
    svg("line", { x1: x0, x2: x1, y1: y, y2: y, stroke: "#888" }),
    svg("text", { x: x0, y: y + 14, "font-size": 11 }, when(new Date(t0).toISOString())),
    svg("text", { x: x1, y: y + 14, "font-size": 11, "text-anchor": "end" },
      when(new Date(t1).toISOString())),
  ];
}

function figure(id, title, caption, plot) {
  return el("figure", { className: "plot", id }, el("figcaption", {}, title), plot,
    caption ? el("p", { className: "muted" }, caption) : null);
}

// runs: newest first, each {verdict, since, until, count}.
export function verdictTimeline(runs) {
  if (!runs.length) return figure("plot-timeline", "Verdict timeline", "no verdicts yet", null);
  const old = [...runs].reverse();
  const t0 = Date.parse(old[0].since);
  const t1 = Math.max(Date.parse(old[old.length - 1].until), t0 + 1000);
  const x = (t) => 10 + ((t - t0) / (t1 - t0)) * (W - 20);
  const bars = old.map((r, i) => {
    const a = x(Date.parse(r.since));
    const b = i + 1 < old.length ? x(Date.parse(old[i + 1].since)) : W - 10;
    const w = Math.max(b - a, 14);
    return svg("g", {},
      svg("rect", { x: a, y: 8, width: w, height: 26, fill: colour(r.verdict) },
        svg("title", {}, `${r.verdict} from ${when(r.since)} to ${when(r.until)} (${r.count} recomputes)`)),
      svg("text", { x: a + w / 2, y: 26, "text-anchor": "middle", fill: "#fff",
        "font-size": 13, "font-weight": 700 }, glyph(r.verdict)));
  });
  return figure("plot-timeline", "Verdict timeline",
    old.map((r) => `${glyph(r.verdict)} ${r.verdict}`).join(" → "),
    svg("svg", { viewBox: `0 0 ${W} 56`, role: "img", "aria-label": "verdict timeline" },
      ...bars, ...axisTime(10, W - 10, t0, t1, 38)));
}

// rows: [{landmark_id, rtt_ms, floor_ms, distance_km}], sorted by RTT.
export function rttChart(rows, reference, label) {
  if (!rows.length) return null;
  const top = Math.max(...rows.map((r) => Math.max(r.rtt_ms, r.floor_ms || 0))) * 1.08;
  const left = 70;
  const x = (ms) => left + (ms / top) * (W - left - 80);
  const rowH = 18;
  const h = rows.length * rowH + 30;
  const marks = rows.flatMap((r, i) => {
    const y = 6 + i * rowH;
    const below = r.floor_ms !== null && r.rtt_ms < r.floor_ms;
    const out = [
      svg("text", { x: left - 6, y: y + 12, "text-anchor": "end", "font-size": 11 }, r.landmark_id),
      svg("rect", { x: left, y: y + 2, width: Math.max(x(r.rtt_ms) - left, 1), height: 12,
        fill: "#0072b2" }, svg("title", {}, `${r.landmark_id}: ${r.rtt_ms.toFixed(2)} ms`)),
      svg("text", { x: x(r.rtt_ms) + 4, y: y + 12, "font-size": 11 },
        `${r.rtt_ms.toFixed(1)} ms${below ? " < floor!" : ""}`),
    ];
    if (r.floor_ms !== null) {
      out.push(svg("path", { d: `M${x(r.floor_ms)} ${y} v16`, stroke: "#d55e00",
        "stroke-width": 2.5, "stroke-dasharray": "3 2" },
      svg("title", {}, `floor ${r.floor_ms.toFixed(2)} ms = 2 × ${Math.round(r.distance_km)} km / c`)));
    }
    return out;
  });
  const axisY = rows.length * rowH + 10;
  const caption = reference
    ? `bars: measured RTT; dashed ticks: the speed-of-light floor 2·d/c from ${reference.what} `
      + `(${reference.lat.toFixed(1)}, ${reference.lon.toFixed(1)}). A bar shorter than its tick breaks physics.`
    : "bars: measured RTT. No floor: the device is not located, so there is no distance to draw it from.";
  return figure(`plot-rtt-${label}`, `RTT per landmark (${label} rounds)`, caption,
    svg("svg", { viewBox: `0 0 ${W} ${h}`, role: "img", "aria-label": `RTT per landmark, ${label}` },
      ...marks,
      svg("line", { x1: left, x2: x(top), y1: axisY, y2: axisY, stroke: "#888" }),
      svg("text", { x: left, y: axisY + 14, "font-size": 11 }, "0 ms"),
      svg("text", { x: x(top), y: axisY + 14, "font-size": 11, "text-anchor": "end" },
        `${top.toFixed(0)} ms`)));
}

// timeline: [{at, counts: {VERDICT: n}}], oldest first. Stacked steps, one band per verdict.
export function fleetCounts(timeline, now = Date.now()) {
  if (!timeline.length) return figure("plot-fleet", "Fleet verdicts over time", "no verdicts yet", null);
  const kinds = STATUSES.map((s) => s.name).filter((k) => timeline.some((p) => p.counts[k]));
  const t0 = Date.parse(timeline[0].at);
  const t1 = Math.max(now, t0 + 1000);
  const total = Math.max(...timeline.map((p) => Object.values(p.counts).reduce((a, b) => a + b, 0)));
  const H = 120;
  const x = (t) => 30 + ((t - t0) / (t1 - t0)) * (W - 40);
  const y = (n) => 10 + H - (n / total) * H;
  const bands = [];
  kinds.forEach((k, ki) => {
    const pts = [];
    const base = [];
    timeline.forEach((p, i) => {
      const below = kinds.slice(0, ki).reduce((a, kk) => a + (p.counts[kk] || 0), 0);
      const upto = below + (p.counts[k] || 0);
      const xa = x(Date.parse(p.at));
      const xb = i + 1 < timeline.length ? x(Date.parse(timeline[i + 1].at)) : x(t1);
      pts.push(`${xa},${y(upto)}`, `${xb},${y(upto)}`);
      base.push(`${xa},${y(below)}`, `${xb},${y(below)}`); // reversed below: right to left
    });
    bands.push(svg("polygon", { points: [...pts, ...base.reverse()].join(" "), fill: colour(k),
      "fill-opacity": 0.85, stroke: "#fff", "stroke-width": 0.5 }, svg("title", {}, k)));
  });
  const last = timeline[timeline.length - 1].counts;
  const labels = kinds.map((k, ki) => {
    const below = kinds.slice(0, ki).reduce((a, kk) => a + (last[kk] || 0), 0);
    const n = last[k] || 0;
    if (!n) return null;
    return svg("text", { x: W - 12, y: y(below + n / 2) + 4, "text-anchor": "end",
      "font-size": 11, fill: "#000", stroke: "#fff", "stroke-width": 3, "paint-order": "stroke" },
    `${glyph(k)} ${n} ${k}`);
  });
  return figure("plot-fleet", "Fleet verdicts over time",
    "devices with a verdict, by their latest verdict after each change (stacked; the labels "
    + "give the counts now; devices without a verdict are not counted)",
    svg("svg", { viewBox: `0 0 ${W} ${H + 36}`, role: "img", "aria-label": "fleet verdicts over time" },
      ...bands, ...labels,
      svg("text", { x: 26, y: 18, "text-anchor": "end", "font-size": 11 }, String(total)),
      svg("text", { x: 26, y: H + 10, "text-anchor": "end", "font-size": 11 }, "0"),
      ...axisTime(30, W - 10, t0, t1, H + 12)));
}

const R_KM = 6371.0;
// A circle of radius km around (lat, lon) as equirectangular points, longitudes unwrapped.
function circle(lat, lon, km, n = 72) {
  const d = km / R_KM;
  const p1 = (lat * Math.PI) / 180;
  const l1 = (lon * Math.PI) / 180;
  const out = [];
  let prev = null;
  for (let i = 0; i <= n; i++) {
    const b = (2 * Math.PI * i) / n;
    const p2 = Math.asin(Math.sin(p1) * Math.cos(d) + Math.cos(p1) * Math.sin(d) * Math.cos(b));
    let l2 = l1 + Math.atan2(Math.sin(b) * Math.sin(d) * Math.cos(p1), Math.cos(d) - Math.sin(p1) * Math.sin(p2));
    l2 = (l2 * 180) / Math.PI;
    if (prev !== null) l2 += 360 * Math.round((prev - l2) / 360);
    prev = l2;
    out.push([l2, (p2 * 180) / Math.PI]);
  }
  return out;
}

// Coverage: each landmark with discs of 500 and 1,500 km, on an equirectangular world.
export const COVERAGE_KM = [1500, 500];
export function coverageMap(countries, landmarks) {
  const H = 300;
  const px = (lon) => ((lon + 180) / 360) * W;
  const py = (lat) => ((90 - lat) / 180) * H;
  const path = (ring) => ring.map(([lo, la], i) => `${i ? "L" : "M"}${px(lo).toFixed(1)} ${py(la).toFixed(1)}`).join("") + "Z";
  const land = [];
  for (const f of countries.features) {
    const g = f.geometry;
    const polys = g.type === "Polygon" ? [g.coordinates] : g.coordinates;
    land.push(polys.map((p) => path(p[0])).join(""));
  }
  const discs = [];
  for (const km of COVERAGE_KM) {
    const d = landmarks.filter((lm) => lm.status === "active").flatMap((lm) => {
      const ring = circle(lm.lat, lm.lon, km);
      return [-360, 0, 360].map((shift) => path(ring.map(([lo, la]) => [lo + shift, la])));
    }).join("");
    discs.push(svg("path", { d, fill: "#0072b2", "fill-opacity": km === 500 ? 0.35 : 0.15,
      "fill-rule": "nonzero" }));
  }
  const dots = landmarks.map((lm) => svg("path", {
    d: `M${px(lm.lon)} ${py(lm.lat) - 4} l4 7 h-8 Z`,
    fill: lm.status === "active" ? "#0072b2" : "#fff", stroke: "#0072b2" },
  svg("title", {}, `${lm.id} (${lm.status})`)));
  return figure("plot-coverage", "Landmark coverage",
    `darker: within ${COVERAGE_KM[1].toLocaleString("en")} km of an active landmark; lighter: within `
    + `${COVERAGE_KM[0].toLocaleString("en")} km. A device far from every landmark cannot be placed closely.`,
    svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "landmark coverage map" },
      svg("clipPath", { id: "cov-clip" }, svg("rect", { x: 0, y: 0, width: W, height: H })),
      svg("rect", { x: 0, y: 0, width: W, height: H, fill: "#cfe3f3" }),
      svg("path", { d: land.join(""), fill: "#f4f1ea", stroke: "#aaa", "stroke-width": 0.3 }),
      svg("g", { "clip-path": "url(#cov-clip)" }, ...discs), ...dots));
}
