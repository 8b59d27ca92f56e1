"""Verifier settings: explicit arguments with environment defaults, never hidden globals."""

from __future__ import annotations

import os
from dataclasses import dataclass

from lightfence.core.freshness import (
    MAX_CLOCK_SKEW_S,
    MAX_DEVICE_SPEED_KM_PER_H,
    MAX_RECORD_AGE_S,
    VERDICT_WINDOW_S,
)
from lightfence.core.robust import DEFAULT_LIARS, check_liars

DEFAULT_DB_URL = "sqlite:///lightfence-verifier.db"
DB_URL_ENV = "LIGHTFENCE_DB_URL"

DEFAULT_CHECKIN_INTERVAL_S = 24 * 3600
"""A licence's required check-in interval unless it names another."""
MIN_CHECKIN_INTERVAL_S = 60
"""The shortest check-in interval a licence may require (the demo lowers it to show the alert)."""


@dataclass(frozen=True)
class VerifierConfig:
    db_url: str = DEFAULT_DB_URL
    max_body_bytes: int = 1_000_000
    """Largest request body accepted; a batch of 1,000 records is about 900 kB."""
    max_batch_records: int = 1000
    max_record_age_s: float = MAX_RECORD_AGE_S
    """Records measured longer ago than this are rejected as stale."""
    max_clock_skew_s: float = MAX_CLOCK_SKEW_S
    """Records dated further in the future than this (landmark clock ahead) are rejected."""
    verdict_window_s: float = VERDICT_WINDOW_S
    """A verdict combines the device's records measured within this span before its newest one."""
    max_device_speed_km_per_h: float = MAX_DEVICE_SPEED_KM_PER_H
    """How fast a device could move between two records (an aircraft). Each older record's cap is
    grown by this speed times its age relative to the newest, so a device that moved during the
    window can never be VERIFIED from stale positions. 0 trusts that racks do not move."""
    verify_threads: int = 0
    """Threads that check a batch's signatures (verifier.precheck); 0: one per CPU. A stream
    worker runs with 1 (its CLI's default): it scales by running one process per core."""
    recompute_interval_s: float = 0.5
    """How often the background worker recomputes verdicts of devices with new records."""
    checkin_sweep_interval_s: float = 60.0
    min_checkin_interval_s: int = MIN_CHECKIN_INTERVAL_S
    webhook_url: str | None = None
    webhook_timeout_s: float = 5.0
    signing_key_path: str | None = None
    """Ed25519 key that signs the gate's verdict tokens (created 0600 when absent). Without
    one the service still runs, and the token endpoint answers 503 saying how to add it."""
    token_ttl_s: float = 300.0
    """Lifetime of a verdict token: a verdict that flips reaches every gate within this."""
    liars: int | str = DEFAULT_LIARS
    """Lying landmarks every verdict must survive (core.robust): a count, or 'auto' (1 for a
    device measured by at least 4 landmarks, 0 below)."""
    write_requests_per_s: float = 20.0
    """Per API token: write requests (POST, PUT) per second, sustained; 0 turns it off."""
    write_requests_burst: int = 600
    records_per_s: float = 500.0
    """Per API token: records submitted per second, sustained (a landmark measuring 10,000
    devices a minute needs 167); 0 turns it off."""
    records_burst: int = 30_000
    """Records a token may send at once before the sustained rate applies (30 full batches)."""
    rejections_per_s: float = 1.0
    """Per API token: rejected records per second, sustained. A token past this quota gets 429
    on its next writes until it refills: a broken or hostile submitter cannot fill the tables."""
    rejections_burst: int = 5_000
    checkpoint_path: str | None = None
    """JSON Lines file the worker appends signed audit checkpoints to (needs the signing key)."""
    checkpoint_webhook_url: str | None = None
    """Also POST each checkpoint there, so a copy lives outside this host."""
    checkpoint_interval_s: float = 300.0
    """How often the worker checkpoints the audit head (only when it moved)."""
    stream_url: str | None = None
    """kafka://HOST:PORT/TOPIC the stream workers consume (`serve --stream`): GET /stream shows
    their group's lag. None: no Kafka ingestion configured."""
    stream_group: str = "lightfence-verifier"
    implicated_flag_min_devices: int = 3
    """Flag a landmark for review (its records stop counting) once this many devices' latest
    verdicts are INCONSISTENT naming it alone. 0 turns automatic flagging off (scores are still
    kept and shown)."""

    gpu_root_file: str | None = None
    """PEM root certificate(s) that GPU-signed rounds' evidence must chain to (verifier
    .gpu_ingest); None: NVIDIA's device root shipped with lightfence (attestation
    .DEFAULT_ROOT_PATH). The demo names its stand-in GPU's test root."""
    gpu_calibration_file: str | None = None
    """Signed S_floor calibration (evidence.calibration); without one S_floor is 0."""
    gpu_calibration_keys: tuple[str, ...] = ()
    """Public keys (64 hex) trusted to sign `gpu_calibration_file`."""

    def __post_init__(self) -> None:
        for name in (
            "write_requests_per_s",
            "write_requests_burst",
            "records_per_s",
            "records_burst",
            "rejections_per_s",
            "rejections_burst",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 turns the limit off)")
        if self.checkpoint_interval_s <= 0:
            raise ValueError("checkpoint_interval_s must be positive")
        for name in ("max_body_bytes", "max_batch_records"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("max_record_age_s", "max_clock_skew_s", "verdict_window_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        check_liars(self.liars)
        if self.implicated_flag_min_devices < 0:
            raise ValueError("implicated_flag_min_devices must be >= 0")
        if not 0 <= self.verify_threads <= 1024:
            raise ValueError("verify_threads must be 0 (one per CPU) to 1024")
        if self.gpu_calibration_file is not None and not self.gpu_calibration_keys:
            raise ValueError("gpu_calibration_file needs gpu_calibration_keys (its signers)")
        if self.max_device_speed_km_per_h < 0:
            raise ValueError("max_device_speed_km_per_h must be >= 0")


def normalise_db_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use the psycopg 3 driver for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def db_url_from_env(explicit: str | None = None) -> str:
    return normalise_db_url(explicit or os.environ.get(DB_URL_ENV) or DEFAULT_DB_URL)
