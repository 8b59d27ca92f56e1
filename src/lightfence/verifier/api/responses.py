"""Response bodies, so that /docs (OpenAPI) describes every answer, errors included.

Each model lists what the route's dict carries; nested formats owned elsewhere (GeoJSON, the
record's JSON form, evidence bundles) are typed loosely and documented where they are defined.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Loose(BaseModel):
    """A format defined elsewhere: the named keys are documented, any others pass through."""

    model_config = ConfigDict(extra="allow")


class ErrorOut(Out):
    detail: str = Field(description="What went wrong and what to do about it")
    problems: list[str] | None = Field(None, description="422 only: one line per invalid field")


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "body is not JSON, or JSON nested too deep / numbers too long"),
        (401, "no API token, or an unknown or revoked one"),
        (403, "this token's role may not do this"),
        (404, "not found, or not visible to this token (never told apart)"),
        (409, "conflicts with stored state"),
        (413, "body too large"),
        (422, "invalid request"),
        (429, "rate limit or quota of this token exceeded; see Retry-After"),
        (503, "this verifier lacks what the request needs"),
    )
}


class HealthOut(Out):
    status: str


class LandmarkOut(Out):
    id: str
    lat: float
    lon: float
    position_error_km: float
    public_key: str
    key_id: str
    operator: str
    status: str
    status_reason: str | None
    updated_at: str | None
    address: str | None = None
    gpu_address: str | None = None


class ImplicatedOut(Loose):
    named: int = 0
    named_alone: int = 0
    blame: float = 0.0


class LandmarkHealthOut(Out):
    id: str
    lat: float
    lon: float
    position_error_km: float
    operator: str
    key_id: str
    status: str
    status_reason: str | None
    peers_checked: int
    peers_breaking_physics: list[str]
    implicated: ImplicatedOut


class PeerRttsOut(Out):
    accepted: int
    flagged: list[str]


class LicenceOut(Out):
    policy: str
    bound: str
    declared_country: str | None
    site_lat: float | None
    site_lon: float | None
    checkin_interval_s: int
    gpu_id: str | None = None
    require_locates: str = "key"


class PolicySpecOut(Out):
    """A policy as a structure (model.policy.PolicySpec): compare this, not its text."""

    kind: str = Field(description="outside, in, in+sea, within, in-declared-country[+sea]")
    codes: list[str] = Field(description="ISO alpha-2 codes, sorted (outside/in/in+sea)")
    disc: list[float] | None = Field(description="within: [lat_deg, lon_deg, radius_km]")
    bound: str = Field(description="vacuum or fibre")
    liars: int | str = Field(description="Lying landmarks tolerated: a count, or 'auto'")
    locates: str = Field(description="key or gpu")
    text: str = Field(description="The canonical text; parses back to this structure")


class VerdictOut(Out):
    id: int
    device_id: str
    verdict: str
    locates: str = Field(description="key or gpu: what the verdict's rounds locate")
    key_verdict: str | None = Field(
        None, description="With GPU rounds: the key rounds' own verdict, shown beside"
    )
    gpu_verdict: str | None = Field(
        None, description="The GPU-signed rounds' own verdict (differs only on a mismatch)"
    )
    alerts: list[str] = Field(default_factory=list, description="key-gpu-mismatch, if so")
    gpu_rounds: list[int] = Field(default_factory=list, description="GPU rounds decided on")
    gpu_measurements: list[dict[str, Any]] = Field(default_factory=list)
    reason: str
    policy: str
    bound: str
    claimed: str | None
    liars: str | None
    tolerated_liars: int
    policy_spec: PolicySpecOut | None = Field(
        None,
        description="The policy this verdict holds under, as a structure: region, bound, the "
        "liars it tolerated as a count, what it locates (what its gate token carries)",
    )
    implicated_landmarks: list[str]
    as_of: str | None
    computed_at: str | None
    records: list[int]
    measurements: list[dict[str, Any]]
    feasible_geojson: dict[str, Any] | None = Field(
        None, description="GeoJSON Feature of the feasible region (when asked for)"
    )


class DeviceOut(Out):
    device_id: str
    operator: str
    provider: str
    trust_level: str
    key_id: str
    attributes: dict[str, str]
    licence: LicenceOut
    enrolled_at: str | None
    last_record_at: str | None
    verdict_pending: bool
    latest_verdict: VerdictOut | None
    retired_at: str | None = Field(None, description="When an admin retired it, if retired")


class VerdictHistoryOut(Out):
    device_id: str
    trust_level: str
    verdicts: list[VerdictOut]


class StoredRecordOut(Out):
    id: int
    record_hash: str
    received_at: str | None
    submitted_by: str
    record: dict[str, Any] = Field(description="The record's signed JSON form (docs/protocol.md)")
    excluded_at: str | None = Field(
        None,
        description="When batch re-verification (`lightfence reverify`) found the stored row no "
        "longer the signed record it claims to be; from then on it enters no verdict",
    )
    excluded_reason: str | None = None


class DeviceRecordsOut(Out):
    device_id: str
    records: list[StoredRecordOut]


class EvidenceOut(Loose):
    """An evidence bundle (lightfence.evidence.bundle) plus policy, verdict and issued_by."""

    device: dict[str, Any]
    records: list[dict[str, Any]]
    landmarks: list[dict[str, Any]]
    policy: dict[str, Any]
    verdict: dict[str, Any]
    issued_by: dict[str, Any]


class RegistryOut(Loose):
    """A landmark registry file (lightfence.model.registry)."""

    landmarks: list[dict[str, Any]]


class OutcomeOut(Out):
    status: str = Field(description="stored, duplicate or rejected")
    record_hash: str
    record_id: int | None = None
    reason: str | None = None
    detail: str | None = None


class BatchOut(Out):
    stored: int
    duplicate: int
    rejected: int
    results: list[OutcomeOut]


class AlertOut(Out):
    id: int
    kind: str
    device_id: str | None
    landmark_id: str | None
    message: str
    count: int = Field(description="Occurrences folded into this alert while it was open")
    created_at: str | None
    last_seen_at: str | None
    acknowledged_at: str | None
    acknowledged_by: str | None


class RejectionOut(Out):
    id: int
    reason: str
    detail: str = Field(description="The latest occurrence's explanation")
    device_id: str | None
    landmark_id: str | None
    record_hash: str | None = Field(description="The latest occurrence's record hash")
    submitted_by: str
    count: int = Field(description="Records rejected for this reason, device, landmark and token")
    first_received_at: str | None
    received_at: str | None = Field(description="The latest occurrence")


class StatusOut(Out):
    devices: int
    latest_verdicts: dict[str, int]
    pending_verdicts: int
    landmarks: dict[str, int]
    records: int
    gpu_rounds: int = Field(0, description="Accepted GPU-signed rounds")
    rejections: dict[str, int]
    open_alerts: dict[str, int]
    audit_entries: int
    audit_head: str | None


class RecomputeOut(Out):
    verdicts: int


class AuditVerifyOut(Out):
    ok: bool
    entries: int
    """In all chains."""
    head_hash: str
    """The main chain's head."""
    chains: int
    """The main chain and each partition's stream chain (verifier.audit)."""
    problems: list[str]


class SignedRegistryOut(Loose):
    """The landmark registry signed by the verifier's key (lightfence.model.signed_registry)."""

    landmarks: list[dict[str, Any]]
    issued_at_unix_ns: int
    verifier_key_id: str
    signature: str


class TokenOut(Out):
    name: str
    role: str
    owner: str | None
    state: str = Field(description="active, or revoked <time>")


class NewTokenOut(Out):
    name: str
    role: str
    owner: str | None
    token: str = Field(description="The secret, shown once (only its hash is stored)")


class VerifierKeyOut(Out):
    public_key: str
    key_id: str


class DeviceTokenOut(Out):
    token: str
    device_id: str
    verdict: str
    policy: str = Field(description="The policy's canonical text (without locates)")
    policy_spec: PolicySpecOut | None = Field(
        None, description="The policy as a structure (null if a legacy text cannot be read)"
    )
    issued_at_unix_s: float
    expires_at_unix_s: float
    verifier_key_id: str
    locates: str = Field("key", description="What the token's verdict locates: key or gpu")


class BoardDeviceOut(Loose):
    """GET /board/devices: one row per device (verifier/board.py)."""

    device_id: str
    name: str
    status: str = Field(description="the latest verdict, or REJECTED, NO CHECK-IN, PENDING")
    sentence: str = Field(
        description="why, in one plain sentence; for UNVERIFIED what would fix it"
    )
    locates: str | None = Field(None, description="key or gpu; null without a verdict")
    last_seen: str = Field(description="last check-in in words, e.g. '3 min ago' or 'never'")


class BoardDeviceDetailOut(Loose):
    """GET /board/devices/{id}: verdict changes (runs), RTTs per landmark, feasible region."""

    device_id: str
    runs: list[dict[str, Any]]
    rtt: dict[str, list[dict[str, Any]]]


class BoardAlertOut(Loose):
    """GET /board/alerts: alerts grouped by (device, kind), newest group first."""

    kind: str
    count: int
    message: str


class BoardFleetOut(Loose):
    """GET /board/fleet: the fleet's verdict counts after each change."""

    timeline: list[dict[str, Any]]
