"""Landmark blame from INCONSISTENT verdicts, summed over devices (issue 9)."""

from __future__ import annotations

from lightfence.core.blame import flagged, implicated_landmarks
from lightfence.core.kinds import VerdictKind
from lightfence.core.measurement import Landmark, Measurement
from lightfence.core.policy import parse_policy
from lightfence.core.verdict import decide
from lightfence.geo.sphere import destination
from lightfence.units import C_VACUUM_KM_PER_MS
from test_soundness import true_rtt_ms

LIAR = Landmark("madrid", 40.4, -3.7)


def device_with_liar(lat: float, lon: float) -> list[Measurement]:
    out = []
    for i, brg in enumerate((0.0, 90.0, 180.0, 270.0)):
        lm = Landmark(f"h{i}", *destination(lat, lon, brg, 100.0))
        out.append(Measurement(lm, true_rtt_ms(lm, lat, lon) + 0.2))
    # The liar claims every device is within 10 km of Madrid.
    out.append(Measurement(LIAR, 2.0 * 10.0 / C_VACUUM_KM_PER_MS))
    return out


def test_a_liar_across_devices_is_blamed_and_flagged() -> None:
    policy = parse_policy("outside:CN,HK,MO")
    verdicts = [decide(device_with_liar(50.0 + i, 8.0 + i), policy) for i in range(3)]
    assert all(v.kind is VerdictKind.INCONSISTENT for v in verdicts)
    # Two disjoint caps: both named, half the blame each.
    pair = decide([Measurement(LIAR, 0.1), Measurement(Landmark("b", 52.5, 13.4), 0.1)], policy)
    honest_device = decide(device_with_liar(50.0, 8.0)[:4], policy)
    scores = implicated_landmarks([*verdicts, pair, honest_device])
    assert next(iter(scores)) == "madrid"
    assert scores["madrid"].named == 4
    assert scores["madrid"].alone == 3
    assert scores["madrid"].blame == 3.5
    assert scores["b"].blame == 0.5
    assert "h0" not in scores
    assert flagged(scores, 3.0) == ["madrid"]
    assert flagged(scores, 0.5) == ["madrid", "b"]
