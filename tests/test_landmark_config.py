from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest

from http_stub import stub_verifier
from lightfence.agent.measure import RetryPolicy, measure_landmark
from lightfence.evidence.submit import post_json, read_token
from lightfence.identity.device import software_identity
from lightfence.landmark.config import ConfigError, config_toml, load_config, parse_config
from lightfence.landmark.server import LandmarkServer
from lightfence.model.registry import LandmarkEntry, RegistryError, parse_registry
from lightfence.protocol.landmark_session import LandmarkConfig, LandmarkEndpoint
from lightfence.protocol.record import MeasurementRecord
from record_factory import seeded_key


def test_starter_config_round_trips(tmp_path: Path) -> None:
    text = config_toml('we"ird', 50.1, 8.6, "k.key", "0.0.0.0:7800", "Op \\ name", 0.5)
    (tmp_path / "c.toml").write_text(text)
    cfg = load_config(tmp_path / "c.toml")
    assert cfg.protocol.landmark_id == 'we"ird' and cfg.operator == "Op \\ name"
    assert cfg.key_file == tmp_path / "k.key"
    assert cfg.protocol.round_timeout_ns == 1_000_000_000 and cfg.timestamps == "auto"
    assert cfg.protocol.check_every_round is False


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"landmark": {}}, "missing `listen`"),
        ({"protocol": {"max_rounds": 65}}, "max_rounds"),
        ({"protocol": {"round_timeout_ms": "fast"}}, "bad config value"),
        ({"protocol": {"round_timeout_ms": 10_001}}, r"round_timeout_ms must be in \[1, 10000\]"),
        ({"timestamps": {"mode": "gps"}}, "mode"),
        ({"protocol": {"check_every_round": "yes"}}, "check_every_round"),
        ({"verifier": {"url": "ftp://x"}}, "http"),
        ({"landmark": {"latitude": 91.0}}, "latitude"),
        ({"landmark": {"listen": "nowhere"}}, "host:port"),
        ({"landmark": {"id": 5}}, "wrong type"),
    ],
)
def test_config_errors_name_the_field(patch: dict[str, dict[str, object]], match: str) -> None:
    data = tomllib.loads(config_toml("fra1", 50.1, 8.6, "k.key", "0.0.0.0:7800"))
    for table, values in patch.items():
        if values:
            data.setdefault(table, {}).update(values)
        else:
            data[table] = {"id": "x"}
    with pytest.raises(ConfigError, match=match):
        parse_config(data, Path("."))


def test_missing_or_broken_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.toml")
    (tmp_path / "bad.toml").write_text("[landmark\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_registry_is_strict() -> None:
    key = seeded_key("r").public_bytes.hex()
    good = {"id": "a", "public_key": key, "latitude": 1, "longitude": 2, "address": "h:1"}
    assert parse_registry({"landmarks": [good]})["a"].host_port() == ("h", 1)
    for bad, match in [
        ({**good, "public_key": "00"}, "hex digits"),
        ({**good, "latitude": True}, "number"),
        ({**good, "address": "h:0"}, "host:port"),
        ({k: v for k, v in good.items() if k != "longitude"}, "missing"),
    ]:
        with pytest.raises(RegistryError, match=match):
            parse_registry({"landmarks": [bad]})
    with pytest.raises(RegistryError, match="twice"):
        parse_registry({"landmarks": [good, good]})
    with pytest.raises(RegistryError):
        parse_registry([good])


def test_landmark_posts_its_records_to_the_verifier_with_its_token() -> None:
    key, dev = seeded_key("lm-post"), seeded_key("device")

    async def main(url: str) -> MeasurementRecord:
        endpoint = LandmarkEndpoint(LandmarkConfig("post"), key)
        server = LandmarkServer.bind(
            endpoint, "127.0.0.1", 0, verifier_url=url + "/records", verifier_token="t0k"
        )
        stop = asyncio.Event()
        task = asyncio.create_task(server.serve(stop))
        host, port = server.address
        entry = LandmarkEntry("post", key.public_bytes, 0, 0, 0, f"{host}:{port}")
        retry = RetryPolicy(attempts=2, attempt_timeout_s=3)
        result = await measure_landmark(entry, dev, software_identity(dev), 3, retry)
        stop.set()
        await task  # graceful shutdown waits for the submission
        assert server.submitter is not None
        assert server.submitter.counters.records_submitted == 1
        assert result.record is not None
        return result.record

    with stub_verifier() as (url, received):
        record = asyncio.run(main(url))
    ((path, auth, body),) = received
    assert path == "/records" and auth == "Bearer t0k"
    assert [MeasurementRecord.from_json_dict(r) for r in body["records"]] == [record]


def test_token_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIGHTFENCE_VERIFIER_TOKEN", "from-env")
    assert read_token() == "from-env"
    (tmp_path / "t").write_text("from-file\n")
    assert read_token(tmp_path / "t") == "from-file"
    with pytest.raises(ValueError, match="cannot read"):
        read_token(tmp_path / "missing")
    with pytest.raises(ValueError, match="http"):
        post_json("file:///etc/passwd", {})
