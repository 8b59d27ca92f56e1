"""The landmark's configuration file (TOML).

[landmark]
id = "fra1"
operator = "Example IXP"
latitude = 50.1109
longitude = 8.6821
position_error_km = 0.5
key_file = "fra1.key"          # relative to this file; created 0600 by `landmark init`
listen = "0.0.0.0:7800"

[protocol]                     # optional, defaults shown
max_rounds = 10
round_timeout_ms = 1000
max_sessions = 1024
hello_rate_per_s = 20
hello_burst = 40
check_every_round = false      # true: check every round's signature, not only the fastest

[timestamps]
mode = "auto"                  # auto: kernel if the OS gives it, else monotonic (reported)

[verifier]
url = "http://verifier:8000/records"   # optional: records are POSTed here in batches
                                        # (or kafka://HOST:PORT/TOPIC: published to a topic)
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightfence.model.registry import LandmarkEntry, RegistryError, split_address
from lightfence.protocol.landmark_session import LandmarkConfig
from lightfence.protocol.record import MAX_ROUNDS, MAX_RTT_NS
from lightfence.protocol.record_topic import TopicAddressError, is_kafka_url, parse_kafka_url

TIMESTAMP_MODES = ("auto", "kernel", "monotonic")


class ConfigError(ValueError):
    """The config file is missing or wrong; the message names the field to fix."""


@dataclass(frozen=True)
class ServerConfig:
    protocol: LandmarkConfig
    latitude: float
    longitude: float
    position_error_km: float
    key_file: Path
    listen_host: str
    listen_port: int
    operator: str = ""
    timestamps: str = "auto"
    verifier_url: str | None = None
    verifier_token_file: Path | None = None
    gpu_listen: tuple[str, int] | None = None
    """Where to time GPU-signed rounds ([gpu] listen); None: this landmark serves none."""
    gpu_root_file: Path | None = None
    """Root certificate(s) GPU evidence must chain to; None: NVIDIA's vendored device root."""

    def registry_entry(self, public_key: bytes, address: str | None = None) -> LandmarkEntry:
        """This landmark's line for the registry file that agents and auditors use."""
        return LandmarkEntry(
            id=self.protocol.landmark_id,
            public_key=public_key,
            latitude=self.latitude,
            longitude=self.longitude,
            position_error_km=self.position_error_km,
            address=address or f"{self.listen_host}:{self.listen_port}",
            operator=self.operator,
            gpu_address=None
            if self.gpu_listen is None
            else f"{self.gpu_listen[0]}:{self.gpu_listen[1]}",
        )


def _get(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise ConfigError(f"{where}: missing `{key}`")
    v = table[key]
    if (isinstance(v, bool) and kind is not bool) or not isinstance(v, kind):
        raise ConfigError(f"{where}: `{key}` has the wrong type ({type(v).__name__})")
    return v


def load_config(path: Path) -> ServerConfig:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_config(data, base_dir=path.parent)


def parse_config(data: dict[str, Any], base_dir: Path) -> ServerConfig:
    try:
        return _parse_config(data, base_dir)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad config value: {exc}") from None


def _parse_config(data: dict[str, Any], base_dir: Path) -> ServerConfig:
    lm = data.get("landmark")
    if not isinstance(lm, dict):
        raise ConfigError("missing [landmark] table")
    proto = data.get("protocol", {})
    ts = data.get("timestamps", {})
    ver = data.get("verifier", {})
    gpu = data.get("gpu", {})
    tables = (("protocol", proto), ("timestamps", ts), ("verifier", ver), ("gpu", gpu))
    for name, table in tables:
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table")
    num = (int, float)
    try:
        host, port = split_address(_get(lm, "listen", str, "[landmark]"), allow_port_zero=True)
    except RegistryError as exc:
        raise ConfigError(f"[landmark] listen: {exc}") from None
    max_rounds = int(proto.get("max_rounds", 10))
    if not 1 <= max_rounds <= MAX_ROUNDS:
        raise ConfigError(f"[protocol] max_rounds must be in [1, {MAX_ROUNDS}]")
    timeout_ms = float(proto.get("round_timeout_ms", 1000))
    max_timeout_ms = MAX_RTT_NS // 1_000_000  # a longer RTT bounds nothing: records refuse it
    if not 1 <= timeout_ms <= max_timeout_ms:
        raise ConfigError(f"[protocol] round_timeout_ms must be in [1, {max_timeout_ms}]")
    mode = str(ts.get("mode", "auto"))
    if mode not in TIMESTAMP_MODES:
        raise ConfigError(f"[timestamps] mode must be one of {TIMESTAMP_MODES}")
    every = proto.get("check_every_round", False)
    if not isinstance(every, bool):
        raise ConfigError("[protocol] check_every_round must be true or false")
    url = ver.get("url")
    tf = ver.get("token_file")
    if url is not None and not (
        isinstance(url, str) and url.startswith(("http://", "https://", "kafka://"))
    ):
        raise ConfigError(
            "[verifier] url must be an http:// or https:// URL, or kafka://HOST:PORT/TOPIC"
        )
    if isinstance(url, str) and is_kafka_url(url):
        try:
            parse_kafka_url(url)
        except TopicAddressError as exc:
            raise ConfigError(f"[verifier] url: {exc}") from None
    protocol = LandmarkConfig(
        landmark_id=_get(lm, "id", str, "[landmark]"),
        max_rounds=max_rounds,
        round_timeout_ns=int(timeout_ms * 1e6),
        max_sessions=int(proto.get("max_sessions", 1024)),
        hello_rate_per_s=float(proto.get("hello_rate_per_s", 20.0)),
        hello_burst=int(proto.get("hello_burst", 40)),
        check_every_round=every,
    )
    cfg = ServerConfig(
        protocol=protocol,
        latitude=float(_get(lm, "latitude", num, "[landmark]")),
        longitude=float(_get(lm, "longitude", num, "[landmark]")),
        position_error_km=float(lm.get("position_error_km", 0.0)),
        key_file=base_dir / _get(lm, "key_file", str, "[landmark]"),
        listen_host=host,
        listen_port=port,
        operator=str(lm.get("operator", "")),
        timestamps=mode,
        verifier_url=url,
        verifier_token_file=None if tf is None else base_dir / str(tf),
        gpu_listen=_gpu_listen(gpu),
        gpu_root_file=None if gpu.get("root_file") is None else base_dir / str(gpu["root_file"]),
    )
    cfg.registry_entry(bytes(32))  # validates id, position and error radius
    return cfg


def _gpu_listen(gpu: dict[str, Any]) -> tuple[str, int] | None:
    if "listen" not in gpu:
        return None
    try:
        return split_address(_get(gpu, "listen", str, "[gpu]"), allow_port_zero=True)
    except RegistryError as exc:
        raise ConfigError(f"[gpu] listen: {exc}") from None


def config_toml(
    landmark_id: str,
    latitude: float,
    longitude: float,
    key_file: str,
    listen: str,
    operator: str = "",
    position_error_km: float = 0.0,
) -> str:
    """A starter config file for `lightfence landmark init`."""

    def q(text: str) -> str:
        return json.dumps(text)  # a JSON string is a valid TOML basic string

    return (
        f"[landmark]\nid = {q(landmark_id)}\noperator = {q(operator)}\n"
        f"latitude = {latitude!r}\nlongitude = {longitude!r}\n"
        f"position_error_km = {position_error_km!r}\n"
        f"key_file = {q(key_file)}\nlisten = {q(listen)}\n\n"
        "[protocol]\nmax_rounds = 10\nround_timeout_ms = 1000\nmax_sessions = 1024\n"
        "hello_rate_per_s = 20\nhello_burst = 40\ncheck_every_round = false\n\n"
        '[timestamps]\nmode = "auto"\n'
    )
