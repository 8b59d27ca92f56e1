"""Request bodies, validated by pydantic; answers are plain JSON documented in docs/verifier.md."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from lightfence.verifier.config import DEFAULT_CHECKIN_INTERVAL_S


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


_ADDRESS = "host:port agents measure against (UDP); kept as registered when absent"
_GPU_ADDRESS = "host:port of the landmark's GPU-round socket (UDP), when it serves GPU rounds"


class _Position(Strict):
    """Accepts both spellings: `lat`/`lon`, and `latitude`/`longitude` as the registry entry
    that `lightfence landmark init` prints has them, so that entry is registered as it is."""

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for short, long in (("lat", "latitude"), ("lon", "longitude")):
                if short in data and long in data:
                    raise ValueError(f"give {short} or {long}, not both")
        return data


class LandmarkIn(_Position):
    id: str = Field(min_length=1, max_length=255, description="Registry id, e.g. fra1")
    lat: float = Field(
        validation_alias=AliasChoices("lat", "latitude"),
        description="Surveyed WGS84 latitude, degrees (or `latitude`)",
    )
    lon: float = Field(
        validation_alias=AliasChoices("lon", "longitude"),
        description="Surveyed WGS84 longitude, degrees (or `longitude`)",
    )
    position_error_km: float = Field(0.0, ge=0.0, description="Survey uncertainty, km")
    public_key: str = Field(description="Ed25519 public key, 64 hex digits")
    operator: str = Field(min_length=1, max_length=255)
    address: str | None = Field(None, max_length=300, description=_ADDRESS)
    gpu_address: str | None = Field(None, max_length=300, description=_GPU_ADDRESS)


class LandmarkUpdate(_Position):
    lat: float = Field(validation_alias=AliasChoices("lat", "latitude"))
    lon: float = Field(validation_alias=AliasChoices("lon", "longitude"))
    position_error_km: float = Field(0.0, ge=0.0)
    public_key: str
    operator: str = Field(min_length=1, max_length=255)
    address: str | None = Field(None, max_length=300, description=_ADDRESS)
    gpu_address: str | None = Field(None, max_length=300, description=_GPU_ADDRESS)


class LicenceIn(Strict):
    policy: str = Field(
        description="Allowed region, e.g. outside:CN,HK,MO or in:DE (stored canonical: codes "
        "sorted). A '(bound: ..., locates: ...)' suffix must agree with bound and "
        "require_locates; liars are the verifier's setting, not a licence's"
    )
    bound: str = Field("vacuum", description="vacuum (default) or fibre")
    declared_country: str | None = Field(None, description="Where the operator says it is (ISO)")
    site_lat: float | None = None
    site_lon: float | None = None
    checkin_interval_s: int = Field(DEFAULT_CHECKIN_INTERVAL_S, description="Required interval")
    gpu_id: str | None = Field(
        None,
        description="Enrolled GPU (32 hex, from its attestation certificate): GPU-signed rounds "
        "must name it; without one the device's GPU rounds are rejected",
    )
    require_locates: Literal["key", "gpu"] = Field(
        "key", description="gpu: only a verdict from GPU-signed rounds can be VERIFIED"
    )


class DeviceIn(Strict):
    identity: dict[str, Any] = Field(description="DeviceIdentity JSON form (crypto.identity)")
    licence: LicenceIn
    operator: str | None = Field(None, description="Admin only: the operator owning the device")


class PeerRttIn(Strict):
    peer_id: str = Field(min_length=1, max_length=255)
    rtt_ms: float = Field(gt=0.0, lt=10_000.0)
    measured_at_unix_ns: int = Field(ge=0)


class PeerRttsIn(Strict):
    rtts: list[PeerRttIn] = Field(min_length=1, max_length=1000)


class StatusChange(Strict):
    reason: str = Field("", max_length=2000)


class TokenIn(Strict):
    name: str = Field(min_length=1, max_length=255, description="e.g. ci-landmark-fra1")
    role: Literal["admin", "operator", "auditor", "landmark"]
    owner: str | None = Field(
        None, max_length=255, description="Operator name (operator) or landmark id (landmark)"
    )
