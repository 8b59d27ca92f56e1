"""`lightfence serve`, `lightfence status`, `lightfence audit verify`, `lightfence token ...`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

commands = typer.Typer()
"""This module's top-level commands; lightfence.cli.app loads it only to run one of them."""


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL: sqlite:///PATH (default sqlite:///lightfence-verifier.db) or "
        "postgresql://USER:PASS@HOST:PORT/DB. Env: LIGHTFENCE_DB_URL.",
    ),
]

audit_app = typer.Typer(help="The verifier's hash-chained audit log.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for the verifier (stored hashed).", no_args_is_help=True)
commands.add_typer(audit_app, name="audit")
commands.add_typer(token_app, name="token")


def _service(db: str | None):  # type: ignore[no-untyped-def]
    from lightfence.verifier.config import VerifierConfig, db_url_from_env
    from lightfence.verifier.db import DatabaseError
    from lightfence.verifier.service import Service

    try:
        return Service(VerifierConfig(db_url=db_url_from_env(db)))
    except DatabaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@commands.command()
def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    webhook: Annotated[
        str | None, typer.Option(help="POST each new alert as JSON to this URL.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    signing_key: Annotated[
        str,
        typer.Option(help="Ed25519 key that signs gate verdict tokens (created 0600 if absent)."),
    ] = "lightfence-verifier.key",
    checkpoints: Annotated[
        str,
        typer.Option(
            help="Append signed audit checkpoints to this file (JSON Lines); keep a copy off "
            "this host. `lightfence audit verify --checkpoint FILE` checks the log against it."
        ),
    ] = "lightfence-audit-checkpoints.jsonl",
    checkpoint_webhook: Annotated[
        str | None, typer.Option(help="Also POST each signed checkpoint as JSON to this URL.")
    ] = None,
    records_per_s: Annotated[
        float, typer.Option(help="Per token: records/s sustained (burst 60 s worth); 0 = off.")
    ] = 500.0,
    rejections_per_s: Annotated[
        float,
        typer.Option(help="Per token: rejected records/s before its writes get 429; 0 = off."),
    ] = 1.0,
    write_requests_per_s: Annotated[
        float, typer.Option(help="Per token: write requests/s sustained; 0 = off.")
    ] = 20.0,
    gpu_root: Annotated[
        str | None,
        typer.Option(
            help="Root certificate(s) (PEM) that GPU-signed rounds' evidence must chain to "
            "(default: NVIDIA's device root shipped with lightfence)."
        ),
    ] = None,
    gpu_calibration: Annotated[
        str | None,
        typer.Option(help="Signed GPU signing-time calibration (S_floor per model, firmware)."),
    ] = None,
    gpu_calibration_key: Annotated[
        list[str] | None,
        typer.Option(help="Public key (64 hex) trusted to sign --gpu-calibration; repeatable."),
    ] = None,
    stream: Annotated[
        str | None,
        typer.Option(
            help="kafka://HOST:PORT/TOPIC that `lightfence stream-worker`s consume into this "
            "database: GET /stream then shows their consumer lag."
        ),
    ] = None,
    stream_group: Annotated[
        str, typer.Option(help="The stream workers' consumer group.")
    ] = "lightfence-verifier",
) -> None:
    """Run the verifier service (migrates the database schema in place first)."""
    import os

    import uvicorn

    from lightfence.crypto.keys import KeyFileError
    from lightfence.protocol.record_topic import parse_kafka_url
    from lightfence.verifier import logs
    from lightfence.verifier.api.app import create_app
    from lightfence.verifier.config import WEBHOOK_ENV, VerifierConfig, db_url_from_env
    from lightfence.verifier.db import DatabaseError

    logs.configure(log_level)
    try:
        config = VerifierConfig(
            db_url=db_url_from_env(db),
            webhook_url=webhook or os.environ.get(WEBHOOK_ENV),
            signing_key_path=signing_key,
            checkpoint_path=checkpoints,
            checkpoint_webhook_url=checkpoint_webhook,
            records_per_s=records_per_s,
            records_burst=max(1000, int(60 * records_per_s)),
            rejections_per_s=rejections_per_s,
            write_requests_per_s=write_requests_per_s,
            gpu_root_file=gpu_root,
            gpu_calibration_file=gpu_calibration,
            gpu_calibration_keys=tuple(gpu_calibration_key or ()),
            stream_url=stream,
            stream_group=stream_group,
        )
        if stream is not None:
            parse_kafka_url(stream)
        application = create_app(config)
    except (DatabaseError, KeyFileError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)


@commands.command()
def status(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Fleet summary: devices by latest verdict, landmarks, open alerts, rejections."""
    from lightfence.verifier.queries import summary

    service = _service(db)
    try:
        with service.read() as session:
            s = summary(session)
    finally:
        service.close()
    if as_json:
        typer.echo(json.dumps(s, indent=2))
        return
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted(s["latest_verdicts"].items()) if v)
    typer.echo(f"devices        {s['devices']}  ({verdicts or 'none'})")
    typer.echo(f"pending        {s['pending_verdicts']} device(s) awaiting a verdict")
    lm = ", ".join(f"{k} {v}" for k, v in sorted(s["landmarks"].items()))
    typer.echo(f"landmarks      {lm or 'none'}")
    typer.echo(f"records        {s['records']} stored, {s['gpu_rounds']} GPU round(s)")
    rej = ", ".join(f"{k} {v}" for k, v in sorted(s["rejections"].items()))
    typer.echo(f"rejections     {rej or 'none'}")
    al = ", ".join(f"{k} {v}" for k, v in sorted(s["open_alerts"].items()))
    typer.echo(f"open alerts    {al or 'none'}")
    typer.echo(f"audit log      {s['audit_entries']} entries, head {s['audit_head']}")


@audit_app.command("verify")
def audit_verify(
    db: DbOption = None,
    checkpoint: Annotated[
        list[str] | None,
        typer.Option(
            help="A file of signed checkpoints (from `serve --checkpoints` or `audit "
            "checkpoint`); catches a cut-off tail, a rewound head and a re-hashed chain. "
            "Repeatable."
        ),
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option(help="The verifier's public key (hex; GET /verifier/key) to pin."),
    ] = None,
) -> None:
    """Walk the hash chain and check the registry, token and verdict rows against it (and the
    chain against signed checkpoints); exit 1 listing every problem found."""
    from pathlib import Path

    from lightfence.verifier.audit import verify_chain
    from lightfence.verifier.checkpoint import CheckpointError, check, read_file

    try:
        docs = [d for f in checkpoint or [] for d in read_file(Path(f))]
    except CheckpointError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    service = _service(db)
    try:
        with service.read() as session:
            report = verify_chain(session)
            signed = check(session, docs, public_key) if docs else None
    finally:
        service.close()
    problems = report.problems + (signed.problems if signed else [])
    if not problems:
        typer.echo(f"audit log intact: {report.entries} entries, head {report.head_hash}")
        if signed is not None:
            typer.echo(
                f"matches {signed.checked} signed checkpoint(s) up to entry {signed.newest_seq} "
                f"(key {', '.join(signed.key_ids)})"
            )
        else:
            typer.echo("no --checkpoint given: a rewound or re-hashed log would pass this check")
        return
    typer.echo(f"audit log BROKEN ({report.entries} entries read):", err=True)
    for problem in problems:
        typer.echo(f"  - {problem}", err=True)
    raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(
    out: Annotated[str, typer.Option(help="Append the signed checkpoint to this file.")],
    signing_key: Annotated[
        str, typer.Option(help="The verifier's Ed25519 key file (as given to `serve`).")
    ] = "lightfence-verifier.key",
    db: DbOption = None,
) -> None:
    """Sign the audit log's current head now and append it to a file."""
    from pathlib import Path

    from lightfence.crypto.keys import KeyFileError, SigningKey
    from lightfence.verifier.checkpoint import append_to_file, make
    from lightfence.verifier.clock import now_ns

    try:
        key = SigningKey.load(Path(signing_key))
    except KeyFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    service = _service(db)
    try:
        with service.read() as session:
            doc = make(session, key, now_ns())
    finally:
        service.close()
    if doc is None:
        typer.echo("the audit log is empty: nothing to checkpoint", err=True)
        raise typer.Exit(1)
    append_to_file(Path(out), doc)
    typer.echo(f"checkpoint of entry {doc['seq']} (head {doc['head_hash']}) appended to {out}")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="A name for the token, e.g. ci-landmark-fra1.")],
    role: Annotated[str, typer.Option(help="admin, operator, auditor or landmark.")],
    owner: Annotated[
        str | None, typer.Option(help="Operator name (operator) or landmark id (landmark).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from lightfence.verifier.auth import Role, TokenError, create_token
    from lightfence.verifier.clock import now_ns

    try:
        parsed = Role(role)
    except ValueError:
        raise typer.BadParameter(
            "choose admin, operator, auditor or landmark", param_hint="--role"
        ) from None
    service = _service(db)
    try:
        with service.write() as session:
            secret = create_token(
                session, name=name, role=parsed, owner=owner, actor="cli", now_ns=now_ns()
            )
    except TokenError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        service.close()
    typer.echo(secret)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="The token's name.")], db: DbOption = None
) -> None:
    """Revoke a token; requests with it fail from now on."""
    from lightfence.verifier.auth import TokenError, revoke_token
    from lightfence.verifier.clock import now_ns

    service = _service(db)
    try:
        with service.write() as session:
            revoke_token(session, name=name, actor="cli", now_ns=now_ns())
    except TokenError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        service.close()
    typer.echo(f"revoked {name}")


@token_app.command("list")
def token_list(db: DbOption = None) -> None:
    """List tokens (names, roles, owners; never the secrets)."""
    from sqlalchemy import select

    from lightfence.verifier.clock import iso
    from lightfence.verifier.models import ApiTokenRow

    service = _service(db)
    try:
        with service.read() as session:
            rows = session.execute(select(ApiTokenRow).order_by(ApiTokenRow.name)).scalars().all()
    finally:
        service.close()
    for r in rows:
        state = f"revoked {iso(r.revoked_ns)}" if r.revoked_ns else "active"
        typer.echo(f"{r.name}\t{r.role}\t{r.owner or '-'}\t{state}")
