"""Trust levels: how hard it is to answer a challenge with a device's key from somewhere else.

Copied into every measurement record and shown on every verdict; defined here, below both the
protocol and the identity providers, so the sans-IO protocol never imports NVML.
"""

from __future__ import annotations

from enum import StrEnum


class TrustLevel(StrEnum):
    """How hard it is to answer a challenge with this device's key from somewhere else."""

    SOFTWARE = "software"
    GPU_BOUND = "gpu-bound"
    ATTESTED = "attested"

    @property
    def rank(self) -> int:
        """Order for policies such as "at least gpu-bound": higher is harder to clone."""
        return _TRUST_RANK[self]


_TRUST_RANK = {TrustLevel.SOFTWARE: 0, TrustLevel.GPU_BOUND: 1, TrustLevel.ATTESTED: 2}
