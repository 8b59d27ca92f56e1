"""The landmark's delivery of records to a verifier: batches, retries, bounds (real HTTP)."""

from __future__ import annotations

import asyncio
from typing import Any

from http_stub import stub_verifier
from lightfence.landmark.submitter import RecordSubmitter
from lightfence.protocol.record import MeasurementRecord
from record_factory import make_signed_record, seeded_key

LANDMARK, DEVICE = seeded_key("lm-submit"), seeded_key("dev-submit")


def _records(n: int) -> list[MeasurementRecord]:
    return [
        make_signed_record(LANDMARK, DEVICE, session_id=i.to_bytes(16, "big")) for i in range(n)
    ]


def _batches(received: list[tuple[str, str, Any]]) -> list[list[str]]:
    """The session ids of the records in each POST the stub verifier stored."""
    return [[r["session_id"] for r in body["records"]] for _, _, body in received]


async def _deliver(sub: RecordSubmitter, records: list[MeasurementRecord]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(sub.run(stop))
    for r in records:
        sub.add(r)
    stop.set()
    await asyncio.wait_for(task, timeout=30)


def test_records_go_in_batches_in_order_each_once() -> None:
    records = _records(1_100)
    with stub_verifier(200) as (url, received):
        sub = RecordSubmitter(url + "/records", "t", max_batch=500, linger_s=0.01)
        asyncio.run(_deliver(sub, records))
    batches = _batches(received)
    assert [len(b) for b in batches] == [500, 500, 100]
    assert [s for b in batches for s in b] == [r.session_id.hex() for r in records]
    assert sub.counters.records_submitted == 1_100 and sub.counters.batches_submitted == 3
    assert sub.pending == 0


def test_an_unreachable_verifier_is_retried_until_it_answers() -> None:
    records = _records(30)
    with stub_verifier(200, failures=[503, 503]) as (url, received):
        sub = RecordSubmitter(url + "/records", None, linger_s=0.01)

        async def main() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(sub.run(stop))
            for r in records:
                sub.add(r)
            while sub.counters.records_submitted < len(records):
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.wait_for(task, timeout=10)

        asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert sub.counters.submit_errors == 2
    assert [s for b in _batches(received) for s in b] == [r.session_id.hex() for r in records]


def test_a_refused_batch_is_counted_not_retried() -> None:
    with stub_verifier(200, failures=[403]) as (url, received):
        sub = RecordSubmitter(url + "/records", "wrong-token", linger_s=0.01)
        asyncio.run(_deliver(sub, _records(5)))
    assert received == [] and sub.counters.records_refused == 5 and sub.pending == 0


def test_the_backlog_is_bounded_and_drops_are_counted() -> None:
    sub = RecordSubmitter("http://127.0.0.1:9/records", None, max_backlog=10)
    for r in _records(25):
        sub.add(r)
    assert sub.pending == 10 and sub.counters.records_dropped == 15
