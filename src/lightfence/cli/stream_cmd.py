"""`lightfence stream-worker`: the verifier's checks on signed records from a Kafka topic."""

from __future__ import annotations

import json
import signal
import time
from typing import Annotated

import typer

commands = typer.Typer()
"""This module's top-level commands; lightfence.cli.app loads it only to run one of them."""


@commands.command("stream-worker")
def stream_worker(
    bootstrap: Annotated[
        str, typer.Option("--bootstrap", help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT].")
    ],
    topic: Annotated[
        str, typer.Option(help="Topic of signed records (key: device id; value: record JSON).")
    ] = "lightfence-records",
    group: Annotated[str, typer.Option(help="Consumer group of the workers.")] = (
        "lightfence-verifier"
    ),
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database URL shared with `lightfence serve` (postgresql://HOST:PORT/DB for "
            "several workers). A URL with a password goes in LIGHTFENCE_DB_URL, not here: any "
            "local user can read a process's arguments.",
        ),
    ] = None,
    batch: Annotated[int, typer.Option(min=1, help="Records per database transaction.")] = 2000,
    recompute_interval: Annotated[
        float, typer.Option(min=0.0, help="Seconds between verdict passes for this worker.")
    ] = 1.0,
    verify_threads: Annotated[
        int,
        typer.Option(
            min=0,
            max=1024,
            help="Threads checking signatures (0: one per CPU). 1, the default, costs the least "
            "CPU per record: run one worker per core instead.",
        ),
    ] = 1,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port (127.0.0.1).")
    ] = None,
    stop_when_idle: Annotated[
        float,
        typer.Option(min=0.0, help="Exit after this many seconds without a message (0: never)."),
    ] = 0.0,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Check signed records from a Kafka topic with the verifier's own code; store in the DB."""
    from confluent_kafka import KafkaException
    from prometheus_client import start_http_server
    from sqlalchemy.exc import SQLAlchemyError

    from lightfence.fleet.signed_stream import (
        SignedStreamConfig,
        SignedStreamWorker,
        preload_policies,
        settle_heap,
        worker_summary,
    )
    from lightfence.protocol.record_topic import KafkaConfigError
    from lightfence.verifier import logs
    from lightfence.verifier.config import VerifierConfig, db_url_from_env
    from lightfence.verifier.db import DatabaseError
    from lightfence.verifier.service import Service

    logs.configure(log_level)
    try:
        service = Service(VerifierConfig(db_url=db_url_from_env(db), verify_threads=verify_threads))
    except (DatabaseError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    config = SignedStreamConfig(
        bootstrap_servers=bootstrap,
        topic=topic,
        group_id=group,
        poll_batch=batch,
        recompute_interval_s=recompute_interval,
    )
    try:
        worker = SignedStreamWorker(service, config)
    except KafkaConfigError as exc:
        service.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KafkaException as exc:
        service.close()
        typer.echo(f"error: Kafka client: {exc}", err=True)
        raise typer.Exit(2) from None
    preload_policies(service)
    settle_heap()
    if metrics_port is not None:
        start_http_server(metrics_port, "127.0.0.1", registry=service.metrics.registry)
    stopping = False

    def stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    last = [time.monotonic(), 0]

    def should_stop() -> bool:
        if worker.stats.messages != last[1]:
            last[:] = [time.monotonic(), worker.stats.messages]
        idle = stop_when_idle > 0 and time.monotonic() - last[0] > stop_when_idle
        return stopping or idle

    try:
        stats = worker.run(should_stop)
    except (KafkaException, SQLAlchemyError) as exc:
        # Nothing of the batch in flight is lost: its offsets were not committed, so the
        # group's next owner (or this worker, restarted) replays it.
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        service.close()
    typer.echo(json.dumps(worker_summary(stats), sort_keys=True))
