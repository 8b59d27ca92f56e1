"""Record ingestion: check each signed record, store it once, or keep it as a rejection.

Order of checks for one record (the first failure is the reason):
1. permission (no write at all): a landmark token submits only its own records, an operator only
   its own devices', an auditor nothing;
2. already stored (same signed bytes): acknowledged again, nothing written (idempotent);
3. landmark known, active and its registered key the one that signed; landmark signature valid;
4. device enrolled; record made with its registered key and trust level (else: identity change);
5. device signature of the fastest round valid;
6. measured within `max_record_age_s` and not in the future beyond the clock skew;
7. no other record with the same landmark session (replay).

A stored record marks its device for a verdict recompute in the same transaction, so a crash
after the acknowledgement never loses the recompute.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lightfence.crypto.keys import verify_signature
from lightfence.protocol.record import MeasurementRecord, RecordError, verify
from lightfence.verifier import alerts, audit
from lightfence.verifier.auth import Principal, Role
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.errors import Forbidden
from lightfence.verifier.models import DeviceRow, LandmarkRow, RecordRow, RejectionRow


class RejectReason(StrEnum):
    STALE = "stale"
    REPLAYED = "replayed"
    UNKNOWN_LANDMARK = "unknown_landmark"
    FLAGGED_LANDMARK = "flagged_landmark"
    UNKNOWN_DEVICE = "unknown_device"
    BAD_SIGNATURE = "bad_signature"
    IDENTITY_CHANGE = "identity_change"
    """Signed by the landmark for this device id, but with another device key or trust level."""


@dataclass(frozen=True)
class Outcome:
    status: str
    """`stored`, `duplicate` or `rejected`."""
    record_hash: str
    record_id: int | None = None
    reason: RejectReason | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "record_hash": self.record_hash}
        if self.record_id is not None:
            out["record_id"] = self.record_id
        if self.reason is not None:
            out["reason"] = self.reason.value
            out["detail"] = self.detail
        return out


def record_hash(record: MeasurementRecord) -> str:
    return hashlib.sha256(record.to_bytes()).hexdigest()


class _Reject(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _authorise(who: Principal, records: Sequence[MeasurementRecord], session: Session) -> None:
    if who.role is Role.AUDITOR:
        raise Forbidden("an auditor token is read-only; submit records with a landmark token")
    if who.role is Role.LANDMARK:
        for rec in records:
            if rec.landmark_id != who.owner:
                raise Forbidden(
                    f"this landmark token belongs to {who.owner!r} and may submit only its own "
                    f"records, not one from {rec.landmark_id!r}"
                )
    if who.role is Role.OPERATOR:
        ids = {rec.device_id for rec in records}
        owners = dict(
            session.execute(
                select(DeviceRow.id, DeviceRow.operator).where(DeviceRow.id.in_(ids))
            ).all()
        )
        for device_id in sorted(ids):
            if device_id in owners and owners[device_id] != who.owner:
                raise Forbidden(
                    f"device {device_id} belongs to another operator; an operator token submits "
                    "records of its own devices only"
                )


class Ingestor:
    """Ingests batches in the caller's write transaction. Caches registry rows for the batch."""

    def __init__(self, session: Session, config: VerifierConfig, who: Principal, now_ns: int):
        self.session, self.config, self.who, self.now_ns = session, config, who, now_ns
        self._landmarks: dict[str, LandmarkRow | None] = {}
        self._devices: dict[str, DeviceRow | None] = {}

    def ingest(self, records: Sequence[MeasurementRecord]) -> list[Outcome]:
        _authorise(self.who, records, self.session)
        hashes = [record_hash(r) for r in records]
        known = self._existing(hashes)
        out: list[Outcome] = []
        for rec, digest in zip(records, hashes, strict=True):
            if digest in known:
                out.append(Outcome("duplicate", digest, record_id=known[digest]))
                continue
            try:
                row = self._store(rec, digest)
            except _Reject as rej:
                self._keep_rejection(rec, digest, rej)
                out.append(Outcome("rejected", digest, reason=rej.reason, detail=rej.detail))
                continue
            known[digest] = row.id
            out.append(Outcome("stored", digest, record_id=row.id))
        return out

    def _existing(self, hashes: Sequence[str]) -> dict[str, int]:
        rows = self.session.execute(
            select(RecordRow.record_hash, RecordRow.id).where(RecordRow.record_hash.in_(hashes))
        )
        return dict(rows.all())

    def _landmark(self, landmark_id: str) -> LandmarkRow | None:
        if landmark_id not in self._landmarks:
            self._landmarks[landmark_id] = self.session.get(LandmarkRow, landmark_id)
        return self._landmarks[landmark_id]

    def _device(self, device_id: str) -> DeviceRow | None:
        if device_id not in self._devices:
            self._devices[device_id] = self.session.get(DeviceRow, device_id)
        return self._devices[device_id]

    def _check(self, rec: MeasurementRecord) -> tuple[LandmarkRow, DeviceRow]:
        lm = self._landmark(rec.landmark_id)
        if lm is None or lm.status == "retired":
            raise _Reject(RejectReason.UNKNOWN_LANDMARK, f"landmark {rec.landmark_id!r} is unknown")
        if lm.key_id != rec.landmark_key_id:
            raise _Reject(
                RejectReason.UNKNOWN_LANDMARK,
                f"record is signed with key {rec.landmark_key_id}, but landmark "
                f"{rec.landmark_id!r} is registered with key {lm.key_id}",
            )
        landmark_key = bytes.fromhex(lm.public_key)
        if not verify_signature(landmark_key, rec.landmark_signature, rec.signed_bytes()):
            raise _Reject(
                RejectReason.BAD_SIGNATURE,
                f"landmark signature of {rec.landmark_id} does not verify",
            )
        if lm.status == "flagged":
            raise _Reject(
                RejectReason.FLAGGED_LANDMARK,
                f"landmark {rec.landmark_id!r} is flagged ({lm.status_reason}); its records do "
                "not count until an admin clears it",
            )
        dev = self._device(rec.device_id)
        if dev is None:
            raise _Reject(RejectReason.UNKNOWN_DEVICE, f"device {rec.device_id} is not enrolled")
        if dev.key_id != rec.device_key_id or dev.trust_level != rec.trust_level.value:
            raise _Reject(
                RejectReason.IDENTITY_CHANGE,
                f"device {rec.device_id} is enrolled with key {dev.key_id} ({dev.trust_level}) "
                f"but answered with key {rec.device_key_id} ({rec.trust_level.value})",
            )
        try:
            verify(rec, landmark_key, bytes.fromhex(dev.public_key))
        except RecordError as exc:
            raise _Reject(RejectReason.BAD_SIGNATURE, str(exc)) from None
        age_s = (self.now_ns - rec.measured_at_unix_ns) / 1e9
        if age_s > self.config.max_record_age_s:
            raise _Reject(
                RejectReason.STALE,
                f"measured {age_s:.0f} s ago; records older than "
                f"{self.config.max_record_age_s:.0f} s are not accepted",
            )
        if -age_s > self.config.max_clock_skew_s:
            raise _Reject(
                RejectReason.STALE,
                f"dated {-age_s:.0f} s in the future: the landmark's clock is wrong",
            )
        return lm, dev

    def _store(self, rec: MeasurementRecord, digest: str) -> RecordRow:
        _, dev = self._check(rec)
        session_hex = rec.session_id.hex()
        replay = self.session.execute(
            select(RecordRow.id).where(
                RecordRow.landmark_id == rec.landmark_id, RecordRow.session_id == session_hex
            )
        ).first()
        if replay is not None:
            raise _Reject(
                RejectReason.REPLAYED,
                f"landmark {rec.landmark_id} session {session_hex} is already recorded "
                f"(record {replay[0]}) with different content",
            )
        row = RecordRow(
            record_hash=digest,
            device_id=rec.device_id,
            landmark_id=rec.landmark_id,
            session_id=session_hex,
            min_rtt_ns=rec.min_rtt_ns,
            measured_ns=rec.measured_at_unix_ns,
            received_ns=self.now_ns,
            submitted_by=self.who.actor,
            body=rec.to_json_dict(),
        )
        self.session.add(row)
        dev.needs_verdict = True
        dev.dirty_seq = dev.dirty_seq + 1
        dev.last_record_ns = max(dev.last_record_ns or 0, rec.measured_at_unix_ns)
        self.session.flush()
        audit.append(
            self.session,
            actor=self.who.actor,
            action="record.store",
            subject=rec.device_id,
            payload={"id": row.id, "hash": digest, "landmark": rec.landmark_id},
            now_ns=self.now_ns,
        )
        return row

    def _keep_rejection(self, rec: MeasurementRecord, digest: str, rej: _Reject) -> None:
        row = RejectionRow(
            received_ns=self.now_ns,
            reason=rej.reason.value,
            detail=rej.detail,
            device_id=rec.device_id,
            landmark_id=rec.landmark_id,
            record_hash=digest,
            submitted_by=self.who.actor,
            body=rec.to_json_dict(),
        )
        self.session.add(row)
        self.session.flush()
        audit.append(
            self.session,
            actor=self.who.actor,
            action="record.reject",
            subject=rec.device_id,
            payload={"id": row.id, "hash": digest, "reason": rej.reason.value},
            now_ns=self.now_ns,
        )
        kind = (
            alerts.AlertKind.IDENTITY_CHANGE
            if rej.reason is RejectReason.IDENTITY_CHANGE
            else alerts.AlertKind.REJECTED_EVIDENCE
        )
        known_device = self._device(rec.device_id) is not None
        alerts.raise_alert(
            self.session,
            kind=kind,
            device_id=rec.device_id if known_device else None,
            landmark_id=rec.landmark_id,
            message=f"record from {rec.landmark_id} rejected ({rej.reason.value}): {rej.detail}",
            now_ns=self.now_ns,
        )
