"""Evidence bundles: save, load, and re-check every signature offline.

A bundle is one JSON file:

    {"format": "lightfence-evidence", "version": 1, "created_at_unix_ns": ...,
     "device": {...DeviceIdentity...},
     "landmarks": [{...LandmarkEntry...}],        # as the agent was given them
     "records": [{...MeasurementRecord...}],
     "gpu_rounds": [{"record": {...GpuRoundRecord...}, "evidence": {...}}]}   # optional

`check_bundle` (a bundle in memory) and `check_bundle_file` (a file, read a record at a time
with bounded memory: evidence.json_stream) re-verify it against a landmark registry the auditor
trusts (never against the keys inside the bundle alone, which whoever made the bundle chose),
with the verifier service's time rules (core.freshness). A record that fails any check is
rejected with its reason, and never reaches a verdict. Anything else in the file (a `policy`,
a `verdict`) is unsigned: it is shown as a note, never used.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lightfence.attestation import Appraisal, AppraisalPolicy, appraise, pem_chain_to_der
from lightfence.core.freshness import (
    MAX_CLOCK_SKEW_S,
    MAX_DEVICE_SPEED_KM_PER_H,
    MAX_RECORD_AGE_S,
    VERDICT_WINDOW_S,
    WindowRecord,
    age_problem,
    verdict_inputs,
)
from lightfence.crypto.keys import key_id
from lightfence.evidence.calibration import NO_CALIBRATION, Calibration
from lightfence.evidence.json_stream import JsonObjectStream, JsonStreamError
from lightfence.identity.device import Attestation, DeviceIdentity
from lightfence.model.registry import LandmarkEntry, RegistryError, parse_registry, registry_json
from lightfence.model.trust import TrustLevel
from lightfence.protocol.gpu_round import (
    GpuEvidence,
    GpuRoundError,
    GpuRoundRecord,
    round_from_json,
    verify_gpu_round,
)
from lightfence.protocol.record import MeasurementRecord, RecordError, TimestampSource, verify
from lightfence.units import Bound

BUNDLE_FORMAT = "lightfence-evidence"
BUNDLE_VERSION = 1
DEFAULT_MAX_BUNDLE_BYTES = 16 * 1024 * 1024
"""Largest bundle file read by default (about 10,000 records; an agent's has one a landmark)."""
MAX_VALUE_BYTES = 4 * 1024 * 1024
"""Largest single member or record in a bundle file (a record is under 2 kB)."""

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
        if not isinstance(d, Mapping):
            raise BundleError("not a lightfence evidence bundle (format field missing or wrong)")
        head = _Head.parse(d)
        raw_records = d.get("records")
        if not isinstance(raw_records, list):
            raise BundleError("records must be a list" if "records" in d else _MISSING_RECORDS)
        records = tuple(_record(i, r) for i, r in enumerate(raw_records))
        gpu_rounds = _gpu_rounds_from_json(d.get("gpu_rounds", []))
        return cls(head.device, records, head.landmarks, head.created, gpu_rounds)


def _gpu_rounds_from_json(raw: object) -> tuple[tuple[GpuRoundRecord, GpuEvidence], ...]:
    if not isinstance(raw, list):
        raise BundleError("gpu_rounds must be a list")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(round_from_json(item, f"gpu_rounds[{i}]"))
        except GpuRoundError as exc:
            raise BundleError(f"malformed bundle: {exc}") from None
    return tuple(out)


_MISSING_RECORDS = "bundle is missing 'records'"


@dataclass(frozen=True)
class _Head:
    """A bundle's members other than its records, checked."""

    device: DeviceIdentity
    landmarks: tuple[LandmarkEntry, ...]
    created: int
    unsigned: tuple[str, ...]
    """Notes on members that are not signed and are not used (a verifier's `policy`...)."""

    @classmethod
    def parse(cls, d: Mapping[str, Any]) -> _Head:
        if d.get("format") != BUNDLE_FORMAT:
            raise BundleError("not a lightfence evidence bundle (format field missing or wrong)")
        if d.get("version") != BUNDLE_VERSION:
            raise BundleError(f"unsupported bundle version {d.get('version')!r}")
        if "device" not in d:
            raise BundleError("bundle is missing 'device'")
        try:
            device = DeviceIdentity.from_json_dict(d["device"])
            landmarks = tuple(parse_registry({"landmarks": d.get("landmarks", [])}).values())
        except (RegistryError, ValueError, KeyError, TypeError) as exc:
            raise BundleError(f"malformed bundle: {exc}") from None
        created = d.get("created_at_unix_ns", 0)
        if type(created) is not int:
            raise BundleError("created_at_unix_ns must be an integer")
        unsigned = []
        if "policy" in d:
            stated = json.dumps(d["policy"], sort_keys=True)[:200]
            unsigned.append(
                f"the bundle states a policy {stated} (unsigned: shown only; the verdict uses "
                "this command's options)"
            )
        verdict = d.get("verdict")
        if isinstance(verdict, Mapping) and "verdict" in verdict:
            unsigned.append(
                f"the bundle states a verdict {str(verdict['verdict'])[:40]!r} (unsigned: shown "
                "only; recomputed here from the signed records)"
            )
        return cls(device, landmarks, created, tuple(unsigned))


def _record(index: int, raw: object) -> MeasurementRecord:
    try:
        return MeasurementRecord.from_json_dict(raw)  # type: ignore[arg-type]
    except (RecordError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"malformed bundle: records[{index}]: {exc}") from None


def save_bundle(bundle: EvidenceBundle, path: Path) -> None:
    """Write atomically (temp file, then rename), so a crash never leaves half a bundle."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(bundle.to_json_dict(), indent=2) + "\n")
    os.replace(tmp, path)


def _members(
    path: Path, max_bytes: int, streamed: frozenset[str], keys: set[str] | None = None
) -> Iterator[tuple[str, Any, bool]]:
    """The bundle file's top-level members (see JsonObjectStream.members; `keys` collects the
    keys seen, streamed ones included); every failure to read it, hostile input included, is a
    BundleError naming the file."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise BundleError(f"bundle {path} not found") from None
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc}") from None
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise BundleError(
                    f"{path} is {size:,} bytes, over the {max_bytes:,}-byte cap (--max-bytes)"
                )
            yield from JsonObjectStream(f, max_bytes, MAX_VALUE_BYTES).members(streamed, keys)
        except JsonStreamError as exc:
            raise BundleError(f"{path} is not a readable bundle: {exc}") from None
        except OSError as exc:
            raise BundleError(f"cannot read {path}: {exc}") from None


def load_bundle(path: Path, max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES) -> EvidenceBundle:
    """The whole bundle in memory (to re-save or inspect it); `check_bundle_file` checks one
    without holding its records."""
    return EvidenceBundle.from_json_dict(
        {k: v for k, v, _ in _members(path, max_bytes, frozenset())}
    )


@dataclass(frozen=True)
class RejectedRecord:
    index: int
    landmark_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class AcceptedRecord:
    """What a verdict and a report need of a record that passed every check."""

    index: int
    landmark_id: str
    session_id: bytes
    min_rtt_ns: int
    measured_at_unix_ns: int
    timestamp_source: TimestampSource
    entry: LandmarkEntry
    """The trusted registry's entry for its landmark."""

    @property
    def min_rtt_ms(self) -> float:
        return self.min_rtt_ns / 1e6

    @property
    def measured_at(self) -> datetime:
        return datetime.fromtimestamp(self.measured_at_unix_ns / 1e9, tz=UTC)


@dataclass(frozen=True)
class BundleCheck:
    """Outcome of the offline re-check: which records stand, which fell and why."""

    device: DeviceIdentity
    accepted: tuple[AcceptedRecord, ...]
    """Records that passed every check (each with its trusted registry entry)."""
    rejected: tuple[RejectedRecord, ...]
    notes: tuple[str, ...] = field(default=())
    gpu_accepted: tuple[AcceptedGpuRound, ...] = ()
    gpu_rejected: tuple[RejectedRecord, ...] = ()

    @property
    def all_valid(self) -> bool:
        return not self.rejected and not self.gpu_rejected

    def gpu_verdict_inputs(
        self,
        window_s: float = VERDICT_WINDOW_S,
        speed_km_per_h: float = MAX_DEVICE_SPEED_KM_PER_H,
    ) -> list[dict[str, Any]]:
        """verdict_inputs for GPU rounds, by the same rules (core.freshness, which the verifier
        service applies too): window before the newest round, movement allowance, tightest per
        landmark by RTT - S_floor, each with its floor_ms. `record_id` is the round's index."""
        if not self.gpu_accepted:
            return []
        newest = max(g.record.measured_at_unix_ns for g in self.gpu_accepted)
        candidates = (
            WindowRecord(
                i,
                g.record.landmark_id,
                g.entry.latitude,
                g.entry.longitude,
                g.entry.position_error_km,
                g.record.rtt_ns,
                g.record.measured_at_unix_ns,
                round(g.floor_ms * 1e6),
            )
            for i, g in enumerate(self.gpu_accepted)
        )
        return verdict_inputs(candidates, newest, Bound.VACUUM, window_s, speed_km_per_h)

    def newest_ns(self) -> tuple[int | None, int | None]:
        """Newest accepted key record and GPU round (for the movement allowance between them)."""
        key = max((a.measured_at_unix_ns for a in self.accepted), default=None)
        gpu = max((g.record.measured_at_unix_ns for g in self.gpu_accepted), default=None)
        return key, gpu

    def verdict_inputs(
        self,
        bound: Bound,
        window_s: float = VERDICT_WINDOW_S,
        speed_km_per_h: float = MAX_DEVICE_SPEED_KM_PER_H,
    ) -> list[dict[str, Any]]:
        """What the verifier service would decide on (core.freshness.verdict_inputs): the
        accepted records within `window_s` of the newest, movement allowance added, the
        tightest per landmark. `record_id` is the record's index in the bundle."""
        if not self.accepted:
            return []
        newest = max(a.measured_at_unix_ns for a in self.accepted)
        candidates = (
            WindowRecord(
                a.index,
                a.landmark_id,
                a.entry.latitude,
                a.entry.longitude,
                a.entry.position_error_km,
                a.min_rtt_ns,
                a.measured_at_unix_ns,
            )
            for a in self.accepted
        )
        return verdict_inputs(candidates, newest, bound, window_s, speed_km_per_h)


@dataclass(frozen=True)
class AcceptedGpuRound:
    """A GPU round that passed the landmark-signature check and a fresh appraisal."""

    record: GpuRoundRecord
    entry: LandmarkEntry
    appraisal: Appraisal
    floor_ms: float
    """S_floor from a trusted calibration for this GPU model and firmware; 0 without one."""


class _Checker:
    """Checks records one at a time, keeping only what a verdict and a report need."""

    def __init__(
        self,
        device: DeviceIdentity,
        trusted: Mapping[str, LandmarkEntry],
        now_unix_ns: int,
        max_age_s: float,
        max_skew_s: float,
    ) -> None:
        self.device = device
        self.trusted = trusted
        self.device_key_id = key_id(device.public_key)
        self.now_ns = now_unix_ns
        self.max_age_s = max_age_s
        self.max_skew_s = max_skew_s
        self.accepted: list[AcceptedRecord] = []
        self.rejected: list[RejectedRecord] = []
        self.seen_sessions: set[tuple[str, bytes]] = set()

    def add(self, index: int, rec: MeasurementRecord) -> None:
        why = self._problem(rec)
        if why is not None:
            self.rejected.append(RejectedRecord(index, rec.landmark_id, why))
            return
        self.seen_sessions.add((rec.landmark_id, rec.session_id))
        self.accepted.append(
            AcceptedRecord(
                index,
                rec.landmark_id,
                rec.session_id,
                rec.min_rtt_ns,
                rec.measured_at_unix_ns,
                rec.timestamp_source,
                self.trusted[rec.landmark_id],
            )
        )

    def result(self, head: _Head, gpu: GpuChecks | None = None) -> BundleCheck:
        device = self.device
        notes = [f"identity trust level: {device.trust_level} ({TRUST_NOTES[device.trust_level]})"]
        if device.attestation is not None and not device.attestation.binds(device.public_key):
            notes.append("attestation evidence does not bind the device key: ignored")
        elif device.attestation is not None and gpu is not None and gpu.policy is not None:
            notes.append(attestation_note(device.attestation, gpu.policy, self.now_ns / 1e9))
        for entry in head.landmarks:
            mine = self.trusted.get(entry.id)
            if mine is not None and (mine.public_key, mine.latitude, mine.longitude) != (
                entry.public_key,
                entry.latitude,
                entry.longitude,
            ):
                notes.append(
                    f"bundle lists landmark {entry.id} differently; the trusted registry wins"
                )
        notes.extend(head.unsigned)
        gpu_ok: list[AcceptedGpuRound] = []
        gpu_bad: list[RejectedRecord] = []
        if gpu is not None and gpu.rounds:
            gpu_ok, gpu_bad = _check_gpu_rounds(self, gpu, notes)
        return BundleCheck(
            device,
            tuple(self.accepted),
            tuple(self.rejected),
            tuple(notes),
            tuple(gpu_ok),
            tuple(gpu_bad),
        )

    def _problem(self, rec: MeasurementRecord) -> str | None:
        device = self.device
        entry = self.trusted.get(rec.landmark_id)
        if entry is None:
            return f"unknown landmark {rec.landmark_id!r} (not in the trusted registry)"
        if rec.device_id != device.device_id:
            return (
                f"record is for device {rec.device_id}, the bundle's device is {device.device_id}"
            )
        if rec.device_key_id != self.device_key_id:
            return "record names another device key"
        if rec.trust_level is not device.trust_level:
            return f"record says trust level {rec.trust_level}, identity says {device.trust_level}"
        # Time before signatures: a stale record costs no signature checks.
        stale = age_problem(rec.measured_at_unix_ns, self.now_ns, self.max_age_s, self.max_skew_s)
        if stale is not None:
            return f"stale: {stale}"
        if (rec.landmark_id, rec.session_id) in self.seen_sessions:
            return "duplicate record (same landmark and session): replayed"
        try:
            verify(rec, entry.public_key, device.public_key)
        except RecordError as exc:
            return str(exc)
        return None


@dataclass(frozen=True)
class GpuChecks:
    """How to check a bundle's GPU rounds: under which root, with which calibration."""

    rounds: tuple[tuple[GpuRoundRecord, GpuEvidence], ...] = ()
    policy: AppraisalPolicy | None = None
    """Without one every GPU round is rejected: never trusted on the landmark's word alone."""
    calibration: Calibration = NO_CALIBRATION
    enrolled_gpu_id: str | None = None


def check_bundle(
    bundle: EvidenceBundle,
    trusted: Mapping[str, LandmarkEntry],
    *,
    now_unix_ns: int,
    max_age_s: float = MAX_RECORD_AGE_S,
    max_skew_s: float = MAX_CLOCK_SKEW_S,
    gpu_policy: AppraisalPolicy | None = None,
    calibration: Calibration = NO_CALIBRATION,
    enrolled_gpu_id: str | None = None,
) -> BundleCheck:
    """Re-check every record of `bundle` against the `trusted` landmark registry, with the
    verifier service's time rules (core.freshness) unless told otherwise. GPU rounds are
    appraised again under `gpu_policy` (NVIDIA's root, or a test root)."""
    head = _Head(bundle.device, bundle.landmarks, bundle.created_at_unix_ns, ())
    checker = _Checker(bundle.device, trusted, now_unix_ns, max_age_s, max_skew_s)
    for i, rec in enumerate(bundle.records):
        checker.add(i, rec)
    gpu = GpuChecks(bundle.gpu_rounds, gpu_policy, calibration, enrolled_gpu_id)
    return checker.result(head, gpu)


def check_bundle_file(
    path: Path,
    trusted: Mapping[str, LandmarkEntry],
    *,
    now_unix_ns: int,
    max_age_s: float = MAX_RECORD_AGE_S,
    max_skew_s: float = MAX_CLOCK_SKEW_S,
    max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
    gpu: GpuChecks | None = None,
) -> BundleCheck:
    """check_bundle of the bundle file at `path`, read one record at a time: memory holds one
    record and the accepted records' summaries, never the file. Raises BundleError for a file
    that is unreadable, over `max_bytes`, hostile (too deep, huge numbers) or malformed."""
    streamed = frozenset({"records"})
    members: dict[str, Any] = {}
    keys: set[str] = set()
    checker: _Checker | None = None
    index = 0
    for key, value, item in _members(path, max_bytes, streamed, keys):
        if not item:
            members[key] = value
            continue
        if index == 0 and "device" in members:
            # The members before the records (our writer puts them first) name the device;
            # if they do not make a head yet, a second pass checks the records.
            try:
                device = _Head.parse(members).device
            except BundleError:
                pass
            else:
                checker = _Checker(device, trusted, now_unix_ns, max_age_s, max_skew_s)
        if checker is not None:
            checker.add(index, _record(index, value))
        index += 1
    if "records" not in keys:
        raise BundleError(_MISSING_RECORDS)
    head = _Head.parse(members)  # all of them: format, version and device checked again
    if checker is None:
        checker = _Checker(head.device, trusted, now_unix_ns, max_age_s, max_skew_s)
        if index:  # records came before the device: a second pass checks them
            index = 0
            for _, value, item in _members(path, max_bytes, streamed, set()):
                if item:
                    checker.add(index, _record(index, value))
                    index += 1
    rounds = _gpu_rounds_from_json(members.get("gpu_rounds", []))
    gpu = GpuChecks() if gpu is None else gpu
    return checker.result(head, GpuChecks(rounds, gpu.policy, gpu.calibration, gpu.enrolled_gpu_id))


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
    checker: _Checker, gpu: GpuChecks, notes: list[str]
) -> tuple[list[AcceptedGpuRound], list[RejectedRecord]]:
    ok: list[AcceptedGpuRound] = []
    bad: list[RejectedRecord] = []
    seen: set[tuple[str, bytes, int]] = set()
    gpu_ids: set[str] = set()
    for i, (rec, evidence) in enumerate(gpu.rounds):
        why, appraisal = _gpu_round_problem(checker, rec, evidence, gpu.policy, seen)
        if why is None and gpu.enrolled_gpu_id is not None and rec.gpu_id != gpu.enrolled_gpu_id:
            why = f"GPU {rec.gpu_id} is not the enrolled GPU {gpu.enrolled_gpu_id} (GPU swapped?)"
        if why is not None or appraisal is None or appraisal.gpu is None:
            bad.append(RejectedRecord(i, rec.landmark_id, f"GPU round: {why}"))
            continue
        seen.add((rec.landmark_id, rec.session_id, rec.round_no))
        gpu_ids.add(rec.gpu_id)
        floor = gpu.calibration.floor_ms(appraisal.gpu.hwmodel, appraisal.vbios_version)
        if floor >= rec.rtt_ms:
            notes.append(
                f"GPU round {i}: RTT {rec.rtt_ms:.3f} ms is not above the calibrated S_floor "
                f"{floor:.3f} ms; floor ignored (S_floor 0) and the calibration is suspect"
            )
            floor = 0.0
        ok.append(AcceptedGpuRound(rec, checker.trusted[rec.landmark_id], appraisal, floor))
    if len(gpu_ids) > 1:
        notes.append(f"GPU rounds name {len(gpu_ids)} different GPUs: {sorted(gpu_ids)}")
    if ok:
        a = ok[0].appraisal
        notes.append(f"GPU evidence: revocation {a.revocation}; root {a.root_fingerprint[:16]}")
    return ok, bad


def _gpu_round_problem(
    checker: _Checker,
    rec: GpuRoundRecord,
    evidence: GpuEvidence,
    policy: AppraisalPolicy | None,
    seen: set[tuple[str, bytes, int]],
) -> tuple[str | None, Appraisal | None]:
    entry = checker.trusted.get(rec.landmark_id)
    if entry is None:
        return f"unknown landmark {rec.landmark_id!r} (not in the trusted registry)", None
    if rec.device_id != checker.device.device_id:
        return (
            f"round is for device {rec.device_id}, the bundle's is {checker.device.device_id}",
            None,
        )
    stale = age_problem(
        rec.measured_at_unix_ns, checker.now_ns, checker.max_age_s, checker.max_skew_s
    )
    if stale is not None:
        return f"stale: {stale}", None
    if (rec.landmark_id, rec.session_id, rec.round_no) in seen:
        return "duplicate round (same landmark, session and round): replayed", None
    if policy is None:
        return "no GPU root configured to appraise the evidence", None
    try:
        appraisal = verify_gpu_round(rec, evidence, entry.public_key, policy, checker.now_ns / 1e9)
    except GpuRoundError as exc:
        return str(exc), None
    return None, appraisal
