"""Record ingestion: check each signed record, store it once, or keep it as a rejection.

Order of checks for one record (the first failure is the reason):
1. permission (no write at all): a landmark token submits only its own records, an operator only
   its own devices' (any other device, enrolled or not, answers 404), an auditor nothing;
2. already stored (same signed bytes): acknowledged again, nothing written (idempotent);
3. landmark known, active, and its registered key the one the record names;
4. device enrolled; record made with its registered key and trust level (else, if the landmark
   really signed it: identity change);
5. landmark signature and the device's signature of the fastest round valid (`verify`);
6. measured within `max_record_age_s` and not in the future beyond the clock skew;
7. no other record with the same landmark session (replay).

A stored record marks its device for a verdict recompute in the same transaction, so a crash
after the acknowledgement never loses the recompute.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from lightfence.core.freshness import age_problem
from lightfence.crypto.keys import verify_signature
from lightfence.protocol.record import MeasurementRecord, RecordError, verify
from lightfence.verifier import alerts, audit, lookups
from lightfence.verifier.auth import Principal, Role
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.devicemarks import DeviceMarks
from lightfence.verifier.errors import Forbidden, NotFound
from lightfence.verifier.models import DeviceRow, LandmarkRow, RecordRow, RejectionRow
from lightfence.verifier.pgcopy import copy_records
from lightfence.verifier.precheck import Prechecked
from lightfence.verifier.sqlin import one_of


class RejectReason(StrEnum):
    STALE = "stale"
    REPLAYED = "replayed"
    UNKNOWN_LANDMARK = "unknown_landmark"
    FLAGGED_LANDMARK = "flagged_landmark"
    UNKNOWN_DEVICE = "unknown_device"
    BAD_SIGNATURE = "bad_signature"
    IDENTITY_CHANGE = "identity_change"
    """Signed by the landmark for this device id, but with another device key or trust level."""
    BAD_EVIDENCE = "bad_evidence"
    """GPU rounds: the GPU's report or chain does not appraise (verifier.gpu_ingest)."""
    WRONG_GPU = "wrong_gpu"
    """GPU rounds: signed by a GPU other than the device's enrolled one (or none is enrolled)."""


class Signed(Protocol):
    """What the checks shared by key records and GPU rounds read of a landmark-signed record."""

    @property
    def landmark_id(self) -> str: ...
    @property
    def landmark_key_id(self) -> str: ...
    @property
    def device_id(self) -> str: ...
    @property
    def landmark_signature(self) -> bytes: ...
    def signed_bytes(self) -> bytes: ...
    def to_json_dict(self) -> dict[str, Any]: ...


class Outcome(NamedTuple):
    """What became of one submitted record (a tuple: a stream worker makes one per record)."""

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


def _verify_one(
    rec: MeasurementRecord, landmark_key: bytes, device_key: bytes
) -> RecordError | None:
    try:
        verify(rec, landmark_key, device_key)
    except RecordError as exc:
        return exc
    return None


def record_hash(record: MeasurementRecord) -> str:
    return hashlib.sha256(record.to_bytes()).hexdigest()


class _New(NamedTuple):
    """A record stored by this batch, before the insert gives it an id."""

    position: int


class _Reject(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _authorise(who: Principal, records: Sequence[Signed], session: Session) -> None:
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
            if owners.get(device_id) != who.owner:
                # Another operator's device and a device nobody enrolled answer alike (404,
                # nothing written): a rejection for one and not the other would confirm that
                # the other operator's device exists.
                raise NotFound(f"no device {device_id!r} visible to this token")


class DeviceView(NamedTuple):
    """What ingestion reads of a device: plain values, not an ORM object (loading and tracking
    thousands of those per batch was a third of a stream worker's write transaction)."""

    id: str
    key_id: str
    public_key: bytes
    trust_level: str
    gpu_id: str | None
    retired_ns: int | None


def _device_view(row: Any) -> DeviceView:
    did, key_id, public_key, trust_level, gpu_id, retired_ns = row
    return DeviceView(did, key_id, bytes.fromhex(public_key), trust_level, gpu_id, retired_ns)


class Ingestor:
    """Ingests batches in the caller's write transaction. Caches registry rows for the batch."""

    def __init__(self, session: Session, config: VerifierConfig, who: Principal, now_ns: int):
        self.session, self.config, self.who, self.now_ns = session, config, who, now_ns
        self._landmarks: dict[str, LandmarkRow | None] = {}
        self._sessions: dict[tuple[str, str], int] = {}
        self._devices: dict[str, DeviceView | None] = {}
        self._accepted_landmarks: dict[tuple[str, str], tuple[LandmarkRow, bytes]] = {}
        self._marks = DeviceMarks()
        """Devices this batch stored records of: marked for a verdict in one UPDATE."""
        self._prechecked = Prechecked()
        self._index: dict[int, int] = {}
        self._rejected: dict[str, tuple[RejectionRow, int]] = {}
        self._alerts: dict[tuple[alerts.AlertKind, str | None], tuple[str, int, str | None]] = {}
        """Alerts this batch raises, once each at the end: (latest message, count, landmark)."""
        """Rejection rows this batch touched, by aggregation key, with how many it added."""

    def ingest(
        self,
        records: Sequence[MeasurementRecord],
        hashes: Sequence[str] | None = None,
        prechecked: Prechecked | None = None,
    ) -> list[Outcome]:
        """Store or reject each record. `hashes` (record_hash of each) and `prechecked`
        (precheck.precheck of the same batch) may come from before the write lock."""
        _authorise(self.who, records, self.session)
        hashes = hashes if hashes is not None else [record_hash(r) for r in records]
        known: dict[str, int | _New] = dict(self._existing(hashes))
        self._sessions = self._existing_sessions(records)
        self._prefetch(records)
        self._prechecked = prechecked or Prechecked()
        self._index = {id(rec): i for i, rec in enumerate(records)}
        new_rows: list[dict[str, Any]] = []
        new_records: list[MeasurementRecord] = []
        results: list[tuple[str, str, int | _New | None, _Reject | None]] = []
        with self.session.no_autoflush:  # registry rows are prefetched; flush once at the end
            for rec, digest in zip(records, hashes, strict=True):
                if digest in known:
                    results.append(("duplicate", digest, known[digest], None))
                    continue
                try:
                    new_rows.append(self._store(rec, digest))
                    new_records.append(rec)
                except _Reject as exc:
                    self._keep_rejection(rec, digest, exc)
                    results.append(("rejected", digest, None, exc))
                    continue
                known[digest] = _New(len(new_rows) - 1)
                results.append(("stored", digest, known[digest], None))
        ids = self._insert(new_rows, new_records)
        self._marks.write(self.session)
        self.audit_rejections()
        out = []
        for status, digest, ref, why in results:
            if why is not None:
                out.append(Outcome(status, digest, reason=why.reason, detail=why.detail))
            else:
                rid = ids[ref.position] if isinstance(ref, _New) else ref
                out.append(Outcome(status, digest, record_id=rid))
        return out

    def _insert(
        self, rows: list[dict[str, Any]], records: Sequence[MeasurementRecord]
    ) -> list[int]:
        """One multi-row INSERT ... RETURNING (COPY on PostgreSQL: verifier.pgcopy) for the
        batch, and one audit entry for it. `rows` are RecordRow columns less the body, which
        is each of `records` in its JSON form."""
        if not rows:
            return []
        self.session.flush()
        # A Core insert into the table: the ORM's bulk path adds per-row work and nothing else
        # here (no relationships, no defaults to fetch); about 1.2 to 2x faster per record.
        if self.session.get_bind().dialect.name == "postgresql":
            ids = copy_records(self.session, rows, [rec.to_json_text() for rec in records])
        else:
            for row, rec in zip(rows, records, strict=True):
                row["body"] = rec.to_json_dict()
            table = cast(Table, RecordRow.__table__)
            stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
            ids = [int(i) for i in self.session.execute(stmt, rows).scalars()]
        audit.append(
            self.session,
            actor=self.who.actor,
            action="record.store",
            subject=f"{len(rows)} record(s)",
            payload={"stored": [[i, r["record_hash"]] for i, r in zip(ids, rows, strict=True)]},
            now_ns=self.now_ns,
        )
        return ids

    def _existing(self, hashes: Sequence[str]) -> dict[str, int]:
        return lookups.stored_hashes(self.session, hashes)

    def _existing_sessions(
        self, records: Sequence[MeasurementRecord]
    ) -> dict[tuple[str, str], int]:
        """Stored (landmark, session) pairs among this batch's sessions: the replay check."""
        return lookups.stored_sessions(self.session, {r.session_id.hex() for r in records})

    def _landmark(self, landmark_id: str) -> LandmarkRow | None:
        if landmark_id not in self._landmarks:
            self._landmarks[landmark_id] = self.session.get(LandmarkRow, landmark_id)
        return self._landmarks[landmark_id]

    def _prefetch(self, records: Sequence[Signed]) -> None:
        """Registry rows of the whole batch in two queries (not one per record)."""
        lids = {r.landmark_id for r in records} - set(self._landmarks)
        dids = {r.device_id for r in records} - set(self._devices)
        self._landmarks.update(dict.fromkeys(lids))
        self._devices.update(dict.fromkeys(dids))
        for lm in self.session.execute(
            select(LandmarkRow).where(one_of(LandmarkRow.id, lids))
        ).scalars():
            self._landmarks[lm.id] = lm
        for row in lookups.devices(self.session, dids):
            self._devices[row[0]] = _device_view(row)

    def _device(self, device_id: str) -> DeviceView | None:
        if device_id not in self._devices:
            row = self.session.execute(
                select(*lookups.DEVICE_COLUMNS).where(DeviceRow.id == device_id)
            ).first()
            self._devices[device_id] = None if row is None else _device_view(row)
        return self._devices[device_id]

    def _registered_landmark(self, rec: Signed) -> tuple[LandmarkRow, bytes]:
        """The record's landmark if it is registered, active, and signs with the named key."""
        # A batch names a few landmarks thousands of times; their rows do not change under the
        # write lock, so an accepted (landmark, key) is looked at once.
        accepted = self._accepted_landmarks.get((rec.landmark_id, rec.landmark_key_id))
        if accepted is not None:
            return accepted
        lm = self._landmark(rec.landmark_id)
        if lm is None or lm.status == "retired":
            raise _Reject(RejectReason.UNKNOWN_LANDMARK, f"landmark {rec.landmark_id!r} is unknown")
        if lm.key_id != rec.landmark_key_id:
            raise _Reject(
                RejectReason.UNKNOWN_LANDMARK,
                f"record is signed with key {rec.landmark_key_id}, but landmark "
                f"{rec.landmark_id!r} is registered with key {lm.key_id}",
            )
        landmark_key = bytes.fromhex(lm.public_key)  # once a batch: see _accepted_landmarks
        if lm.status == "flagged":
            raise _Reject(
                RejectReason.FLAGGED_LANDMARK,
                f"landmark {rec.landmark_id!r} is flagged ({lm.status_reason}); its records do "
                "not count until an admin clears it",
            )
        self._accepted_landmarks[(rec.landmark_id, rec.landmark_key_id)] = (lm, landmark_key)
        return lm, landmark_key

    def _check(self, rec: MeasurementRecord) -> tuple[LandmarkRow, DeviceView]:
        lm, landmark_key = self._registered_landmark(rec)
        dev = self._device(rec.device_id)
        if dev is None:
            raise _Reject(RejectReason.UNKNOWN_DEVICE, f"device {rec.device_id} is not enrolled")
        if dev.retired_ns is not None:
            raise _Reject(RejectReason.UNKNOWN_DEVICE, f"device {rec.device_id} is retired")
        if dev.key_id != rec.device_key_id or dev.trust_level != rec.trust_level._value_:
            # Only a record the landmark really signed is an identity change; garbage is not.
            if not verify_signature(landmark_key, rec.landmark_signature, rec.signed_bytes()):
                raise _Reject(
                    RejectReason.BAD_SIGNATURE,
                    f"landmark signature of {rec.landmark_id} does not verify",
                )
            raise _Reject(
                RejectReason.IDENTITY_CHANGE,
                f"device {rec.device_id} is enrolled with key {dev.key_id} ({dev.trust_level}) "
                f"but answered with key {rec.device_key_id} ({rec.trust_level.value})",
            )
        device_key = dev.public_key
        checked = self._prechecked.result(self._index.get(id(rec), -1), landmark_key, device_key)
        error = checked.error if checked is not None else _verify_one(rec, landmark_key, device_key)
        if error is not None:
            raise _Reject(RejectReason.BAD_SIGNATURE, str(error))
        stale = age_problem(  # core.freshness: the rule `lightfence verify` applies too
            rec.measured_at_unix_ns,
            self.now_ns,
            self.config.max_record_age_s,
            self.config.max_clock_skew_s,
        )
        if stale is not None:
            raise _Reject(RejectReason.STALE, stale)
        return lm, dev

    def _store(self, rec: MeasurementRecord, digest: str) -> dict[str, Any]:
        _, dev = self._check(rec)
        session_hex = rec.session_id.hex()
        if (rec.landmark_id, session_hex) in self._sessions:
            raise _Reject(
                RejectReason.REPLAYED,
                f"landmark {rec.landmark_id} session {session_hex} is already recorded "
                "with different content",
            )
        row = {
            "record_hash": digest,
            "device_id": rec.device_id,
            "landmark_id": rec.landmark_id,
            "session_id": session_hex,
            "min_rtt_ns": rec.min_rtt_ns,
            "measured_ns": rec.measured_at_unix_ns,
            "received_ns": self.now_ns,
            "submitted_by": self.who.actor,
        }
        self._sessions[(rec.landmark_id, session_hex)] = -1
        self._marks.add(dev.id, rec.measured_at_unix_ns)
        return row

    def _keep_rejection(self, rec: Signed, digest: str, rej: _Reject) -> None:
        """Count the rejection on its aggregate row (token, landmark, device, reason), keeping
        the latest occurrence as the sample; alert once per open (device, kind)."""
        known_device = self._devices.get(rec.device_id) is not None
        known_landmark = self._landmarks.get(rec.landmark_id) is not None
        device_id = rec.device_id if known_device else None
        landmark_id = rec.landmark_id if known_landmark else None
        key = rejection_key(self.who.actor, landmark_id, device_id, rej.reason.value)
        detail = rej.detail[:MAX_DETAIL_CHARS]
        touched = self._rejected.get(key)
        row = touched[0] if touched is not None else self._rejection_row(key)
        if row is None:
            row = RejectionRow(
                agg_key=key,
                received_ns=self.now_ns,
                first_received_ns=self.now_ns,
                count=0,
                reason=rej.reason.value,
                device_id=device_id,
                landmark_id=landmark_id,
                submitted_by=self.who.actor,
                detail=detail,
                record_hash=digest,
                body={},
            )
            self.session.add(row)
        row.count = (row.count or 0) + 1
        row.received_ns, row.detail, row.record_hash = self.now_ns, detail, digest
        row.body = rec.to_json_dict()
        self._rejected[key] = (row, (touched[1] if touched is not None else 0) + 1)
        kind = (
            alerts.AlertKind.IDENTITY_CHANGE
            if rej.reason is RejectReason.IDENTITY_CHANGE
            else alerts.AlertKind.REJECTED_EVIDENCE
        )
        where = rec.landmark_id if known_landmark else "an unknown landmark"
        message = f"record from {where} rejected ({rej.reason.value}): {detail}"
        alert_key = (kind, device_id)
        _, n, first_landmark = self._alerts.get(alert_key, (message, 0, landmark_id))
        self._alerts[alert_key] = (message, n + 1, first_landmark)

    def _rejection_row(self, key: str) -> RejectionRow | None:
        # Locked: writers on other stream chains may count on the same row (the key of an
        # unknown device is shared), and the count below is read, then written back.
        return self.session.execute(
            select(RejectionRow).where(RejectionRow.agg_key == key).with_for_update()
        ).scalar_one_or_none()

    def audit_rejections(self) -> None:
        """One audit entry for the batch's rejections (the rows counted and by how much), then
        one alert per (device, kind), counting every occurrence."""
        if not self._rejected:
            return
        self.session.flush()
        counted = sorted((row.id, row.reason, added) for row, added in self._rejected.values())
        audit.append(
            self.session,
            actor=self.who.actor,
            action="record.reject",
            subject=f"{sum(added for _, _, added in counted)} record(s)",
            payload={"rejections": [list(c) for c in counted]},
            now_ns=self.now_ns,
        )
        for (kind, device_id), (message, n, landmark_id) in self._alerts.items():
            alerts.raise_alert(
                self.session,
                kind=kind,
                device_id=device_id,
                landmark_id=landmark_id,
                message=message,
                now_ns=self.now_ns,
                count=n,
            )


MAX_DETAIL_CHARS = 500
"""A rejection's detail quotes the record (ids); longer ones are cut."""


def rejection_key(
    submitted_by: str, landmark_id: str | None, device_id: str | None, reason: str
) -> str:
    text = "\n".join(x or "" for x in (submitted_by, landmark_id, device_id, reason))
    return hashlib.sha256(text.encode()).hexdigest()
