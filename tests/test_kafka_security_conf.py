"""$LIGHTFENCE_KAFKA_CONFIG: the broker's authentication and TLS for every lightfence Kafka client,
and nothing else (delivery settings stay lightfence's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightfence.protocol.record_topic import (
    KAFKA_CONFIG_ENV,
    KafkaConfigError,
    RecordPublisher,
    kafka_security_conf,
)


def test_unset_means_no_settings() -> None:
    assert kafka_security_conf({}) == {}


def test_security_settings_are_read(tmp_path: Path) -> None:
    f = tmp_path / "client.properties"
    f.write_text(
        "# the landmark's principal\n"
        "security.protocol=SASL_SSL\n"
        "sasl.mechanism = SCRAM-SHA-512\n"
        "sasl.username=lm-fra1\n"
        "sasl.password=s3cr=t\n"
        "ssl.ca.location=/etc/lightfence/kafka-ca.pem\n"
    )
    conf = kafka_security_conf({KAFKA_CONFIG_ENV: str(f)})
    assert conf == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "lm-fra1",
        "sasl.password": "s3cr=t",
        "ssl.ca.location": "/etc/lightfence/kafka-ca.pem",
    }


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("enable.idempotence=false\n", "not a security setting"),
        ("acks=1\n", "not a security setting"),
        ("security.protocol\n", "key=value"),
    ],
)
def test_anything_else_is_refused_with_the_line(tmp_path: Path, text: str, says: str) -> None:
    f = tmp_path / "client.properties"
    f.write_text(text)
    with pytest.raises(KafkaConfigError, match=says) as caught:
        kafka_security_conf({KAFKA_CONFIG_ENV: str(f)})
    assert f"{f}:1" in str(caught.value)


def test_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KafkaConfigError, match="cannot read"):
        kafka_security_conf({KAFKA_CONFIG_ENV: str(tmp_path / "nope")})


def test_the_publisher_takes_them_and_keeps_its_delivery_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "client.properties"
    f.write_text("security.protocol=SSL\n")
    monkeypatch.setenv(KAFKA_CONFIG_ENV, str(f))
    publisher = RecordPublisher("127.0.0.1:1", "records")
    conf = publisher._conf
    assert conf["security.protocol"] == "SSL"
    assert conf["enable.idempotence"] is True and conf["acks"] == "all"
