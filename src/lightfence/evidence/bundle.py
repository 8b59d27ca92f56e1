"""Evidence bundles: save, load, and re-check every signature offline.

A bundle is one JSON file:

    {"format": "lightfence-evidence", "version": 1, "created_at_unix_ns": ...,
     "device": {...DeviceIdentity...},
     "landmarks": [{...LandmarkEntry...}],        # as the agent was given them
     "records": [{...MeasurementRecord...}]}

`check_bundle` re-verifies it against a landmark registry the auditor trusts (never against the
keys inside the bundle alone, which whoever made the bundle chose). A record that fails any
check is rejected with its reason, and never reaches a verdict.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightfence.crypto.keys import key_id
from lightfence.identity.device import DeviceIdentity
from lightfence.model.registry import LandmarkEntry, RegistryError, parse_registry, registry_json
from lightfence.model.trust import TrustLevel
from lightfence.protocol.record import MeasurementRecord, RecordError, verify

BUNDLE_FORMAT = "lightfence-evidence"
BUNDLE_VERSION = 1
MAX_FUTURE_SKEW_NS = 300 * 1_000_000_000
"""A record dated more than 5 minutes after the check's `now` is rejected (bad landmark clock)."""

TRUST_NOTES = {
    TrustLevel.SOFTWARE: "software key file: can be copied; a copy near a landmark fakes location",
    TrustLevel.GPU_BOUND: "key file bound to the GPU's identity: names the GPU, key still copyable",
    TrustLevel.ATTESTED: "key bound to the GPU by hardware attestation (evidence to be appraised "
    "by NVIDIA's verifier; lightfence checks the key binding only)",
}


class BundleError(ValueError):
    """The bundle file is unreadable or malformed as a whole."""


@dataclass(frozen=True)
class EvidenceBundle:
    device: DeviceIdentity
    records: tuple[MeasurementRecord, ...]
    landmarks: tuple[LandmarkEntry, ...] = ()
    created_at_unix_ns: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "created_at_unix_ns": self.created_at_unix_ns,
            "device": self.device.to_json_dict(),
            "landmarks": registry_json(self.landmarks)["landmarks"],
            "records": [r.to_json_dict() for r in self.records],
        }

    @classmethod
    def from_json_dict(cls, d: object) -> EvidenceBundle:
        if not isinstance(d, Mapping) or d.get("format") != BUNDLE_FORMAT:
            raise BundleError("not a lightfence evidence bundle (format field missing or wrong)")
        if d.get("version") != BUNDLE_VERSION:
            raise BundleError(f"unsupported bundle version {d.get('version')!r}")
        try:
            device = DeviceIdentity.from_json_dict(d["device"])
            landmarks = tuple(parse_registry({"landmarks": d.get("landmarks", [])}).values())
            raw_records = d["records"]
            if not isinstance(raw_records, list):
                raise BundleError("records must be a list")
            records = tuple(MeasurementRecord.from_json_dict(r) for r in raw_records)
            created = d.get("created_at_unix_ns", 0)
            if not isinstance(created, int):
                raise BundleError("created_at_unix_ns must be an integer")
        except KeyError as exc:
            raise BundleError(f"bundle is missing {exc}") from None
        except (RecordError, RegistryError, ValueError) as exc:
            if isinstance(exc, BundleError):
                raise
            raise BundleError(f"malformed bundle: {exc}") from None
        return cls(device, records, landmarks, created)


def save_bundle(bundle: EvidenceBundle, path: Path) -> None:
    """Write atomically (temp file, then rename), so a crash never leaves half a bundle."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(bundle.to_json_dict(), indent=2) + "\n")
    os.replace(tmp, path)


def load_bundle(path: Path) -> EvidenceBundle:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"bundle {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    return EvidenceBundle.from_json_dict(data)


@dataclass(frozen=True)
class RejectedRecord:
    index: int
    landmark_id: str
    reason: str


@dataclass(frozen=True)
class BundleCheck:
    """Outcome of the offline re-check: which records stand, which fell and why."""

    device: DeviceIdentity
    accepted: tuple[tuple[MeasurementRecord, LandmarkEntry], ...]
    """Records that passed every check, with the trusted registry entry of their landmark."""
    rejected: tuple[RejectedRecord, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def all_valid(self) -> bool:
        return not self.rejected


def check_bundle(
    bundle: EvidenceBundle,
    trusted: Mapping[str, LandmarkEntry],
    *,
    now_unix_ns: int,
    max_age_s: float | None = None,
) -> BundleCheck:
    """Re-check every record of `bundle` against the `trusted` landmark registry."""
    device = bundle.device
    notes: list[str] = [
        f"identity trust level: {device.trust_level} ({TRUST_NOTES[device.trust_level]})"
    ]
    if device.attestation is not None and not device.attestation.binds(device.public_key):
        notes.append("attestation evidence does not bind the device key: ignored")
    for entry in bundle.landmarks:
        mine = trusted.get(entry.id)
        if mine is not None and (mine.public_key, mine.latitude, mine.longitude) != (
            entry.public_key,
            entry.latitude,
            entry.longitude,
        ):
            notes.append(f"bundle lists landmark {entry.id} differently; the trusted registry wins")
    accepted: list[tuple[MeasurementRecord, LandmarkEntry]] = []
    rejected: list[RejectedRecord] = []
    seen_sessions: set[tuple[str, bytes]] = set()
    for i, rec in enumerate(bundle.records):
        why = _record_problem(rec, device, trusted, now_unix_ns, max_age_s, seen_sessions)
        if why is not None:
            rejected.append(RejectedRecord(i, rec.landmark_id, why))
        else:
            seen_sessions.add((rec.landmark_id, rec.session_id))
            accepted.append((rec, trusted[rec.landmark_id]))
    return BundleCheck(device, tuple(accepted), tuple(rejected), tuple(notes))


def _record_problem(
    rec: MeasurementRecord,
    device: DeviceIdentity,
    trusted: Mapping[str, LandmarkEntry],
    now_unix_ns: int,
    max_age_s: float | None,
    seen_sessions: set[tuple[str, bytes]],
) -> str | None:
    entry = trusted.get(rec.landmark_id)
    if entry is None:
        return f"unknown landmark {rec.landmark_id!r} (not in the trusted registry)"
    if rec.device_id != device.device_id:
        return f"record is for device {rec.device_id}, the bundle's device is {device.device_id}"
    if rec.device_key_id != key_id(device.public_key):
        return "record names another device key"
    if rec.trust_level is not device.trust_level:
        return f"record says trust level {rec.trust_level}, identity says {device.trust_level}"
    try:
        verify(rec, entry.public_key, device.public_key)
    except RecordError as exc:
        return str(exc)
    if (rec.landmark_id, rec.session_id) in seen_sessions:
        return "duplicate record (same landmark and session): replayed"
    if rec.measured_at_unix_ns > now_unix_ns + MAX_FUTURE_SKEW_NS:
        return "record is dated in the future"
    if max_age_s is not None and now_unix_ns - rec.measured_at_unix_ns > max_age_s * 1e9:
        age_h = (now_unix_ns - rec.measured_at_unix_ns) / 3.6e12
        return f"stale: measured {age_h:.1f} h ago, older than the {max_age_s / 3600:g} h allowed"
    return None


def accepted_min_rtts(check: BundleCheck) -> Sequence[tuple[LandmarkEntry, float]]:
    """(landmark, min RTT in ms) of every accepted record: what a verdict is computed from."""
    return [(entry, rec.min_rtt_ms) for rec, entry in check.accepted]
