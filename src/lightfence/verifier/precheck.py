"""Signature checks of a batch of records, made before ingestion takes the write lock.

Two Ed25519 checks per record are most of ingestion's cost. Made here, in a read transaction
with the keys registered at that moment, they run while another batch holds the write lock, on
`threads` threads (libsodium releases the GIL while it checks). One thread, in the caller's, is
the cheapest per record: a stream worker scales by processes, one per core, and a pool beside
it cost a sixth more CPU per record in GIL hand-offs (docs/benchmarks.md). Ingestion then uses
a result only if the landmark and device keys it reads under the lock are the very keys checked
against; any other record it checks in line. So a key change between the two steps can cost a
second check, never a wrong acceptance.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from lightfence.protocol.record import (
    MeasurementRecord,
    RecordError,
    SignatureCheck,
    signature_pair,
)
from lightfence.verifier import lookups
from lightfence.verifier.models import LandmarkRow
from lightfence.verifier.sqlin import one_of

PRECHECK_MIN_RECORDS = 16
"""Below this many records a batch is not prechecked (its checks are made in line, under the
write lock): a read transaction, and with threads a hand-off, would cost more than they save."""


class Checked(NamedTuple):
    """A record's signature result and the keys (raw bytes) it was checked against."""

    landmark_key: bytes
    device_key: bytes
    error: RecordError | None


@dataclass
class Prechecked:
    """Results by record position in the batch; records absent here were not checked."""

    results: dict[int, Checked] = field(default_factory=dict)

    def result(self, index: int, landmark_key: bytes, device_key: bytes) -> Checked | None:
        """The result for record `index` if it was checked against exactly these keys."""
        got = self.results.get(index)
        if got is None or got.landmark_key != landmark_key or got.device_key != device_key:
            return None
        return got


def precheck(
    session: Session,
    records: Sequence[MeasurementRecord],
    hashes: Sequence[str],
    threads: int = 0,
) -> Prechecked:
    """Check the signatures of the batch's records that are new and name registered keys, on
    `threads` threads (0: one per CPU)."""
    out = Prechecked()
    if len(records) < PRECHECK_MIN_RECORDS:
        return out
    stored = lookups.stored_hashes(session, hashes)
    lids = {r.landmark_id for r in records}
    dids = {r.device_id for r in records}
    landmarks = {
        lm_id: (key_id, bytes.fromhex(pub))
        for lm_id, key_id, pub in session.execute(
            select(LandmarkRow.id, LandmarkRow.key_id, LandmarkRow.public_key).where(
                one_of(LandmarkRow.id, lids)
            )
        )
    }
    devices = {
        dev_id: (key_id, bytes.fromhex(pub))
        for dev_id, key_id, pub, *_ in lookups.devices(session, dids)
    }
    threads = threads or os.cpu_count() or 1
    checks: list[tuple[int, SignatureCheck]] = []  # for a pool: all checks, run after the loop
    keys: dict[int, tuple[bytes, bytes]] = {}
    errors: dict[int, RecordError | None] = {}
    for i, (rec, digest) in enumerate(zip(records, hashes, strict=True)):
        lm, dev = landmarks.get(rec.landmark_id), devices.get(rec.device_id)
        if digest in stored or lm is None or dev is None:
            continue
        if lm[0] != rec.landmark_key_id or dev[0] != rec.device_key_id:
            continue  # rejected for its keys before any signature matters
        keys[i] = (lm[1], dev[1])
        # The key ids just matched are the registry's, derived from these very keys when they
        # were registered: no need to hash the keys again per record (a sixtieth of its cost).
        pair = signature_pair(rec, lm[1], dev[1])
        errors[i] = None
        if threads > 1:
            checks.extend((i, c) for c in pair)
            continue
        for check in pair:  # in order, as `verify`: the first failing check is the reason
            if not check.holds():
                errors[i] = RecordError(check.failure)
                break
    if checks:
        held = _run_parallel([c for _, c in checks], threads)
        for (i, check), ok in zip(checks, held, strict=True):
            if not ok and errors[i] is None:  # in order: the first failing check is the reason
                errors[i] = RecordError(check.failure)
    out.results = {i: Checked(*keys[i], errors[i]) for i in keys}
    return out


def _run_parallel(checks: list[SignatureCheck], threads: int) -> list[bool]:
    # Interleaved shares, one task each: the workers then seldom wait for the GIL (one task per
    # check made them slower than checking in line).
    shares = [checks[i::threads] for i in range(threads)]
    held = [False] * len(checks)
    for i, results in enumerate(_pool(threads).map(_run_share, shares)):
        held[i::threads] = results
    return held


def _run_share(share: Sequence[SignatureCheck]) -> list[bool]:
    return [check.holds() for check in share]


@cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="verify")
