// The map: country outlines (Natural Earth, served by the verifier), landmarks, and each
// device's feasible region coloured by its verdict. No tiles: it works offline.
// Tooltips get DOM nodes built from text, never strings: Leaflet renders a string as HTML, and
// every name here (landmark ids, operators, host names) is chosen by a tenant.
/* global L */
import { colour } from "./verdicts.js";

const FILL = 0.15;
const FILL_SELECTED = 0.45;
let map, devicesLayer, landmarksLayer;
const regionLayers = new Map(); // device id -> its feasible region's layer

// A tooltip body: one line of text per argument, as text nodes.
function lines(...texts) {
  const box = document.createElement("div");
  texts.forEach((t, i) => {
    if (i) box.append(document.createElement("br"));
    box.append(document.createTextNode(String(t)));
  });
  return box;
}

export async function createMap(element) {
  map = L.map(element, { minZoom: 1, worldCopyJump: false, attributionControl: true })
    .setView([25, 20], 2);
  map.attributionControl.setPrefix("Leaflet").addAttribution("Natural Earth (public domain)");
  const countries = await (await fetch("countries.geojson")).json();
  L.geoJSON(countries, {
    style: { color: "#9e9e9e", weight: 0.6, fillColor: "#f4f1ea", fillOpacity: 1 },
    interactive: false,
  }).addTo(map);
  landmarksLayer = L.layerGroup().addTo(map);
  devicesLayer = L.layerGroup().addTo(map);
}

export function drawLandmarks(landmarks) {
  landmarksLayer.clearLayers();
  for (const lm of landmarks) {
    const ok = lm.status === "active";
    L.circleMarker([lm.lat, lm.lon], {
      radius: 5, color: "#0d47a1", weight: 2, fillColor: ok ? "#42a5f5" : "#ff7043",
      fillOpacity: 1,
    }).bindTooltip(lines(`landmark ${lm.id} (${lm.status})`, lm.operator)).addTo(landmarksLayer);
  }
}

// devices: [{device, status, region}] where region is a GeoJSON Feature or null.
export function drawDevices(devices, onSelect) {
  devicesLayer.clearLayers();
  regionLayers.clear();
  for (const { device, status, region } of devices) {
    if (!region || !region.geometry) continue;
    const shape = L.geoJSON(region, {
      // No outline: the region is a union of grid cells and their seams would show as lines.
      style: { stroke: false, fillColor: colour(status), fillOpacity: FILL },
    }).addTo(devicesLayer);
    regionLayers.set(device.device_id, shape);
    const name = device.attributes.host || device.device_id.slice(0, 8);
    L.circleMarker(shape.getBounds().getCenter(), {
      radius: 7, color: "#fff", weight: 2, fillColor: colour(status), fillOpacity: 1,
    }).bindTooltip(lines(`${name}: ${status}`)).on("click", () => onSelect(device.device_id))
      .addTo(devicesLayer);
  }
}

// Emphasise one device's region (and bring it to the front); the others stay faint.
export function highlight(deviceId, zoom) {
  for (const [id, layer] of regionLayers) {
    layer.setStyle({ fillOpacity: id === deviceId ? FILL_SELECTED : FILL });
  }
  const layer = regionLayers.get(deviceId);
  if (!layer) return;
  layer.bringToFront();
  if (zoom) map.fitBounds(layer.getBounds(), { maxZoom: 5, animate: false });
}
