"""The fleet registry: landmarks and devices, with their licences. Every change is audited."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, union, update
from sqlalchemy.orm import Session

from lightfence.core.measurement import InvalidMeasurement, Landmark
from lightfence.core.policy import PolicyError, claimed_region, parse_policy
from lightfence.crypto.keys import key_id, parse_public_key_hex
from lightfence.identity.device import DeviceIdentity
from lightfence.model.policy import MAX_POLICY_CHARS, split_policy_text
from lightfence.model.registry import LandmarkEntry, RegistryError, reachable_address
from lightfence.units import Bound
from lightfence.verifier import alerts, audit
from lightfence.verifier.auth import Principal, Role
from lightfence.verifier.config import DEFAULT_CHECKIN_INTERVAL_S, MIN_CHECKIN_INTERVAL_S
from lightfence.verifier.errors import BadInput, Conflict, Forbidden, NotFound
from lightfence.verifier.models import DeviceRow, GpuRoundRow, LandmarkRow, RecordRow

LANDMARK_STATUSES = ("active", "flagged", "retired")


@dataclass(frozen=True)
class LandmarkSpec:
    id: str
    lat: float
    lon: float
    public_key_hex: str
    operator: str
    position_error_km: float = 0.0
    address: str | None = None
    """host:port agents measure against; None keeps the registered one (if any)."""
    gpu_address: str | None = None
    """host:port of the GPU-round socket; None keeps the registered one (if any)."""


@dataclass(frozen=True)
class Licence:
    policy: str
    bound: str = "vacuum"
    declared_country: str | None = None
    site_lat: float | None = None
    site_lon: float | None = None
    checkin_interval_s: int = DEFAULT_CHECKIN_INTERVAL_S
    min_checkin_interval_s: int = MIN_CHECKIN_INTERVAL_S
    """The shortest interval this verifier accepts (its config), not part of the licence."""
    gpu_id: str | None = None
    """The enrolled GPU (attestation.GpuIdentity.gpu_id): GPU-signed rounds must name it."""
    require_locates: str = "key"
    """`gpu`: only a verdict from GPU-signed rounds can be VERIFIED (model.trust.Locates)."""

    def validated(self) -> Licence:
        """The licence in normal form; BadInput saying what to fix otherwise."""
        try:
            bound = Bound(self.bound)
        except ValueError:
            raise BadInput(f"bound must be 'vacuum' or 'fibre', got {self.bound!r}") from None
        try:
            policy = parse_policy(self.policy, bound)
            stated = split_policy_text(self.policy)[1]
        except PolicyError as exc:
            raise BadInput(str(exc)) from None
        assert policy.spec is not None  # parse_policy sets it
        if policy.spec.longest_token_text() > MAX_POLICY_CHARS:
            raise BadInput(
                f"policy {policy.text!r} is too long for a verdict token (at most "
                f"{MAX_POLICY_CHARS} characters with its qualifiers, about 73 country codes): "
                "no gate could ever be given a token for this device"
            )
        if "liars" in stated:
            raise BadInput(
                "a licence's policy states no liars: the verifier's own `liars` setting "
                "applies to every device"
            )
        if stated.get("locates", self.require_locates) != self.require_locates:
            raise BadInput(
                f"the policy says locates: {stated['locates']}, require_locates says "
                f"{self.require_locates}"
            )
        country = None
        if self.declared_country:
            country = self.declared_country.strip().upper()
            try:
                claimed_region(country)
            except ValueError as exc:
                raise BadInput(f"declared_country: {exc}") from None
        if policy.in_declared_country and not country:
            raise BadInput("policy in-declared-country needs declared_country")
        if (self.site_lat is None) != (self.site_lon is None):
            raise BadInput("give both site_lat and site_lon, or neither")
        if self.site_lat is not None and self.site_lon is not None:
            try:
                Landmark("site", self.site_lat, self.site_lon)
            except InvalidMeasurement as exc:
                raise BadInput(f"declared site: {exc}") from None
        if not self.min_checkin_interval_s <= self.checkin_interval_s <= 366 * 86400:
            raise BadInput(
                f"checkin_interval_s must be between {self.min_checkin_interval_s} s and one year"
            )
        if self.require_locates not in ("key", "gpu"):
            raise BadInput(f"require_locates must be 'key' or 'gpu', got {self.require_locates!r}")
        gpu_id = self.gpu_id.strip().lower() if self.gpu_id else None
        if gpu_id is not None and (len(gpu_id) != 32 or set(gpu_id) - set("0123456789abcdef")):
            raise BadInput("gpu_id must be 32 hex digits (attestation GpuIdentity.gpu_id)")
        return Licence(
            policy=policy.text,
            gpu_id=gpu_id,
            require_locates=self.require_locates,
            bound=bound.value,
            declared_country=country,
            site_lat=self.site_lat,
            site_lon=self.site_lon,
            checkin_interval_s=int(self.checkin_interval_s),
        )


def _landmark_payload(row: LandmarkRow) -> dict[str, Any]:
    return {
        "lat": row.lat,
        "lon": row.lon,
        "position_error_km": row.position_error_km,
        "public_key": row.public_key,
        "operator": row.operator,
        "status": row.status,
        "address": row.address,
        "gpu_address": row.gpu_address,
    }


def put_landmark(
    session: Session, spec: LandmarkSpec, who: Principal, now_ns: int, *, rekey: bool = True
) -> tuple[LandmarkRow, bool]:
    """Register or update a landmark (admin only). Returns (row, created).

    `rekey=False` (POST /landmarks, `landmark register`) refuses to change the key of an id that
    exists: registering a second host under an id already taken would silently take the first
    landmark's place. Re-keying is explicit (PUT /landmarks/{id}, `landmark register --rekey`)."""
    if who.role is not Role.ADMIN:
        raise Forbidden("only an admin token may register or change landmarks")
    try:
        Landmark(spec.id, spec.lat, spec.lon, spec.position_error_km)
        public_key = parse_public_key_hex(spec.public_key_hex)
    except (InvalidMeasurement, ValueError) as exc:
        raise BadInput(str(exc)) from None
    if not spec.operator.strip():
        raise BadInput("a landmark needs an operator name")
    for name, text in (("id", spec.id), ("operator", spec.operator)):
        if not text.isprintable():
            # A newline in an id or name forges lines in `landmark list` and in logs.
            raise BadInput(f"landmark {name} {text!r} holds a control or non-printing character")
    for name, address in (("address", spec.address), ("gpu_address", spec.gpu_address)):
        if address is not None:
            try:
                reachable_address(address)
            except RegistryError as exc:
                raise BadInput(f"{name}: {exc}") from None
    try:
        # What the registry file agents fetch can hold: a landmark it cannot (a longitude past
        # 180, an id over 255 UTF-8 bytes) would fail every GET /landmarks/registry*.json.
        LandmarkEntry(
            spec.id,
            public_key,
            spec.lat,
            spec.lon,
            spec.position_error_km,
            spec.address,
            spec.operator,
            spec.gpu_address,
        )
    except RegistryError as exc:
        raise BadInput(str(exc)) from None
    _refuse_landmark_key_reuse(session, spec.id, key_id(public_key))
    row = session.get(LandmarkRow, spec.id)
    created = row is None
    if row is not None and not rekey and row.public_key != public_key.hex():
        raise Conflict(
            f"landmark {spec.id!r} is registered with another key ({row.key_id}): pick another "
            "id, or re-key it on purpose with `lightfence landmark register --rekey` "
            f"(PUT /landmarks/{spec.id})"
        )
    if row is None:
        row = LandmarkRow(id=spec.id, status="active", created_ns=now_ns, position_since_ns=0)
        session.add(row)
    moved = not created and (row.lat, row.lon, row.position_error_km) != (
        spec.lat,
        spec.lon,
        spec.position_error_km,
    )
    # A new key, like a new position, ends what the older records count for: a re-key is
    # often a compromised key's replacement, and re-verification (fleet.reverify) can check a
    # record only against the key registered now.
    moved = moved or (not created and row.public_key != public_key.hex())
    if moved:
        row.position_since_ns = now_ns
    row.lat, row.lon, row.position_error_km = spec.lat, spec.lon, spec.position_error_km
    row.public_key, row.key_id = public_key.hex(), key_id(public_key)
    row.operator = spec.operator
    if spec.address is not None:
        row.address = spec.address
    if spec.gpu_address is not None:
        row.gpu_address = spec.gpu_address
    row.updated_ns = now_ns
    session.flush()
    audit.append(
        session,
        actor=who.actor,
        action="landmark.create" if created else "landmark.update",
        subject=spec.id,
        payload=_landmark_payload(row),
        now_ns=now_ns,
    )
    if moved:
        mark_landmark_devices_dirty(session, spec.id)
    return row, created


def _refuse_landmark_key_reuse(session: Session, landmark_id: str, kid: str) -> None:
    """One key signs for one landmark position. The same key under a second id (a pasted key, or
    a retired, perhaps compromised landmark's key under a new id) would let the box holding it
    sign records as a landmark somewhere else: its RTTs would be read from the wrong place, and a
    device could be VERIFIED where it is not."""
    holder = session.execute(
        select(LandmarkRow.id)
        .where(LandmarkRow.key_id == kid, LandmarkRow.id != landmark_id)
        .limit(1)
    ).scalar_one_or_none()
    if holder is not None:
        raise Conflict(
            f"landmark key {kid} is already registered for landmark {holder!r} (retired ones "
            "included); one key signs for one landmark: give this landmark its own key "
            "(`lightfence landmark init`)"
        )


def set_landmark_status(
    session: Session, landmark_id: str, status: str, reason: str, who: Principal, now_ns: int
) -> LandmarkRow:
    if status not in LANDMARK_STATUSES:
        raise BadInput(f"status must be one of {LANDMARK_STATUSES}")
    row = get_landmark(session, landmark_id)
    if row.status == status:
        return row
    if row.status == "flagged" and status == "active":
        # Reviewed: the records measured so far no longer implicate it (verifier.blame).
        row.blame_since_ns = now_ns
        row.implicated_named, row.implicated_alone, row.implicated_blame = 0, 0, 0.0
    row.status, row.status_reason, row.updated_ns = status, reason or None, now_ns
    audit.append(
        session,
        actor=who.actor,
        action=f"landmark.{status}",
        subject=landmark_id,
        payload={"reason": reason},
        now_ns=now_ns,
    )
    mark_landmark_devices_dirty(session, landmark_id)
    return row


def mark_landmark_devices_dirty(session: Session, landmark_id: str) -> None:
    """Devices measured by this landmark need a new verdict (its records and GPU rounds now
    count, or not)."""
    devices = union(
        select(RecordRow.device_id).where(RecordRow.landmark_id == landmark_id),
        select(GpuRoundRow.device_id).where(GpuRoundRow.landmark_id == landmark_id),
    )
    session.execute(
        update(DeviceRow)
        .where(DeviceRow.id.in_(devices))
        .values(needs_verdict=True, dirty_seq=DeviceRow.dirty_seq + 1)
    )


def get_landmark(session: Session, landmark_id: str) -> LandmarkRow:
    row = session.get(LandmarkRow, landmark_id)
    if row is None:
        raise NotFound(
            f"no landmark {landmark_id!r}; register it first (`lightfence landmark register`, "
            "or POST /landmarks)"
        )
    return row


def enrol_device(
    session: Session,
    identity: DeviceIdentity,
    licence: Licence,
    operator: str | None,
    who: Principal,
    now_ns: int,
) -> tuple[DeviceRow, bool]:
    """Enrol a device with its licence. Returns (row, created); re-enrolling the same is a no-op.

    Operators enrol for themselves; an admin names the operator. A new device whose GPU UUID an
    enrolled device already has is an identity change (a new key on the same GPU): alerted.
    """
    if who.role is Role.OPERATOR:
        if operator not in (None, who.owner):
            raise Forbidden("an operator token enrols devices for its own operator only")
        operator = who.owner
    elif who.role is not Role.ADMIN:
        raise Forbidden(f"a {who.role.value} token cannot enrol devices")
    if not operator:
        raise BadInput(
            "an admin token must name the device's operator (`operator` in the body; "
            "`lightfence device enrol --operator NAME`)"
        )
    lic = licence.validated()
    device_id = identity.device_id
    existing = session.get(DeviceRow, device_id)
    if existing is not None:
        if existing.retired_ns is not None and existing.operator == operator:
            raise Conflict(
                f"device {device_id} was retired; a retired device stays retired: give the "
                "machine a new device key (`lightfence agent keygen --key NEW_FILE`)"
            )
        if existing.operator != operator:
            # Answered as for any id this token cannot see (never 403/409, which would confirm
            # that another operator has it).
            raise NotFound(f"no device {device_id!r} visible to this token; it cannot be enrolled")
        same = (
            existing.policy,
            existing.bound,
            existing.declared_country,
            existing.site_lat,
            existing.site_lon,
            existing.checkin_interval_s,
            existing.gpu_id,
            existing.require_locates,
        ) == (
            lic.policy,
            lic.bound,
            lic.declared_country,
            lic.site_lat,
            lic.site_lon,
            lic.checkin_interval_s,
            lic.gpu_id,
            lic.require_locates,
        )
        if not same:
            raise Conflict(
                f"device {device_id} is enrolled with another licence; "
                "an admin changes licences with PUT /devices/{id}/licence"
            )
        return existing, False
    _refuse_key_reuse(session, identity, device_id, who, now_ns)
    _refuse_gpu_reuse(session, lic.gpu_id, device_id)
    attrs = dict(identity.attributes)
    row = DeviceRow(
        id=device_id,
        operator=operator,
        provider=identity.provider,
        trust_level=identity.trust_level.value,
        public_key=identity.public_key.hex(),
        key_id=key_id(identity.public_key),
        attributes=attrs,
        attestation=None if identity.attestation is None else identity.attestation.to_json_dict(),
        gpu_uuid=attrs.get("gpu_uuid"),
        enrolled_ns=now_ns,
        needs_verdict=False,
        dirty_seq=0,
    )
    _apply_licence(row, lic)
    session.add(row)
    session.flush()
    audit.append(
        session,
        actor=who.actor,
        action="device.enrol",
        subject=device_id,
        payload={"identity": identity.to_json_dict(), "licence": _licence_payload(row)},
        now_ns=now_ns,
    )
    if row.gpu_uuid:
        others = session.execute(
            select(DeviceRow.id).where(DeviceRow.gpu_uuid == row.gpu_uuid, DeviceRow.id != row.id)
        ).scalars()
        for other in others:
            alerts.raise_alert(
                session,
                kind=alerts.AlertKind.IDENTITY_CHANGE,
                device_id=device_id,
                message=(
                    f"GPU {row.gpu_uuid} was enrolled before as device {other} with another key: "
                    "the device key changed (re-provisioned or cloned)"
                ),
                now_ns=now_ns,
            )
    return row, True


def _refuse_key_reuse(
    session: Session, identity: DeviceIdentity, device_id: str, who: Principal, now_ns: int
) -> None:
    """One key proves one device. The same key under a second device id (other attributes)
    would let one machine answer for both, so the second could be VERIFIED where only the
    first is: refused, with an alert on the enrolled device so its owner and the admins see the
    attempt. The caller already holds the public key, so refusing tells it nothing new."""
    kid = key_id(identity.public_key)
    holder = session.execute(
        select(DeviceRow.id).where(DeviceRow.key_id == kid, DeviceRow.id != device_id).limit(1)
    ).scalar_one_or_none()
    if holder is None:
        return
    alerts.raise_alert(
        session,
        kind=alerts.AlertKind.KEY_REUSE,
        device_id=holder,
        message=(
            f"{who.actor} tried to enrol device key {kid} under another device id ({device_id}): "
            "refused; a copied or shared key"
        ),
        now_ns=now_ns,
    )
    raise KeyReused(
        f"device key {kid} is already enrolled under another device id; one key proves one "
        "device: give this device its own key"
    )


def _refuse_gpu_reuse(session: Session, gpu_id: str | None, device_id: str) -> None:
    """One GPU locates one device: a GPU enrolled for two device ids would let its rounds verify
    both (each round names its device, but the chip is the same)."""
    if gpu_id is None:
        return
    holder = session.execute(
        select(DeviceRow.id).where(DeviceRow.gpu_id == gpu_id, DeviceRow.id != device_id).limit(1)
    ).scalar_one_or_none()
    if holder is not None:
        raise BadInput(
            f"GPU {gpu_id} is already enrolled for another device; one GPU locates one device"
        )


class KeyReused(BadInput):
    """Refused enrolment whose alert is still committed (Service.write keeps it)."""

    keep_writes = True


def _apply_licence(row: DeviceRow, lic: Licence) -> None:
    row.policy, row.bound = lic.policy, lic.bound
    row.declared_country = lic.declared_country
    row.site_lat, row.site_lon = lic.site_lat, lic.site_lon
    row.checkin_interval_s = lic.checkin_interval_s
    row.gpu_id, row.require_locates = lic.gpu_id, lic.require_locates


def _licence_payload(row: DeviceRow) -> dict[str, Any]:
    return {
        "policy": row.policy,
        "bound": row.bound,
        "declared_country": row.declared_country,
        "site_lat": row.site_lat,
        "site_lon": row.site_lon,
        "checkin_interval_s": row.checkin_interval_s,
        "gpu_id": row.gpu_id,
        "require_locates": row.require_locates or "key",
    }


def set_licence(
    session: Session, device_id: str, licence: Licence, who: Principal, now_ns: int
) -> DeviceRow:
    if who.role is not Role.ADMIN:
        raise Forbidden("only an admin token may change a licence")
    row = get_device(session, device_id, who)
    lic = licence.validated()
    _refuse_gpu_reuse(session, lic.gpu_id, device_id)
    _apply_licence(row, lic)
    row.needs_verdict, row.dirty_seq = True, row.dirty_seq + 1
    audit.append(
        session,
        actor=who.actor,
        action="device.licence",
        subject=device_id,
        payload=_licence_payload(row),
        now_ns=now_ns,
    )
    return row


def retire_device(
    session: Session, device_id: str, reason: str, who: Principal, now_ns: int
) -> DeviceRow:
    """Retire a device (admin only): its records and verdict tokens are refused from now on.
    Its history stays; retiring twice is a no-op."""
    if who.role is not Role.ADMIN:
        raise Forbidden("only an admin token may retire a device")
    row = get_device(session, device_id, who)
    if row.retired_ns is not None:
        return row
    row.retired_ns = now_ns
    audit.append(
        session,
        actor=who.actor,
        action="device.retire",
        subject=device_id,
        payload={"reason": reason},
        now_ns=now_ns,
    )
    return row


def licence_of(row: DeviceRow) -> dict[str, Any]:
    return _licence_payload(row)


def get_device(session: Session, device_id: str, who: Principal) -> DeviceRow:
    row = session.get(DeviceRow, device_id)
    # An operator is told "not found" for another operator's device: ids are not disclosed.
    if row is None or not who.sees_device(row.operator):
        raise NotFound(f"no device {device_id!r} visible to this token")
    return row


def device_identity(row: DeviceRow) -> DeviceIdentity:
    return DeviceIdentity.from_json_dict(
        {
            "device_id": row.id,
            "provider": row.provider,
            "trust_level": row.trust_level,
            "public_key": row.public_key,
            "attributes": row.attributes,
            "attestation": row.attestation,
        }
    )
