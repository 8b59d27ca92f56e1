"""The verifier's tables (SQLAlchemy 2, typed). Times are integer Unix nanoseconds in UTC.

Changing a table means adding an Alembic migration under `migrations/versions/`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


HEX_ID = 32
"""Key ids and device ids: 16 bytes in hex."""


class LandmarkRow(Base):
    __tablename__ = "landmarks"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    position_error_km: Mapped[float] = mapped_column(Float, default=0.0)
    public_key: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(HEX_ID), index=True)
    operator: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="active")
    """`active`, `flagged` (broke physics; its records do not count) or `retired`."""
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    position_since_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    """When the position or the key last changed (0: never since registration). Records
    measured before a move were measured from another place, and those before a re-key were
    signed with a key no longer registered: neither counts towards verdicts any more."""
    created_ns: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)
    implicated_named: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Devices whose latest verdict is INCONSISTENT and names this landmark (verifier.blame)."""
    implicated_alone: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Of those, the verdicts that name no other landmark: what the review threshold counts."""
    implicated_blame: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    """core.blame's score: each such verdict shares one unit among the landmarks it names."""
    blame_since_ns: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """When an admin last cleared the landmark: only its records measured later can implicate
    it again (the review covered the earlier ones)."""
    address: Mapped[str | None] = mapped_column(String(300), nullable=True)
    """host:port agents measure against (UDP); served in the signed registry."""
    gpu_address: Mapped[str | None] = mapped_column(String(300), nullable=True)
    """host:port of its GPU-round socket, when it serves GPU rounds."""


class DeviceRow(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(HEX_ID), primary_key=True)
    operator: Mapped[str] = mapped_column(String(255), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    trust_level: Mapped[str] = mapped_column(String(16))
    public_key: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(HEX_ID))
    attributes: Mapped[dict[str, str]] = mapped_column(JSON)
    attestation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    gpu_uuid: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    policy: Mapped[str] = mapped_column(Text)
    """Licence: the allowed region as a policy text (core.policy)."""
    bound: Mapped[str] = mapped_column(String(16), default="vacuum")
    declared_country: Mapped[str | None] = mapped_column(String(8), nullable=True)
    site_lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    site_lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    checkin_interval_s: Mapped[int] = mapped_column(Integer)
    enrolled_ns: Mapped[int] = mapped_column(BigInteger)
    needs_verdict: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    """Set in the same transaction that stores a record, so a crash never loses a recompute."""
    dirty_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    """Bumped whenever the verdict inputs change; a recompute clears `needs_verdict` only if this
    is still the value it read, so a change during the computation is never lost."""
    last_record_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    gpu_id: Mapped[str | None] = mapped_column(String(HEX_ID), nullable=True)
    """Licence: the enrolled GPU (attestation.GpuIdentity.gpu_id, from its device certificate);
    GPU-signed rounds naming another GPU are rejected, and without one every GPU round is."""
    require_locates: Mapped[str] = mapped_column(String(8), default="key", server_default="key")
    """Licence: what a VERIFIED verdict must locate, `key` or `gpu` (model.trust.Locates)."""
    retired_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """When an admin retired it: its records and verdict tokens are refused from then on."""


class RecordRow(Base):
    __tablename__ = "records"
    __table_args__ = (
        UniqueConstraint("landmark_id", "session_id", name="uq_records_landmark_session"),
        Index("ix_records_device_measured", "device_id", "measured_ns"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    record_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """SHA-256 of the record's signed binary form: the idempotency key."""
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    landmark_id: Mapped[str] = mapped_column(ForeignKey("landmarks.id"), index=True)
    session_id: Mapped[str] = mapped_column(String(32))
    min_rtt_ns: Mapped[int] = mapped_column(BigInteger)
    measured_ns: Mapped[int] = mapped_column(BigInteger)
    received_ns: Mapped[int] = mapped_column(BigInteger)
    submitted_by: Mapped[str] = mapped_column(String(255))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The record's JSON form (protocol.record), as signed; evidence bundles carry it as is."""
    invalid_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """When batch re-verification (fleet.reverify) found the stored row no longer the signed
    record it claims to be (edited, or its signatures fail against the registry's keys): from
    then on it enters no verdict. Kept, not deleted, as evidence."""
    invalid_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class GpuRoundRow(Base):
    """An accepted GPU-signed round (protocol.gpu_round): the landmark's record and the GPU's
    evidence, kept so that anyone can appraise it again (evidence bundles carry both)."""

    __tablename__ = "gpu_rounds"
    __table_args__ = (
        UniqueConstraint(
            "landmark_id", "session_id", "round_no", name="uq_gpu_rounds_landmark_session_round"
        ),
        Index("ix_gpu_rounds_device_measured", "device_id", "measured_ns"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    record_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """SHA-256 of the record's signed bytes: the idempotency key."""
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    landmark_id: Mapped[str] = mapped_column(ForeignKey("landmarks.id"), index=True)
    session_id: Mapped[str] = mapped_column(String(32))
    round_no: Mapped[int] = mapped_column(Integer)
    gpu_id: Mapped[str] = mapped_column(String(HEX_ID))
    rtt_ns: Mapped[int] = mapped_column(BigInteger)
    floor_ns: Mapped[int] = mapped_column(BigInteger)
    """S_floor subtracted from the RTT: the signed calibration's, for the appraised GPU model and
    firmware, at ingestion (0 without one)."""
    measured_ns: Mapped[int] = mapped_column(BigInteger)
    received_ns: Mapped[int] = mapped_column(BigInteger)
    submitted_by: Mapped[str] = mapped_column(String(255))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The record's JSON form, as signed."""
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The SPDM report and certificate chain (protocol.gpu_round.GpuEvidence JSON form)."""
    invalid_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """When batch re-verification (fleet.reverify) found the stored row no longer the round it
    claims to be (edited; its signature or evidence failing; its S_floor above what the
    calibration gives now): from then on it enters no verdict. Kept, not deleted, as evidence."""
    invalid_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class RejectionRow(Base):
    """Rejected records, aggregated: one row per (token, landmark, device, reason) with a count.

    A landmark or device id the registry does not know is kept as NULL in the key (the latest
    occurrence's detail still names it), so junk with made-up ids adds to one row per token and
    reason instead of one row each (docs/security.md).
    """

    __tablename__ = "rejections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_ns: Mapped[int] = mapped_column(BigInteger, index=True)
    """The latest occurrence."""
    first_received_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    count: Mapped[int] = mapped_column(BigInteger, default=1, server_default="1")
    agg_key: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    """SHA-256 of (submitted_by, landmark_id, device_id, reason); NULL for rows before 0004."""
    reason: Mapped[str] = mapped_column(String(32), index=True)
    detail: Mapped[str] = mapped_column(Text)
    device_id: Mapped[str | None] = mapped_column(String(HEX_ID), nullable=True, index=True)
    landmark_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    record_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    submitted_by: Mapped[str] = mapped_column(String(255))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)


class VerdictRow(Base):
    __tablename__ = "verdicts"
    __table_args__ = (Index("ix_verdicts_device_id_id", "device_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    kind: Mapped[str] = mapped_column(String(16), index=True)
    reason_code: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    policy: Mapped[str] = mapped_column(Text)
    bound: Mapped[str] = mapped_column(String(16))
    claimed: Mapped[str | None] = mapped_column(String(8), nullable=True)
    as_of_ns: Mapped[int] = mapped_column(BigInteger)
    """Measurement time of the newest record used."""
    computed_ns: Mapped[int] = mapped_column(BigInteger)
    inputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """The measurements the core decided on: record id, landmark, position, RTT, grown error."""
    liars: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """The policy's tolerated-liar setting ('auto' or a count); None for verdicts before 0003."""
    tolerated_liars: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """f: how many lying landmarks this verdict survives."""
    implicated: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    """INCONSISTENT only: ids of the landmarks whose caps cannot be reconciled with the rest."""
    locates: Mapped[str] = mapped_column(String(8), default="key", server_default="key")
    """What the verdict locates (model.trust.Locates): `gpu` when it came from GPU-signed rounds
    (or from their mismatch with the key rounds), `key` otherwise."""
    key_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """With GPU rounds: the key rounds' own verdict kind, shown beside (None: no key rounds)."""
    gpu_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """The GPU rounds' own verdict kind (None: no GPU rounds); differs from `kind` only for a
    key-gpu-mismatch (INCONSISTENT)."""
    gpu_inputs: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    """The GPU-signed rounds decided on (gpu_round_id, landmark, position, RTT, floor_ms)."""
    alert: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """`key-gpu-mismatch` when this verdict is INCONSISTENT because key and GPU are apart."""


class AlertRow(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    device_id: Mapped[str | None] = mapped_column(String(HEX_ID), nullable=True, index=True)
    landmark_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    message: Mapped[str] = mapped_column(Text)
    created_ns: Mapped[int] = mapped_column(BigInteger, index=True)
    count: Mapped[int] = mapped_column(BigInteger, default=1, server_default="1")
    """Occurrences folded into this alert while it was open (one open alert per device, kind)."""
    last_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    acknowledged_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(255), nullable=True)


class LandmarkLinkRow(Base):
    """An RTT one landmark measured to another, for the position cross-check."""

    __tablename__ = "landmark_links"
    __table_args__ = (UniqueConstraint("landmark_id", "peer_id", name="uq_link_pair"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    landmark_id: Mapped[str] = mapped_column(ForeignKey("landmarks.id"))
    peer_id: Mapped[str] = mapped_column(ForeignKey("landmarks.id"))
    rtt_ms: Mapped[float] = mapped_column(Float)
    """Smallest RTT reported for this pair."""
    measured_ns: Mapped[int] = mapped_column(BigInteger)
    violates: Mapped[bool] = mapped_column(Boolean)
    """True when the RTT is faster than light over the surveyed distance."""


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    """Operator name (role operator) or landmark id (role landmark)."""
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    revoked_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AuditRow(Base):
    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at_ns: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(Text)
    """Canonical JSON (sorted keys, no spaces): hashed exactly as stored."""
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The last sequence number and hash of each chain: row 1 is the main chain (audit_log),
    the others are stream chains (audit_stream_log). A writer locks the head it appends to, so
    each chain stays linear."""

    __tablename__ = "audit_head"
    __table_args__ = (UniqueConstraint("name", name="uq_audit_head_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    """A stream chain's name (`kafka:<topic>:<partition>`; a Kafka topic name is at most 249
    characters); None for the main chain."""


class AuditStreamRow(Base):
    """An entry of a stream chain (verifier.audit): what stream workers write, each partition's
    writer on its own chain, so that they do not queue on one lock. `main_seq` is the main
    chain's head when the entry was written; it orders the entry against main-chain entries."""

    __tablename__ = "audit_stream_log"

    chain: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    main_seq: Mapped[int] = mapped_column(BigInteger)
    at_ns: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
