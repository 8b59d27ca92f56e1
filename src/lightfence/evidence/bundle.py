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

import base64
import binascii
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightfence.attestation import Appraisal, AppraisalPolicy, appraise, pem_chain_to_der
from lightfence.crypto.keys import key_id
from lightfence.evidence.calibration import NO_CALIBRATION, Calibration
from lightfence.identity.device import Attestation, DeviceIdentity
from lightfence.model.registry import LandmarkEntry, RegistryError, parse_registry, registry_json
from lightfence.model.trust import TrustLevel
from lightfence.protocol.gpu_round import (
    GpuEvidence,
    GpuRoundError,
    GpuRoundRecord,
    verify_gpu_round,
)
from lightfence.protocol.record import MeasurementRecord, RecordError, verify

BUNDLE_FORMAT = "lightfence-evidence"
BUNDLE_VERSION = 1
MAX_FUTURE_SKEW_NS = 300 * 1_000_000_000
"""A record dated more than 5 minutes after the check's `now` is rejected (bad landmark clock)."""

TRUST_NOTES = {
    TrustLevel.SOFTWARE: "software key file: can be copied; a copy near a landmark fakes location",
    TrustLevel.GPU_BOUND: "key file bound to the GPU's identity: names the GPU, key still copyable",
    TrustLevel.ATTESTED: "key bound to a GPU by hardware attestation once (evidence appraised "
    "when a GPU root is configured); the key file can still be moved: only GPU rounds locate a GPU",
}


class BundleError(ValueError):
    """The bundle file is unreadable or malformed as a whole."""


@dataclass(frozen=True)
class EvidenceBundle:
    device: DeviceIdentity
    records: tuple[MeasurementRecord, ...]
    landmarks: tuple[LandmarkEntry, ...] = ()
    created_at_unix_ns: int = 0
    gpu_rounds: tuple[tuple[GpuRoundRecord, GpuEvidence], ...] = ()
    """GPU-signed rounds (docs/trust.md) with the report and chain each one timed."""

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "created_at_unix_ns": self.created_at_unix_ns,
            "device": self.device.to_json_dict(),
            "landmarks": registry_json(self.landmarks)["landmarks"],
            "records": [r.to_json_dict() for r in self.records],
        }
        if self.gpu_rounds:  # absent, not empty, in key-only bundles: they stay as they were
            out["gpu_rounds"] = [
                {"record": r.to_json_dict(), "evidence": e.to_json_dict()}
                for r, e in self.gpu_rounds
            ]
        return out

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
            gpu_rounds = _gpu_rounds_from_json(d.get("gpu_rounds", []))
        except KeyError as exc:
            raise BundleError(f"bundle is missing {exc}") from None
        except (RecordError, RegistryError, ValueError) as exc:
            if isinstance(exc, BundleError):
                raise
            raise BundleError(f"malformed bundle: {exc}") from None
        return cls(device, records, landmarks, created, gpu_rounds)


def _gpu_rounds_from_json(raw: object) -> tuple[tuple[GpuRoundRecord, GpuEvidence], ...]:
    if not isinstance(raw, list):
        raise BundleError("gpu_rounds must be a list")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or set(item) != {"record", "evidence"}:
            raise BundleError(f"gpu_rounds[{i}] must be {{'record': ..., 'evidence': ...}}")
        out.append(
            (
                GpuRoundRecord.from_json_dict(item["record"]),
                GpuEvidence.from_json_dict(item["evidence"]),
            )
        )
    return tuple(out)


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
    gpu_accepted: tuple[AcceptedGpuRound, ...] = ()
    gpu_rejected: tuple[RejectedRecord, ...] = ()

    @property
    def all_valid(self) -> bool:
        return not self.rejected and not self.gpu_rejected


@dataclass(frozen=True)
class AcceptedGpuRound:
    """A GPU round that passed the landmark-signature check and a fresh appraisal."""

    record: GpuRoundRecord
    entry: LandmarkEntry
    appraisal: Appraisal
    floor_ms: float
    """S_floor from a trusted calibration for this GPU model and firmware; 0 without one."""


def check_bundle(
    bundle: EvidenceBundle,
    trusted: Mapping[str, LandmarkEntry],
    *,
    now_unix_ns: int,
    max_age_s: float | None = None,
    gpu_policy: AppraisalPolicy | None = None,
    calibration: Calibration = NO_CALIBRATION,
    enrolled_gpu_id: str | None = None,
) -> BundleCheck:
    """Re-check every record of `bundle` against the `trusted` landmark registry.

    GPU rounds are appraised again under `gpu_policy` (NVIDIA's root, or a test root); without
    one they are all rejected, never trusted on the landmark's word alone.
    """
    device = bundle.device
    notes: list[str] = [
        f"identity trust level: {device.trust_level} ({TRUST_NOTES[device.trust_level]})"
    ]
    if device.attestation is not None and not device.attestation.binds(device.public_key):
        notes.append("attestation evidence does not bind the device key: ignored")
    elif device.attestation is not None and gpu_policy is not None:
        notes.append(attestation_note(device.attestation, gpu_policy, now_unix_ns / 1e9))
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
    gpu_ok, gpu_bad = _check_gpu_rounds(
        bundle, trusted, now_unix_ns, max_age_s, gpu_policy, calibration, enrolled_gpu_id, notes
    )
    return BundleCheck(
        device, tuple(accepted), tuple(rejected), tuple(notes), tuple(gpu_ok), tuple(gpu_bad)
    )


def attestation_note(att: Attestation, policy: AppraisalPolicy, now_unix_s: float) -> str:
    """Appraise the identity's attestation evidence (NVIDIA's chain and signature, not only its
    nonce binding). It shows a genuine GPU bound the key once; it locates nothing."""
    try:
        if att.kind == "nvml-cc":
            n = int.from_bytes(att.evidence[:4], "big")
            report, chain = att.evidence[4 : 4 + n], pem_chain_to_der(att.evidence[4 + n :])
        elif att.kind == "nvattest":
            item = json.loads(att.evidence)["evidences"][0]
            report = base64.b64decode(item["evidence"], validate=True)
            chain = pem_chain_to_der(base64.b64decode(item["certificate"], validate=True))
        else:
            return f"attestation evidence of unknown kind {att.kind!r}: not appraised"
    except (ValueError, KeyError, IndexError, TypeError, binascii.Error) as exc:
        return f"attestation evidence unreadable ({exc}): not appraised"
    a = appraise(report, chain, att.nonce, policy, now_unix_s)
    if not a.ok:
        return f"attestation evidence rejected: {a.reason}"
    return f"attestation evidence {a.summary()} (binds the key to this GPU once; locates nothing)"


def _check_gpu_rounds(
    bundle: EvidenceBundle,
    trusted: Mapping[str, LandmarkEntry],
    now_unix_ns: int,
    max_age_s: float | None,
    policy: AppraisalPolicy | None,
    calibration: Calibration,
    enrolled_gpu_id: str | None,
    notes: list[str],
) -> tuple[list[AcceptedGpuRound], list[RejectedRecord]]:
    ok: list[AcceptedGpuRound] = []
    bad: list[RejectedRecord] = []
    seen: set[tuple[str, bytes, int]] = set()
    gpu_ids: set[str] = set()
    for i, (rec, evidence) in enumerate(bundle.gpu_rounds):
        why, appraisal = _gpu_round_problem(
            rec, evidence, bundle.device, trusted, now_unix_ns, max_age_s, policy, seen
        )
        if why is None and enrolled_gpu_id is not None and rec.gpu_id != enrolled_gpu_id:
            why = f"GPU {rec.gpu_id} is not the enrolled GPU {enrolled_gpu_id} (GPU swapped?)"
        if why is not None or appraisal is None or appraisal.gpu is None:
            bad.append(RejectedRecord(i, rec.landmark_id, f"GPU round: {why}"))
            continue
        seen.add((rec.landmark_id, rec.session_id, rec.round_no))
        gpu_ids.add(rec.gpu_id)
        floor = calibration.floor_ms(appraisal.gpu.hwmodel, appraisal.vbios_version)
        if floor >= rec.rtt_ms:
            notes.append(
                f"GPU round {i}: RTT {rec.rtt_ms:.3f} ms is not above the calibrated S_floor "
                f"{floor:.3f} ms; floor ignored (S_floor 0) and the calibration is suspect"
            )
            floor = 0.0
        ok.append(AcceptedGpuRound(rec, trusted[rec.landmark_id], appraisal, floor))
    if len(gpu_ids) > 1:
        notes.append(f"GPU rounds name {len(gpu_ids)} different GPUs: {sorted(gpu_ids)}")
    if ok:
        a = ok[0].appraisal
        notes.append(f"GPU evidence: revocation {a.revocation}; root {a.root_fingerprint[:16]}")
    return ok, bad


def _gpu_round_problem(
    rec: GpuRoundRecord,
    evidence: GpuEvidence,
    device: DeviceIdentity,
    trusted: Mapping[str, LandmarkEntry],
    now_unix_ns: int,
    max_age_s: float | None,
    policy: AppraisalPolicy | None,
    seen: set[tuple[str, bytes, int]],
) -> tuple[str | None, Appraisal | None]:
    entry = trusted.get(rec.landmark_id)
    if entry is None:
        return f"unknown landmark {rec.landmark_id!r} (not in the trusted registry)", None
    if rec.device_id != device.device_id:
        return f"round is for device {rec.device_id}, the bundle's is {device.device_id}", None
    if policy is None:
        return "no GPU root configured to appraise the evidence", None
    try:
        appraisal = verify_gpu_round(rec, evidence, entry.public_key, policy, now_unix_ns / 1e9)
    except GpuRoundError as exc:
        return str(exc), None
    if (rec.landmark_id, rec.session_id, rec.round_no) in seen:
        return "duplicate round (same landmark, session and round): replayed", None
    if rec.measured_at_unix_ns > now_unix_ns + MAX_FUTURE_SKEW_NS:
        return "round is dated in the future", None
    if max_age_s is not None and now_unix_ns - rec.measured_at_unix_ns > max_age_s * 1e9:
        return f"stale: older than the {max_age_s / 3600:g} h allowed", None
    return None, appraisal


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


def accepted_gpu_rtts(check: BundleCheck) -> Sequence[tuple[LandmarkEntry, float, float]]:
    """(landmark, min RTT ms, S_floor ms) per landmark over accepted GPU rounds.

    Per landmark, the round with the least RTT - S_floor: the tightest cap it proves.
    """
    best: dict[str, tuple[LandmarkEntry, float, float]] = {}
    for g in check.gpu_accepted:
        lid = g.record.landmark_id
        cur = best.get(lid)
        if cur is None or g.record.rtt_ms - g.floor_ms < cur[1] - cur[2]:
            best[lid] = (g.entry, g.record.rtt_ms, g.floor_ms)
    return list(best.values())
