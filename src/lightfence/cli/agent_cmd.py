"""`lightfence agent keygen | measure`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from lightfence.agent.gpu_measure import GpuRoundResult
from lightfence.agent.measure import LandmarkResult, RetryPolicy, measure_all
from lightfence.cli.errors import fail, refused
from lightfence.cli.remote import (
    TOKEN_ENV,
    RemoteError,
    TokenOpt,
    VerifierKeyOpt,
    VerifierOpt,
    read_token,
)
from lightfence.crypto.keys import KeyFileError, SigningKey
from lightfence.evidence.bundle import EvidenceBundle, save_bundle
from lightfence.evidence.submit import gpu_rounds_url, post_json
from lightfence.identity.device import (
    PROVIDERS,
    AttestationHook,
    DeviceIdentity,
    IdentityError,
    load_identity,
    nvattest_hook,
    nvml_cc_attestation_hook,
)
from lightfence.identity.gpu_signer import GpuSigner
from lightfence.model.registry import LandmarkEntry, RegistryError, load_registry
from lightfence.protocol.record import MAX_ROUNDS, MeasurementRecord

commands = typer.Typer()
"""This module's top-level commands; lightfence.cli.app loads it only to run one of them."""

agent_app = typer.Typer(help="The device agent: measure against landmarks, collect evidence.")
commands.add_typer(agent_app, name="agent")

DEFAULT_KEY = Path(os.environ.get("LIGHTFENCE_DEVICE_KEY", "~/.lightfence/device.key"))
KeyOpt = Annotated[
    Path, typer.Option("--key", help="Device key file; created (0600) on first use.")
]
IdentityOpt = Annotated[
    str, typer.Option("--identity", help=f"Identity provider: {', '.join(PROVIDERS)}.")
]
GpuOpt = Annotated[int, typer.Option("--gpu-index", help="GPU for the nvml provider.")]
AttestOpt = Annotated[
    str, typer.Option("--attest", help="Attestation: none, nvml-cc or nvattest (GPU hosts only).")
]


def _identity(
    key_path: Path, provider: str, gpu_index: int, attest: str
) -> tuple[SigningKey, DeviceIdentity]:
    key_path = key_path.expanduser()
    hooks: dict[str, AttestationHook | None] = {
        "none": None,
        "nvml-cc": nvml_cc_attestation_hook(gpu_index),
        "nvattest": nvattest_hook(),
    }
    if attest not in hooks:
        raise fail(f"--attest must be one of {', '.join(hooks)}")
    if not key_path.parent.exists():
        key_path.parent.mkdir(parents=True, mode=0o700)
    try:
        return load_identity(provider, key_path, gpu_index=gpu_index, attestation=hooks[attest])
    except (IdentityError, KeyFileError) as exc:
        raise fail(str(exc)) from None


@agent_app.command()
def keygen(
    key: KeyOpt = DEFAULT_KEY,
    identity: IdentityOpt = "software",
    gpu_index: GpuOpt = 0,
    attest: AttestOpt = "none",
) -> None:
    """Create the device key if absent; print the device identity (JSON) to register."""
    _, ident = _identity(key, identity, gpu_index, attest)
    typer.echo(json.dumps(ident.to_json_dict(), indent=2))


@agent_app.command()
def measure(
    landmarks: Annotated[
        Path | None,
        typer.Option(
            "--landmarks",
            help="Landmark registry JSON (ids, addresses, keys); or use --verifier and "
            "--verifier-key to fetch the verifier's signed registry.",
        ),
    ] = None,
    verifier: VerifierOpt = None,
    verifier_key: VerifierKeyOpt = None,
    token: TokenOpt = None,
    rounds: Annotated[int, typer.Option(help="Timed rounds per landmark.")] = 10,
    out: Annotated[Path, typer.Option("--out", help="Evidence bundle to write.")] = Path(
        "evidence.json"
    ),
    submit: Annotated[
        str | None,
        typer.Option(
            "--submit",
            help="Verifier records URL (.../records) to POST the records to; GPU rounds go to "
            "the sibling .../gpu-rounds.",
        ),
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option("--landmark", help="Measure only this landmark (repeat).")
    ] = None,
    attempts: Annotated[int, typer.Option(help="Sessions tried per landmark.")] = 4,
    timeout: Annotated[float, typer.Option(help="Seconds one session may take.")] = 10.0,
    key: KeyOpt = DEFAULT_KEY,
    identity: IdentityOpt = "software",
    gpu_index: GpuOpt = 0,
    attest: AttestOpt = "none",
    gpu_rounds: Annotated[
        str,
        typer.Option(
            help="auto: look for a GPU signer (NVML in CC mode, or nvattest) for GPU-signed "
            "rounds and say why not; off: key rounds only (docs/trust.md)."
        ),
    ] = "auto",
) -> None:
    """Measure all landmarks concurrently and write a signed evidence bundle."""
    if not 1 <= rounds <= MAX_ROUNDS:
        raise fail(f"--rounds must be in [1, {MAX_ROUNDS}]")
    if attempts < 1 or timeout <= 0:
        raise fail("--attempts must be >= 1 and --timeout > 0")
    if (landmarks is None) == (verifier is None):
        raise fail("give --landmarks FILE, or --verifier URL with --verifier-key KEY (not both)")
    if verifier is not None and submit is not None:
        raise fail("--verifier submits to the verifier's /records itself: drop --submit")
    if verifier is not None:
        submit = f"{verifier.rstrip('/')}/records"
    try:
        api_token = read_token(token) if submit else None
    except RemoteError as exc:
        raise fail(str(exc)) from None
    if verifier is not None and not api_token:
        raise fail(f"give an API token to submit the records: --token-file FILE (or ${TOKEN_ENV})")
    if landmarks is not None:
        source = str(landmarks)
        try:
            registry = load_registry(landmarks)
        except RegistryError as exc:
            raise fail(str(exc)) from None
    else:
        assert verifier is not None
        source = f"the registry of {verifier}"
        registry = fetch_signed_registry(verifier, verifier_key)
    if verifier is not None and not only:
        # One landmark registered without an address must not stop the others being measured.
        for e in [e for e in registry.values() if e.address is None]:
            typer.echo(
                f"warning: landmark {e.id} is registered without an address and is not "
                "measured (an admin sets one: `lightfence landmark register --address`)",
                err=True,
            )
            del registry[e.id]
    try:
        entries = [registry[i] for i in only] if only else list(registry.values())
        for e in entries:
            e.host_port()
    except KeyError as exc:
        raise fail(f"landmark {exc} is not in {source} (not registered, or retired)") from None
    except RegistryError as exc:
        raise fail(str(exc)) from None
    if not entries:
        raise fail(f"no landmarks in {source}")
    if gpu_rounds not in ("auto", "off"):
        raise fail("--gpu-rounds must be auto or off")
    signing_key, ident = _identity(key, identity, gpu_index, attest)
    console = Console(stderr=True)
    console.print(f"device {ident.device_id} (identity: {ident.trust_level})")
    gpu_signer = None
    if gpu_rounds == "auto":
        gpu_signer, gpu_line = gpu_rounds_status(gpu_index, entries)
        console.print(gpu_line)
    retry = RetryPolicy(attempts=attempts, attempt_timeout_s=timeout)
    # A challenge's thread must get the interpreter at once when it wakes, not after the
    # progress display's 5 ms default time slice: a late answer only widens the cap, but why.
    sys.setswitchinterval(0.0002)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        refresh_per_second=4,
    ) as bar:
        tasks: dict[str, TaskID] = {
            e.id: bar.add_task(e.id, total=rounds, status="starting") for e in entries
        }

        def progress(lid: str, status: str, done: int, total: int) -> None:
            bar.update(tasks[lid], completed=done, total=total, status=status)

        results = asyncio.run(measure_all(entries, signing_key, ident, rounds, retry, progress))
    _print_results(console, results)
    records = tuple(r.record for r in results if r.record is not None)
    gpu_results = [] if gpu_signer is None else measure_gpu_all(entries, ident, gpu_signer)
    for g in gpu_results:
        status = "ok" if g.record else f"failed: {g.error}"
        rtt = f", RTT {g.record.rtt_ms:.3f} ms (GPU signing included)" if g.record else ""
        console.print(f"GPU round {g.landmark_id}: {status}{rtt}")
    gpu_pairs = tuple(
        (g.record, g.evidence) for g in gpu_results if g.record is not None and g.evidence
    )
    bundle = EvidenceBundle(ident, records, tuple(entries), time.time_ns(), gpu_pairs)
    try:
        save_bundle(bundle, out)
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc}") from None
    console.print(f"wrote {out}: {len(records)} of {len(entries)} landmarks measured")
    gpu_payload = {
        "gpu_rounds": [
            {"record": r.to_json_dict(), "evidence": e.to_json_dict()} for r, e in gpu_pairs
        ]
    }
    if verifier is not None and records:
        submit_to_verifier(console, verifier, api_token, records, gpu_payload, out)
    elif submit and records:
        try:
            reply = post_json(submit, {"records": [r.to_json_dict() for r in records]}, api_token)
            text = reply.decode(errors="replace")[:200]
            console.print(f"submitted {len(records)} record(s) to {submit}: {text}")
            if gpu_pairs:
                url = gpu_rounds_url(submit)
                text = post_json(url, gpu_payload, api_token).decode(errors="replace")[:200]
                console.print(f"submitted {len(gpu_pairs)} GPU round(s) to {url}: {text}")
        except (OSError, ValueError) as exc:
            raise refused(
                f"could not submit to {submit}: {exc} (the bundle is saved in {out})"
            ) from None
    if not records:
        raise typer.Exit(1)


def fetch_signed_registry(verifier: str, verifier_key: str | None) -> dict[str, LandmarkEntry]:
    """The verifier's signed landmark registry, checked against the pinned key; exit 1 with one
    line if it cannot be fetched or does not check (exit 2 for a missing or bad key)."""
    from lightfence.cli.remote import Remote, RemoteError
    from lightfence.crypto.keyfile import read_verifier_key
    from lightfence.model.signed_registry import verify_registry

    if not verifier_key:
        raise fail(
            "give the verifier's public key to pin: --verifier-key KEY (64 hex, or a file with "
            "the hex or the JSON of GET /verifier/key; or $LIGHTFENCE_VERIFIER_KEY)"
        )
    try:
        pinned = read_verifier_key(verifier_key)
    except ValueError as exc:
        raise fail(f"--verifier-key: {exc}") from None
    try:
        with Remote(verifier) as remote:
            doc = remote.get("/landmarks/registry.signed.json")
    except RemoteError as exc:
        raise refused(f"cannot fetch the landmark registry: {exc}") from None
    try:
        return verify_registry(doc, pinned, time.time_ns())
    except RegistryError as exc:
        raise refused(f"refusing the landmark registry from {verifier}: {exc}") from None


def submit_to_verifier(
    console: Console,
    verifier: str,
    token: str | None,
    records: tuple[MeasurementRecord, ...],
    gpu_payload: dict[str, Any],
    out: Path,
) -> None:
    """POST the records (and GPU rounds) to the verifier; exit 1 with one line when it cannot
    be reached, refuses the request, or stores none of the records."""
    from lightfence.cli.remote import Remote, RemoteError

    try:
        with Remote(verifier, token) as remote:
            doc = remote.post("/records", {"records": [r.to_json_dict() for r in records]})
            check_submitted(doc, out)
            console.print(
                f"submitted {len(records)} record(s) to {verifier}: {doc.get('stored', 0)} "
                f"stored, {doc.get('duplicate', 0)} duplicate, {doc.get('rejected', 0)} rejected"
            )
            if gpu_payload["gpu_rounds"]:
                g = remote.post("/gpu-rounds", gpu_payload)
                console.print(f"submitted {len(gpu_payload['gpu_rounds'])} GPU round(s): {g}")
    except RemoteError as exc:
        hint = " (is this device enrolled? `lightfence device enrol`)" if exc.status == 404 else ""
        raise refused(
            f"could not submit to {verifier}: {exc}{hint}; the bundle is saved in {out}"
        ) from None


def check_submitted(doc: object, out: Path) -> None:
    """Exit 1 with one line when the verifier stored none of the records it was sent."""
    if not isinstance(doc, dict) or doc.get("rejected", 0) == 0 or doc.get("stored", 0) > 0:
        return
    if doc.get("duplicate", 0) > 0:
        return
    first: dict[str, Any] = next(
        (r for r in doc.get("results", []) if r.get("status") == "rejected"), {}
    )
    reason = first.get("reason") or "rejected"
    detail = str(first.get("detail", ""))
    enrol = reason == "unknown_device" and "not enrolled" in detail
    hint = " (enrol it: `lightfence device enrol`)" if enrol else ""
    raise refused(
        f"the verifier rejected every record ({reason}: {first.get('detail', '')}){hint}; "
        f"the bundle is saved in {out}"
    )


def _print_results(console: Console, results: list[LandmarkResult]) -> None:
    table = Table("landmark", "min RTT ms", "rounds", "clock", "attempts", "status")
    for r in results:
        if r.record is not None:
            rec = r.record
            table.add_row(
                r.landmark_id,
                f"{rec.min_rtt_ms:.3f}",
                f"{len(rec.rtts_ns)}/{rec.rounds_sent}",
                rec.timestamp_source.value,
                str(r.attempts),
                "ok",
            )
        else:
            table.add_row(r.landmark_id, "-", "-", "-", str(r.attempts), r.error or "failed")
    console.print(table)


def gpu_rounds_status(gpu_index: int, entries: list[LandmarkEntry]) -> tuple[GpuSigner | None, str]:
    """The GPU signer to use (or None), and one line saying so, or exactly why not."""
    from lightfence.identity.gpu_signer import probe_gpu_signer

    signer, name, why = probe_gpu_signer(gpu_index)
    if signer is None:
        return None, (
            "GPU rounds: unavailable (" + "; ".join(why) + "): key rounds only, verdicts "
            "locate the key (docs/trust.md)"
        )
    serving = [e.id for e in entries if e.gpu_address]
    if not serving:
        return None, (
            f"GPU rounds: the GPU can sign through {name}, but no landmark in the registry "
            "lists a gpu_address: key rounds only, verdicts locate the key"
        )
    return signer, f"GPU rounds: signing through {name} with {len(serving)} landmark(s)"


def measure_gpu_all(
    entries: list[LandmarkEntry], ident: DeviceIdentity, signer: GpuSigner
) -> list[GpuRoundResult]:
    """One GPU session per landmark that serves them, one at a time: the GPU signs in turn."""
    from lightfence.agent.gpu_measure import run_gpu_session
    from lightfence.model.registry import split_address

    out = []
    for e in entries:
        if e.gpu_address is None:
            continue
        host, port = split_address(e.gpu_address)
        out.append(run_gpu_session(host, port, e.id, ident.device_id, signer))
    return out
