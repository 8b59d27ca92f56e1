"""Out-of-sample accuracy of the display estimate against the two plain baselines.

For each target t: the landmarks are every landmark measured with t except t itself. The
estimate's settings and its bestline calibration come from nested cross-validation grouped by
site (eval.crossval): t is estimated in an outer fold, with a setting chosen on the other
targets' inner folds and bestlines fitted without any row near t's fold. Errors are great-circle
km between the estimate and the target's listed coordinates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lightfence.core.estimate import EstimateSettings, shortest_ping
from lightfence.core.measurement import Landmark, Measurement
from lightfence.eval.crossval import (
    CANDIDATES,
    OUTER_FOLDS,
    Calibrations,
    Target,
    nested_cv,
)
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
    candidates: Sequence[EstimateSettings] = CANDIDATES,
    outer_folds: int = OUTER_FOLDS,
) -> dict[str, Any]:
    """Outer-fold errors of the estimate (eval.crossval), shortest ping and plain CBG.

    Returns `targets`, `estimate_median_km`, `estimate_p90_km` (outer folds of the nested CV:
    out of sample), `baseline_shortest_ping_median_km`, `baseline_shortest_ping_p90_km`,
    `baseline_cbg_median_km`, `baseline_cbg_p90_km` (the baselines have nothing to fit),
    `estimate_cv` (folds and the setting chosen for each), `skipped` (targets without any
    landmark RTT) and `per_target` (id, country, estimate_lat, estimate_lon, error_km,
    error_radius_km, method, fold, shortest_ping_error_km, cbg_error_km).
    """
    calibrations = Calibrations(calibration_rows(dataset, calibration))
    targets: list[Target] = []
    shortest: dict[str, float] = {}
    skipped: list[str] = []
    for target_id in dataset.target_ids:
        measurements = target_measurements(dataset, target_id)
        if not measurements:
            skipped.append(target_id)
            continue
        truth = dataset.hosts[target_id]
        targets.append(Target(target_id, truth.lat, truth.lon, truth.country_iso2, measurements))
    if not targets:
        raise ValueError("no target has any landmark RTT: nothing to evaluate")
    cv = nested_cv(targets, calibrations, candidates, outer_folds, progress)
    fold_of = {}
    for choice in cv.folds:
        fold_of.update({t: choice.fold for t in cv.fold_targets[choice.fold]})
    per_target: list[dict[str, Any]] = []
    errors: dict[str, list[float]] = {"estimate": [], "shortest": [], "cbg": []}
    for t in targets:
        if t.id not in cv.estimates:  # every landmark of it was held out with its fold
            skipped.append(t.id)
            continue
        best = cv.estimates[t.id]
        # The baselines see the same landmarks as the estimate: the fold's other hosts held out.
        sp = shortest_ping(cv.used[t.id])
        err = float(great_circle_km(t.lat, t.lon, best.lat, best.lon))
        cbg = cv.cbg[t.id]
        cbg_km = float(great_circle_km(t.lat, t.lon, cbg.lat, cbg.lon))
        shortest[t.id] = float(great_circle_km(t.lat, t.lon, sp.lat, sp.lon))
        errors["estimate"].append(err)
        errors["shortest"].append(shortest[t.id])
        errors["cbg"].append(cbg_km)
        per_target.append(
            {
                "id": t.id,
                "country": t.country,
                "estimate_lat": round(best.lat, 4),
                "estimate_lon": round(best.lon, 4),
                "error_km": round(err, 1),
                "error_radius_km": round(best.error_radius_km, 1),
                "method": best.method,
                "fold": fold_of[t.id],
                "shortest_ping_error_km": round(shortest[t.id], 1),
                "cbg_error_km": round(cbg_km, 1),
            }
        )
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
        "estimate_cv": cv.to_json(),
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
