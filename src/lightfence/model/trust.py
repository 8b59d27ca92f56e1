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


class Locates(StrEnum):
    """What a verdict's rounds locate (docs/trust.md). Shown on every verdict, token and row."""

    KEY = "key"
    """Rounds answered by the Ed25519 device key: locates that key file, which can be moved."""
    GPU = "gpu"
    """Rounds the GPU's hardware signed (SPDM report over a challenge-derived nonce): locates
    the chip. A `gpu` verdict is computed from GPU-signed rounds only."""

    @property
    def rank(self) -> int:
        """For requirements such as "at least gpu": a gpu verdict satisfies a key requirement."""
        return 1 if self is Locates.GPU else 0
