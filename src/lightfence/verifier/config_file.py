"""`lightfence serve` settings from three layers: a TOML file, the environment, command-line flags.

Each key below can be written in the file (`port = 8080`), set as LIGHTFENCE_<KEY> in the
environment (`LIGHTFENCE_PORT=8080`), or given as a flag (`--port 8080`); a flag overrides the
environment, which overrides the file, which overrides the default. Paths in the file are
relative to the file; paths from the environment or a flag are relative to the working
directory. A list in the environment is separated by semicolons (a policy text holds commas).
deploy/verifier.toml is a commented example; docs/deploy.md says how to run it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lightfence.verifier.config import VerifierConfig

ENV_PREFIX = "LIGHTFENCE_"
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigFileError(ValueError):
    """A setting that cannot be used; the message names the key, where it came from and why."""


@dataclass(frozen=True)
class ServeSettings:
    """Everything `lightfence serve` needs before it builds the VerifierConfig."""

    host: str = "127.0.0.1"
    """Address to listen on (0.0.0.0: every interface)."""
    port: int = 8080
    db_url: str = "sqlite:///lightfence-verifier.db"
    log_level: str = "info"
    webhook_url: str | None = None
    """POST each new alert as JSON here."""
    signing_key: str = "lightfence-verifier.key"
    """Ed25519 key that signs verdict tokens and checkpoints (created 0600 if absent)."""
    checkpoints: str = "lightfence-audit-checkpoints.jsonl"
    checkpoint_webhook_url: str | None = None
    records_per_s: float = 500.0
    rejections_per_s: float = 1.0
    write_requests_per_s: float = 20.0
    gpu_root: str | None = None
    gpu_calibration: str | None = None
    gpu_calibration_keys: tuple[str, ...] = ()
    tls_certfile: str | None = None
    """PEM certificate chain: with tls_keyfile, serve HTTPS itself (uvicorn's TLS)."""
    tls_keyfile: str | None = None
    liars: str = "auto"
    """Lying landmarks every verdict must survive: a whole number, or auto (1 for a device
    measured by 4 or more landmarks, else 0); docs/robust.md."""
    token_ttl_s: float = 300.0
    """Lifetime of a gate's verdict token: a verdict that flips reaches every gate within this."""
    stream_url: str | None = None
    """kafka://HOST:PORT/TOPIC that `lightfence stream-worker`s consume into this database;
    GET /stream then shows their consumer lag (docs/fleet.md)."""
    stream_group: str = "lightfence-verifier"
    """The stream workers' consumer group."""
    preload_policies: tuple[str, ...] = ()
    """Policies whose regions are built before `serve` says it listens. Building a large
    country's region takes seconds (15 s for outside:CN,HK,MO on a busy 2-core host); without
    this the first enrolment or verdict under it pays that, and a client may time out."""

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ConfigFileError(f"port must be in 0..65535 (0: any free port), not {self.port}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigFileError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if not (self.liars == "auto" or self.liars.isdigit()):
            raise ConfigFileError(f"liars must be auto or a whole number >= 0, not {self.liars!r}")
        if not self.token_ttl_s > 0:
            raise ConfigFileError("token_ttl_s must be positive")
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ConfigFileError("tls_certfile and tls_keyfile go together: set both or neither")

    @property
    def scheme(self) -> str:
        return "https" if self.tls_certfile else "http"


PATH_KEYS = frozenset(
    {"signing_key", "checkpoints", "gpu_root", "gpu_calibration", "tls_certfile", "tls_keyfile"}
)
FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in fields(ServeSettings)}
KEYS = tuple(FIELD_TYPES)


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def _convert(key: str, value: object, source: str) -> object:
    """`value` as the type `key` needs; strings (from the environment) are parsed."""
    kind = FIELD_TYPES[key]
    where = f"{key} ({source})"
    if kind.startswith("tuple"):
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(";") if v.strip())
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigFileError(f"{where} must be a list of strings")
    if kind == "int":
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise ConfigFileError(f"{where} must be a whole number, not {value!r}") from None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigFileError(f"{where} must be a whole number, not {value!r}")
    if kind == "float":
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise ConfigFileError(f"{where} must be a number, not {value!r}") from None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigFileError(f"{where} must be a number, not {value!r}")
    if key == "liars" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # `liars = 1` in the file, like "1" from the environment
    if not isinstance(value, str):
        raise ConfigFileError(f"{where} must be a string, not {value!r}")
    return value.strip().lower() if key == "liars" else value


def read_file(path: Path) -> dict[str, object]:
    """The settings a TOML file gives, typed, with its relative paths made absolute."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigFileError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ConfigFileError(
            f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(KEYS)}"
        )
    out: dict[str, object] = {}
    base = path.resolve().parent
    for key, value in data.items():
        converted = _convert(key, value, str(path))
        if key in PATH_KEYS and isinstance(converted, str):
            converted = str(base / converted)
        out[key] = converted
    return out


def read_env(environ: Mapping[str, str]) -> dict[str, object]:
    """The settings LIGHTFENCE_<KEY> variables give (empty ones are ignored)."""
    return {
        key: _convert(key, environ[env_name(key)], env_name(key))
        for key in KEYS
        if environ.get(env_name(key), "") != ""
    }


def resolve(
    config_file: Path | None,
    flags: Mapping[str, object],
    environ: Mapping[str, str] | None = None,
    normalise_db_url: Callable[[str], str] = lambda url: url,
) -> ServeSettings:
    """Defaults < file < environment < flags. `flags` holds only what was given (not None)."""
    layers: dict[str, Any] = {}
    if config_file is not None:
        layers |= read_file(config_file)
    layers |= read_env(os.environ if environ is None else environ)
    for key, value in flags.items():
        if key not in FIELD_TYPES:
            raise ConfigFileError(f"unknown setting {key}")  # a programming error in the CLI
        if value is not None and value != ():
            layers[key] = _convert(key, value, "command line")
    if "db_url" in layers:
        layers["db_url"] = normalise_db_url(str(layers["db_url"]))
    return ServeSettings(**layers)


def verifier_config(settings: ServeSettings) -> VerifierConfig:
    """The service's configuration from resolved settings: what `serve` runs with, and what
    `reverify` must decide with (the same liars, GPU root and calibration).

    Raises ValueError for a setting VerifierConfig refuses."""
    return VerifierConfig(
        db_url=settings.db_url,
        webhook_url=settings.webhook_url,
        signing_key_path=settings.signing_key,
        checkpoint_path=settings.checkpoints,
        checkpoint_webhook_url=settings.checkpoint_webhook_url,
        records_per_s=settings.records_per_s,
        records_burst=max(1000, int(60 * settings.records_per_s)),
        rejections_per_s=settings.rejections_per_s,
        write_requests_per_s=settings.write_requests_per_s,
        gpu_root_file=settings.gpu_root,
        gpu_calibration_file=settings.gpu_calibration,
        gpu_calibration_keys=settings.gpu_calibration_keys,
        liars=int(settings.liars) if settings.liars.isdigit() else settings.liars,
        token_ttl_s=settings.token_ttl_s,
        stream_url=settings.stream_url,
        stream_group=settings.stream_group,
    )
