"""Leave-one-out accuracy of the display estimate against the two plain baselines.

For each target t: the landmarks are every landmark measured with t except t itself, and the
bestlines are fitted on landmark-to-landmark rows that do not involve t. Errors are great-circle
km between the estimate and the target's listed coordinates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lightfence.core.estimate import (
    BestlineCalibration,
    cbg_plain_centroid,
    estimate_position,
    shortest_ping,
)
from lightfence.core.measurement import Landmark, Measurement
from lightfence.geo.sphere import great_circle_km
from lightfence.rttdata import Dataset

ProgressCallback = Callable[[int, int], None]
"""Called with (done, total) after each target, e.g. to advance a Rich progress bar."""


def calibration_rows(
    dataset: Dataset, calibration: Dataset | None = None
) -> list[tuple[str, str, float, float]]:
    """(a, b, distance km, RTT ms) for each measured landmark pair of `calibration` (or dataset)."""
    source = calibration if calibration is not None else dataset
    pairs = list(source.landmark_pairs())
    a_hosts = [source.hosts[a] for a, _, _ in pairs]
    b_hosts = [source.hosts[b] for _, b, _ in pairs]
    distances = great_circle_km(
        [h.lat for h in a_hosts],
        [h.lon for h in a_hosts],
        [h.lat for h in b_hosts],
        [h.lon for h in b_hosts],
    )
    return [
        (a, b, float(distance), rtt) for (a, b, rtt), distance in zip(pairs, distances, strict=True)
    ]


def target_measurements(dataset: Dataset, target_id: str) -> list[Measurement]:
    """The target's measurements from every other landmark (leave-one-out)."""
    return [
        Measurement(Landmark(host.id, host.lat, host.lon), rtt)
        for host, rtt in dataset.landmark_rtts(target_id)
    ]


def _summary(errors: list[float]) -> tuple[float, float]:
    values = np.asarray(errors, dtype=np.float64)
    return float(np.median(values)), float(np.percentile(values, 90))


def evaluate_estimates(
    dataset: Dataset,
    calibration: Dataset | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Leave-one-out errors of the estimate, shortest ping and plain CBG over every target.

    Returns `targets`, `estimate_median_km`, `estimate_p90_km`,
    `baseline_shortest_ping_median_km`, `baseline_shortest_ping_p90_km`,
    `baseline_cbg_median_km`, `baseline_cbg_p90_km`, `skipped` (targets without any landmark
    RTT) and `per_target` (id, country, estimate_lat, estimate_lon, error_km,
    error_radius_km, method, shortest_ping_error_km, cbg_error_km).
    """
    fits = BestlineCalibration(calibration_rows(dataset, calibration))
    per_target: list[dict[str, Any]] = []
    skipped: list[str] = []
    errors: dict[str, list[float]] = {"estimate": [], "shortest": [], "cbg": []}
    for done, target_id in enumerate(dataset.target_ids, start=1):
        measurements = target_measurements(dataset, target_id)
        if not measurements:
            skipped.append(target_id)
            continue
        truth = dataset.hosts[target_id]
        results = {
            "estimate": estimate_position(measurements, fits.bestlines(exclude=target_id)),
            "shortest": shortest_ping(measurements),
            "cbg": cbg_plain_centroid(measurements),
        }
        err = {
            name: float(great_circle_km(truth.lat, truth.lon, est.lat, est.lon))
            for name, est in results.items()
        }
        for name, value in err.items():
            errors[name].append(value)
        best = results["estimate"]
        per_target.append(
            {
                "id": target_id,
                "country": truth.country_iso2,
                "estimate_lat": round(best.lat, 4),
                "estimate_lon": round(best.lon, 4),
                "error_km": round(err["estimate"], 1),
                "error_radius_km": round(best.error_radius_km, 1),
                "method": best.method,
                "shortest_ping_error_km": round(err["shortest"], 1),
                "cbg_error_km": round(err["cbg"], 1),
            }
        )
        if progress is not None:
            progress(done, len(dataset.target_ids))
    if not per_target:
        raise ValueError("no target has any landmark RTT: nothing to evaluate")
    est_median, est_p90 = _summary(errors["estimate"])
    sp_median, sp_p90 = _summary(errors["shortest"])
    cbg_median, cbg_p90 = _summary(errors["cbg"])
    return {
        "targets": len(per_target),
        "estimate_median_km": round(est_median, 1),
        "estimate_p90_km": round(est_p90, 1),
        "baseline_shortest_ping_median_km": round(sp_median, 1),
        "baseline_shortest_ping_p90_km": round(sp_p90, 1),
        "baseline_cbg_median_km": round(cbg_median, 1),
        "baseline_cbg_p90_km": round(cbg_p90, 1),
        "skipped": skipped,
        "per_target": per_target,
    }


def main() -> None:
    """Print the summary (without per-target rows) for the shipped data as JSON."""
    import json

    from lightfence.rttdata import load_dataset

    result = evaluate_estimates(load_dataset())
    print(json.dumps({k: v for k, v in result.items() if k != "per_target"}, indent=2))


if __name__ == "__main__":
    main()
