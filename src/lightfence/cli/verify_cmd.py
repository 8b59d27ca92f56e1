"""`lightfence verify BUNDLE`: re-check an evidence bundle offline and compute the verdict."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lightfence.cli.app import app
from lightfence.cli.errors import fail
from lightfence.core.measurement import InvalidMeasurement
from lightfence.core.policy import PolicyError
from lightfence.core.robust import DEFAULT_LIARS, Liars, check_liars
from lightfence.core.verdict import Verdict, VerdictKind
from lightfence.evidence.bundle import BundleCheck, BundleError, check_bundle, load_bundle
from lightfence.evidence.verdict import bundle_verdict, stated_liars
from lightfence.model.registry import RegistryError, load_registry
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
        default: Liars = DEFAULT_LIARS if stated is None else stated
        setting: Liars = check_liars(liars) if liars is not None else default
    except ValueError as exc:
        raise fail(f"bad --liars: {exc}") from None
    if stated is not None and setting != stated:
        typer.echo(f"note: recomputing with liars={setting}; the bundle states {stated}", err=True)
    max_age_s = None if max_age_hours is None else max_age_hours * 3600.0
    check = check_bundle(evidence, trusted, now_unix_ns=time.time_ns(), max_age_s=max_age_s)
    verdict: Verdict | None = None
    if policy is not None:
        try:
            verdict = bundle_verdict(check, policy, bound, claimed, setting)
        except PolicyError as exc:
            raise fail(f"bad --policy: {exc}") from None
        except InvalidMeasurement as exc:
            if check.accepted:
                raise fail(str(exc)) from None
            # No valid record: nothing to decide from; reported below, exit code 1.
    if as_json:
        out = _as_dict(check, verdict, bound)
        out["liars"] = setting
        typer.echo(json.dumps(out, indent=2))
    else:
        _print(check, verdict, bound, policy)
    ok = check.all_valid and bool(check.accepted)
    if policy is not None:
        ok = ok and verdict is not None and verdict.kind is VerdictKind.VERIFIED
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
        "verdict": None if verdict is None else verdict.to_dict(),
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
    console.print(f"[bold {colour}]{verdict.kind.value}[/bold {colour}] under {policy}")
    console.print(f"  {verdict.reason}")
    console.print(f"  identity trust level: {check.device.trust_level}")
