"""Verdicts that survive lying landmarks (issue 9): soundness under f liars, f = 0 equals the
plain engine, and the depth algorithm against brute-force subset enumeration."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightfence.core.batch import MeasurementTable, decide_batch, precise_may_intersect
from lightfence.core.kinds import Reason, VerdictKind
from lightfence.core.measurement import Landmark, Measurement
from lightfence.core.policy import PolicyError, parse_policy
from lightfence.core.robust import robust_nonempty, robust_precise_may_intersect
from lightfence.core.verdict import decide
from lightfence.geo.caps import witnesses
from lightfence.geo.regions import Disc, Region
from lightfence.geo.sphere import destination, geodesic_km, lat_lon, unit_vectors
from lightfence.units import C_VACUUM_KM_PER_MS, EARTH_MEAN_RADIUS_KM
from test_soundness import HOTSPOTS, POLICIES, positions, true_rtt_ms

COVER_MARGIN_KM = 60.0
"""How far past the liars' aim point the colluding device stretches the honest caps."""


def honest(
    lat: float,
    lon: float,
    offsets: list[tuple[float, float, float]],
    cover: tuple[float, float] | None = None,
) -> list[Measurement]:
    """Honest landmarks around the device. With `cover`, the device (in league with the liars)
    delays its answers until every honest cap reaches that point: still honest RTTs, since
    only added delay, which no landmark can tell from a slow path."""
    out = []
    for i, (brg, dist, extra) in enumerate(offsets):
        lm = Landmark(f"h{i}", *destination(lat, lon, brg, dist))
        rtt = true_rtt_ms(lm, lat, lon)
        if cover is not None:
            rtt = max(rtt, true_rtt_ms(lm, *cover) + 2.0 * COVER_MARGIN_KM / C_VACUUM_KM_PER_MS)
        out.append(Measurement(lm, rtt + extra + 1e-9))
    return out


honest_offsets = st.lists(
    st.tuples(st.floats(0, 360), st.floats(0.5, 3000), st.floats(0, 5.0)), min_size=1, max_size=7
)

# A hacked landmark near the allowed region shrinks (or grows) its cap to hide the device:
# (bearing and least distance from the device of the aim point, which is moved into the allowed
# region where one is found; bearing and distance of the liar from the aim point; the radius in
# km of the cap the liar reports, shorter or longer than the truth alike).
liar_specs = st.tuples(
    st.floats(0, 360),
    st.floats(0, 300),
    st.floats(0, 360),
    st.floats(0, 20),
    st.one_of(st.floats(0, 30), st.floats(0, 400)),
)


def aim_point(
    lat: float, lon: float, bearing: float, pick_km: float, allowed: Region | None
) -> tuple[float, float]:
    """A point of `allowed` inside its border, near the device: 50 km from one of the 32
    boundary vertices nearest the device (which one from `pick_km`), in one of 8 directions
    (from `bearing`); the point at `bearing`, `pick_km` from the device if none is found."""
    fallback = destination(lat, lon, bearing, pick_km)
    if allowed is None or len(allowed.boundary) == 0:
        return fallback
    verts = allowed.boundary.vectors
    near = verts[np.argsort(-(verts @ unit_vectors(lat, lon).reshape(3)))[:32]]
    near_lat, near_lon = lat_lon(near)
    pts = np.array(
        [
            destination(a, b, bearing + 45.0 * k, 50.0)
            for a, b in zip(near_lat.tolist(), near_lon.tolist(), strict=True)
            for k in range(8)
        ]
    )
    inside = np.flatnonzero(allowed.contains(pts[:, 0], pts[:, 1]))
    if len(inside) == 0:
        return fallback
    p = pts[inside[int(pick_km) % len(inside)]]
    return float(p[0]), float(p[1])


def liar(
    i: int, lat: float, lon: float, spec: tuple[float, ...], allowed: Region | None = None
) -> tuple[Measurement, tuple[float, float]]:
    """A lying landmark's record, and the point its cap is aimed at."""
    aim_brg, aim_km, brg, dist, radius_km = spec
    aim = aim_point(lat, lon, aim_brg, aim_km, allowed)
    lm = Landmark(f"liar{i}", *destination(*aim, brg, dist))
    return Measurement(lm, 2.0 * radius_km / C_VACUUM_KM_PER_MS + 1e-6), aim


@given(
    positions,
    honest_offsets,
    st.lists(liar_specs, min_size=1, max_size=2),
    st.integers(0, 2),
    st.sampled_from(POLICIES),
    st.booleans(),
)
def test_verified_survives_up_to_f_liars(
    pos: tuple[float, float],
    offsets: list[tuple[float, float, float]],
    specs: list[tuple[float, ...]],
    extra_f: int,
    policy_text: str,
    collude: bool,
) -> None:
    lat, lon = pos
    f = len(specs) + extra_f  # never fewer tolerated than lying
    policy = parse_policy(policy_text, liars=f)
    lies = [liar(i, lat, lon, s, policy.allowed) for i, s in enumerate(specs)]
    cover = lies[0][1] if collude else None
    measurements = honest(lat, lon, offsets, cover) + [m for m, _ in lies]
    np.random.default_rng(len(measurements)).shuffle(measurements)  # liars are not last
    verdict = decide(measurements, policy)
    assert verdict.tolerated_liars == f
    if verdict.kind is VerdictKind.VERIFIED:
        assert policy.allowed is not None
        assert policy.allowed.contains(np.array([lat]), np.array([lon]))[0], (
            f"false VERIFIED at {lat}, {lon} under {policy_text} with {len(specs)} liars, f={f}"
        )


@given(positions, honest_offsets, liar_specs, st.sampled_from(POLICIES))
def test_auto_survives_one_liar_among_four_or_more(
    pos: tuple[float, float],
    offsets: list[tuple[float, float, float]],
    spec: tuple[float, ...],
    policy_text: str,
) -> None:
    lat, lon = pos
    policy = parse_policy(policy_text)
    lie, aim = liar(0, lat, lon, spec, policy.allowed)
    measurements = [*honest(lat, lon, offsets, aim), lie]
    landmarks = len({(m.landmark.lat, m.landmark.lon) for m in measurements})
    verdict = decide(measurements, policy)
    assert verdict.tolerated_liars == (1 if landmarks >= 4 else 0)
    if landmarks < 4:
        return
    if verdict.kind is VerdictKind.VERIFIED:
        assert policy.allowed is not None
        assert policy.allowed.contains(np.array([lat]), np.array([lon]))[0]


# Erenhot (CN), at the Mongolian border; honest landmarks around it. The liar sits in Mongolia,
# 84 km away and 51 km from China (beyond its 12 nm + 10 km margin; all of Hong Kong lies
# within that margin, docs/regions.md, so a liar there can no longer fake "outside CN").
ERENHOT = (43.65, 111.98)
MONGOLIA_SITE = (43.90, 111.00)


def _border_attack(duplicate_liar: bool) -> list[Measurement]:
    lat, lon = ERENHOT
    spots = [(43.70, 111.90), (43.60, 112.05), (43.75, 112.10), (43.80, 111.85)]
    out = [
        Measurement(Landmark(f"h{i}", *p), true_rtt_ms(Landmark("x", *p), lat, lon) + 0.8)
        for i, p in enumerate(spots)
    ]
    # The liar sits in Mongolia and claims the device is within 3 km of it.
    bad = Landmark("liar", *MONGOLIA_SITE)
    rtt = 2.0 * 3.0 / C_VACUUM_KM_PER_MS
    out.append(Measurement(bad, rtt))
    if duplicate_liar:
        out.append(Measurement(bad, rtt * 1.1))
    return out


@pytest.mark.parametrize("duplicate", [False, True])
def test_one_liar_fools_the_plain_engine_but_not_f1(duplicate: bool) -> None:
    policy_plain = parse_policy("outside:CN", liars=0)
    measurements = _border_attack(duplicate)
    assert decide(measurements, policy_plain).kind is VerdictKind.VERIFIED  # the attack works
    robust = decide(measurements, parse_policy("outside:CN", liars=1))
    assert robust.kind is not VerdictKind.VERIFIED
    assert robust.tolerated_liars == 1
    assert "tolerating 1 lying landmark" in robust.reason
    # Records of one landmark count once: the duplicated liar is still one landmark, so auto
    # (4 honest + 1 liar = 5 landmarks) tolerates it.
    assert decide(measurements, parse_policy("outside:CN")).kind is not VerdictKind.VERIFIED


def test_auto_counts_landmarks_not_records() -> None:
    lat, lon = 48.0, 11.0
    three = honest(lat, lon, [(0, 100, 0), (120, 100, 0), (240, 100, 0)])
    assert decide(three, parse_policy("in:DE")).tolerated_liars == 0
    assert decide([*three, three[0]], parse_policy("in:DE")).tolerated_liars == 0
    four = [*three, *honest(lat, lon, [(60, 50, 0)])]
    assert decide(four, parse_policy("in:DE")).tolerated_liars == 1
    assert decide(four, parse_policy("in:DE", liars=2)).tolerated_liars == 2
    assert "tolerating no lying landmark" in decide(three, parse_policy("in:DE")).reason


def test_inconsistent_names_the_liar() -> None:
    lat, lon = 50.11, 8.68
    measurements = honest(lat, lon, [(0, 80, 0.1), (90, 120, 0.1), (180, 60, 0.2), (270, 90, 0)])
    far = Landmark("liar", 40.4, -3.7)  # Madrid, claiming the device is within 10 km
    measurements.append(Measurement(far, 2.0 * 10.0 / C_VACUUM_KM_PER_MS))
    verdict = decide(measurements, parse_policy("outside:CN,HK,MO"))
    assert verdict.kind is VerdictKind.INCONSISTENT
    assert verdict.reason_code is Reason.LANDMARKS_OUTVOTED
    assert verdict.implicated == ("liar",)
    assert "liar" in verdict.reason and "tolerating 1" in verdict.reason
    plain = decide(measurements, parse_policy("outside:CN,HK,MO", liars=0))
    assert plain.kind is VerdictKind.INCONSISTENT
    assert plain.reason_code is Reason.EMPTY_FEASIBLE
    assert plain.implicated == ("liar",)
    assert verdict.to_dict()["implicated_landmarks"] == ["liar"]


def test_two_disjoint_caps_implicate_both() -> None:
    a = Measurement(Landmark("a", 50.0, 8.0), 0.5)
    b = Measurement(Landmark("b", 40.0, -3.0), 0.5)
    verdict = decide([a, b], parse_policy("in:DE"))
    assert verdict.kind is VerdictKind.INCONSISTENT
    assert set(verdict.implicated) == {"a", "b"}


def test_bad_liars_setting_is_a_policy_error() -> None:
    for bad in ("-1", "many", -2, 1.5, True):
        with pytest.raises(PolicyError):
            parse_policy("in:DE", liars=bad)  # type: ignore[arg-type]
    assert parse_policy("in:DE", liars=" AUTO ").liars == "auto"
    assert parse_policy("in:DE", liars="2").liars == 2


# --- f = 0 is the plain engine ------------------------------------------------------------


def _random_table(seed: int, devices: int, max_k: int) -> tuple[MeasurementTable, list[str]]:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, max_k + 1, devices)
    rows = int(counts.sum())
    hot = np.array(HOTSPOTS)[rng.integers(0, len(HOTSPOTS), devices)]
    dev_lat = np.repeat(hot[:, 0], counts)
    dev_lon = np.repeat(hot[:, 1], counts)
    lat = np.clip(dev_lat + rng.normal(0, 4, rows), -89.9, 89.9)
    lon = dev_lon + rng.normal(0, 4, rows)
    lon = (lon + 180.0) % 360.0 - 180.0
    dist = np.array(
        [geodesic_km(a, b, c, d) for a, b, c, d in zip(lat, lon, dev_lat, dev_lon, strict=True)]
    )
    rtt = 2.0 * dist / C_VACUUM_KM_PER_MS * rng.uniform(0.6, 3.0, rows) + 0.01
    table = MeasurementTable(
        device_start=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        lat_deg=lat,
        lon_deg=lon,
        rtt_ms=rtt,
        floor_ms=np.zeros(rows),
        position_error_km=np.zeros(rows),
    )
    claims = [str(c) for c in rng.choice(["CN", "DE", "SG", "RU", "LU", "FJ"], devices)]
    return table, claims


@pytest.mark.parametrize("seed", range(3))
def test_f0_is_the_plain_engine_and_auto_below_four(seed: int) -> None:
    table, claims = _random_table(seed, 120, 3)
    for text in ("outside:CN,HK,MO", "in-declared-country"):
        plain = decide_batch(table, parse_policy(text, liars=0), claims)
        auto = decide_batch(table, parse_policy(text), claims)  # every device has < 4 landmarks
        assert np.array_equal(plain.kind, auto.kind)
        assert np.array_equal(plain.reason, auto.reason)
        assert not auto.tolerated_liars.any()


def _caps(table: MeasurementTable, d: int) -> tuple[np.ndarray, np.ndarray]:
    from lightfence.core.batch import cap_radius_rad
    from lightfence.units import Bound

    sl = slice(int(table.device_start[d]), int(table.device_start[d + 1]))
    centres = unit_vectors(table.lat_deg[sl], table.lon_deg[sl]).reshape(-1, 3)
    return centres, cap_radius_rad(table, Bound.VACUUM)[sl]


def _regions() -> list[Region]:
    return [
        parse_policy(t).allowed  # type: ignore[misc]
        for t in ("outside:CN,HK,MO", "in:DE", "in:SG", "in:RU", "within:22.3,114.2,60")
    ]


@pytest.mark.parametrize("seed", range(2))
def test_robust_code_at_f0_answers_as_the_plain_code(seed: int) -> None:
    """The robust precise path and robust witnesses, forced to f = 0, against the plain ones."""
    table, _ = _random_table(100 + seed, 60, 6)
    regions = _regions()
    for d in range(table.devices):
        c, r = _caps(table, d)
        ok, _, _ = witnesses(c[None], r[None])
        assert robust_nonempty(c, r, 0) == bool(ok[0])
        if not ok[0]:
            continue
        for region in regions:
            for reg in (region, region.complement()):
                assert robust_precise_may_intersect(c, r, reg, 0) == precise_may_intersect(
                    c, r, reg
                )


# --- against brute-force subset enumeration ------------------------------------------------


small_cases = st.tuples(
    st.integers(0, len(HOTSPOTS) - 1),
    st.lists(
        st.tuples(st.floats(0, 360), st.floats(0, 1500), st.floats(20, 2500)),
        min_size=1,
        max_size=6,
    ),
)


def _small_caps(case: tuple[int, list[tuple[float, float, float]]]) -> tuple[np.ndarray, ...]:
    hot, spec = case
    pts = [destination(*HOTSPOTS[hot], brg, dist) for brg, dist, _ in spec]
    centres = unit_vectors(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
    radius = np.array([r for _, _, r in spec]) / EARTH_MEAN_RADIUS_KM
    return centres.reshape(-1, 3), radius


@settings(max_examples=60)
@given(small_cases, st.integers(0, 5), st.sampled_from(range(5)))
def test_depth_matches_subset_enumeration(
    case: tuple[int, list[tuple[float, float, float]]], f: int, region_i: int
) -> None:
    centres, radius = _small_caps(case)
    n = len(radius)
    f = min(f, n - 1)
    subsets = [list(s) for s in combinations(range(n), n - f)]
    brute_nonempty = any(bool(witnesses(centres[s][None], radius[s][None])[0][0]) for s in subsets)
    assert robust_nonempty(centres, radius, f) == brute_nonempty
    if not brute_nonempty:
        return
    allowed = _regions()[region_i]
    for reg in (allowed.complement(), allowed):
        brute = any(
            precise_may_intersect(centres[s], radius[s], reg)
            for s in subsets
            if witnesses(centres[s][None], radius[s][None])[0][0]
        )
        assert robust_precise_may_intersect(centres, radius, reg, f) == brute


def test_disc_region_depth_by_hand() -> None:
    """Three caps around Frankfurt, one far away: F_1 is the three-way intersection."""
    site = Disc(50.11, 8.68, 300.0)
    pts = [(50.5, 8.7), (49.8, 8.4), (50.1, 9.2), (35.0, 139.0)]
    centres = unit_vectors(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
    radius = np.array([100.0, 100.0, 100.0, 50.0]) / EARTH_MEAN_RADIUS_KM
    assert not robust_nonempty(centres, radius, 0)
    assert robust_nonempty(centres, radius, 1)
    assert not robust_precise_may_intersect(centres, radius, site.complement(), 1)
    # With 2 liars tolerated, points in two Frankfurt caps join F_2: still near the site.
    assert not robust_precise_may_intersect(centres, radius, site.complement(), 2)
    # With 3, a single cap stands: the Tokyo one leaves the site.
    assert robust_precise_may_intersect(centres, radius, site.complement(), 3)
