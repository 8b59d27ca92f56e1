"""Appraisal of NVIDIA GPU attestation evidence (SPDM measurements signed by the GPU).

Pure: no network, no I/O beyond reading a root certificate file.
"""

from lightfence.attestation.appraise import (
    Appraisal,
    AppraisalPolicy,
    Revocation,
    appraise,
    default_policy,
)
from lightfence.attestation.certs import (
    DEFAULT_ROOT_PATH,
    ChainCache,
    ChainError,
    GpuIdentity,
    load_roots,
    pem_chain_to_der,
)
from lightfence.attestation.spdm import SpdmError, parse_report

__all__ = [
    "DEFAULT_ROOT_PATH",
    "Appraisal",
    "AppraisalPolicy",
    "ChainCache",
    "ChainError",
    "GpuIdentity",
    "Revocation",
    "SpdmError",
    "appraise",
    "default_policy",
    "load_roots",
    "parse_report",
    "pem_chain_to_der",
]
