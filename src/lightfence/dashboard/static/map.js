// The map: country outlines (Natural Earth, served by the verifier), the policy's forbidden
// region, each device's feasible region (vector outline from the caps, coloured and dashed by
// verdict), an estimate marker only where the region is small enough for a point to mean
// something, landmarks as triangles drawn above everything, and a legend. No tiles: offline.
// Tooltips get DOM nodes built from text, never strings: Leaflet renders a string as HTML, and
// every name here (landmark ids, operators, host names) is chosen by a tenant.
/* global L */
import { el, svg } from "./dom.js";
import { STATUSES, colour, glyph } from "./verdicts.js";

const FILL = 0.12;
const FILL_SELECTED = 0.35;
const FILL_HUGE = 0.22; // a selected region spanning most of the world: keep the map readable
const DASH = { VERIFIED: null, UNVERIFIED: "7 4", REFUTED: "2 4", INCONSISTENT: "9 3 2 3" };
let map, policyLayer, regionLayer, estimateLayer, landmarkLayer;
const regionLayers = new Map(); // device id -> its feasible region's layer
let userMoved = false;

function lines(...texts) {
  return el("div", {}, ...texts.flatMap((t, i) => (i ? [el("br"), String(t)] : [String(t)])));
}

function triangle(active) {
  return svg("svg", { width: 14, height: 14, viewBox: "0 0 14 14", "aria-hidden": "true" },
    svg("path", { d: "M7 1 L13 12.5 L1 12.5 Z", fill: active ? "#0072b2" : "#ffffff",
      stroke: active ? "#ffffff" : "#0072b2", "stroke-width": active ? 1.5 : 2.5 }));
}

// The whole width of the world across the pane (one world is 256 px at zoom 0): every landmark
// and region in view; a pane taller than the inhabited latitudes shows more sea, never a
// second copy of the world or a cropped continent.
function fitWorld() {
  map.invalidateSize();
  const { x: w, y: h } = map.getSize();
  const zoom = Math.ceil(Math.log2(w / 256) / SNAP) * SNAP; // round up: never a blank strip
  const wide = Math.log2(h / 256) < zoom - 0.6; // a short pane: centre on the inhabited band
  map.setView([wide ? 22 : 12, 0], zoom, { animate: false }); // lon 0: -180 to 180 exactly
}

// Fit the world again unless the user has moved the map or opened a device.
export function refit() {
  if (!userMoved) fitWorld();
}

const SNAP = 0.05;

export async function createMap(element) {
  map = L.map(element, {
    minZoom: 0, zoomSnap: SNAP, zoomDelta: 0.5, worldCopyJump: false,
    maxBounds: [[-88, -220], [88, 220]], maxBoundsViscosity: 1, attributionControl: true,
  });
  map.attributionControl.setPrefix("Leaflet").addAttribution("Natural Earth (public domain)");
  map.createPane("policy").style.zIndex = 350;
  map.createPane("landmarks").style.zIndex = 660;
  fitWorld();
  map.on("dragstart", () => { userMoved = true; });
  // Layout changes (a table's first render, a scrollbar, the window) resize the pane.
  new ResizeObserver(() => { if (!userMoved) fitWorld(); }).observe(element);
  const countries = await (await fetch("countries.geojson")).json();
  L.geoJSON(countries, {
    style: { color: "#9e9e9e", weight: 0.6, fillColor: "#f4f1ea", fillOpacity: 1 },
    interactive: false,
  }).addTo(map);
  policyLayer = L.layerGroup().addTo(map);
  regionLayer = L.layerGroup().addTo(map);
  estimateLayer = L.layerGroup().addTo(map);
  landmarkLayer = L.layerGroup().addTo(map);
  legend().addTo(map);
  userMoved = false;
}

function legendSwatch(fill, stroke, dash) {
  return svg("svg", { width: 22, height: 14, viewBox: "0 0 22 14", "aria-hidden": "true" },
    svg("rect", { x: 1, y: 1, width: 20, height: 12, fill, "fill-opacity": 0.35, stroke,
      "stroke-width": 1.5, "stroke-dasharray": dash }));
}

export function statusBadge(status) {
  const badge = el("span", { className: "badge", title: status }, glyph(status));
  badge.style.background = colour(status); // CSSOM: allowed by the CSP, unlike style=""
  return badge;
}

function legend() {
  const control = L.control({ position: "bottomleft" });
  control.onAdd = () => {
    const box = el("details", { id: "legend", className: "legend", open: window.innerWidth > 700 },
      el("summary", {}, "Legend"),
      el("ul", { className: "statuses" },
        ...STATUSES.map((s) => el("li", { title: s.says }, statusBadge(s.name), ` ${s.name}`))),
      el("ul", {},
        el("li", {}, el("span", { className: "legend-icon" }, triangle(true)),
          " landmark (hollow: flagged)"),
        el("li", {}, legendSwatch("#009e73", "#009e73", null),
          " feasible region (dashed unless VERIFIED)"),
        el("li", {}, el("span", { className: "estimate-icon legend-icon" }),
          " estimate: centre of a small region"),
        el("li", {}, legendSwatch("#555555", "#333333", "3 3"), " forbidden by the policy")));
    L.DomEvent.disableClickPropagation(box);
    L.DomEvent.disableScrollPropagation(box);
    return box;
  };
  return control;
}

// The forbidden (or, for in-country policies, allowed) region of each distinct policy.
export function drawPolicies(features) {
  policyLayer.clearLayers();
  for (const f of features) {
    if (!f || !f.geometry) continue;
    const forbidden = f.properties.shows === "forbidden";
    L.geoJSON(f, {
      pane: "policy", interactive: false,
      style: forbidden
        ? { color: "#333", weight: 1, dashArray: "3 3", fillColor: "#555", fillOpacity: 0.22 }
        : { color: "#009e73", weight: 1.5, dashArray: "6 3", fill: false },
    }).addTo(policyLayer);
  }
}

export function drawLandmarks(landmarks) {
  landmarkLayer.clearLayers();
  for (const lm of landmarks) {
    const active = lm.status === "active";
    const icon = L.divIcon({ className: "lm-icon", html: triangle(active), iconSize: [14, 14] });
    const marker = L.marker([lm.lat, lm.lon], { icon, pane: "landmarks", keyboard: false })
      .bindTooltip(lines(`landmark ${lm.id} (${lm.status})`, lm.operator))
      .addTo(landmarkLayer);
    marker.getElement()?.setAttribute("data-landmark-id", lm.id);
  }
}

// Where a device is drawn, in words, for tooltips and the detail.
export function whereText(region) {
  if (!region || !region.geometry) return "no feasible region";
  const p = region.properties;
  if (p.estimate) return `within about ${Math.round(p.estimate.radius_km).toLocaleString("en")} km of ${p.estimate.lat.toFixed(1)}, ${p.estimate.lon.toFixed(1)}`;
  const share = Math.max(1, Math.round(p.area_fraction * 100));
  return `no point estimate: its region covers ${share} % of the globe`;
}

// The region's true edges as lines: a ring's stretches along the antimeridian cut or a pole
// are where the map was cut, not where the region ends, so they are left out.
function outlines(geometry) {
  const cut = (a, b) => (Math.abs(a[0]) === 180 && a[0] === b[0])
    || (Math.abs(a[1]) >= 89.99 && Math.abs(b[1]) >= 89.99);
  const out = [];
  for (const poly of geometry.coordinates) {
    for (const ring of poly) {
      let line = [];
      for (let i = 0; i < ring.length; i++) {
        if (i && cut(ring[i - 1], ring[i])) {
          if (line.length > 1) out.push(line);
          line = [];
        }
        line.push([ring[i][1], ring[i][0]]);
      }
      if (line.length > 1) out.push(line);
    }
  }
  return out;
}

// devices: [{row, region}] where region is a GeoJSON Feature or null.
export function drawDevices(devices, onSelect) {
  regionLayer.clearLayers();
  estimateLayer.clearLayers();
  regionLayers.clear();
  for (const { row, region } of devices) {
    if (!region || !region.geometry) continue;
    const c = colour(row.status);
    const shape = L.geoJSON(region, {
      style: { stroke: false, fillColor: c, fillOpacity: FILL },
    }).bindTooltip(lines(`${row.name}: ${row.status}`, whereText(region)))
      .on("click", () => onSelect(row.device_id)).addTo(regionLayer);
    const outline = L.polyline(outlines(region.geometry), {
      color: c, weight: 1.5, dashArray: DASH[row.status] || null, interactive: false,
    }).addTo(regionLayer);
    regionLayers.set(row.device_id, { shape, outline });
    const est = region.properties.estimate;
    if (!est) continue; // a huge region gets no dot: its centre means nothing
    const dot = el("span", { className: "estimate-icon" }, glyph(row.status));
    dot.style.background = c;
    dot.dataset.deviceId = row.device_id;
    dot.dataset.lat = String(est.lat);
    dot.dataset.lon = String(est.lon);
    L.marker([est.lat, est.lon], {
      icon: L.divIcon({ className: "estimate", html: dot, iconSize: [20, 20] }),
      keyboard: false,
    }).bindTooltip(lines(`${row.name}: ${row.status}`, whereText(region)))
      .on("click", () => onSelect(row.device_id)).addTo(estimateLayer);
  }
}

// Emphasise one device's region (and bring it to the front); the others stay faint.
export function highlight(deviceId, zoom) {
  for (const [id, { shape, outline }] of regionLayers) {
    const huge = !shape.getLayers()[0]?.feature?.properties?.estimate;
    shape.setStyle({ fillOpacity: id === deviceId ? (huge ? FILL_HUGE : FILL_SELECTED) : FILL });
    outline.setStyle({ weight: id === deviceId ? 3 : 1.5 });
  }
  const layers = regionLayers.get(deviceId);
  if (!layers) return;
  layers.shape.bringToFront();
  layers.outline.bringToFront();
  if (!zoom) return;
  const feature = layers.shape.getLayers()[0]?.feature;
  if (feature && !feature.properties.estimate) {
    userMoved = false; // a region spanning much of the world: show the world
    fitWorld();
  } else {
    userMoved = true;
    map.fitBounds(layers.shape.getBounds(), { maxZoom: 5, animate: false });
  }
}
