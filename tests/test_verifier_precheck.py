"""Signature checks made before the write lock (verifier.precheck) decide exactly as in line."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from lightfence.protocol.record import MeasurementRecord
from lightfence.verifier.clock import now_ns
from lightfence.verifier.ingest import Ingestor, RejectReason, record_hash
from lightfence.verifier.precheck import PRECHECK_MIN_RECORDS, Checked, Prechecked, precheck
from record_factory import seeded_key
from verifier_support import ADMIN, Fleet, db_url, make_fleet

__all__ = ["db_url"]


@pytest.fixture
def fleet(db_url: str) -> Iterator[Fleet]:
    f = make_fleet(db_url)
    yield f
    f.service.close()


def _batch(fleet: Fleet) -> tuple[list[MeasurementRecord], dict[int, str]]:
    records, forged = [], {}
    for i in range(2 * PRECHECK_MIN_RECORDS):
        landmark = ["fra1", "par1", "ams1"][i % 3]
        rec = fleet.record(landmark, 0.5 + i / 10)
        if i % 5 == 1:
            rec, forged[i] = replace(rec, landmark_signature=bytes(64)), "landmark signature"
        elif i % 5 == 3:  # a landmark vouching for an answer the device key never gave
            rec = replace(rec, device_signature=bytes(64)).signed_by(fleet.landmark_keys[landmark])
            forged[i] = "device signature"
        elif i % 7 == 6:  # both: the landmark's is checked first, so it is the reason
            rec = replace(rec, landmark_signature=bytes(64), device_signature=bytes(64))
            forged[i] = "landmark signature"
        records.append(rec)
    return records, forged


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_a_batch_checked_on_any_number_of_threads_decides_every_record_as_in_line(
    fleet: Fleet, threads: int
) -> None:
    records, forged = _batch(fleet)
    with fleet.service.read() as s:
        checked = precheck(s, records, [record_hash(r) for r in records], threads)
    assert len(checked.results) == len(records)
    assert {i for i, c in checked.results.items() if c.error is not None} == set(forged)
    outcomes = fleet.service.ingest(records, ADMIN)
    for i, out in enumerate(outcomes):
        if i in forged:
            assert out.status == "rejected" and out.reason is RejectReason.BAD_SIGNATURE
            assert forged[i] in out.detail
        else:
            assert out.status == "stored", out
    # The same batch again: every record is already stored or already rejected evidence.
    again = fleet.service.ingest(records, ADMIN)
    assert [o.status for o in again] == [
        "rejected" if i in forged else "duplicate" for i in range(len(records))
    ]


def test_a_precheck_made_with_other_keys_is_never_trusted(fleet: Fleet) -> None:
    forged = replace(fleet.record("fra1", 0.5), device_signature=bytes(64))
    forged = forged.signed_by(fleet.landmark_keys["fra1"])
    landmark_key = fleet.landmark_keys["fra1"].public_bytes
    # A result that calls the forgery valid, but made against another device key (as if the
    # device were re-enrolled between the precheck and the write lock): it must be ignored.
    stale = Prechecked({0: Checked(landmark_key, seeded_key("old").public_bytes, None)})
    with fleet.service.write() as s:
        out = Ingestor(s, fleet.service.config, ADMIN, now_ns()).ingest(
            [forged], [record_hash(forged)], stale
        )
    assert out[0].status == "rejected" and out[0].reason is RejectReason.BAD_SIGNATURE


def test_verify_threads_must_be_a_sane_count() -> None:
    from lightfence.verifier.config import VerifierConfig

    for bad in (-1, 1025):
        with pytest.raises(ValueError, match="verify_threads"):
            VerifierConfig(verify_threads=bad)
