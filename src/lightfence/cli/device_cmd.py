"""`lightfence device enrol | list | retire`: devices on a remote verifier."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lightfence.cli.errors import fail
from lightfence.cli.remote import (
    TokenOpt,
    VerifierOpt,
    call_verifier,
    segment,
)

commands = typer.Typer()
"""This module's top-level commands; lightfence.cli.app loads it only to run one of them."""

device_app = typer.Typer(
    help="Enrol, list and retire devices on a verifier (--verifier URL).",
    no_args_is_help=True,
)
commands.add_typer(device_app, name="device")


def read_json_arg(source: str, what: str) -> Any:
    """The JSON in file `source` (`-`: standard input); a usage error naming `what` otherwise."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except FileNotFoundError:
        raise fail(f"{what} {source} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {what} {source}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"{what} {source} is not JSON: {exc}") from None


@device_app.command()
def enrol(
    identity_file: Annotated[
        str,
        typer.Argument(
            help="The identity `lightfence agent keygen` printed (saved to a file), or - for "
            "standard input."
        ),
    ],
    policy: Annotated[
        str, typer.Option(help="Licence: allowed region, e.g. in:DE or outside:CN,HK,MO.")
    ],
    country: Annotated[
        str | None, typer.Option(help="Where the operator says it is (ISO code).")
    ] = None,
    bound: Annotated[str, typer.Option(help="Speed bound: vacuum or fibre.")] = "vacuum",
    operator: Annotated[
        str | None,
        typer.Option(
            help="The device's operator (admin token only; an operator token enrols for itself)."
        ),
    ] = None,
    checkin_interval: Annotated[
        int | None, typer.Option(help="Required check-in interval, seconds.")
    ] = None,
    verifier: VerifierOpt = None,
    token: TokenOpt = None,
) -> None:
    """Enrol a device from its identity file, with its licence."""
    from lightfence.identity.device import DeviceIdentity

    doc = read_json_arg(identity_file, "identity file")
    try:
        identity = DeviceIdentity.from_json_dict(doc)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise fail(
            f"{identity_file} is not a device identity (`lightfence agent keygen` output): {exc}"
        ) from None
    licence: dict[str, Any] = {"policy": policy, "bound": bound}
    if country:
        licence["declared_country"] = country
    if checkin_interval is not None:
        licence["checkin_interval_s"] = checkin_interval
    body: dict[str, Any] = {"identity": identity.to_json_dict(), "licence": licence}
    if operator:
        body["operator"] = operator
    out = call_verifier(verifier, token, "POST", "/devices", body)
    typer.echo(
        f"enrolled device {out['device_id']} (operator {out['operator']}, "
        f"{out['trust_level']}) with licence {out['licence']['policy']} "
        f"(bound: {out['licence']['bound']})"
    )


@device_app.command("list")
def list_devices(
    verifier: VerifierOpt = None,
    token: TokenOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Devices visible to this token, with their licences and latest verdicts."""
    rows = call_verifier(verifier, token, "GET", "/devices")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no devices enrolled", err=True)
        return
    for d in rows:
        latest = d.get("latest_verdict") or {}
        verdict = latest.get("verdict") or ("pending" if d.get("verdict_pending") else "none")
        state = f"retired {d['retired_at']}" if d.get("retired_at") else "active"
        typer.echo(
            f"{d['device_id']}\t{d['operator']}\t{d['trust_level']}\t"
            f"{d['licence']['policy']}\t{verdict}\t{state}"
        )


@device_app.command()
def retire(
    device_id: Annotated[str, typer.Argument(help="The device id (32 hex).")],
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "",
    verifier: VerifierOpt = None,
    token: TokenOpt = None,
) -> None:
    """Retire a device (admin): its records and verdict tokens are refused from now on."""
    path = f"/devices/{segment(device_id)}/retire"
    out = call_verifier(verifier, token, "POST", path, {"reason": reason})
    typer.echo(f"retired device {out['device_id']} at {out['retired_at']}")
