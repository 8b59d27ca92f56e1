"""The landmark's delivery of records to a verifier: batches, retries, bounds (real HTTP)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lightfence.landmark.submitter import RecordSubmitter
from lightfence.protocol.record import MeasurementRecord
from record_factory import make_signed_record, seeded_key

LANDMARK, DEVICE = seeded_key("lm-submit"), seeded_key("dev-submit")


def _records(n: int) -> list[MeasurementRecord]:
    return [
        make_signed_record(LANDMARK, DEVICE, session_id=i.to_bytes(16, "big")) for i in range(n)
    ]


@contextmanager
def verifier(statuses: list[int]) -> Iterator[tuple[str, list[list[str]]]]:
    """A verifier answering the given statuses in turn (then 200); yields (URL, batches), each
    batch the session ids of the records it carried."""
    batches: list[list[str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status = statuses.pop(0) if statuses else 200
            if status == 200:
                batches.append([r["session_id"] for r in body["records"]])
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/records", batches
    finally:
        server.shutdown()
        server.server_close()


async def _deliver(sub: RecordSubmitter, records: list[MeasurementRecord]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(sub.run(stop))
    for r in records:
        sub.add(r)
    stop.set()
    await asyncio.wait_for(task, timeout=30)


def test_records_go_in_batches_in_order_each_once() -> None:
    records = _records(1_100)
    with verifier([]) as (url, batches):
        sub = RecordSubmitter(url, "t", max_batch=500, linger_s=0.01)
        asyncio.run(_deliver(sub, records))
    assert [len(b) for b in batches] == [500, 500, 100]
    assert [s for b in batches for s in b] == [r.session_id.hex() for r in records]
    assert sub.counters.records_submitted == 1_100 and sub.counters.batches_submitted == 3
    assert sub.pending == 0


def test_an_unreachable_verifier_is_retried_until_it_answers() -> None:
    records = _records(30)
    with verifier([503, 503]) as (url, batches):
        sub = RecordSubmitter(url, None, linger_s=0.01)

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
    assert [s for b in batches for s in b] == [r.session_id.hex() for r in records]


def test_a_refused_batch_is_counted_not_retried() -> None:
    with verifier([403]) as (url, batches):
        sub = RecordSubmitter(url, "wrong-token", linger_s=0.01)
        asyncio.run(_deliver(sub, _records(5)))
    assert batches == [] and sub.counters.records_refused == 5 and sub.pending == 0


def test_the_backlog_is_bounded_and_drops_are_counted() -> None:
    sub = RecordSubmitter("http://127.0.0.1:9/records", None, max_backlog=10)
    for r in _records(25):
        sub.add(r)
    assert sub.pending == 10 and sub.counters.records_dropped == 15
