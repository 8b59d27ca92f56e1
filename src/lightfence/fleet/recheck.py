"""Why a stored row is not the signed thing it claims to be, if it is not: the checks batch
re-verification (fleet.reverify) makes on each stored key record and GPU round.

Body, hash and columns first: every later decision (which landmark, whether the row predates
its landmark's move) is taken from the signed body, never from a column an attacker can edit.

Each check reads the row's signed JSON body, so a row edited with SQL (a column, the body, or
both) is found: the body must be the record its hash names, the columns the verdicts read must
be the body's, and the signatures (and, for a GPU round, the GPU's evidence and the S_floor
subtracted from its RTT) must hold against what the verifier trusts now.
"""

from __future__ import annotations

from typing import Any

from lightfence.protocol.gpu_round import (
    GpuEvidence,
    GpuRoundError,
    GpuRoundRecord,
    verify_gpu_round,
)
from lightfence.protocol.record import MeasurementRecord, RecordError, verify
from lightfence.verifier.gpu_ingest import GpuChecker, floor_ns_of, gpu_round_hash
from lightfence.verifier.ingest import record_hash

REAPPRAISAL_FAILED = "re-appraisal failed"
NOT_COUNTED = ""
"""What the checks return for a row that is its signed body but predates its landmark's current
position or key: it counts towards no verdict, so it is neither failed nor restored."""


def record_problem(
    row: Any, lm_key: bytes | None, dev_key: bytes | None, counts_from_ns: int = 0
) -> str | None:
    """A stored key record (`records` row): None when it still is what it claims.

    `counts_from_ns`: its landmark's records measured (by their signed time) before this were
    taken from another position or under another key; they count towards no verdict, and are
    checked for being their signed body only (the key that signed them is gone): NOT_COUNTED."""
    try:
        rec = MeasurementRecord.from_json_dict(row.body)
    except RecordError as exc:
        return f"stored body is not a record: {exc}"
    if record_hash(rec) != row.record_hash:
        return "stored body is not the record its hash names"
    columns = (row.device_id, row.landmark_id, row.min_rtt_ns, row.measured_ns)
    if columns != (rec.device_id, rec.landmark_id, rec.min_rtt_ns, rec.measured_at_unix_ns):
        return "stored columns differ from the signed body"
    if rec.measured_at_unix_ns < counts_from_ns:
        return NOT_COUNTED
    if lm_key is None or dev_key is None:
        return "its landmark or device is no longer registered"
    try:
        verify(rec, lm_key, dev_key)
    except RecordError as exc:
        return f"signature re-check failed: {exc}"
    return None


def gpu_round_problem(
    row: Any, lm_key: bytes | None, gpu: GpuChecker, counts_from_ns: int = 0
) -> str | None:
    """A stored GPU round (`gpu_rounds` row): None when it still is what it claims
    (`counts_from_ns` as for record_problem).

    The evidence is appraised at the round's signed measurement time, not at the row's
    `received_ns`, which nothing signs (ingestion appraised it at arrival, at most
    `max_record_age_s` later). A `floor_ns` above what the calibration gives now is a failure
    too, whether the row was edited or the calibration lowered since: a floor too high shrinks
    the round's cap, and a cap too small is the one way to a false VERIFIED. A floor below it
    (the calibration raised since) only widens the cap and stands.
    """
    try:
        rec = GpuRoundRecord.from_json_dict(row.body)
        evidence = GpuEvidence.from_json_dict(row.evidence)
    except GpuRoundError as exc:
        return f"stored body or evidence is not a GPU round: {exc}"
    if gpu_round_hash(rec) != row.record_hash:
        return "stored body is not the GPU round its hash names"
    columns = (
        row.device_id,
        row.landmark_id,
        row.session_id,
        row.round_no,
        row.gpu_id,
        row.rtt_ns,
        row.measured_ns,
    )
    signed = (
        rec.device_id,
        rec.landmark_id,
        rec.session_id.hex(),
        rec.round_no,
        rec.gpu_id,
        rec.rtt_ns,
        rec.measured_at_unix_ns,
    )
    if columns != signed:
        return "stored columns differ from the signed body"
    if rec.measured_at_unix_ns < counts_from_ns:
        return NOT_COUNTED
    if lm_key is None:
        return "its landmark is no longer registered"
    try:
        appraisal = verify_gpu_round(
            rec, evidence, lm_key, gpu.policy, rec.measured_at_unix_ns / 1e9
        )
    except GpuRoundError as exc:
        return f"{REAPPRAISAL_FAILED}: {exc}"
    floor_ns = floor_ns_of(gpu.calibration, appraisal, rec.rtt_ns)
    if row.floor_ns > floor_ns:
        return (
            f"stored S_floor {row.floor_ns} ns is above the calibration's {floor_ns} ns for this "
            "GPU model and firmware"
        )
    return None
