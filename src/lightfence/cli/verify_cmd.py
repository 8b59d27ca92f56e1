"""`lightfence verify BUNDLE`: re-check an evidence bundle offline and compute the verdict."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lightfence.attestation import (
    AppraisalPolicy,
    ChainCache,
    ChainError,
    Revocation,
    load_roots,
)
from lightfence.attestation.certs import DEFAULT_ROOT_PATH
from lightfence.cli.app import app
from lightfence.cli.errors import fail
from lightfence.core.measurement import InvalidMeasurement
from lightfence.core.policy import PolicyError
from lightfence.core.robust import Liars, check_liars
from lightfence.core.verdict import Verdict, VerdictKind
from lightfence.crypto.keys import parse_public_key_hex
from lightfence.evidence.bundle import BundleCheck, BundleError, check_bundle, load_bundle
from lightfence.evidence.calibration import NO_CALIBRATION, CalibrationError, load_calibration
from lightfence.evidence.verdict import DeviceVerdict, device_verdict, stated_liars
from lightfence.model.registry import RegistryError, load_registry
from lightfence.model.trust import Locates
from lightfence.units import Bound, max_distance_km


@app.command()
def verify(
    bundle: Annotated[Path, typer.Argument(help="Evidence bundle (JSON) from `agent measure`.")],
    landmark_keys: Annotated[
        Path,
        typer.Option(
            "--landmark-keys", help="Landmark registry you trust (keys and surveyed positions)."
        ),
    ],
    policy: Annotated[
        str | None,
        typer.Option(help="Policy: outside:CN,HK,MO | in:DE | within:LAT,LON,RADIUS_KM."),
    ] = None,
    bound: Annotated[
        Bound, typer.Option(help="Speed bound: vacuum (default, sound) or fibre (opt-in).")
    ] = Bound.VACUUM,
    claimed: Annotated[
        str | None, typer.Option(help="Country the device declares (for REFUTED).")
    ] = None,
    liars: Annotated[
        str | None,
        typer.Option(
            help="Lying landmarks tolerated: a count or 'auto'. Default: the setting the bundle "
            "states (a verifier's bundle), else 'auto'."
        ),
    ] = None,
    max_age_hours: Annotated[
        float | None, typer.Option(help="Reject records older than this (from now).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    require: Annotated[
        Locates,
        typer.Option(
            help="What the verdict must locate: key (any rounds) or gpu (GPU-signed rounds only; "
            "docs/trust.md)."
        ),
    ] = Locates.KEY,
    gpu_root: Annotated[
        Path,
        typer.Option(help="Root certificate(s) (PEM) that GPU evidence must chain to."),
    ] = DEFAULT_ROOT_PATH,
    revocation: Annotated[
        Revocation,
        typer.Option(help="GPU certificate revocation: skip (said on the result) or require."),
    ] = Revocation.SKIP,
    calibration: Annotated[
        Path | None,
        typer.Option(help="Signed GPU signing-time calibration (S_floor per model, firmware)."),
    ] = None,
    calibration_key: Annotated[
        list[str] | None,
        typer.Option(help="Public key (64 hex) trusted to sign --calibration; repeatable."),
    ] = None,
    enrolled_gpu: Annotated[
        str | None, typer.Option(help="GPU id the device enrolled with: other GPUs are rejected.")
    ] = None,
) -> None:
    """Re-check every signature in BUNDLE with public keys alone, then decide the policy.

    Exit code: 0 when every record is valid and (with --policy) the verdict is VERIFIED;
    1 otherwise; 2 for unreadable input.
    """
    try:
        trusted = load_registry(landmark_keys)
        evidence = load_bundle(bundle)
        stated = stated_liars(json.loads(bundle.read_text()))
    except (RegistryError, BundleError) as exc:
        raise fail(str(exc)) from None
    try:
        default: Liars = "auto" if stated is None else stated
        setting: Liars = check_liars(liars) if liars is not None else default
    except ValueError as exc:
        raise fail(f"bad --liars: {exc}") from None
    if stated is not None and setting != stated:
        typer.echo(f"note: recomputing with liars={setting}; the bundle states {stated}", err=True)
    max_age_s = None if max_age_hours is None else max_age_hours * 3600.0
    try:
        gpu_policy = AppraisalPolicy(load_roots(gpu_root), revocation, ChainCache())
        keys = {parse_public_key_hex(k) for k in calibration_key or []}
        cal = NO_CALIBRATION if calibration is None else load_calibration(calibration, keys)
    except (ChainError, CalibrationError, ValueError) as exc:
        raise fail(str(exc)) from None
    check = check_bundle(
        evidence,
        trusted,
        now_unix_ns=time.time_ns(),
        max_age_s=max_age_s,
        gpu_policy=gpu_policy,
        calibration=cal,
        enrolled_gpu_id=enrolled_gpu,
    )
    dv: DeviceVerdict | None = None
    if policy is not None:
        try:
            dv = device_verdict(check, policy, bound, claimed, setting, require)
        except PolicyError as exc:
            raise fail(f"bad --policy: {exc}") from None
        except InvalidMeasurement as exc:
            if check.accepted or check.gpu_accepted:
                raise fail(str(exc)) from None
            # No valid record: nothing to decide from; reported below, exit code 1.
    verdict = None if dv is None else dv.key
    if as_json:
        out = _as_dict(check, verdict, bound)
        out["liars"] = setting
        out["device_verdict"] = None if dv is None else dv.to_dict()
        out["gpu_accepted"] = [
            {
                "landmark_id": g.record.landmark_id,
                "session_id": g.record.session_id.hex(),
                "round": g.record.round_no,
                "rtt_ms": g.record.rtt_ms,
                "s_floor_ms": g.floor_ms,
                "gpu": g.appraisal.summary(),
            }
            for g in check.gpu_accepted
        ]
        out["gpu_rejected"] = [
            {"index": r.index, "landmark_id": r.landmark_id, "reason": r.reason}
            for r in check.gpu_rejected
        ]
        typer.echo(json.dumps(out, indent=2))
    else:
        _print(check, verdict, bound, policy)
        _print_gpu(check, dv)
    ok = check.all_valid and bool(check.accepted or check.gpu_accepted)
    if policy is not None:
        ok = ok and dv is not None and dv.kind is VerdictKind.VERIFIED
    raise typer.Exit(0 if ok else 1)


def _as_dict(check: BundleCheck, verdict: Verdict | None, bound: Bound) -> dict[str, object]:
    return {
        "device_id": check.device.device_id,
        "trust_level": check.device.trust_level.value,
        "notes": list(check.notes),
        "accepted": [
            {
                "landmark_id": rec.landmark_id,
                "session_id": rec.session_id.hex(),
                "min_rtt_ms": rec.min_rtt_ms,
                "max_distance_km": max_distance_km(rec.min_rtt_ms, bound),
                "timestamp_source": rec.timestamp_source.value,
                "measured_at_utc": rec.measured_at.isoformat(),
            }
            for rec, _ in check.accepted
        ],
        "rejected": [
            {"index": r.index, "landmark_id": r.landmark_id, "reason": r.reason}
            for r in check.rejected
        ],
        "verdict": None if verdict is None else {**verdict.to_dict(), "locates": "key"},
    }


def _print(check: BundleCheck, verdict: Verdict | None, bound: Bound, policy: str | None) -> None:
    console = Console()
    console.print(f"device {check.device.device_id}")
    for note in check.notes:
        console.print(f"  {note}")
    table = Table("landmark", "min RTT ms", f"within km ({bound.value})", "clock", "status")
    for rec, _ in check.accepted:
        table.add_row(
            rec.landmark_id,
            f"{rec.min_rtt_ms:.3f}",
            f"{max_distance_km(rec.min_rtt_ms, bound):,.1f}",
            rec.timestamp_source.value,
            "[green]valid[/green]",
        )
    for r in check.rejected:
        table.add_row(r.landmark_id, "-", "-", "-", f"[red]rejected[/red]: {r.reason}")
    console.print(table)
    console.print(
        f"{len(check.accepted)} record(s) valid, {len(check.rejected)} rejected "
        "(rejected records never count toward a verdict)"
    )
    if policy is None:
        return
    if verdict is None:
        console.print("[bold]no verdict[/bold]: no valid record to decide from")
        return
    colour = {VerdictKind.VERIFIED: "green", VerdictKind.REFUTED: "red"}.get(verdict.kind, "yellow")
    console.print(
        f"[bold {colour}]{verdict.kind.value}[/bold {colour}] under {policy} (locates: key)"
    )
    console.print(f"  {verdict.reason}")
    console.print(f"  identity trust level: {check.device.trust_level}")


def _print_gpu(check: BundleCheck, dv: DeviceVerdict | None) -> None:
    console = Console()
    if check.gpu_accepted or check.gpu_rejected:
        table = Table("landmark", "GPU round RTT ms", "S_floor ms", "GPU", "status")
        for g in check.gpu_accepted:
            gpu = g.appraisal.gpu
            table.add_row(
                g.record.landmark_id,
                f"{g.record.rtt_ms:.3f}",
                f"{g.floor_ms:.3f}",
                "-" if gpu is None else f"{gpu.gpu_id[:12]} {gpu.hwmodel}",
                "[green]valid[/green]",
            )
        for r in check.gpu_rejected:
            table.add_row(r.landmark_id, "-", "-", "-", f"[red]rejected[/red]: {r.reason}")
        console.print(table)
    if dv is None:
        return
    colour = {VerdictKind.VERIFIED: "green", VerdictKind.REFUTED: "red"}.get(dv.kind, "yellow")
    console.print(
        f"device verdict: [bold {colour}]{dv.kind.value}[/bold {colour}] "
        f"(locates: {dv.locates.value}; required: {dv.required.value})"
    )
    console.print(f"  {dv.reason}")
    for alert in dv.alerts:
        console.print(f"  [bold red]alert[/bold red]: {alert}")
