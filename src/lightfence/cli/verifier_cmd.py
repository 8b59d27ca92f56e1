"""`lightfence serve`, `lightfence status`, `lightfence audit verify`, `lightfence token ...`."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Annotated

import typer

from lightfence.cli.errors import fail, refused
from lightfence.cli.remote import (
    TOKEN_ENV,
    VERIFIER_ENV,
    TokenOpt,
    VerifierOpt,
    call_verifier,
    segment,
)

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
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Settings file (TOML; deploy/verifier.toml is an example). Every key can also "
            "be set as LIGHTFENCE_<KEY>; flags override the environment, which overrides the file.",
        ),
    ] = None,
    db: DbOption = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8080).")] = None,
    webhook: Annotated[
        str | None, typer.Option(help="POST each new alert as JSON to this URL.")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="debug, info (default), warning or error.")
    ] = None,
    signing_key: Annotated[
        str | None,
        typer.Option(
            help="Ed25519 key that signs gate verdict tokens (created 0600 if absent; default "
            "lightfence-verifier.key)."
        ),
    ] = None,
    checkpoints: Annotated[
        str | None,
        typer.Option(
            help="Append signed audit checkpoints to this file (JSON Lines; default "
            "lightfence-audit-checkpoints.jsonl); keep a copy off this host. `lightfence audit "
            "verify --checkpoint FILE` checks the log against it."
        ),
    ] = None,
    checkpoint_webhook: Annotated[
        str | None, typer.Option(help="Also POST each signed checkpoint as JSON to this URL.")
    ] = None,
    records_per_s: Annotated[
        float | None,
        typer.Option(help="Per token: records/s sustained (burst 60 s worth); 0 = off. [500]"),
    ] = None,
    rejections_per_s: Annotated[
        float | None,
        typer.Option(help="Per token: rejected records/s before its writes get 429; 0 = off. [1]"),
    ] = None,
    write_requests_per_s: Annotated[
        float | None, typer.Option(help="Per token: write requests/s sustained; 0 = off. [20]")
    ] = None,
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
    tls_certfile: Annotated[
        str | None,
        typer.Option(help="PEM certificate chain: serve HTTPS (with --tls-keyfile)."),
    ] = None,
    tls_keyfile: Annotated[
        str | None, typer.Option(help="PEM private key of --tls-certfile.")
    ] = None,
    preload_policy: Annotated[
        list[str] | None,
        typer.Option(
            help="Build this policy's region before listening (seconds for a large country), "
            "so the first enrolment under it does not wait; repeatable."
        ),
    ] = None,
    stream: Annotated[
        str | None,
        typer.Option(
            help="kafka://HOST:PORT/TOPIC that `lightfence stream-worker`s consume into this "
            "database: GET /stream then shows their consumer lag."
        ),
    ] = None,
    stream_group: Annotated[
        str | None,
        typer.Option(help="The stream workers' consumer group (default lightfence-verifier)."),
    ] = None,
) -> None:
    """Run the verifier service (migrates the database schema in place first)."""
    import uvicorn

    from lightfence.crypto.keys import KeyFileError
    from lightfence.protocol.record_topic import parse_kafka_url
    from lightfence.verifier import logs
    from lightfence.verifier.api.app import create_app
    from lightfence.verifier.config import normalise_db_url
    from lightfence.verifier.config_file import ConfigFileError, resolve, verifier_config
    from lightfence.verifier.db import DatabaseError

    try:
        settings = resolve(
            config,
            {
                "db_url": db,
                "host": host,
                "port": port,
                "webhook_url": webhook,
                "log_level": log_level,
                "signing_key": signing_key,
                "checkpoints": checkpoints,
                "checkpoint_webhook_url": checkpoint_webhook,
                "records_per_s": records_per_s,
                "rejections_per_s": rejections_per_s,
                "write_requests_per_s": write_requests_per_s,
                "gpu_root": gpu_root,
                "gpu_calibration": gpu_calibration,
                "gpu_calibration_keys": tuple(gpu_calibration_key or ()),
                "tls_certfile": tls_certfile,
                "tls_keyfile": tls_keyfile,
                "preload_policies": tuple(preload_policy or ()),
                "stream_url": stream,
                "stream_group": stream_group,
            },
            normalise_db_url=normalise_db_url,
        )
    except ConfigFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if settings.tls_certfile is not None and settings.tls_keyfile is not None:
        import ssl

        from lightfence.crypto.keys import KeyFileError, refuse_shared_mode

        try:  # the TLS key is as secret as the signing key: refuse it readable by others
            mode = os.stat(settings.tls_keyfile).st_mode
        except OSError:
            mode = 0  # a missing or unreadable key is said by load_cert_chain below
        try:
            refuse_shared_mode(Path(settings.tls_keyfile), mode, "TLS key")
        except KeyFileError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        try:  # uvicorn would fail later with a traceback; say which file is wrong instead
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                settings.tls_certfile, settings.tls_keyfile
            )
        except (OSError, ssl.SSLError) as exc:
            typer.echo(
                f"error: cannot use TLS certificate {settings.tls_certfile} with key "
                f"{settings.tls_keyfile}: {exc}",
                err=True,
            )
            raise typer.Exit(2) from None
    # Bound before anything else (and handed to uvicorn): a port in use is one clear line and
    # exit 1, not uvicorn's error after the database was already migrated.
    listener = bind_listener(settings.host, settings.port)
    logs.configure(settings.log_level)
    try:
        config_obj = verifier_config(settings)
        if settings.stream_url is not None:
            parse_kafka_url(settings.stream_url)
        application = create_app(config_obj)
    except (DatabaseError, KeyFileError, ValueError) as exc:
        listener.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if settings.preload_policies:
        from lightfence.core.policy import PolicyError, parse_policy

        for text in settings.preload_policies:
            try:
                parse_policy(text)  # core.policy caches the region for the service's requests
            except PolicyError as exc:
                listener.close()
                typer.echo(f"error: preload_policies: {exc}", err=True)
                raise typer.Exit(2) from None
    bound_host, bound_port = listener.getsockname()[:2]
    base = http_base(bound_host, bound_port, scheme=settings.scheme)
    key = application.state.service.signing_key
    # The key id, so whoever pins GET /verifier/key can compare it with what they fetched.
    signed_by = f", signing key {key.key_id}" if key is not None else ""
    typer.echo(
        f"lightfence verifier listening on {base} (db: {redacted(config_obj.db_url)}, "
        f"dashboard: {base}/){signed_by}",
        err=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            application,
            log_level="warning",
            access_log=False,
            lifespan="on",
            ssl_certfile=settings.tls_certfile,
            ssl_keyfile=settings.tls_keyfile,
        )
    )
    server.run(sockets=[listener])


@commands.command("verifier-key")
def verifier_key(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="The verifier's settings file (as given to `serve`)."),
    ] = None,
    signing_key: Annotated[
        str | None,
        typer.Option(
            help="The verifier's signing key file (default: the config's, or "
            "lightfence-verifier.key)."
        ),
    ] = None,
) -> None:
    """Print the verifier's public key (what agents and gates pin).

    The JSON GET /verifier/key serves, for --verifier-key FILE; read from the signing key file on
    the verifier's host, so nobody has to trust the network for it."""
    from lightfence.crypto.keys import KeyFileError, SigningKey
    from lightfence.verifier.config_file import ConfigFileError, resolve

    try:
        settings = resolve(config, {"signing_key": signing_key})
        key = SigningKey.load(Path(settings.signing_key))
    except ConfigFileError as exc:
        raise fail(str(exc)) from None
    except KeyFileError as exc:
        raise fail(f"{exc} (`lightfence serve` creates it on its first start)") from None
    typer.echo(json.dumps({"public_key": key.public_bytes.hex(), "key_id": key.key_id}))


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound and listening on host:port; exit 1 with one line if it cannot be."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise refused(f"cannot listen on {host}:{port}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart despite TIME_WAIT
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        why = exc.strerror or str(exc)
        hint = ""
        if exc.errno == 98:  # EADDRINUSE
            why, hint = "the port is already in use", " (another verifier? choose --port)"
        elif exc.errno == 13:  # EACCES
            hint = " (ports below 1024 need privileges; choose --port 8080)"
        raise refused(f"cannot listen on {host}:{port}: {why}{hint}") from None
    sock.set_inheritable(True)
    return sock


def http_base(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def redacted(db_url: str) -> str:
    """The database URL with any password replaced by ***."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(db_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparsed URL)"


def _remote(db: str | None, verifier: str | None, token_file: str | None = None) -> bool:
    """Whether a command runs against a remote verifier: --verifier (or its env) and no --db.
    A token (--token-file or its env) with neither is a remote call missing its URL, not a wish
    for the local default database (which would be created empty in the working directory)."""
    if db is None and not verifier and (token_file or os.environ.get(TOKEN_ENV, "").strip()):
        raise refused(f"give the verifier's URL: --verifier URL (or ${VERIFIER_ENV})")
    return bool(verifier) and db is None


@commands.command()
def status(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    verifier: VerifierOpt = None,
    token: TokenOpt = None,
) -> None:
    """Fleet summary: devices by latest verdict, landmarks, open alerts, rejections."""
    if _remote(db, verifier, token):
        s = call_verifier(verifier, token, "GET", "/status")
    else:
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
    verifier: VerifierOpt = None,
    token: TokenOpt = None,
) -> None:
    """Walk the hash chain and check the registry, token and verdict rows against it (and the
    chain against signed checkpoints); exit 1 listing every problem found."""
    from pathlib import Path

    if _remote(db, verifier, token):
        if checkpoint:
            raise refused(
                "--checkpoint checks a local database (--db): the verifier cannot be asked to "
                "vouch for itself against checkpoints you hold"
            )
        out = call_verifier(verifier, token, "GET", "/audit/verify")
        if out["ok"]:
            typer.echo(f"audit log intact: {_entries(out['entries'], out.get('chains', 1))}, "
                       f"head {out['head_hash']}")  # fmt: skip
            typer.echo("checked by the verifier itself: a rewound or re-hashed log would pass")
            return
        typer.echo(f"audit log BROKEN ({out['entries']} entries read):", err=True)
        for problem in out["problems"]:
            typer.echo(f"  - {problem}", err=True)
        raise typer.Exit(1)

    from lightfence.verifier.audit_verify import verify_chain
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
        typer.echo(
            f"audit log intact: {_entries(report.entries, report.chains)}, head {report.head_hash}"
        )
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


def _entries(entries: int, chains: int) -> str:
    if chains <= 1:
        return f"{entries} entries"
    return f"{entries} entries in {chains} chains (main and {chains - 1} stream)"


@audit_app.command("checkpoint")
def audit_checkpoint(
    out: Annotated[str, typer.Option(help="Append the signed checkpoint to this file.")],
    signing_key: Annotated[
        str, typer.Option(help="The verifier's Ed25519 key file (as given to `serve`).")
    ] = "lightfence-verifier.key",
    db: DbOption = None,
) -> None:
    """Sign the audit log's current heads (main and stream chains) now and append it to a
    file."""
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
    streams = f" and of {len(doc['chains'])} stream chain(s)" if doc["chains"] else ""
    typer.echo(
        f"checkpoint of entry {doc['seq']} (head {doc['head_hash']}){streams} appended to {out}"
    )


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="A name for the token, e.g. ci-landmark-fra1.")],
    role: Annotated[str, typer.Option(help="admin, operator, auditor or landmark.")],
    owner: Annotated[
        str | None, typer.Option(help="Operator name (operator) or landmark id (landmark).")
    ] = None,
    db: DbOption = None,
    verifier: VerifierOpt = None,
    token: TokenOpt = None,
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
    if _remote(db, verifier, token):
        body = {"name": name, "role": parsed.value, "owner": owner}
        typer.echo(call_verifier(verifier, token, "POST", "/tokens", body)["token"])
        return
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
    name: Annotated[str, typer.Argument(help="The token's name.")],
    db: DbOption = None,
    verifier: VerifierOpt = None,
    token: TokenOpt = None,
) -> None:
    """Revoke a token; requests with it fail from now on."""
    from lightfence.verifier.auth import TokenError, revoke_token
    from lightfence.verifier.clock import now_ns

    if _remote(db, verifier, token):
        call_verifier(verifier, token, "POST", f"/tokens/{segment(name)}/revoke", {})
        typer.echo(f"revoked {name}")
        return

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
def token_list(db: DbOption = None, verifier: VerifierOpt = None, token: TokenOpt = None) -> None:
    """List tokens (names, roles, owners; never the secrets)."""
    from sqlalchemy import select

    if _remote(db, verifier, token):
        for t in call_verifier(verifier, token, "GET", "/tokens"):
            typer.echo(f"{t['name']}\t{t['role']}\t{t['owner'] or '-'}\t{t['state']}")
        return

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
