// The dashboard: sign in with an API token, then show the fleet on the map and in tables.
// Every string from the API reaches the page as a text node or a DOM property (el() below),
// never as HTML: names, alerts and reasons are written by tenants and submitters.
import * as api from "./api.js";
import { createMap, drawDevices, drawLandmarks, highlight } from "./map.js";
import { colour, status } from "./verdicts.js";

const REFRESH_MS = 10000;
const $ = (sel) => document.querySelector(sel);
let mapReady = null;
let selected = null;
let regions = new Map(); // device id -> feasible region of its latest verdict

function el(tag, attrs = {}, ...children) {
  const node = Object.assign(document.createElement(tag), attrs);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function swatch(s) {
  const node = el("span", { className: "swatch", title: s });
  node.style.background = colour(s); // CSSOM: allowed by the CSP, unlike a style attribute
  return node;
}

// A device id in a URL path (ids are hex, but never trust that in a path).
const enc = encodeURIComponent;

function showSignIn(message = "") {
  $("#app").hidden = true;
  $("#sign-out").hidden = true;
  $("#sign-in").hidden = false;
  $("#sign-in-error").textContent = message;
}

async function load() {
  const [devices, alerts, health] = await Promise.all([
    api.get("devices"), api.get("alerts?limit=200"), api.get("landmarks/health"),
  ]);
  $("#sign-in").hidden = true;
  $("#app").hidden = false;
  $("#sign-out").hidden = false;
  mapReady = mapReady || createMap($("#map"));
  await mapReady;
  const rows = devices.map((d) => ({ device: d, status: status(d, alerts) }));
  await Promise.all(rows.map(async (row) => {
    if (!row.device.latest_verdict) return;
    const hist = await api.get(`devices/${enc(row.device.device_id)}/verdicts?limit=1&geojson=latest`);
    regions.set(row.device.device_id, hist.verdicts[0]?.feasible_geojson || null);
  }));
  for (const row of rows) row.region = regions.get(row.device.device_id) || null;
  renderSummary(rows, alerts);
  renderDevices(rows);
  renderAlerts(alerts);
  renderLandmarks(health);
  drawLandmarks(health);
  drawDevices(rows, openDevice);
  if (selected) await openDevice(selected, false);
}

function renderSummary(rows, alerts) {
  const counts = {};
  for (const r of rows) counts[r.status] = (counts[r.status] || 0) + 1;
  const parts = Object.entries(counts).map(([k, n]) => `${n} ${k}`);
  const open = alerts.filter((a) => !a.acknowledged_at).length;
  $("#summary").textContent = `${rows.length} devices: ${parts.join(", ")} · ${open} open alerts`;
}

function renderDevices(rows) {
  const body = $("#devices tbody");
  body.replaceChildren(...rows.map(({ device, status: s }) => {
    const tr = el("tr", {},
      el("td", {}, swatch(s)),
      el("td", {}, device.attributes.host || device.device_id.slice(0, 12)),
      el("td", {}, device.licence.declared_country || "-"),
      el("td", { className: "verdict" }, s),
      el("td", { className: "locates" }, device.latest_verdict?.locates || "-"),
      el("td", {}, device.operator));
    tr.dataset.deviceId = device.device_id;
    tr.dataset.verdict = s;
    tr.classList.toggle("selected", device.device_id === selected);
    tr.addEventListener("click", () => openDevice(device.device_id));
    return tr;
  }));
}

function renderAlerts(alerts) {
  const items = alerts.slice(0, 50).map((a) => el("li", {},
    el("span", { className: "kind" }, a.kind), a.count > 1 ? ` ×${a.count} ` : " ",
    el("span", { className: "muted" }, `${a.created_at} · ${a.device_id?.slice(0, 8) || ""}`
      + ` ${a.landmark_id || ""}`),
    el("div", {}, a.message)));
  $("#alerts").replaceChildren(...(items.length ? items : [el("li", {}, "no alerts")]));
}

function renderLandmarks(health) {
  $("#landmarks tbody").replaceChildren(...health.map((lm) => el("tr", {},
    el("td", {}, lm.id),
    el("td", {}, lm.status),
    el("td", { className: "muted" }, lm.operator),
    el("td", {}, lm.peers_breaking_physics.length
      ? `breaks physics with ${lm.peers_breaking_physics.join(", ")}`
      : `${lm.peers_checked} peers ok`),
    el("td", { title: lm.status_reason || "" }, implicatedText(lm.implicated)))));
}

// How many devices' latest INCONSISTENT verdicts name the landmark (alone: the review count).
function implicatedText(score) {
  if (!score || !score.named) return "-";
  return `${score.named_alone} alone / ${score.named} named (blame ${score.blame.toFixed(2)})`;
}

async function openDevice(id, zoom = true) {
  selected = id;
  document.querySelectorAll("#devices tbody tr").forEach((tr) => {
    tr.classList.toggle("selected", tr.dataset.deviceId === id);
  });
  const [device, hist] = await Promise.all([
    api.get(`devices/${enc(id)}`), api.get(`devices/${enc(id)}/verdicts?limit=20&geojson=latest`),
  ]);
  const historyRows = hist.verdicts.map((v) => el("tr", {},
    el("td", {}, swatch(v.verdict)), el("td", {}, `${v.verdict} (locates ${v.locates})`),
    el("td", { className: "muted" }, v.computed_at), el("td", {}, v.reason),
    el("td", { className: "muted", title: "lying landmarks tolerated: f, from the rule in brackets" },
      `f=${v.tolerated_liars} (liars: ${v.liars ?? "auto"})`)));
  const latest = hist.verdicts[0];
  const evidence = latest
    ? el("button", { id: "evidence", onclick: () => api.download(`devices/${enc(id)}/evidence`,
      `evidence-${id}.json`) }, "Download evidence bundle")
    : el("p", { className: "muted" }, "no verdict yet, so no evidence bundle");
  $("#detail").hidden = false;
  $("#detail").replaceChildren(
    el("h2", {}, `Device ${device.attributes.host || ""}`),
    el("p", { className: "mono" }, `id ${device.device_id} · key ${device.key_id}`),
    el("p", {}, `operator ${device.operator} · identity ${device.trust_level}`
      + ` · licence ${device.licence.policy} (declares ${device.licence.declared_country || "-"})`
      + (device.licence.require_locates === "gpu" ? " · must locate the GPU" : "")
      + ` · last check-in ${device.last_record_at || "never"}`),
    latest ? el("p", {}, `measurements: ${latest.measurements.map((m) =>
      `${m.landmark_id} ${m.rtt_ms.toFixed(2)} ms`).join(", ")}`) : null,
    latest && latest.gpu_verdict ? el("p", { className: "gpu" },
      `locates ${latest.locates}: key rounds ${latest.key_verdict || "-"}, GPU-signed rounds `
      + `${latest.gpu_verdict} (${latest.gpu_measurements.map((m) =>
        `${m.landmark_id} ${m.rtt_ms.toFixed(2)} ms - S_floor ${m.floor_ms.toFixed(2)}`).join(", ")})`
      + (latest.alerts.length ? ` · ${latest.alerts.join(", ")}` : "")) : null,
    evidence,
    el("h2", {}, "Verdict history"),
    historyRows.length ? el("table", { id: "history" }, el("tbody", {}, ...historyRows))
      : el("p", { className: "muted" }, "no verdicts"));
  highlight(id, zoom);
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
