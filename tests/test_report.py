"""`lightfence report`: the compliance report from a real verifier database (SQLite and the real
PostgreSQL), with real signed records, a hostile device name, a signed checkpoint, and the PDF
printed by Debian's chromium and rasterised by poppler's pdftoppm where they are installed."""

from __future__ import annotations

import hashlib
import html
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lightfence.cli.app import app
from lightfence.crypto.keys import SigningKey
from lightfence.identity.device import DeviceIdentity
from lightfence.report.gather import (
    NO_VERDICT,
    ReportData,
    UnknownOperator,
    gather,
    safe_file_stem,
)
from lightfence.report.html import esc, fmt, tag
from lightfence.report.pdf import CHROMIUM_ENV, converter_problem
from lightfence.report.render import render
from lightfence.verifier import checkpoint
from lightfence.verifier.alerts import acknowledge
from lightfence.verifier.auth import Role
from lightfence.verifier.clock import now_ns
from lightfence.verifier.models import AlertRow
from lightfence.verifier.registry import Licence, enrol_device
from record_factory import seeded_key
from verifier_support import ADMIN, Fleet, db_url, identity_for, make_fleet, token

__all__ = ["db_url"]  # the fixture: SQLite and the real PostgreSQL

PAYLOAD = '<script>alert("x")</script><img src=x onerror=alert(1)>'
DAY_NS = 86_400 * 10**9


def _named(key: SigningKey, host: str) -> DeviceIdentity:
    ident = identity_for(key)
    return DeviceIdentity(
        provider=ident.provider,
        trust_level=ident.trust_level,
        public_key=ident.public_key,
        attributes={**ident.attributes, "host": host},
    )


def _populate(url: str) -> tuple[Fleet, dict[str, str]]:
    """acme: device-0 VERIFIED then INCONSISTENT (alert, acknowledged), a hostile-named device
    REFUTED (alert, open), an honest one VERIFIED; `other` has a device the report must not
    show; `tokenonly` is an operator with a token and no device."""
    f = make_fleet(url)
    keys = {"hostile": seeded_key("device-hostile"), "ok": seeded_key("device-ok"),
            "other": seeded_key("device-other")}  # fmt: skip
    ids = {"zero": f.device_id}
    with f.service.write() as s:
        for label, operator, host in (
            ("hostile", "acme", PAYLOAD),
            ("ok", "acme", "gpu-de-ok"),
            ("other", "other", "gpu-other"),
        ):
            ident = _named(keys[label], host)
            enrol_device(s, ident, Licence("in:DE", declared_country="DE"), operator, ADMIN,
                         now_ns())  # fmt: skip
            ids[label] = ident.device_id
    token(f.service, "tok-only", Role.OPERATOR, "tokenonly")
    f.service.ingest([f.record("fra1", 0.5)], ADMIN)
    f.service.ingest([f.record("fra1", 0.5, identity=_named(keys["ok"], "gpu-de-ok"),
                               device_key=keys["ok"])], ADMIN)  # fmt: skip
    f.service.ingest([f.record("fra1", 0.5, identity=_named(keys["other"], "gpu-other"),
                               device_key=keys["other"])], ADMIN)  # fmt: skip
    # Warsaw in 0.5 ms: the hostile device is in Poland, not in Germany as declared.
    f.service.ingest([f.record("waw1", 0.5, identity=_named(keys["hostile"], PAYLOAD),
                               device_key=keys["hostile"])], ADMIN)  # fmt: skip
    f.service.recompute_all()
    f.service.ingest([f.record("fra1", 0.4)], ADMIN)  # a repeat: same verdict, no new row shown
    f.service.recompute_all()
    f.service.ingest([f.record("waw1", 0.5)], ADMIN)  # Frankfurt and Warsaw: no common point
    f.service.recompute_all()
    with f.service.write() as s:
        alert = s.query(AlertRow).filter_by(device_id=ids["zero"], kind="inconsistent").one()
        acknowledge(s, alert.id, "operator:acme-oncall", now_ns())
    return f, ids


def test_gather_states_verdicts_alerts_and_bundles(db_url: str) -> None:
    f, ids = _populate(db_url)
    try:
        with f.service.read() as s:
            data = gather(s, operator="acme", since_ns=now_ns() - DAY_NS, until_ns=now_ns() + 1,
                          now_ns=now_ns())  # fmt: skip
            with pytest.raises(UnknownOperator) as err:
                gather(s, operator="nobody", since_ns=0, until_ns=1, now_ns=1)
            assert "'acme', 'other', 'tokenonly'" in str(err.value)
            empty = gather(s, operator="tokenonly", since_ns=0, until_ns=now_ns(), now_ns=1)
    finally:
        f.service.close()
    by_id = {d.device_id: d for d in data.devices}
    assert set(by_id) == {ids["zero"], ids["hostile"], ids["ok"]}  # never `other`'s device
    assert data.verdict_counts == {"VERIFIED": 1, "UNVERIFIED": 0, "REFUTED": 1,
                                   "INCONSISTENT": 1, NO_VERDICT: 0}  # fmt: skip
    zero = by_id[ids["zero"]]
    assert [(c.kind, c.repeats) for c in zero.history] == [("VERIFIED", 2), ("INCONSISTENT", 1)]
    assert by_id[ids["hostile"]].name == PAYLOAD
    status = {(a.device_id, a.kind): a.status for a in data.alerts}
    assert status == {(ids["zero"], "inconsistent"): "acknowledged",
                      (ids["hostile"], "refuted"): "open"}  # fmt: skip
    assert {b.device_id for b in data.bundles} == set(by_id)
    assert data.records_in_window == 5 and not data.empty
    assert empty.devices == () and empty.empty and empty.bundles == ()


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _write_checkpoint(f: Fleet, path: Path) -> dict[str, object]:
    key = seeded_key("verifier-signing")
    with f.service.read() as s:
        doc = checkpoint.make(s, key, now_ns())
    assert doc is not None
    checkpoint.append_to_file(path, doc)
    return doc


def test_report_command_writes_an_escaped_self_contained_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    f, ids = _populate(url)
    doc = _write_checkpoint(f, tmp_path / "checkpoints.jsonl")
    f.service.close()
    out = tmp_path / "out"
    code, stdout, stderr = _cli("report", "--operator", "acme", "--since", "2020-01-01",
                                "--db", url, "--out", str(out), "--format", "html",
                                "--checkpoint", str(tmp_path / "checkpoints.jsonl"))  # fmt: skip
    assert code == 0, stderr
    assert "report: walking the audit chain" in stderr  # progress on stderr
    page = (out / "report.html").read_text()
    # Self-contained: no script, no external resource; the hostile name only as text.
    assert "<script" not in page and "<img" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert html.escape(PAYLOAD) in page
    # The summary, the history, the alerts as they ended.
    assert "<td>Devices of this operator</td>" not in page
    assert re.search(r"<th>Devices of this operator</th><td>3</td>", page)
    assert "2, last " in page  # the repeated VERIFIED is one row with its count
    assert "acknowledged " in page and "by operator:acme-oncall" in page
    assert "Why not VERIFIED:</b> No position consistent with the RTTs lies in the declared " \
        "country DE" in page  # fmt: skip
    # The audit head is what `lightfence audit verify` reports, and the checkpoint matches.
    code, verified, _ = _cli("audit", "verify", "--db", url)
    assert code == 0
    head = re.search(r"head ([0-9a-f]{64})", verified)
    assert head is not None and head.group(1) in page
    assert str(doc["head_hash"]) in page and f"entry {doc['seq']}, signed" in page
    assert '<span class="ok">yes</span>' in page
    # Every bundle's hash is the file's; the honest device's command verifies it offline.
    for path in (out / "evidence").iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() in page
    block = page[page.index(f"evidence/{ids['ok']}.json") :]
    cmd = html.unescape(re.search(r"<pre>(.*?)</pre>", block, re.S).group(1))  # type: ignore[union-attr]
    argv = shlex.split(cmd)
    assert argv[:3] == ["lightfence", "verify", f"evidence/{ids['ok']}.json"]
    monkeypatch.chdir(out)
    code, stdout, stderr = _cli(*argv[1:])
    assert code == 0, stdout + stderr
    assert "VERIFIED" in stdout
    assert ids["other"] not in page and "gpu-other" not in page  # another operator's device


def test_report_errors_say_what_to_change(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    f, _ = _populate(url)
    f.service.close()
    out = str(tmp_path / "out")
    code, _, err = _cli("report", "--operator", "acme", "--since", "2026-13-01", "--db", url)
    assert code == 2 and "bad --since '2026-13-01'" in err
    code, _, err = _cli("report", "--operator", "nobody", "--since", "2020-01-01", "--db", url,
                        "--out", out)  # fmt: skip
    assert code == 2 and "no operator 'nobody'" in err and "'acme', 'other', 'tokenonly'" in err
    code, _, err = _cli("report", "--operator", "acme", "--since", "2020-01-02", "--until",
                        "2020-01-01", "--db", url)  # fmt: skip
    assert code == 2 and "window is empty" in err
    code, _, err = _cli("report", "--operator", "acme", "--since", "2020-01-01", "--db",
                        f"sqlite:///{tmp_path / 'missing.db'}")  # fmt: skip
    assert code == 2 and "no verifier database" in err
    assert not (tmp_path / "missing.db").exists()
    # No chromium: --format pdf refuses before any work, --format both writes the HTML alone.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CHROMIUM_ENV, str(tmp_path / "no-chromium"))
        args = ("report", "--operator", "acme", "--since", "2020-01-01", "--db", url, "--out")
        code, _, err = _cli(*args, str(tmp_path / "pdf-only"), "--format", "pdf")
        assert code == 2 and "cannot write a PDF: no chromium binary" in err
        assert not (tmp_path / "pdf-only").exists()
        code, _, err = _cli(*args, str(tmp_path / "both"))
        assert code == 0 and "no PDF written: no chromium binary" in err
        assert (tmp_path / "both" / "report.html").exists()
        assert not (tmp_path / "both" / "report.pdf").exists()
    # A window after everything: still a report, saying nothing happened.
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7200))
    code, _, err = _cli("report", "--operator", "acme", "--since", soon, "--until", later,
                        "--db", url, "--out", out, "--format", "html")  # fmt: skip
    assert code == 0, err
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Nothing happened in this window" in page and "(in force at the start)" in page


def test_escaping_helpers_escape_everything_but_their_own_markup() -> None:
    assert esc(PAYLOAD) == html.escape(PAYLOAD, quote=True)
    assert tag("td", PAYLOAD, title=PAYLOAD).count("<") == 2
    assert fmt("<b>{x}</b>", x=tag("i", PAYLOAD)) == f"<b><i>{html.escape(PAYLOAD)}</i></b>"


def test_pdf_pages_come_out_non_blank(tmp_path: Path) -> None:
    problem = converter_problem()
    if problem is not None:
        pytest.skip(f"REPORT PDF TEST SKIPPED: {problem}")
    if shutil.which("pdftoppm") is None:
        pytest.skip("REPORT PDF TEST SKIPPED: no pdftoppm (apt-get install poppler-utils)")
    url = f"sqlite:///{tmp_path / 'v.db'}"
    f, _ = _populate(url)
    f.service.close()
    out = tmp_path / "out"
    code, _, err = _cli("report", "--operator", "acme", "--since", "2020-01-01", "--db", url,
                        "--out", str(out), "--format", "pdf")  # fmt: skip
    assert code == 0, err
    pdf = out / "report.pdf"
    assert pdf.read_bytes().startswith(b"%PDF") and not (out / "report.html").exists()
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(out / "page")], check=True,
                   timeout=120)  # fmt: skip
    pages = sorted(out.glob("page*.png"))
    assert len(pages) >= 2
    from PIL import Image

    with Image.open(pages[0]) as im:
        grey = im.convert("L")
        dark = sum(grey.histogram()[:200])
        assert dark > 0.01 * grey.width * grey.height, "the first page came out blank"


def test_render_of_a_report_without_devices_is_complete(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    f, _ = _populate(url)
    with f.service.read() as s:
        data = gather(s, operator="tokenonly", since_ns=0, until_ns=now_ns(), now_ns=now_ns())
    f.service.close()
    page = render(data)
    assert "no device enrolled" in page and "Nothing happened in this window" in page


def test_a_database_edited_outside_the_verifier_is_said_up_front(tmp_path: Path) -> None:
    """A verdict forged with SQL is caught by the audit chain's state digests, and the report
    says so before its figures, not only in the audit section."""
    url = f"sqlite:///{tmp_path / 'v.db'}"
    f, ids = _populate(url)
    with f.service.db.write_engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE verdicts SET kind = 'VERIFIED' WHERE device_id = ?", (ids["hostile"],)
        )
    with f.service.read() as s:
        data = gather(s, operator="acme", since_ns=0, until_ns=now_ns(), now_ns=now_ns())
    f.service.close()
    page = render(data)
    assert data.audit.problems and "verdicts row" in data.audit.problems[0]
    assert page.index("The audit chain does not check out") < page.index("Fleet summary")
    assert '<span class="bad">BROKEN</span>' in page


def test_bundle_file_names_stay_inside_the_report_folder() -> None:
    assert safe_file_stem("0123abcd" * 4) == "0123abcd" * 4
    for hostile in ("../../etc/passwd", "a/b", "..", "", "ABC"):
        stem = safe_file_stem(hostile)
        assert re.fullmatch(r"id-[0-9a-f]{32}", stem), stem


def test_a_remote_verifier_gives_the_same_report_as_its_database(tmp_path: Path) -> None:
    """gather_remote over the real API (FastAPI's in-process client) against gather on the same
    database: same devices, verdict changes, alert states and bundle verdicts; an operator token
    sees its own devices and no audit chain."""
    from fastapi.testclient import TestClient

    from lightfence.report.remote import gather_remote
    from lightfence.verifier.api.app import create_app
    from lightfence.verifier.config import VerifierConfig

    url = f"sqlite:///{tmp_path / 'v.db'}"
    f, ids = _populate(url)
    auditor = token(f.service, "auditor", Role.AUDITOR)
    acme = token(f.service, "acme-ops", Role.OPERATOR, "acme")
    until = now_ns() + 10**9
    with f.service.read() as s:
        local = gather(s, operator="acme", since_ns=0, until_ns=until, now_ns=now_ns())
    f.service.close()
    app = create_app(VerifierConfig(db_url=url), worker=False)
    with TestClient(app) as client:
        client.headers["authorization"] = f"Bearer {auditor}"
        remote = gather_remote(client, operator="acme", since_ns=0, until_ns=until, now_ns=1)
        with pytest.raises(UnknownOperator):
            gather_remote(client, operator="nobody", since_ns=0, until_ns=until, now_ns=1)
        client.headers["authorization"] = f"Bearer {acme}"
        own = gather_remote(client, operator="acme", since_ns=0, until_ns=until, now_ns=1)

    def shape(data: ReportData) -> object:
        return (
            [(d.device_id, d.name, d.verdict, [(c.kind, c.repeats) for c in d.history])
             for d in data.devices],
            [(a.device_id, a.kind, a.status) for a in data.alerts],
            [(b.device_id, b.verdict) for b in data.bundles],
            data.verdict_counts,
        )  # fmt: skip

    assert shape(remote) == shape(local)
    assert remote.audit.head_hash == local.audit.head_hash and remote.audit.checked
    assert remote.notes and "newest 1000 verdicts" in remote.notes[0]
    assert {d.device_id for d in own.devices} == {ids["zero"], ids["hostile"], ids["ok"]}
    assert not own.audit.checked and "not checked" in render(own)
    for b in remote.bundles:  # hashed as served
        assert b.sha256 == hashlib.sha256(b.content).hexdigest()


def test_fleet_wide_lookups_take_any_number_of_devices(db_url: str) -> None:
    """Attack (scale): an operator with more than 65,535 devices. The report asked for their
    rejections, record counts and alerts with one bound parameter per device, which PostgreSQL
    refuses past 65,535 (its protocol's limit): the report failed before reading a device. The
    ids need not exist for the lookups to run."""
    from lightfence.report import gather
    from lightfence.verifier.models import RecordRow

    if not db_url.startswith("postgresql"):
        pytest.skip("the limit is PostgreSQL's")
    fleet = make_fleet(db_url)
    ids = [f"{n:032x}" for n in range(66_000)]
    try:
        with fleet.service.read() as s:
            assert gather._rejections(s, ids, 0, 2**62) == {}
            assert gather._count_in(s, RecordRow, ids, 0, 2**62) == 0
            assert gather._alerts(s, dict.fromkeys(ids, "x"), 0, 2**62) == []
    finally:
        fleet.service.close()
