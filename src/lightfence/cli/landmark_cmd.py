"""`lightfence landmark init | keygen | entry | serve`, and on a remote verifier
`lightfence landmark register | list | retire`."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import tomllib
from pathlib import Path
from typing import Annotated

import typer

from lightfence.attestation import AppraisalPolicy, ChainCache, ChainError, load_roots
from lightfence.cli.errors import fail, refused
from lightfence.cli.remote import (
    RemoteError,
    TokenOpt,
    VerifierOpt,
    call_verifier,
    require_remote,
    segment,
)
from lightfence.crypto.keys import KeyFileError, SigningKey
from lightfence.evidence.submit import gpu_rounds_url, read_token
from lightfence.landmark.config import (
    ConfigError,
    ServerConfig,
    config_toml,
    load_config,
    parse_config,
)
from lightfence.landmark.gpu_server import GpuSubmission, serve_gpu_rounds
from lightfence.landmark.server import SHUTDOWN_GRACE_S, LandmarkServer
from lightfence.landmark.submitter import RecordSubmitter
from lightfence.model.registry import LandmarkEntry, RegistryError, reachable_address
from lightfence.protocol.gpu_round import GpuEvidence, GpuRoundRecord
from lightfence.protocol.gpu_session import GpuLandmarkEndpoint
from lightfence.protocol.landmark_session import LandmarkEndpoint

commands = typer.Typer()
"""This module's top-level commands; lightfence.cli.app loads it only to run one of them."""

landmark_app = typer.Typer(help="Run a landmark: answer timed challenges, sign what it measured.")
commands.add_typer(landmark_app, name="landmark")

ConfigOpt = Annotated[Path, typer.Option("--config", help="Landmark config file (TOML).")]


def _config(path: Path) -> ServerConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise fail(str(exc)) from None


@landmark_app.command()
def init(
    landmark_id: Annotated[str, typer.Option("--id", help="Landmark name, e.g. fra1.")],
    latitude: Annotated[float, typer.Option("--lat", help="Surveyed latitude, degrees.")],
    longitude: Annotated[float, typer.Option("--lon", help="Surveyed longitude, degrees.")],
    position_error_km: Annotated[
        float, typer.Option(help="Survey uncertainty of the position, km.")
    ] = 0.0,
    listen: Annotated[str, typer.Option(help="UDP host:port to serve on.")] = "0.0.0.0:7800",
    operator: Annotated[str, typer.Option(help="Who runs this landmark.")] = "",
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to write landmark.toml and the key.")
    ] = Path("."),
) -> None:
    """Create a landmark key (0600) and config file; print the registry entry to publish."""
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "landmark.toml"
    key_name = f"{landmark_id}.key"
    if config_path.exists():
        raise fail(f"{config_path} already exists; remove it or choose another --dir")
    text = config_toml(
        landmark_id, latitude, longitude, key_name, listen, operator, position_error_km
    )
    try:
        cfg = parse_config(tomllib.loads(text), directory)  # validate before writing anything
        key = SigningKey.generate()
        key.save(directory / key_name)
    except (ConfigError, KeyFileError) as exc:
        raise fail(str(exc)) from None
    config_path.write_text(text)
    typer.echo(f"wrote {config_path} and {directory / key_name} (mode 0600)", err=True)
    typer.echo("registry entry to publish (set address to the public host:port):", err=True)
    typer.echo(json.dumps(cfg.registry_entry(key.public_bytes).to_json_dict(), indent=2))


@landmark_app.command()
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Key file to create (mode 0600).")],
) -> None:
    """Create an Ed25519 landmark key; print its public key (hex) and key id."""
    key = SigningKey.generate()
    try:
        key.save(out)
    except KeyFileError as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps({"public_key": key.public_bytes.hex(), "key_id": key.key_id}))


@landmark_app.command()
def entry(
    config: ConfigOpt,
    address: Annotated[str | None, typer.Option(help="Public host:port agents use.")] = None,
) -> None:
    """Print this landmark's registry entry (JSON) for the file agents and auditors use."""
    cfg = _config(config)
    try:
        key = SigningKey.load(cfg.key_file)
        text = json.dumps(cfg.registry_entry(key.public_bytes, address).to_json_dict(), indent=2)
    except (KeyFileError, RegistryError) as exc:
        raise fail(str(exc)) from None
    typer.echo(text)


@landmark_app.command()
def serve(config: ConfigOpt) -> None:
    """Serve timed challenges over UDP until SIGINT/SIGTERM, then shut down gracefully."""
    cfg = _config(config)
    try:
        key = SigningKey.load(cfg.key_file)
    except KeyFileError as exc:
        raise fail(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        token = read_token(cfg.verifier_token_file) if cfg.verifier_url else None
    except ValueError as exc:
        raise fail(str(exc)) from None
    endpoint = LandmarkEndpoint(cfg.protocol, key)
    try:
        server = LandmarkServer.bind(
            endpoint,
            cfg.listen_host,
            cfg.listen_port,
            cfg.timestamps,
            verifier_url=cfg.verifier_url,
            verifier_token=token,
        )
    except OSError as exc:
        raise fail(f"cannot serve on {cfg.listen_host}:{cfg.listen_port}: {exc}") from None
    except ValueError as exc:  # a kafka:// verifier_url whose security settings are unusable
        raise fail(str(exc)) from None
    host, port = server.address
    typer.echo(
        f"landmark {cfg.protocol.landmark_id} (key {key.key_id}) serving on {host}:{port}; "
        f"timestamps: {server.ts.reason}",
        err=True,
    )
    gpu_endpoint = _gpu_endpoint(cfg, key)
    asyncio.run(_serve(server, cfg, gpu_endpoint, token))
    if gpu_endpoint is not None:
        g = gpu_endpoint.stats
        typer.echo(
            f"GPU rounds: {g.sessions_opened} sessions, {g.records_issued} records, "
            f"rejected: {g.rejected or 'none'}",
            err=True,
        )
    stats = endpoint.stats
    typer.echo(
        f"stopped: {stats.sessions_opened} sessions, {stats.records_issued} records "
        f"({stats.records_kernel_timed} kernel-timed, {stats.records_monotonic_timed} monotonic), "
        f"rejected datagrams: {dict(stats.rejected) or 'none'}",
        err=True,
    )


def _gpu_endpoint(cfg: ServerConfig, key: SigningKey) -> GpuLandmarkEndpoint | None:
    """The GPU-round endpoint when [gpu] listen is set (appraising under its root file)."""
    if cfg.gpu_listen is None:
        return None
    try:
        roots = load_roots(cfg.gpu_root_file) if cfg.gpu_root_file else load_roots()
    except ChainError as exc:
        raise fail(f"[gpu] root_file: {exc}") from None
    return GpuLandmarkEndpoint(
        cfg.protocol.landmark_id,
        key,
        AppraisalPolicy(roots, chain_cache=ChainCache()),
        round_timeout_ns=cfg.protocol.round_timeout_ns,
    )


async def _serve(
    server: LandmarkServer,
    cfg: ServerConfig,
    gpu: GpuLandmarkEndpoint | None = None,
    token: str | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    gpu_proto = None
    # GPU rounds go to the verifier's /gpu-rounds beside /records, with their evidence.
    submitter = None
    if gpu is not None and cfg.verifier_url:
        try:
            url = gpu_rounds_url(cfg.verifier_url)
            submitter = RecordSubmitter(url, token, body_key="gpu_rounds")
        except ValueError as exc:
            typer.echo(f"warning: GPU rounds are not submitted: [verifier] url: {exc}", err=True)
    delivered = asyncio.Event()
    delivery = asyncio.create_task(submitter.run(delivered)) if submitter else None
    if gpu is not None and cfg.gpu_listen is not None:
        host, port = cfg.gpu_listen

        def on_round(record: GpuRoundRecord, evidence: GpuEvidence) -> None:
            if submitter is not None:
                submitter.add(GpuSubmission(record, evidence))

        try:
            transport, gpu_proto = await serve_gpu_rounds(gpu, host, port, on_round)
        except OSError as exc:
            raise fail(f"cannot serve GPU rounds on {host}:{port}: {exc}") from None
        gh, gp = transport.get_extra_info("sockname")[:2]
        where = f"submitted to {submitter.url}" if submitter else "returned to the agent only"
        typer.echo(f"GPU rounds on {gh}:{gp} (records {where})", err=True)
    try:
        await server.serve(stop)
    finally:
        if gpu_proto is not None:
            gpu_proto.close()
        delivered.set()  # deliver what is left, then stop (bounded)
        if delivery is not None:
            await asyncio.wait([delivery], timeout=SHUTDOWN_GRACE_S)
            delivery.cancel()


def _entries(doc: object, source: str) -> list[dict[str, object]]:
    """The entries in `landmark init`/`entry` output (one object) or a registry file."""
    items: list[object]
    if isinstance(doc, dict) and isinstance(doc.get("landmarks"), list):
        items = list(doc["landmarks"])
    else:
        items = [doc]
    if not items or not all(isinstance(i, dict) for i in items):
        raise fail(
            f"{source} holds no landmark entry (the JSON `lightfence landmark init` printed)"
        )
    return [i for i in items if isinstance(i, dict)]


@landmark_app.command()
def register(
    entry_file: Annotated[
        str,
        typer.Argument(
            help="The registry entry `landmark init` (or `landmark entry`) printed, saved to a "
            "file, or - for standard input; a registry file registers each landmark in it."
        ),
    ],
    address: Annotated[
        str | None,
        typer.Option(help="Public host:port agents reach it at (overrides the entry's)."),
    ] = None,
    operator: Annotated[
        str | None, typer.Option(help="Who runs it, when the entry names no operator.")
    ] = None,
    rekey: Annotated[
        bool,
        typer.Option(
            "--rekey", help="Replace the key of a landmark id already registered (on purpose)."
        ),
    ] = False,
    verifier: VerifierOpt = None,
    token: TokenOpt = None,
) -> None:
    """Register a landmark on the verifier (admin token), from its entry as it is."""
    from lightfence.cli.device_cmd import read_json_arg

    items = _entries(read_json_arg(entry_file, "landmark entry"), entry_file)
    if address is not None and len(items) > 1:
        # One address for every landmark of a registry file would send agents to one host for
        # all of them (and each re-registration would overwrite the right addresses).
        raise fail(
            f"--address is one landmark's address, and {entry_file} holds {len(items)}: "
            "register them one at a time, or put each address in the file"
        )
    bodies = []
    for item in items:
        try:
            entry = LandmarkEntry.from_json_dict(item)
            body = entry.to_json_dict()
            if address is not None:
                body["address"] = address
            if "address" in body:
                reachable_address(str(body["address"]))
        except RegistryError as exc:
            hint = " (pass --address PUBLIC_HOST:PORT)" if "address" in str(exc) else ""
            raise fail(f"{entry_file}: {exc}{hint}") from None
        if operator is not None:
            body["operator"] = operator
        if not body.get("operator"):
            raise fail(f"landmark {entry.id} names no operator: pass --operator NAME")
        bodies.append(body)
    try:
        with require_remote(verifier, token) as remote:
            for body in bodies:
                if rekey:
                    path = f"/landmarks/{segment(str(body['id']))}"
                    fields = {k: v for k, v in body.items() if k != "id"}
                    out = remote.request("PUT", path, body=fields)
                else:
                    out = remote.post("/landmarks", body)
                state = "" if out["status"] == "active" else f"; its status is {out['status']}"
                typer.echo(
                    f"registered landmark {out['id']} (key {out['key_id']}) at "
                    f"{out.get('address') or 'no address'}, {out['lat']}, {out['lon']}{state}"
                )
    except RemoteError as exc:
        raise refused(str(exc)) from None


@landmark_app.command("list")
def list_landmarks(
    verifier: VerifierOpt = None,
    token: TokenOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Landmarks registered on the verifier, with their status."""
    rows = call_verifier(verifier, token, "GET", "/landmarks")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no landmarks registered", err=True)
    for r in rows:
        typer.echo(
            f"{r['id']}\t{r.get('address') or '-'}\t{r['lat']},{r['lon']}\t{r['key_id']}\t"
            f"{r['operator']}\t{r['status']}"
        )


@landmark_app.command()
def retire(
    landmark_id: Annotated[str, typer.Argument(help="The landmark id.")],
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "",
    verifier: VerifierOpt = None,
    token: TokenOpt = None,
) -> None:
    """Retire a landmark (admin): its records stop counting; agents stop measuring it."""
    path = f"/landmarks/{segment(landmark_id)}/retire"
    out = call_verifier(verifier, token, "POST", path, {"reason": reason})
    typer.echo(f"landmark {out['id']} is {out['status']}")
