"""Nested cross-validation of the display estimate: grouped folds, no leakage, outer folds."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightfence.core.estimate import DEFAULT_SETTINGS, EstimateSettings, estimate_position
from lightfence.core.measurement import Landmark, Measurement
from lightfence.eval.crossval import (
    Calibrations,
    Target,
    assign_folds,
    nested_cv,
    site_groups,
)
from lightfence.eval.estimates import calibration_rows, evaluate_estimates, target_measurements
from lightfence.rttdata import load_dataset
from small_data import write_slice

FEW = (DEFAULT_SETTINGS, EstimateSettings(level_steps=(0.0, 0.2, 0.4), plain_above_ms=20.0))


def test_hosts_of_one_site_share_a_group_and_a_group_never_straddles_folds() -> None:
    ids = ["a", "a2", "b", "c", "c2", "c3", "d"]
    lat = [50.0, 50.1, 10.0, -30.0, -30.2, -30.4, 60.0]  # a/a2 11 km apart, c-c2-c3 chained
    lon = [8.0, 8.0, 10.0, 150.0, 150.0, 150.0, 20.0]
    groups = site_groups(ids, lat, lon)
    assert groups[0] == groups[1] and groups[3] == groups[4] == groups[5]
    assert len(set(groups)) == 4
    folds = assign_folds(groups, 3)
    for g in set(groups):
        assert len({f for f, gg in zip(folds, groups, strict=True) if gg == g}) == 1
    assert set(folds) == {0, 1, 2}
    assert assign_folds(groups, 3) == folds  # seeded: reproducible


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_slice(tmp_path_factory.mktemp("slice"))


def _targets(
    path: Path,
    garbled: set[str] = frozenset(),  # type: ignore[assignment]
) -> tuple[list[Target], Calibrations]:
    """The slice's targets and calibration; every RTT that involves a `garbled` host is made up."""
    data = load_dataset(path)

    def fake(a: str, b: str, rtt: float) -> float:
        return rtt * 3.0 + 50.0 if a in garbled or b in garbled else rtt

    targets = [
        Target(
            t,
            data.hosts[t].lat,
            data.hosts[t].lon,
            "",
            [
                Measurement(m.landmark, fake(t, m.landmark.id, m.rtt_ms))
                for m in target_measurements(data, t)
            ],
        )
        for t in data.target_ids
    ]
    rows = [(a, b, d, fake(a, b, rtt)) for a, b, d, rtt in calibration_rows(data)]
    return targets, Calibrations(rows)


def test_an_outer_estimate_uses_neither_its_fold_nor_its_site_to_choose(small: Path) -> None:
    targets, cals = _targets(small)
    cv = nested_cv(targets, cals, FEW, outer_folds=2)
    assert set(cv.estimates) == {t.id for t in targets}
    assert sorted(t for fold in cv.fold_targets for t in fold) == sorted(cv.estimates)
    for choice, members in zip(cv.folds, cv.fold_targets, strict=True):
        # The outer estimate is the chosen setting, from landmarks and bestlines that leave the
        # target (and its site) out.
        t = next(t for t in targets if t.id == members[0])
        used = cv.used[t.id]
        assert all(m.landmark.id != t.id for m in used)
        again = estimate_position(used, cals.without({t.id}), choice.chosen)
        assert (again.lat, again.lon) == (cv.estimates[t.id].lat, cv.estimates[t.id].lon)
        assert choice.chosen in FEW
    # Making up every RTT of the fold-0 hosts (their rows as targets, as landmarks and in the
    # calibration) changes nothing that was chosen for fold 0.
    garbled, cals2 = _targets(small, set(cv.fold_targets[0]))
    cv2 = nested_cv(garbled, cals2, FEW, outer_folds=2)
    assert cv2.fold_targets == cv.fold_targets
    assert cv2.folds[0].chosen == cv.folds[0].chosen
    assert cv2.folds[0].inner_score == cv.folds[0].inner_score


def test_a_site_is_held_out_whole() -> None:
    # Two hosts 5 km apart: each is the other's near-duplicate, so neither measures the other.
    def m(lid: str, lat: float, rtt: float) -> Measurement:
        return Measurement(Landmark(lid, lat, 8.0), rtt)

    a = Target("a", 50.0, 8.0, "", [m("b", 50.045, 0.3), m("x", 52.0, 5.0), m("y", 48.0, 5.0)])
    b = Target("b", 50.045, 8.0, "", [m("a", 50.0, 0.3), m("x", 52.0, 5.0), m("y", 48.0, 5.0)])
    far = Target("c", 10.0, 8.0, "", [m("x", 52.0, 60.0), m("y", 48.0, 60.0)])
    rows = [("x", "y", 444.8, 6.0)]
    cv = nested_cv([a, b, far], Calibrations(rows), (DEFAULT_SETTINGS,), outer_folds=2)
    assert {x.landmark.id for x in cv.used["a"]} == {"x", "y"}
    assert {x.landmark.id for x in cv.used["b"]} == {"x", "y"}
    assert any({"a", "b"} <= set(f) for f in cv.fold_targets)


def test_evaluate_estimates_reports_outer_fold_errors_and_the_choices(small: Path) -> None:
    result = evaluate_estimates(load_dataset(small), candidates=FEW, outer_folds=2)
    cv = result["estimate_cv"]
    assert cv["outer_folds"] == 2 and cv["candidates"] == 2
    assert sum(c["targets"] for c in cv["chosen"]) == result["targets"] == 24
    assert {row["fold"] for row in result["per_target"]} == {0, 1}
    assert result["estimate_median_km"] > 0 and result["baseline_cbg_p90_km"] > 0


def test_one_candidate_needs_no_selection_and_bad_fold_counts_are_refused(small: Path) -> None:
    targets, cals = _targets(small)
    cv = nested_cv(targets[:6], cals, (DEFAULT_SETTINGS,), outer_folds=2)
    assert all(c.chosen == DEFAULT_SETTINGS for c in cv.folds)
    with pytest.raises(ValueError, match="at least 2"):
        nested_cv(targets, cals, FEW, outer_folds=1)
    with pytest.raises(ValueError, match="at least one candidate"):
        nested_cv(targets, cals, ())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"level_steps": ()},
        {"level_steps": (1.5,)},
        {"land_above_km": -1.0},
        {"plain_above_ms": float("nan")},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        EstimateSettings(**kwargs)  # type: ignore[arg-type]


def test_the_display_default_is_one_of_the_cv_candidates() -> None:
    from lightfence.eval.crossval import CANDIDATES

    assert DEFAULT_SETTINGS in CANDIDATES
    assert len(set(CANDIDATES)) == len(CANDIDATES)


def test_the_land_prior_pulls_a_sea_spanning_region_ashore() -> None:
    import numpy as np

    from lightfence.core.estimate import _land_only
    from lightfence.core.landprior import on_land
    from lightfence.geo.sphere import unit_vectors

    # Paris and Nairobi on land; mid-Atlantic and the Pacific off Chile at sea; lon 360-wrapped.
    lat = np.array([48.86, -1.29, 30.0, -40.0, 48.86])
    lon = np.array([2.35, 36.82, -40.0, -100.0, 362.35])
    assert on_land(lat, lon).tolist() == [True, True, False, False, True]
    # A landmark in Lisbon 30 ms away: a 3,000 km cap, its western half Atlantic. Without the
    # prior the centroid is the landmark; with it, the region's land (Europe, North Africa)
    # pulls the estimate east. And the filter keeps land points only, or all when none is land.
    ms = [Measurement(Landmark("lisbon", 38.72, -9.14), 30.0)]
    with_land = estimate_position(ms, {}, EstimateSettings(land_above_km=2000.0))
    without = estimate_position(ms, {}, EstimateSettings())
    assert abs(without.lon - -9.14) < 1.0
    assert with_land.lon > without.lon + 5.0
    sea = unit_vectors(np.array([30.0, -40.0]), np.array([-40.0, -100.0]))
    both = unit_vectors(np.array([30.0, 48.86]), np.array([-40.0, 2.35]))
    assert len(_land_only(sea)) == 2 and len(_land_only(both)) == 1
