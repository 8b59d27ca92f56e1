"""`lightfence report --operator NAME --since DATE`: a compliance report for an auditor."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lightfence.cli.errors import fail

if TYPE_CHECKING:
    from lightfence.report.gather import ReportData

commands = typer.Typer()
"""This module's top-level commands; lightfence.cli.app loads it only to run one of them."""

TIME_HELP = "YYYY-MM-DD (midnight UTC) or an ISO 8601 time (UTC unless it names an offset)"


class Format(StrEnum):
    HTML = "html"
    PDF = "pdf"
    BOTH = "both"


def parse_when(text: str, option: str) -> int:
    """Unix nanoseconds of a date or ISO 8601 time; a naive one is UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise fail(
            f"bad {option} {text!r}: use {TIME_HELP}, e.g. 2026-12-01 or 2026-12-01T09:30:00Z"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    ns = int(value.timestamp()) * 10**9 + value.microsecond * 1000
    if not 0 <= ns < 2**63:  # times are signed 64-bit Unix nanoseconds in the database
        raise fail(f"{option} {text!r} is out of range: give a time between 1970 and 2262")
    return ns


def _progress(text: str) -> None:
    typer.echo(f"report: {text}", err=True)


@commands.command()
def report(
    operator: Annotated[
        str,
        typer.Option(
            help="The operator (tenant) whose devices are reported: the name devices are "
            "enrolled under, as on its operator token (`lightfence token list`)."
        ),
    ],
    since: Annotated[str, typer.Option(help=f"Start of the window: {TIME_HELP}.")],
    until: Annotated[
        str | None, typer.Option(help=f"End of the window, excluded (default: now): {TIME_HELP}.")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Folder for report.html, report.pdf and the evidence bundles.")
    ] = Path("lightfence-report"),
    format: Annotated[
        Format,
        typer.Option(
            "--format", help="html, pdf or both; the PDF needs chromium (and playwright)."
        ),
    ] = Format.BOTH,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database URL: sqlite:///PATH (default sqlite:///lightfence-verifier.db) or "
            "postgresql://USER:PASS@HOST:PORT/DB. Env: LIGHTFENCE_DB_URL.",
        ),
    ] = None,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            help="Signed audit checkpoints (from `serve --checkpoints`); the report shows the "
            "latest and whether the chain still holds it. Repeatable."
        ),
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option(help="The verifier's public key (hex) the checkpoints must be signed by."),
    ] = None,
    verifier: Annotated[
        str | None,
        typer.Option(
            help="Read from a running verifier's API (http(s)://HOST:PORT) instead of --db; "
            "the token from --token-file or $LIGHTFENCE_VERIFIER_TOKEN (an auditor token sees "
            "everything, an operator token its own devices and no audit chain)."
        ),
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="Verifier API token file (with --verifier).")
    ] = None,
) -> None:
    """Write a compliance report (HTML, and PDF where chromium is installed) for an auditor."""
    from lightfence.report.pdf import converter_problem

    since_ns = parse_when(since, "--since")
    until_ns = parse_when(until, "--until") if until is not None else _now_ns()
    if since_ns >= until_ns:
        raise fail(f"the window is empty: --since {since} is not before --until {until or 'now'}")
    problem = converter_problem() if format is not Format.HTML else None
    if problem is not None and format is Format.PDF:
        raise fail(f"cannot write a PDF: {problem}; use --format html")
    if verifier is not None:
        if db is not None or checkpoint:
            raise fail("--verifier reads over the API: leave out --db and --checkpoint")
        data = _gather_remote(verifier, token_file, operator, since_ns, until_ns)
    else:
        data = _gather(db, operator, since_ns, until_ns, checkpoint or [], public_key)
    _write(data, out, format, problem)


def _now_ns() -> int:
    from lightfence.verifier.clock import now_ns

    return now_ns()


def _gather(
    db: str | None,
    operator: str,
    since_ns: int,
    until_ns: int,
    checkpoints: list[Path],
    public_key: str | None,
) -> ReportData:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from lightfence.report.gather import UnknownOperator, gather
    from lightfence.verifier.checkpoint import CheckpointError, read_file
    from lightfence.verifier.config import db_url_from_env
    from lightfence.verifier.db import Database, DatabaseError, schema_revision

    try:
        docs = [d for f in checkpoints for d in read_file(f)]
    except CheckpointError as exc:
        raise fail(str(exc)) from None
    url = db_url_from_env(db)
    try:
        database = Database(url)
    except DatabaseError as exc:
        raise fail(str(exc)) from None
    try:
        if database.is_sqlite:
            path = make_url(database.url).database or ""
            if not Path(path).is_file():
                raise fail(f"no verifier database at {path} (give --db or LIGHTFENCE_DB_URL)")
        try:
            current, head = schema_revision(database)
        except SQLAlchemyError as exc:
            cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            detail = cause[0] if cause else exc.__class__.__name__
            raise fail(f"cannot read {_shown(database.url)}: {detail}") from None
        if current != head:
            raise fail(
                f"the database schema is at revision {current or 'none'}, this lightfence reads "
                f"{head}: `lightfence serve` migrates it (or use the lightfence that wrote it)"
            )
        _progress(f"reading {_shown(database.url)}")
        with database.read() as session:
            if not database.is_sqlite:
                # One snapshot for the whole report (the audit head agrees with the verdicts);
                # SQLite's read transaction is one already.
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            try:
                return gather(
                    session,
                    operator=operator,
                    since_ns=since_ns,
                    until_ns=until_ns,
                    now_ns=_now_ns(),
                    checkpoint_docs=docs,
                    checkpoint_files=tuple(str(f) for f in checkpoints),
                    checkpoint_key=public_key,
                    source=_shown(database.url),
                    progress=_progress,
                )
            except UnknownOperator as exc:
                raise fail(str(exc)) from None
    finally:
        database.dispose()


def _gather_remote(
    verifier: str, token_file: Path | None, operator: str, since_ns: int, until_ns: int
) -> ReportData:
    import httpx

    from lightfence.evidence.submit import check_url, read_token
    from lightfence.report.gather import UnknownOperator
    from lightfence.report.remote import RemoteError, gather_remote

    try:
        base = check_url(verifier).rstrip("/")
        token = read_token(token_file)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if token is None:
        raise fail("--verifier needs a token: --token-file FILE or $LIGHTFENCE_VERIFIER_TOKEN")
    _progress(f"reading {base}")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60.0) as client:
        try:
            return gather_remote(
                client,
                operator=operator,
                since_ns=since_ns,
                until_ns=until_ns,
                now_ns=_now_ns(),
                source=f"the verifier at {base}",
                progress=_progress,
            )
        except (UnknownOperator, RemoteError) as exc:
            raise fail(str(exc)) from None


def _shown(url: str) -> str:
    """The database URL without its password, for the report and messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _write(data: ReportData, out: Path, format: Format, pdf_problem: str | None) -> None:
    from lightfence.report.gather import REGISTRY_FILE
    from lightfence.report.pdf import PdfError, html_to_pdf
    from lightfence.report.render import render

    try:
        out.mkdir(parents=True, exist_ok=True)
        for b in data.bundles:
            path = out / b.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b.content)
        (out / REGISTRY_FILE).write_bytes(data.registry)
        page = render(data)
        html_path = out / "report.html"
        if format is Format.PDF:
            scratch = Path(tempfile.mkdtemp(prefix="lightfence-report-"))
            html_path = scratch / "report.html"
        html_path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write the report under {out}: {exc.strerror or exc}") from None
    if format is not Format.PDF:
        typer.echo(str(html_path))
    if format is Format.HTML:
        return
    if pdf_problem is not None:
        _progress(f"no PDF written: {pdf_problem}; the HTML is the report")
        return
    _progress("printing the PDF with chromium")
    try:
        html_to_pdf(html_path, out / "report.pdf")
    except PdfError as exc:
        raise fail(str(exc)) from None
    finally:
        if format is Format.PDF:
            html_path.unlink(missing_ok=True)
            html_path.parent.rmdir()
    typer.echo(str(out / "report.pdf"))
