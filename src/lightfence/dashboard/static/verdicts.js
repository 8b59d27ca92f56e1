// One status per device for the table and the map: its latest verdict, or, without one, what
// the alerts say (evidence rejected, missed check-in).
const COLOURS = {
  VERIFIED: "#2e7d32", UNVERIFIED: "#f9a825", REFUTED: "#c62828", INCONSISTENT: "#6a1b9a",
  REJECTED: "#b71c1c", "NO CHECK-IN": "#616161", PENDING: "#90a4ae",
};

export function colour(status) {
  return COLOURS[status] || COLOURS.PENDING;
}

export function status(device, alerts) {
  if (device.latest_verdict) return device.latest_verdict.verdict;
  const mine = alerts.filter((a) => a.device_id === device.device_id);
  if (mine.some((a) => a.kind === "identity_change" || a.kind === "rejected_evidence")) {
    return "REJECTED";
  }
  if (mine.some((a) => a.kind === "missed_checkin")) return "NO CHECK-IN";
  return "PENDING";
}
