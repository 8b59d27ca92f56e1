"""The fleet kernel gives every device the verdict the single-device path gives it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lightfence.core.measurement import Landmark, Measurement
from lightfence.core.policy import Policy, parse_policy
from lightfence.core.verdict import decide
from lightfence.fleet.kernel import BadFrame, verdicts_for_frame
from lightfence.fleet.simulate import load_landmarks
from lightfence.geo.sphere import great_circle_km
from lightfence.units import C_VACUUM_KM_PER_MS

CLAIMS = np.array(["US", "DE", "JP", "SG", "FR", "GB", "BR", "AU"], dtype=object)


def random_fleet(devices: int, seed: int) -> pd.DataFrame:
    """Devices near random shipped landmarks, 1-8 landmarks each, rows shuffled, mixed claims."""
    rng = np.random.default_rng(seed)
    _, lm_lat, lm_lon = load_landmarks()
    home = rng.integers(0, len(lm_lat), devices)
    dev_lat = np.clip(lm_lat[home] + rng.normal(0, 1.0, devices), -89, 89)
    dev_lon = lm_lon[home] + rng.normal(0, 1.0, devices)
    k = rng.integers(1, 9, devices)
    device = np.repeat(np.arange(devices), k)
    lm = rng.integers(0, len(lm_lat), len(device))
    lm[np.r_[0, np.cumsum(k)[:-1]]] = home  # the nearest landmark measures every device
    d = great_circle_km(dev_lat[device], dev_lon[device], lm_lat[lm], lm_lon[lm])
    rtt = 2 * d / C_VACUUM_KM_PER_MS * rng.uniform(1.0, 3.0, len(device)) + rng.exponential(1.0)
    # Some devices lie: an RTT far below physics makes their caps disjoint.
    liar = rng.random(len(device)) < 0.01
    rtt[liar] = rng.uniform(0.05, 0.5, int(liar.sum()))
    claimed = CLAIMS[rng.integers(0, len(CLAIMS), devices)]
    claimed[rng.random(devices) < 0.6] = None
    frame = pd.DataFrame(
        {
            "device_id": [f"gpu-{i:05d}" for i in device],
            "landmark_lat": lm_lat[lm],
            "landmark_lon": lm_lon[lm],
            "min_rtt_ms": rtt,
            "claimed_country": claimed[device],
            "floor_ms": np.where(rng.random(len(device)) < 0.2, 0.01, 0.0),
            "position_error_km": np.where(rng.random(len(device)) < 0.2, 5.0, 0.0),
        }
    )
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def single_device_verdicts(frame: pd.DataFrame, policy: Policy) -> dict[str, str]:
    out: dict[str, str] = {}
    for device_id, rows in frame.groupby("device_id", sort=False):
        ms = [
            Measurement(
                landmark=Landmark(f"lm{i}", r.landmark_lat, r.landmark_lon, r.position_error_km),
                rtt_ms=r.min_rtt_ms,
                floor_ms=r.floor_ms,
            )
            for i, r in enumerate(rows.itertuples())
        ]
        claim = rows["claimed_country"].iloc[0]
        out[str(device_id)] = decide(ms, policy, claim if isinstance(claim, str) else None).kind
    return out


@pytest.mark.parametrize(
    ("policy_text", "devices"),
    [("outside:CN,HK,MO", 2500), ("within:50.11,8.68,800", 2500), ("in:US", 600)],
)
def test_kernel_agrees_with_single_device_path(policy_text: str, devices: int) -> None:
    frame = random_fleet(devices, seed=len(policy_text))
    policy = parse_policy(policy_text)
    batch = verdicts_for_frame(frame, policy)
    single = single_device_verdicts(frame, policy)
    assert len(batch) == len(single) == frame["device_id"].nunique()
    got = dict(zip(batch["device_id"], batch["verdict"], strict=True))
    mismatched = [d for d in single if got[d] != single[d]]
    assert not mismatched, f"{len(mismatched)} devices differ, e.g. {mismatched[:3]}"
    counts = batch.groupby("device_id")["n_landmarks"].first()
    assert (counts == frame.groupby("device_id").size().loc[counts.index]).all()
    # The fleet covers more than one verdict, or agreement would prove little.
    assert batch["verdict"].nunique() >= 2


def test_arrow_input_and_row_order_do_not_matter() -> None:
    frame = random_fleet(300, seed=7)
    policy = parse_policy("outside:CN,HK,MO")
    a = verdicts_for_frame(frame, policy).set_index("device_id").sort_index()
    shuffled = frame.sample(frac=1.0, random_state=1)
    b = verdicts_for_frame(pa.Table.from_pandas(shuffled), policy)
    b = b.set_index("device_id").sort_index()
    pd.testing.assert_frame_equal(a, b)


def test_optional_columns_default_to_zero() -> None:
    frame = random_fleet(50, seed=3)
    policy = parse_policy("within:50.11,8.68,800")
    bare = frame.drop(columns=["floor_ms", "position_error_km"])
    zeros = frame.assign(floor_ms=0.0, position_error_km=0.0)
    pd.testing.assert_frame_equal(
        verdicts_for_frame(bare, policy), verdicts_for_frame(zeros, policy)
    )


def test_empty_frame_gives_empty_verdicts() -> None:
    frame = random_fleet(5, seed=1).iloc[:0]
    out = verdicts_for_frame(frame, parse_policy("outside:CN"))
    assert list(out.columns) == ["device_id", "verdict", "n_landmarks"]
    assert len(out) == 0


def test_bad_frames_are_refused_with_what_to_fix() -> None:
    frame = random_fleet(20, seed=2)
    policy = parse_policy("outside:CN")
    with pytest.raises(BadFrame, match="missing column"):
        verdicts_for_frame(frame.drop(columns=["min_rtt_ms"]), policy)
    two_claims = frame.copy()
    first = two_claims["device_id"] == two_claims["device_id"].iloc[0]
    rows = two_claims.index[first]
    if len(rows) < 2:
        two_claims = pd.concat([two_claims, two_claims.loc[rows]], ignore_index=True)
        rows = two_claims.index[two_claims["device_id"] == two_claims["device_id"].iloc[0]]
    two_claims.loc[rows[0], "claimed_country"] = "DE"
    two_claims.loc[rows[1:], "claimed_country"] = "FR"
    with pytest.raises(BadFrame, match="more than one claimed_country"):
        verdicts_for_frame(two_claims, policy)
    unknown = frame.assign(claimed_country="ZZ")
    with pytest.raises(ValueError, match="unknown country code"):
        verdicts_for_frame(unknown, policy)
    null_id = frame.astype({"device_id": object})
    null_id.loc[0, "device_id"] = None
    with pytest.raises(BadFrame, match="device_id"):
        verdicts_for_frame(null_id, policy)
    with pytest.raises(ValueError, match="RTT"):
        verdicts_for_frame(frame.assign(min_rtt_ms=-1.0), policy)
