"""Batch re-verification on Ray: stored signed records from the real PostgreSQL, re-checked in
Ray tasks, verdicts into the verifier's own history (the in-process engine is tested in
test_stream_signed.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lightfence.fleet.reverify import reverify
from stream_signed_support import check_store, enrol_fleet, pg_schema, service_for, signed_records
from verifier_support import ADMIN


@pytest.fixture(scope="module")
def ray_started() -> Iterator[None]:
    from lightfence.fleet.engine_ray import start_ray, stop_ray

    start_ray(2)
    yield
    stop_ray()


def test_reverify_on_ray_lands_in_the_same_history(ray_started: None) -> None:
    with pg_schema() as url:
        service = service_for(url)
        try:
            labels = enrol_fleet(service, 5)
            records = signed_records(labels, rounds=2)
            service.ingest(records, ADMIN)
            service.recompute_all()
            report = reverify(service, engine="ray", chunk=2)  # three Ray tasks
            assert (report.devices, report.records, report.verdicts) == (5, 40, 5)
            assert report.failed == []
            check_store(url, records, reverified=True)
        finally:
            service.close()
