"""The landmark registry file: who the landmarks are, where, and their public keys.

One JSON file serves the agent (`--landmarks`: where to measure), the evidence bundle (the keys
and positions the records are checked against) and the auditor (`--landmark-keys`):

    {"landmarks": [{"id": "fra1", "address": "192.0.2.10:7800", "public_key": "<64 hex>",
                    "latitude": 50.11, "longitude": 8.68, "position_error_km": 0.5,
                    "operator": "Example IXP"}]}

`address` is needed only to measure; `operator` is informational. `gpu_address` (optional) is
where the landmark times GPU-signed rounds (docs/trust.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightfence.crypto.keys import key_id, parse_public_key_hex


class RegistryError(ValueError):
    """The registry file is missing or malformed; the message names the entry and field."""


@dataclass(frozen=True)
class LandmarkEntry:
    id: str
    public_key: bytes
    latitude: float
    longitude: float
    position_error_km: float = 0.0
    """Survey uncertainty of the position; the physics core widens the landmark's caps by it."""
    address: str | None = None
    """host:port the landmark listens on (UDP)."""
    operator: str = ""
    gpu_address: str | None = None
    """host:port of the landmark's GPU-round socket (UDP), when it serves GPU rounds."""

    def __post_init__(self) -> None:
        if not self.id or len(self.id.encode()) > 255:
            raise RegistryError("landmark id must be 1 to 255 UTF-8 bytes")
        for name, v, lim in (("latitude", self.latitude, 90), ("longitude", self.longitude, 180)):
            if not (math.isfinite(v) and -lim <= v <= lim):
                raise RegistryError(f"landmark {self.id}: {name} {v} out of range")
        if not (math.isfinite(self.position_error_km) and self.position_error_km >= 0):
            raise RegistryError(f"landmark {self.id}: position_error_km must be >= 0")
        if self.address is not None:
            split_address(self.address)
        if self.gpu_address is not None:
            split_address(self.gpu_address)

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def host_port(self) -> tuple[str, int]:
        if self.address is None:
            raise RegistryError(f"landmark {self.id} has no address to measure against")
        return split_address(self.address)

    def to_json_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "public_key": self.public_key.hex(),
            "latitude": self.latitude,
            "longitude": self.longitude,
            "position_error_km": self.position_error_km,
        }
        if self.address is not None:
            d["address"] = self.address
        if self.operator:
            d["operator"] = self.operator
        if self.gpu_address is not None:
            d["gpu_address"] = self.gpu_address
        return d

    @classmethod
    def from_json_dict(cls, d: Mapping[str, Any]) -> LandmarkEntry:
        name = d.get("id", "?") if isinstance(d, Mapping) else "?"
        try:
            return cls(
                id=str(d["id"]),
                public_key=parse_public_key_hex(str(d["public_key"])),
                latitude=_number(d["latitude"]),
                longitude=_number(d["longitude"]),
                position_error_km=_number(d.get("position_error_km", 0.0)),
                address=None if d.get("address") is None else str(d["address"]),
                operator=str(d.get("operator", "")),
                gpu_address=None if d.get("gpu_address") is None else str(d["gpu_address"]),
            )
        except KeyError as exc:
            raise RegistryError(f"landmark {name}: missing field {exc}") from None
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"landmark {name}: {exc}") from None


def _number(v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"expected a number, got {v!r}")
    return float(v)


def split_address(address: str, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port". Port 0 (any free port) only to listen."""
    host, sep, port = address.rpartition(":")
    lowest = 0 if allow_port_zero else 1
    if not sep or not host or not port.isdigit() or not lowest <= int(port) < 65536:
        raise RegistryError(f"address must be host:port, got {address!r}")
    if not all(c.isprintable() and not c.isspace() for c in host):
        raise RegistryError(f"address host holds white space or a control character: {address!r}")
    return host.strip("[]"), int(port)


_UNSPECIFIED_HOSTS = frozenset({"0.0.0.0", "::", "", "*"})


def reachable_address(address: str) -> tuple[str, int]:
    """("host", port) of an address others can send to: a wildcard listen address such as
    0.0.0.0:7800 says where a landmark listens, not where agents reach it."""
    host, port = split_address(address)
    if host in _UNSPECIFIED_HOSTS:
        raise RegistryError(
            f"{address!r} is a listen-on-all address, not one agents can reach: give the "
            "landmark's public host:port"
        )
    return host, port


def parse_registry(data: object) -> dict[str, LandmarkEntry]:
    if not isinstance(data, Mapping) or not isinstance(data.get("landmarks"), list):
        raise RegistryError('a landmark registry is a JSON object {"landmarks": [...]}')
    out: dict[str, LandmarkEntry] = {}
    for item in data["landmarks"]:
        if not isinstance(item, Mapping):
            raise RegistryError("each landmark must be a JSON object")
        entry = LandmarkEntry.from_json_dict(item)
        if entry.id in out:
            raise RegistryError(f"landmark {entry.id} is listed twice")
        out[entry.id] = entry
    return out


def load_registry(path: Path) -> dict[str, LandmarkEntry]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RegistryError(f"landmark registry {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"cannot read landmark registry {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{path} is not valid JSON: {exc}") from None
    return parse_registry(data)


def registry_json(entries: Iterable[LandmarkEntry]) -> dict[str, Any]:
    return {"landmarks": [e.to_json_dict() for e in entries]}
