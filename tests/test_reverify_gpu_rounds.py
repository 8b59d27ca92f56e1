"""A stored GPU round that fails batch re-verification stops counting at once (fleet.reverify),
as a key record does (test_reverify_excludes): the attacker has write access to the verifier's
database, and GPU rounds are not among the audit chain's state digests. Each edit below first
buys a false VERIFIED on the next verdict pass; re-verification then takes it back. SQLite and
PostgreSQL; real signatures and real P-384 evidence from the stand-in GPU (no GPU here)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text, update

from gpu_fleet_support import (
    FAST,
    ROOT,
    gpu_fleet,
    gpu_id_of,
    gpu_round,
    latest_verdict,
    write_calibration,
)
from lightfence.core.kinds import VerdictKind
from lightfence.fleet.reverify import reverify
from lightfence.sim.gpu import GpuStandIn
from lightfence.verifier import audit_verify
from lightfence.verifier.clock import now_ns
from lightfence.verifier.models import AlertRow, GpuRoundRow
from lightfence.verifier.registry import Licence, set_licence
from lightfence.verifier.service import Service
from verifier_support import ADMIN, Fleet, db_url, run_sql

__all__ = ["db_url"]

FAR_MS = 8.0
"""A path RTT from Frankfurt whose honest cap (about 600 km after the S_floor) reaches past
Germany: UNVERIFIED for `in:DE`."""


@pytest.fixture
def fleet(db_url: str, tmp_path: Path) -> Iterator[Fleet]:
    f = gpu_fleet(db_url, tmp_path)
    yield f
    f.service.close()


def _latest(fleet: Fleet) -> tuple[str, str, list[int]]:
    row = latest_verdict(fleet)
    return row.kind, row.locates, [int(i["gpu_round_id"]) for i in row.gpu_inputs or []]


def _sql(url: str, statement: str) -> None:
    # Marked as the verifier marks a device whose evidence changed: the attacker wants a pass.
    run_sql(url, statement, "UPDATE devices SET needs_verdict = true, dirty_seq = dirty_seq + 1")


def _honest_far_round(fleet: Fleet) -> tuple[int, int]:
    """(row id, rtt_ns) of an honest round from Frankfurt that does not place the device in DE."""
    (out,) = fleet.service.ingest_gpu([gpu_round(fleet, "fra1", FAR_MS)], ADMIN)
    assert out.status == "stored" and out.record_id is not None
    fleet.service.recompute_all()
    kind, locates, inputs = _latest(fleet)
    assert (kind, locates, inputs) == (VerdictKind.UNVERIFIED, "gpu", [out.record_id])
    with fleet.service.read() as s:
        row = s.get(GpuRoundRow, out.record_id)
        assert row is not None
        return out.record_id, row.rtt_ns


def _excluded(fleet: Fleet, db_url: str, rid: int, why: str) -> None:
    """Re-verification finds round `rid` for `why`, marks it, alerts, and the verdict falls."""
    report = reverify(fleet.service, engine="local")
    assert report.failed == [] and report.gpu_rounds >= 1
    assert [(f[0], f[1]) for f in report.failed_gpu] == [(rid, fleet.device_id)]
    assert why in report.failed_gpu[0][2]
    kind, _, inputs = _latest(fleet)
    assert kind != VerdictKind.VERIFIED and rid not in inputs
    with fleet.service.read() as s:
        row = s.get(GpuRoundRow, rid)
        assert row is not None and row.invalid_ns is not None and why in (row.invalid_reason or "")
        alerts = s.execute(select(AlertRow.message).where(AlertRow.device_id == fleet.device_id))
        assert any(f"GPU round {rid} fails re-verification" in m for m in alerts.scalars())
        assert audit_verify.verify_chain(s).ok
    # A later pass does not bring it back, and a cleared mark is found again.
    fleet.service.recompute_all()
    assert rid not in _latest(fleet)[2]
    assert reverify(fleet.service, engine="local").failed_gpu == []
    _sql(db_url, f"UPDATE gpu_rounds SET invalid_ns = NULL WHERE id = {rid}")
    assert [f[0] for f in reverify(fleet.service, engine="local").failed_gpu] == [rid]
    assert _latest(fleet)[0] != VerdictKind.VERIFIED


def test_honest_gpu_rounds_pass_re_verification(fleet: Fleet) -> None:
    fleet.service.ingest_gpu([gpu_round(fleet, "fra1", 0.5)], ADMIN)
    fleet.service.recompute_all()
    assert _latest(fleet)[:2] == (VerdictKind.VERIFIED, "gpu")
    report = reverify(fleet.service, engine="local")
    # A device with GPU rounds and no key records is re-verified too.
    assert (report.devices, report.records, report.gpu_rounds) == (1, 0, 1)
    assert report.failed_gpu == [] and report.verdicts == 1
    assert _latest(fleet)[:2] == (VerdictKind.VERIFIED, "gpu")


def test_a_raised_s_floor_is_found(fleet: Fleet, db_url: str) -> None:
    rid, rtt_ns = _honest_far_round(fleet)
    # The floor raised to within 0.3 ms of the RTT: a 45 km cap around Frankfurt.
    _sql(db_url, f"UPDATE gpu_rounds SET floor_ns = {rtt_ns - 300_000} WHERE id = {rid}")
    fleet.service.recompute_all()
    assert _latest(fleet)[0] == VerdictKind.VERIFIED  # what the edit buys before the pass
    _excluded(fleet, db_url, rid, "S_floor")


def test_an_edited_rtt_column_is_found(fleet: Fleet, db_url: str) -> None:
    rid, _ = _honest_far_round(fleet)
    _sql(db_url, f"UPDATE gpu_rounds SET rtt_ns = {round((FAST.floor_ms + 0.3) * 1e6)} "
                 f"WHERE id = {rid}")  # fmt: skip
    fleet.service.recompute_all()
    assert _latest(fleet)[0] == VerdictKind.VERIFIED
    _excluded(fleet, db_url, rid, "stored columns differ from the signed body")


def test_an_edited_body_and_columns_are_found(fleet: Fleet, db_url: str) -> None:
    """Body and column edited together: the body is no longer what its hash names (and if the
    hash were edited too, the landmark's signature would fail)."""
    rid, _ = _honest_far_round(fleet)
    fast_ns = round((FAST.floor_ms + 0.3) * 1e6)
    with fleet.service.read() as s:
        row = s.get(GpuRoundRow, rid)
        assert row is not None
        body = dict(row.body, rtt_ns=fast_ns)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(update(GpuRoundRow).where(GpuRoundRow.id == rid).values(rtt_ns=fast_ns,
                     body=body))  # fmt: skip
        conn.execute(text("UPDATE devices SET needs_verdict = true, dirty_seq = dirty_seq + 1"))
    engine.dispose()
    fleet.service.recompute_all()
    assert _latest(fleet)[0] == VerdictKind.VERIFIED
    _excluded(fleet, db_url, rid, "not the GPU round its hash names")


def test_swapped_evidence_is_found(fleet: Fleet, db_url: str) -> None:
    """Another round's (valid) evidence under this round's record: the report is not the one
    the landmark timed. The verdict does not read the evidence, so no false VERIFIED here; the
    row is still not what it claims, and bundles carry it."""
    rid, _ = _honest_far_round(fleet)
    other = gpu_round(fleet, "ams1", 3.0)[1]
    with fleet.service.write() as s:
        s.execute(
            update(GpuRoundRow).where(GpuRoundRow.id == rid).values(evidence=other.to_json_dict())
        )
    report = reverify(fleet.service, engine="local")
    assert [f[0] for f in report.failed_gpu] == [rid]
    assert "not the one the landmark timed" in report.failed_gpu[0][2]


def test_a_lowered_calibration_excludes_rounds_stored_under_the_higher_floor(
    db_url: str, tmp_path: Path
) -> None:
    """The calibration's S_floor lowered after rounds were stored (it was found too high): the
    stored floors would shrink those rounds' caps below what physics now allows."""
    fleet = gpu_fleet(db_url, tmp_path)
    try:
        fleet.service.ingest_gpu([gpu_round(fleet, "fra1", 0.5)], ADMIN)
        fleet.service.recompute_all()
        assert _latest(fleet)[0] == VerdictKind.VERIFIED
        config = fleet.service.config
    finally:
        fleet.service.close()
    signer = write_calibration(tmp_path / "lower.json", floor_ms=FAST.floor_ms - 0.6)
    lowered = replace(
        config,
        gpu_calibration_file=str(tmp_path / "lower.json"),
        gpu_calibration_keys=(signer,),
    )
    low = replace(fleet, service=Service(lowered))
    try:
        report = reverify(low.service, engine="local")
        assert len(report.failed_gpu) == 1 and "above the calibration's" in report.failed_gpu[0][2]
        assert _latest(low)[0] != VerdictKind.VERIFIED
    finally:
        low.service.close()
    # A pass with the calibration the round was stored under (the lowered one was a mistake,
    # or the first pass ran without the verifier's settings) gives the round back.
    fleet = replace(fleet, service=Service(config))
    try:
        report = reverify(fleet.service, engine="local")
        assert report.failed_gpu == [] and len(report.restored_gpu) == 1
        assert _latest(fleet)[0] == VerdictKind.VERIFIED
    finally:
        fleet.service.close()


def test_an_honest_refuting_round_marked_invalid_by_hand_counts_again(
    fleet: Fleet, db_url: str
) -> None:
    """Marking a row invalid with SQL drops evidence: here the GPU round that shows the key
    answering from Frankfurt while the GPU signs next to Warsaw. The next pass re-checks marked
    rows too, finds it holds, and restores it."""
    fleet.service.ingest([fleet.record("fra1", 0.5)], ADMIN)
    (out,) = fleet.service.ingest_gpu([gpu_round(fleet, "waw1", 0.5)], ADMIN)
    fleet.service.recompute_all()
    assert _latest(fleet)[:2] == (VerdictKind.INCONSISTENT, "gpu")
    _sql(db_url, f"UPDATE gpu_rounds SET invalid_ns = 1 WHERE id = {out.record_id}")
    fleet.service.recompute_all()
    assert _latest(fleet)[:2] == (VerdictKind.VERIFIED, "key")  # what the mark buys
    report = reverify(fleet.service, engine="local")
    assert [r[0] for r in report.restored_gpu] == [out.record_id] and report.failed_gpu == []
    assert _latest(fleet)[:2] == (VerdictKind.INCONSISTENT, "gpu")


def test_a_swapped_gpu_s_rounds_stop_counting(fleet: Fleet) -> None:
    """The licence enrols another GPU (a swap): the old chip's rounds locate the old chip, not
    this device's, so they leave its GPU verdict at once (they are not invalid: kept, and not
    accused by re-verification)."""
    fleet.service.ingest_gpu([gpu_round(fleet, "fra1", 0.5)], ADMIN)
    fleet.service.recompute_all()
    assert _latest(fleet)[:2] == (VerdictKind.VERIFIED, "gpu")
    new_gpu = gpu_id_of(GpuStandIn(ROOT, signing_time=FAST))
    with fleet.service.write() as s:
        lic = Licence(policy="in:DE", declared_country="DE", gpu_id=new_gpu)
        set_licence(s, fleet.device_id, lic, ADMIN, now_ns())
    fleet.service.recompute_all()
    assert _latest(fleet)[0] != VerdictKind.VERIFIED
    assert reverify(fleet.service, engine="local").failed_gpu == []
    assert _latest(fleet)[0] != VerdictKind.VERIFIED


def test_reverify_without_the_verifiers_settings_refuses_rather_than_exclude(
    fleet: Fleet, db_url: str
) -> None:
    """`lightfence reverify --db URL` without `--config`: no calibration, so every stored
    round's S_floor would look too high and every round would be excluded. Refused, exit 2,
    nothing written."""
    from typer.testing import CliRunner

    from lightfence.cli.app import app

    (out,) = fleet.service.ingest_gpu([gpu_round(fleet, "fra1", 0.5)], ADMIN)
    result = CliRunner().invoke(app, ["reverify", "--db", db_url])
    assert result.exit_code == 2 and "S_floor calibration" in result.output, result.output
    assert "Traceback" not in result.output
    with fleet.service.read() as s:
        row = s.get(GpuRoundRow, out.record_id)
        assert row is not None and row.invalid_ns is None
    # Without a floor, the GPU root: the test root is not the default one the pass would use.
    run_sql(db_url, "UPDATE gpu_rounds SET floor_ns = 0")
    result = CliRunner().invoke(app, ["reverify", "--db", db_url])
    assert result.exit_code == 2 and "default GPU root" in result.output, result.output
    with fleet.service.read() as s:
        row = s.get(GpuRoundRow, out.record_id)
        assert row is not None and row.invalid_ns is None


def test_a_reason_quoting_an_edited_body_is_one_bounded_line(fleet: Fleet) -> None:
    """The reason quotes the row (here a made-up field name: 5,000 characters and a terminal
    escape); it goes into an alert, an audit entry and the CLI's output, bounded and printable."""
    rid, _ = _honest_far_round(fleet)
    with fleet.service.write() as s:
        row = s.get(GpuRoundRow, rid)
        assert row is not None
        s.execute(
            update(GpuRoundRow)
            .where(GpuRoundRow.id == rid)
            .values(body={**row.body, "x" * 5000 + "\x1b[2J\n": 1})
        )
    (failed,) = reverify(fleet.service, engine="local").failed_gpu
    assert failed[0] == rid and len(failed[2]) <= 500 and failed[2].isprintable()
