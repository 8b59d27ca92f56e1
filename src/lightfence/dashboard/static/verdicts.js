// One look per status, for the table, the map, the legend and the plots. Colours are the
// Okabe-Ito palette (distinguishable with the common colour-vision deficiencies), and every
// status also has its own glyph and its name in text: colour is never the only cue.
export const STATUSES = [
  { name: "VERIFIED", colour: "#009e73", glyph: "✓", says: "every position its RTTs allow is allowed" },
  { name: "UNVERIFIED", colour: "#e69f00", glyph: "?", says: "could also be somewhere forbidden" },
  { name: "REFUTED", colour: "#d55e00", glyph: "✕", says: "not where it claims" },
  { name: "INCONSISTENT", colour: "#cc79a7", glyph: "!", says: "the measurements contradict each other" },
  { name: "REJECTED", colour: "#000000", glyph: "⊘", says: "its evidence failed its checks" },
  { name: "NO CHECK-IN", colour: "#7f7f7f", glyph: "…", says: "has stopped reporting" },
  { name: "PENDING", colour: "#56b4e9", glyph: "·", says: "no verdict yet" },
];
const BY_NAME = new Map(STATUSES.map((s) => [s.name, s]));

export function look(status) {
  return BY_NAME.get(status) || BY_NAME.get("PENDING");
}

export function colour(status) {
  return look(status).colour;
}

export function glyph(status) {
  return look(status).glyph;
}
