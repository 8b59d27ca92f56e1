"""GET /stream: the stream workers' lag and records/s as the dashboard's Stream panel reads it.

The broker part runs against the shared test broker (LIGHTFENCE_KAFKA_BOOTSTRAP), with a topic
and group of its own; the rate's arithmetic is checked on its own (OffsetRate) with given times.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lightfence.verifier.api.app import create_app
from lightfence.verifier.auth import Role
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.stream_lag import MIN_RATE_SPAN_S, RATE_WINDOW_S, OffsetRate
from stream_lag_support import commit, create_topic, produce, shared_bootstrap, unique
from verifier_support import token


def _client(tmp_path: Path, stream: str | None = None, group: str = "g") -> TestClient:
    config = VerifierConfig(
        db_url=f"sqlite:///{tmp_path / 'v.db'}", stream_url=stream, stream_group=group
    )
    return TestClient(create_app(config, worker=False))


def _bearer(client: TestClient, role: Role, owner: str | None = None) -> dict[str, str]:
    service = client.app.state.service  # type: ignore[attr-defined]
    return {"authorization": f"Bearer {token(service, role.value, role, owner)}"}


def test_no_stream_configured_says_so(tmp_path: Path) -> None:
    with _client(tmp_path) as client:
        got = client.get("/stream", headers=_bearer(client, Role.AUDITOR))
    assert got.status_code == 200
    assert got.json() == {"configured": False}


def test_only_admin_and_auditor_read_it(tmp_path: Path) -> None:
    # No broker is contacted before the role check: an unreachable one is enough here.
    with _client(tmp_path, "kafka://127.0.0.1:1/records") as client:
        assert client.get("/stream").status_code == 401
        bad = {"authorization": "Bearer lft_notatoken"}
        assert client.get("/stream", headers=bad).status_code == 401
        for role, owner in ((Role.OPERATOR, "acme"), (Role.LANDMARK, "fra1")):
            got = client.get("/stream", headers=_bearer(client, role, owner))
            assert got.status_code == 403, (role, got.text)
            assert "admin, auditor" in got.json()["detail"]


def test_lag_and_rate_from_the_broker(tmp_path: Path) -> None:
    bootstrap = shared_bootstrap()
    topic, group = unique("lf-stream-api"), unique("lf-stream-api-g")
    create_topic(bootstrap, topic, 3)
    produce(bootstrap, topic, {0: 5, 1: 3, 2: 0})
    commit(bootstrap, topic, group, {0: 2})  # partition 1: no commit yet; 2: empty
    with _client(tmp_path, f"kafka://{bootstrap}/{topic}", group) as client:
        auditor, admin = _bearer(client, Role.AUDITOR), _bearer(client, Role.ADMIN)
        first = client.get("/stream", headers=auditor).json()
        commit(bootstrap, topic, group, {0: 5, 1: 1})
        produce(bootstrap, topic, {2: 4})
        time.sleep(MIN_RATE_SPAN_S)  # two reads at least this far apart give a rate
        second = client.get("/stream", headers=admin).json()
    assert first["configured"] is True
    assert (first["topic"], first["group"]) == (topic, group)
    assert first["partitions"] == [
        {"partition": 0, "committed": 2, "end": 5, "lag": 3},
        {"partition": 1, "committed": 0, "end": 3, "lag": 3},
        {"partition": 2, "committed": 0, "end": 0, "lag": 0},
    ]
    assert first["lag_total"] == 6
    assert first["records_per_s"] is None and first["rate_span_s"] is None  # one read: no rate
    assert [p["lag"] for p in second["partitions"]] == [0, 2, 4]
    assert second["lag_total"] == 6
    span = second["rate_span_s"]
    assert span >= MIN_RATE_SPAN_S
    assert second["records_per_s"] == pytest.approx(4 / span)
    assert second["produced_per_s"] == pytest.approx(4 / span)


def test_unreachable_broker_is_a_clear_503(tmp_path: Path) -> None:
    with _client(tmp_path, "kafka://127.0.0.1:1/records") as client:
        got = client.get("/stream", headers=_bearer(client, Role.ADMIN))
    assert got.status_code == 503
    assert "127.0.0.1:1" in got.json()["detail"]


def _lag(committed: list[int], end: list[int], topic: str = "t") -> dict[str, object]:
    parts = [
        {"partition": i, "committed": c, "end": e, "lag": e - c}
        for i, (c, e) in enumerate(zip(committed, end, strict=True))
    ]
    return {"topic": topic, "group": "g", "partitions": parts}


def test_rate_arithmetic() -> None:
    rate = OffsetRate()
    assert rate.update(_lag([0, 0], [10, 10]), 100.0)["records_per_s"] is None
    assert rate.update(_lag([5, 5], [10, 10]), 100.5)["records_per_s"] is None  # under 1 s
    got = rate.update(_lag([10, 10], [30, 10]), 102.0)
    assert got == {"records_per_s": 10.0, "produced_per_s": 10.0, "rate_span_s": 2.0}
    # Only the last minute counts: the read at 100 s is forgotten, the one at 102 s is oldest.
    got = rate.update(_lag([40, 10], [60, 10]), 100.0 + RATE_WINDOW_S + 1.0)
    assert got["rate_span_s"] == pytest.approx(RATE_WINDOW_S - 1.0)
    # Offsets going back (group reset, topic remade) or another topic: no rate, start over.
    assert rate.update(_lag([0, 0], [60, 10]), 170.0)["records_per_s"] is None
    assert rate.update(_lag([0, 0], [60, 10], topic="u"), 175.0)["records_per_s"] is None
    assert rate.update(_lag([6, 0], [60, 10], topic="u"), 178.0)["records_per_s"] == 2.0


def test_a_burst_of_readers_costs_the_broker_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight dashboards at once (or one token polling hard): one broker read, its answer for all;
    and an unreachable broker makes them wait once, not eight times over."""
    import asyncio

    import httpx

    from lightfence.verifier.api import routes_stream
    from lightfence.verifier.stream_lag import LagUnavailable

    reads: list[str] = []

    def slow_read(source: object) -> dict[str, object]:
        reads.append("read")
        time.sleep(0.3)
        if len(reads) > 1:
            raise LagUnavailable("broker 127.0.0.1:1 did not answer")
        return _lag([1, 2], [3, 4])

    monkeypatch.setattr(routes_stream, "group_lag", slow_read)
    with _client(tmp_path, "kafka://127.0.0.1:1/records") as client:
        headers = _bearer(client, Role.ADMIN)
        app = client.app

        async def bursts() -> tuple[list[httpx.Response], list[httpx.Response]]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                gets = [c.get("/stream", headers=headers) for _ in range(8)]
                first = await asyncio.gather(*gets)
                gets = [c.get("/stream", headers=headers) for _ in range(8)]  # a later burst
                return first, await asyncio.gather(*gets)

        first, second = asyncio.run(bursts())
        assert [r.status_code for r in first] == [200] * 8 and len(reads) == 2
        assert {tuple(p["lag"] for p in r.json()["partitions"]) for r in first} == {(2, 2)}
        assert [r.status_code for r in second] == [503] * 8
        assert "did not answer" in second[0].json()["detail"]
