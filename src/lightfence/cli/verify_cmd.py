"""`lightfence verify BUNDLE`: re-check an evidence bundle offline and compute the verdict,
judging it as the verifier service would (core.freshness: the same age, clock-skew and verdict
window rules, the same defaults), with the policy from this command's options only."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

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
from lightfence.cli.errors import fail
from lightfence.core.estimate import distance_words
from lightfence.core.freshness import (
    MAX_CLOCK_SKEW_S,
    MAX_DEVICE_SPEED_KM_PER_H,
    MAX_RECORD_AGE_S,
    VERDICT_WINDOW_S,
)
from lightfence.core.measurement import InvalidMeasurement
from lightfence.core.policy import PolicyError
from lightfence.core.robust import DEFAULT_LIARS, Liars, check_liars
from lightfence.core.verdict import Verdict, VerdictKind
from lightfence.crypto.keys import parse_public_key_hex
from lightfence.evidence.bundle import (
    DEFAULT_MAX_BUNDLE_BYTES,
    BundleCheck,
    BundleError,
    GpuChecks,
    check_bundle_file,
)
from lightfence.evidence.calibration import NO_CALIBRATION, CalibrationError, load_calibration
from lightfence.evidence.verdict import DeviceVerdict, device_verdict
from lightfence.model.registry import RegistryError, load_registry
from lightfence.model.trust import Locates
from lightfence.units import Bound, max_distance_km

SHOWN_ROWS = 50
"""Rows of each kind in the table (the --json output lists every record)."""

EXIT_CODES = """Exit codes: 0 every record valid and (with --policy) the verdict VERIFIED; 1 any
record rejected, none valid, or the verdict not VERIFIED; 2 unreadable input: a missing,
malformed or hostile file (JSON nested too deep, an oversized number, over --max-bytes), or a
bad option."""


VERIFY_HELP = f"""Re-check every signature in BUNDLE with public keys alone, then decide the policy.

The records are judged as the verifier service judges them: the same age, clock-skew and verdict
window rules and defaults; the policy and liar setting from these options only (what the
bundle states is unsigned: shown, never used). The file is read a record at a time.

{EXIT_CODES}"""


commands = typer.Typer()
"""This module's top-level commands; lightfence.cli.app loads it only to run one of them."""


@commands.command(help=VERIFY_HELP)
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
        str,
        typer.Option(
            help="Lying landmarks tolerated: a count or 'auto' (the verifier's default). A "
            "policy stated inside the bundle is unsigned: shown, never used."
        ),
    ] = str(DEFAULT_LIARS),
    max_age_hours: Annotated[
        float, typer.Option(help="Reject records measured longer ago than this.")
    ] = MAX_RECORD_AGE_S / 3600,
    max_skew_s: Annotated[
        float, typer.Option(help="Reject records dated further in the future than this.")
    ] = MAX_CLOCK_SKEW_S,
    window_s: Annotated[
        float,
        typer.Option(help="The verdict counts records measured this long before the newest."),
    ] = VERDICT_WINDOW_S,
    max_device_speed_kmh: Annotated[
        float,
        typer.Option(help="Movement allowance: an older record's cap grows at this speed."),
    ] = MAX_DEVICE_SPEED_KM_PER_H,
    max_bytes: Annotated[
        int, typer.Option(help="Refuse a bundle file larger than this many bytes.")
    ] = DEFAULT_MAX_BUNDLE_BYTES,
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
    try:
        setting: Liars = check_liars(liars)
    except ValueError as exc:
        raise fail(f"bad --liars: {exc}") from None
    for name, value in (
        ("--max-age-hours", max_age_hours),
        ("--max-skew-s", max_skew_s),
        ("--window-s", window_s),
        ("--max-bytes", max_bytes),
    ):
        if not value > 0:
            raise fail(f"{name} must be positive")
    if not max_device_speed_kmh >= 0:
        raise fail("--max-device-speed-kmh must be >= 0")
    try:
        gpu_policy = AppraisalPolicy(load_roots(gpu_root), revocation, ChainCache())
        keys = {parse_public_key_hex(k) for k in calibration_key or []}
        cal = NO_CALIBRATION if calibration is None else load_calibration(calibration, keys)
    except (ChainError, CalibrationError, ValueError) as exc:
        raise fail(str(exc)) from None
    try:
        trusted = load_registry(landmark_keys)
        check = check_bundle_file(
            bundle,
            trusted,
            now_unix_ns=time.time_ns(),
            max_age_s=max_age_hours * 3600.0,
            max_skew_s=max_skew_s,
            max_bytes=max_bytes,
            gpu=GpuChecks((), gpu_policy, cal, enrolled_gpu),
        )
    except (RegistryError, BundleError) as exc:
        raise fail(str(exc)) from None
    inputs = check.verdict_inputs(bound, window_s, max_device_speed_kmh)
    dv: DeviceVerdict | None = None
    if policy is not None:
        try:
            dv = device_verdict(
                check, policy, bound, claimed, setting, require, window_s, max_device_speed_kmh
            )
        except PolicyError as exc:
            raise fail(f"bad --policy: {exc}") from None
        except InvalidMeasurement as exc:
            if check.accepted or check.gpu_accepted:
                raise fail(str(exc)) from None
            # No valid record: nothing to decide from; reported below, exit code 1.
    verdict: Verdict | None = None if dv is None else dv.key
    rules = {
        "max_age_s": max_age_hours * 3600.0,
        "max_skew_s": max_skew_s,
        "window_s": window_s,
        "max_device_speed_km_per_h": max_device_speed_kmh,
        "liars": setting,
    }
    if as_json:
        out = _as_dict(check, inputs, verdict, bound, rules)
        out.update(_gpu_dict(check, dv))
        typer.echo(json.dumps(out, indent=2))
    else:
        _print(check, inputs, verdict, bound, policy, rules)
        _print_gpu(check, dv)
    ok = check.all_valid and bool(check.accepted or check.gpu_accepted)
    if policy is not None:
        ok = ok and dv is not None and dv.kind is VerdictKind.VERIFIED
    raise typer.Exit(0 if ok else 1)


def _as_dict(
    check: BundleCheck,
    inputs: list[dict[str, Any]],
    verdict: Verdict | None,
    bound: Bound,
    rules: dict[str, Any],
) -> dict[str, object]:
    counted = {i["record_id"] for i in inputs}
    return {
        "device_id": check.device.device_id,
        "trust_level": check.device.trust_level.value,
        "notes": list(check.notes),
        "rules": rules,
        "liars": rules["liars"],
        "accepted": [
            {
                "index": rec.index,
                "landmark_id": rec.landmark_id,
                "session_id": rec.session_id.hex(),
                "min_rtt_ms": rec.min_rtt_ms,
                "max_distance_km": max_distance_km(rec.min_rtt_ms, bound),
                "timestamp_source": rec.timestamp_source.value,
                "measured_at_utc": rec.measured_at.isoformat(),
                "counted": rec.index in counted,
            }
            for rec in check.accepted
        ],
        "rejected": [
            {"index": r.index, "landmark_id": r.landmark_id, "reason": r.reason}
            for r in check.rejected
        ],
        "counted": inputs,
        "verdict": None if verdict is None else {**verdict.to_dict(), "locates": "key"},
    }


def _gpu_dict(check: BundleCheck, dv: DeviceVerdict | None) -> dict[str, object]:
    return {
        "device_verdict": None if dv is None else dv.to_dict(),
        "gpu_accepted": [
            {
                "landmark_id": g.record.landmark_id,
                "session_id": g.record.session_id.hex(),
                "round": g.record.round_no,
                "rtt_ms": g.record.rtt_ms,
                "s_floor_ms": g.floor_ms,
                "gpu": g.appraisal.summary(),
            }
            for g in check.gpu_accepted
        ],
        "gpu_rejected": [
            {"index": r.index, "landmark_id": r.landmark_id, "reason": r.reason}
            for r in check.gpu_rejected
        ],
    }


def _print(
    check: BundleCheck,
    inputs: list[dict[str, Any]],
    verdict: Verdict | None,
    bound: Bound,
    policy: str | None,
    rules: dict[str, Any],
) -> None:
    console = Console()
    console.print(f"device {check.device.device_id}")
    for note in check.notes:
        console.print(f"  {note}")
    counted = {i["record_id"]: i for i in inputs}
    table = Table("#", "landmark", "min RTT ms", f"within km ({bound.value})", "clock", "status")
    for rec in check.accepted[:SHOWN_ROWS]:
        item = counted.get(rec.index)
        status = (
            f"[green]valid, counted[/green] (position error {item['position_error_km']:,.1f} km)"
            if item is not None
            else "[yellow]valid, not counted[/yellow] (outside the window, or a tighter record "
            "of its landmark counts)"
        )
        table.add_row(
            str(rec.index),
            rec.landmark_id,
            f"{rec.min_rtt_ms:.3f}",
            distance_words(max_distance_km(rec.min_rtt_ms, bound)),
            rec.timestamp_source.value,
            status,
        )
    for r in check.rejected[:SHOWN_ROWS]:
        table.add_row(
            str(r.index), r.landmark_id, "-", "-", "-", f"[red]rejected[/red]: {r.reason}"
        )
    console.print(table)
    hidden = max(0, len(check.accepted) - SHOWN_ROWS) + max(0, len(check.rejected) - SHOWN_ROWS)
    if hidden:
        console.print(f"  ... and {hidden:,} more record(s) (--json lists every one)")
    console.print(
        f"{len(check.accepted)} record(s) valid, {len(check.rejected)} rejected "
        "(rejected records never count toward a verdict); "
        f"{len(inputs)} counted: measured within {rules['window_s']:g} s of the newest valid "
        f"one, the tightest per landmark, each older one's position error grown by "
        f"{rules['max_device_speed_km_per_h']:g} km/h of its age"
    )
    if policy is None:
        return
    if verdict is None:
        console.print("[bold]no verdict[/bold]: no valid record to decide from")
        return
    colour = {VerdictKind.VERIFIED: "green", VerdictKind.REFUTED: "red"}.get(verdict.kind, "yellow")
    console.print(
        f"[bold {colour}]{verdict.kind.value}[/bold {colour}] under {policy} "
        f"(liars {rules['liars']}; locates: key)"
    )
    console.print(f"  {verdict.reason}")
    console.print(f"  identity trust level: {check.device.trust_level}")


def _print_gpu(check: BundleCheck, dv: DeviceVerdict | None) -> None:
    console = Console()
    if check.gpu_accepted or check.gpu_rejected:
        table = Table("landmark", "GPU round RTT ms", "S_floor ms", "GPU", "status")
        for g in check.gpu_accepted[:SHOWN_ROWS]:
            gpu = g.appraisal.gpu
            table.add_row(
                g.record.landmark_id,
                f"{g.record.rtt_ms:.3f}",
                f"{g.floor_ms:.3f}",
                "-" if gpu is None else f"{gpu.gpu_id[:12]} {gpu.hwmodel}",
                "[green]valid[/green]",
            )
        for r in check.gpu_rejected[:SHOWN_ROWS]:
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
