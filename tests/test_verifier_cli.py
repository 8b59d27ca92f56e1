"""`lightfence token`, `status` and `audit verify` on a real SQLite database."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from lightfence.cli.app import app
from verifier_support import ADMIN, make_fleet


def test_tokens_status_and_audit_from_the_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/v.db"
    fleet = make_fleet(url)
    fleet.service.ingest([fleet.record("fra1", 0.5)], ADMIN)
    fleet.service.recompute_all()
    fleet.service.close()
    run = CliRunner().invoke
    made = run(
        app, ["token", "create", "ops", "--role", "operator", "--owner", "acme", "--db", url]
    )
    assert made.exit_code == 0 and made.output.startswith("lft_")
    bad = run(app, ["token", "create", "x", "--role", "operator", "--db", url])
    assert bad.exit_code == 2 and "--owner" in bad.output
    bad = run(app, ["token", "create", "x", "--role", "root", "--db", url])
    assert bad.exit_code == 2
    listed = run(app, ["token", "list", "--db", url])
    assert "ops\toperator\tacme\tactive" in listed.output
    assert run(app, ["token", "revoke", "ops", "--db", url]).exit_code == 0
    assert run(app, ["token", "revoke", "ops", "--db", url]).exit_code == 2
    status = run(app, ["status", "--db", url])
    assert status.exit_code == 0 and "VERIFIED 1" in status.output
    ok = run(app, ["audit", "verify", "--db", url])
    assert ok.exit_code == 0 and "intact" in ok.output
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET payload = '{}' WHERE seq = 2"))
    engine.dispose()
    broken = run(app, ["audit", "verify", "--db", url])
    assert broken.exit_code == 1 and "entry 2" in broken.output
    nodb = run(app, ["status", "--db", "mysql://x/y"])
    assert nodb.exit_code == 2 and "unsupported database" in nodb.output
