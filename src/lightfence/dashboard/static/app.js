// The dashboard: sign in with an API token, then the fleet on the map, in tables and in plots.
// Every string from the API reaches the page as a text node or a DOM property (dom.js), never
// as HTML: names, alerts and reasons are written by tenants and submitters.
import * as api from "./api.js";
import { ago, el, fill, text, when } from "./dom.js";
import {
  createMap, drawDevices, drawLandmarks, drawPolicies, highlight, refit, statusBadge, whereText,
} from "./map.js";
import { coverageMap, fleetCounts, rttChart, verdictTimeline } from "./plots.js";
import { readStream, renderStream } from "./stream.js";
import { STATUSES, glyph } from "./verdicts.js";

const REFRESH_MS = 10000;
const $ = (sel) => document.querySelector(sel);
const enc = encodeURIComponent; // a device id in a URL path: never trust it to be hex
let mapReady = null;
let selected = null;
let countries = null;
const details = new Map(); // device id -> {verdict_id, detail} (board/devices/{id})
const policies = new Map(); // policy key -> GeoJSON Feature

function showSignIn(message = "") {
  $("#app").hidden = true;
  $("#sign-out").hidden = true;
  $("#sign-in").hidden = false;
  $("#sign-in-error").textContent = message;
}

async function detailOf(row) {
  const cached = details.get(row.device_id);
  if (cached && cached.verdict_id === row.verdict_id) return cached.detail;
  const detail = await api.get(`board/devices/${enc(row.device_id)}`);
  details.set(row.device_id, { verdict_id: row.verdict_id, detail });
  return detail;
}

function policyKey(row) {
  const claimed = row.policy.startsWith("in-declared") ? row.claim || "" : "";
  return `policy=${enc(row.policy)}&bound=${enc(row.bound || "vacuum")}&claimed=${enc(claimed)}`;
}

async function policyRegions(rows) {
  const keys = [...new Set(rows.map(policyKey))];
  await Promise.all(keys.filter((k) => !policies.has(k)).map(async (k) => {
    try {
      policies.set(k, await api.get(`board/policy-region?${k}`));
    } catch (_) {
      policies.set(k, null); // a policy the map cannot draw: the table still says it
    }
  }));
  return keys.map((k) => policies.get(k));
}

async function load() {
  // Not awaited with the rest: a broker that does not answer takes its timeout (5 s), and the
  // other panels need not wait for it.
  readStream(api.get).then((stream) => renderStream($("#stream-panel"), stream));
  const [rows, groups, health, fleet] = await Promise.all([
    api.get("board/devices"), api.get("board/alerts"), api.get("landmarks/health"),
    api.get("board/fleet"),
  ]);
  $("#sign-in").hidden = true;
  $("#app").hidden = false;
  $("#sign-out").hidden = false;
  mapReady = mapReady || createMap($("#map"));
  await mapReady;
  countries = countries || await (await fetch("countries.geojson")).json();
  rows.sort((a, b) => urgency(a.status) - urgency(b.status) || a.name.localeCompare(b.name));
  const located = await Promise.all(rows.map(async (row) => ({
    row, region: row.verdict_id === null ? null : (await detailOf(row)).region,
  })));
  renderSummary(rows, groups);
  renderDevices(located);
  renderAlerts(groups);
  renderLandmarks(health);
  renderFleet(fleet, health);
  drawPolicies(await policyRegions(rows));
  drawLandmarks(health);
  drawDevices(located, (id) => openDevice(id));
  refit(); // the tables' first render changes the panes' widths
  if (selected) await openDevice(selected, false);
}

// Most urgent first: what needs a person's attention leads the table.
const ORDER = ["REFUTED", "INCONSISTENT", "REJECTED", "NO CHECK-IN", "UNVERIFIED", "PENDING", "VERIFIED"];
function urgency(status) {
  const i = ORDER.indexOf(status);
  return i < 0 ? ORDER.length : i;
}

function renderSummary(rows, groups) {
  const counts = new Map();
  for (const r of rows) counts.set(r.status, (counts.get(r.status) || 0) + 1);
  const parts = STATUSES.filter((s) => counts.has(s.name))
    .map((s) => `${glyph(s.name)} ${counts.get(s.name)} ${s.name}`);
  const open = groups.filter((g) => g.open > 0).length;
  $("#summary").textContent = `${rows.length} devices: ${parts.join(" · ")} · ${open} open alert groups`;
}

function renderDevices(located) {
  fill($("#devices tbody"), ...located.map(({ row, region }) => {
    const where = region ? whereText(region) : null;
    const tr = el("tr", { tabIndex: 0, title: `open ${row.name}` },
      el("td", { className: "status" }, statusBadge(row.status), " ",
        el("span", { className: "verdict" }, row.status)),
      el("td", { className: "name" }, el("span", { className: "device-name" }, row.name),
        el("div", { className: "muted" }, `claims ${text(row.claim)} · ${row.operator}`)),
      el("td", { className: "reason" }, row.sentence,
        where ? el("span", { className: "muted where" }, ` (${where})`) : null),
      el("td", { className: "locates", title: "what the verdict locates: the device key or the GPU" },
        text(row.locates)),
      el("td", { className: "seen", title: when(row.last_seen_at) }, ago(row.last_seen_at)));
    tr.dataset.deviceId = row.device_id;
    tr.dataset.verdict = row.status;
    tr.setAttribute("aria-selected", String(row.device_id === selected));
    tr.classList.toggle("selected", row.device_id === selected);
    tr.addEventListener("click", () => openDevice(row.device_id));
    tr.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        openDevice(row.device_id, true, true);
      }
    });
    return tr;
  }));
}

// Alert texts carry ISO times with milliseconds: shown as "2026-12-06 05:30:46 UTC".
const ISO = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)/g;
function readableTimes(message) {
  return String(message).replace(ISO, (iso) => when(iso));
}

function renderAlerts(groups) {
  const items = groups.slice(0, 50).map((g) => {
    const who = g.device_name || (g.landmark_id ? `landmark ${g.landmark_id}` : "fleet");
    const from = g.landmarks.length > 1 ? ` · from ${g.landmarks.length} landmarks` : "";
    const li = el("li", { className: g.open ? "open" : "closed" },
      el("span", { className: "kind" }, g.kind),
      g.count > 1 ? el("span", { className: "count" }, ` ×${g.count}`) : null,
      " ", el("strong", {}, who),
      el("span", { className: "muted", title: `first ${when(g.first_at)}, last ${when(g.last_at)}` },
        ` · last ${ago(g.last_at)}${from}${g.open ? "" : " · acknowledged"}`),
      el("div", { className: "message" }, readableTimes(g.message)));
    li.dataset.kind = g.kind;
    if (g.device_id) li.dataset.deviceId = g.device_id;
    return li;
  });
  fill($("#alerts"), ...(items.length ? items : [el("li", {}, "no alerts")]));
}

function renderLandmarks(health) {
  fill($("#landmarks tbody"), ...health.map((lm) => el("tr", {},
    el("td", {}, lm.id),
    el("td", {}, lm.status),
    el("td", { className: "muted" }, lm.operator),
    el("td", {}, lm.peers_breaking_physics.length
      ? `breaks physics with ${lm.peers_breaking_physics.join(", ")}`
      : `${lm.peers_checked} peers ok`),
    el("td", { title: text(lm.status_reason, "") }, implicatedText(lm.implicated)))));
}

// How many devices' latest INCONSISTENT verdicts name the landmark (alone: the review count).
function implicatedText(score) {
  if (!score || !score.named) return "-";
  return `${score.named_alone} alone / ${score.named} named (blame ${score.blame.toFixed(2)})`;
}

function renderFleet(fleet, health) {
  fill($("#fleet-plots"), fleetCounts(fleet.timeline), coverageMap(countries, health));
}

// One line per (reason, detail): a clone answering every landmark is one story, not sixteen.
function groupRejections(rows) {
  const groups = new Map();
  for (const r of rows) {
    const key = `${r.reason}\n${r.detail}`;
    const g = groups.get(key) || { reason: r.reason, detail: r.detail, count: 0, landmarks: [],
      last: r.received_at };
    g.count += r.count;
    const lm = text(r.landmark_id, "unknown");
    if (!g.landmarks.includes(lm)) g.landmarks.push(lm);
    if (r.received_at > g.last) g.last = r.received_at;
    groups.set(key, g);
  }
  return [...groups.values()];
}

async function openDevice(id, zoom = true, focus = false) {
  selected = id;
  document.querySelectorAll("#devices tbody tr").forEach((tr) => {
    const on = tr.dataset.deviceId === id;
    tr.classList.toggle("selected", on);
    tr.setAttribute("aria-selected", String(on));
  });
  const [device, board, rows, rejections] = await Promise.all([
    api.get(`devices/${enc(id)}`), api.get(`board/devices/${enc(id)}`), api.get("board/devices"),
    api.get(`rejections?device_id=${enc(id)}&limit=20`).catch(() => []),
  ]);
  const row = rows.find((r) => r.device_id === id);
  const status = row ? row.status : "PENDING";
  const name = row ? row.name : id.slice(0, 12);
  const lic = device.licence;
  const changes = board.runs.map((r) => el("tr", {},
    el("td", { className: "status" }, statusBadge(r.verdict), ` ${r.verdict}`),
    el("td", {}, r.sentence),
    el("td", { className: "muted", title: `${when(r.since)} to ${when(r.until)}` },
      r.count > 1 ? `${ago(r.since)} (held for ${r.count} checks)` : ago(r.since)),
    el("td", {}, `locates ${r.locates}`)));
  const evidence = device.latest_verdict
    ? el("button", { id: "evidence", onclick: () => api.download(`devices/${enc(id)}/evidence`,
      `evidence-${id}.json`) }, "Download evidence bundle")
    : null;
  const heading = el("h2", { tabIndex: -1 }, statusBadge(status), ` ${name}: ${status}`);
  $("#detail").hidden = false;
  fill($("#detail"), 
    heading,
    el("p", { className: "sentence" }, row ? row.sentence : "no verdict yet"),
    board.region ? el("p", { className: "muted" }, whereText(board.region)) : null,
    el("p", {}, `operator ${device.operator} · identity ${device.trust_level} · policy `
      + `${lic.policy} (declares ${text(lic.declared_country)})`
      + (lic.require_locates === "gpu" ? " · must locate the GPU" : "")
      + ` · last check-in ${ago(device.last_record_at)}`
      + (device.last_record_at ? ` (${when(device.last_record_at)})` : "")),
    el("p", { className: "mono" }, `id ${device.device_id} · key ${device.key_id}`),
    evidence,
    board.runs.length ? verdictTimeline(board.runs) : null,
    rttChart(board.rtt.key || [], board.reference, "key"),
    board.rtt.gpu ? rttChart(board.rtt.gpu, board.reference, "GPU-signed") : null,
    el("h3", {}, "Verdict changes"),
    changes.length ? el("table", { id: "history" }, el("tbody", {}, ...changes))
      : el("p", { className: "muted" }, "no verdict has been computed for this device"),
    rejections.length ? el("h3", {}, "Rejected records") : null,
    rejections.length ? el("table", { id: "rejections" }, el("tbody", {},
      ...groupRejections(rejections).map((g) => el("tr", {},
        el("td", { className: "kind" }, g.reason),
        el("td", {}, `×${g.count} from ${g.landmarks.length} landmark`
          + `${g.landmarks.length === 1 ? "" : "s"}`),
        el("td", { className: "muted", title: g.landmarks.join(", ") }, `last ${ago(g.last)}`),
        el("td", { className: "message" }, g.detail))))) : null);
  highlight(id, zoom);
  if (focus) heading.focus();
  else if (zoom) $("#detail").scrollIntoView({ block: "nearest" });
}

async function refresh() {
  try {
    await load();
  } catch (err) {
    if (err.status === 401) {
      api.signOut();
      showSignIn(err.message);
    } else {
      $("#summary").textContent = `error: ${err.message}`;
    }
  }
}

$("#sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  api.signIn($("#token").value);
  await refresh();
});
$("#sign-out").addEventListener("click", () => {
  api.signOut();
  showSignIn();
});

const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) {
  api.signIn(fromHash);
  history.replaceState(null, "", location.pathname); // keep the token out of the address bar
}
if (api.token()) refresh(); else showSignIn();
setInterval(() => { if (api.token() && !$("#app").hidden) refresh(); }, REFRESH_MS);
