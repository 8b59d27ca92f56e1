"""Lying landmarks that help a device pose somewhere it is not (the attack of issue 9).

A device truly in a restricted country answers through a relay at `pose`, an allowed place, so
every honest landmark sees a round trip to the pose plus the relay leg (eval.verdicts). K hacked
landmarks then report the shortest RTT that still keeps the pose inside their caps: the smallest
cap around each liar that is consistent with the story, so the intersection F shrinks around the
pose while staying non-empty (an empty F would be INCONSISTENT, which the attacker avoids).

The attacker picks the K landmarks nearest the pose: their lie-caps are the smallest, the ones
most likely to lie wholly inside the allowed region. Against the plain engine one such liar near
the pose usually suffices for a false VERIFIED; against F_f with f >= K it must never succeed.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lightfence.geo.sphere import Float64Array, great_circle_km
from lightfence.units import Bound


def liar_rtts(
    landmark_lat_deg: ArrayLike,
    landmark_lon_deg: ArrayLike,
    rtt_ms: ArrayLike,
    pose_lat_deg: float,
    pose_lon_deg: float,
    liars: int,
    bound: Bound = Bound.VACUUM,
) -> tuple[Float64Array, NDArray[np.int64]]:
    """The RTTs one device's landmarks report when the `liars` nearest the pose lie.

    Returns (RTTs (n,), indices of the liars). A liar reports 2 d / v for its great-circle
    distance d to the pose on the model sphere, and v the policy's speed bound: the engine's cap
    (which only grows that radius) then still contains the pose. A liar never reports longer than
    the honest RTT it replaces. Raises ValueError for a negative count.
    """
    if liars < 0:
        raise ValueError(f"the number of lying landmarks must be >= 0, not {liars}")
    lat = np.asarray(landmark_lat_deg, dtype=np.float64)
    lon = np.asarray(landmark_lon_deg, dtype=np.float64)
    out = np.array(rtt_ms, dtype=np.float64)
    if liars == 0 or len(out) == 0:
        return out, np.zeros(0, dtype=np.int64)
    dist_km = great_circle_km(lat, lon, pose_lat_deg, pose_lon_deg)
    chosen = np.argsort(dist_km, kind="stable")[:liars].astype(np.int64)
    # A liar at the pose itself still needs a positive RTT.
    lie_ms = np.maximum(2.0 * dist_km[chosen] / bound.speed_km_per_ms, 1e-6)
    out[chosen] = np.minimum(out[chosen], lie_ms)
    return out, chosen
