"""What the verifier concluded about each demo device, read back through its API (auditor token).

The table shows the verifier's answers only; the scenario column is the demo's own label, the
truth the verifier was never told.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from lightfence.agent.measure import LandmarkResult
from lightfence.core.estimate import (
    LOCATES_NOTHING_KM,
    Bestline,
    BestlineCalibration,
    distance_words,
    estimate_position,
)
from lightfence.core.measurement import Landmark, Measurement
from lightfence.demo.scenario import LANDMARKS, Scenario
from lightfence.demo.world import DemoWorld
from lightfence.eval.estimates import calibration_rows
from lightfence.rttdata import load_dataset

SETTLE_TIMEOUT_S = 120.0
"""A bound for a busy machine, not a target: a settled round usually takes a few seconds."""


@dataclass(frozen=True)
class DeviceReport:
    id: str
    name: str
    scenario: str
    claim: str
    verdict: str
    reason: str
    estimate: str
    alerts: tuple[str, ...]
    locates: str = "key"
    """What the verifier's `verdict` locates: `key` (from key rounds) or `gpu` (GPU-signed)."""
    by_locates: dict[str, str] | None = None
    """With GPU-signed rounds: the verifier's key verdict and gpu verdict side by side."""

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "scenario": self.scenario,
            "claim": self.claim,
            "verdict": self.verdict,
            "locates": self.locates,
            "verdicts_by_locates": self.by_locates,
            "reason": self.reason,
            "estimate": self.estimate,
            "alerts": list(self.alerts),
        }


def wait_settled(
    world: DemoWorld, results: dict[str, list[LandmarkResult]], timeout_s: float = SETTLE_TIMEOUT_S
) -> list[str]:
    """Wait until the verifier holds every record the landmarks issued, every verdict is
    computed and the silent host's missed check-in is flagged. Returns what did not happen."""
    issued = sum(r.record is not None for rs in results.values() for r in rs)
    silent = [d.device_id for d in world.fleet if d.spec.scenario is Scenario.SILENT]
    deadline = time.monotonic() + timeout_s
    missing: list[str] = []
    while True:
        status = world.api("GET", "/status", "auditor")
        seen = status["records"] + sum(status["rejections"].values())
        missed = {a["device_id"] for a in world.api("GET", "/alerts?kind=missed_checkin")}
        missing = []
        if seen < issued:
            missing.append(f"{issued - seen} of {issued} records not yet at the verifier")
        if status["pending_verdicts"]:
            missing.append(f"{status['pending_verdicts']} verdict(s) pending")
        if any(d not in missed for d in silent):
            missing.append("missed check-in alert not raised yet")
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.2)


@cache
def _bestlines() -> dict[str, Bestline]:
    """CBG bestlines of the demo's landmarks, calibrated on the shipped landmark-to-landmark RTTs
    of the data-set hosts they stand at, keyed by demo landmark id."""
    data = load_dataset()
    lines = BestlineCalibration(calibration_rows(data)).bestlines()
    return {site.id: lines[site.host_id] for site in LANDMARKS if site.host_id in lines}


def estimate_text(verdict: dict[str, Any]) -> str:
    """CBG position estimate from the verdict's measurements: for the eye, never a verdict input."""
    measurements = [
        Measurement(Landmark(m["landmark_id"], m["lat"], m["lon"]), m["rtt_ms"])
        for m in verdict["measurements"]
    ]
    if not measurements:
        return "-"
    est = estimate_position(measurements, _bestlines())
    if est.error_radius_km >= LOCATES_NOTHING_KM:
        return f"not located (± {distance_words(est.error_radius_km)})"
    return f"{est.lat:.1f}, {est.lon:.1f} ± {est.error_radius_km:,.0f} km"


def device_reports(world: DemoWorld) -> list[DeviceReport]:
    alerts = world.api("GET", "/alerts", "auditor")
    out = []
    for dev in world.fleet:
        info = world.api("GET", f"/devices/{dev.device_id}", "auditor")
        mine = [a for a in alerts if a["device_id"] == dev.device_id]
        kinds = tuple(sorted({a["kind"] for a in mine}))
        latest = info["latest_verdict"]
        rejected = [a for a in mine if a["kind"] in ("identity_change", "rejected_evidence")]
        missed = [a for a in mine if a["kind"] == "missed_checkin"]
        if latest is not None:
            verdict, reason, estimate = latest["verdict"], latest["reason"], estimate_text(latest)
        elif rejected:
            verdict, reason, estimate = "REJECTED", rejected[0]["message"], "-"
        elif missed:
            verdict, reason, estimate = "NO CHECK-IN", missed[0]["message"], "-"
        else:
            verdict, reason, estimate = "PENDING", "no verdict yet", "-"
        locates, by_locates = "key", None
        if latest is not None:
            locates = latest["locates"]
            if latest["gpu_verdict"] is not None:
                # The service's verdict from GPU-signed rounds, with each kind's own beside it.
                by_locates = {"key": latest["key_verdict"] or "-", "gpu": latest["gpu_verdict"]}
        report = DeviceReport(
            id=dev.device_id,
            name=dev.spec.name,
            scenario=dev.spec.scenario.value,
            claim=dev.spec.claim,
            verdict=verdict,
            reason=reason,
            estimate=estimate,
            alerts=kinds,
            locates=locates,
            by_locates=by_locates,
        )
        out.append(report)
    return out
