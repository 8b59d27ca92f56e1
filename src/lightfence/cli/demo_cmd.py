"""`lightfence demo [--once] [--json] [--port P]`: the whole job on emulated geography."""

from __future__ import annotations

import json
import signal
import tempfile
import threading
import time
from pathlib import Path
from signal import SIGINT, SIGTERM
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from lightfence.cli.errors import fail

if TYPE_CHECKING:
    from lightfence.demo.report import DeviceReport
    from lightfence.demo.world import DemoWorld

commands = typer.Typer()
"""This module's top-level commands; lightfence.cli.app loads it only to run one of them."""

ROUND_INTERVAL_S = 20.0
"""Between measurement rounds while the dashboard is served."""
TABLE_WIDTH = 150
"""At least this wide, so reasons stay readable when stdout is not a terminal."""
VERDICT_STYLE = {
    "VERIFIED": "green",
    "REFUTED": "red",
    "INCONSISTENT": "magenta",
    "UNVERIFIED": "yellow",
    "REJECTED": "red",
    "NO CHECK-IN": "red",
}


@commands.command()
def demo(
    once: Annotated[bool, typer.Option("--once", help="Exit after the first full round.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdicts as JSON.")] = False,
    port: Annotated[
        int, typer.Option("--port", help="Verifier and dashboard TCP port (0: any free).")
    ] = 8765,
) -> None:
    """Run a verifier, 16 landmarks and a small fleet on emulated geography; show the verdicts."""
    if not 0 <= port < 65536:
        raise fail("--port must be in [0, 65535]")
    # SIGTERM's default would end this process at once, skipping the `finally` blocks in _run
    # that stop the verifier and relay processes: make it unwind like Ctrl-C instead.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        _run(once, as_json, port)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, _frame: object) -> None:
    # Once: a second SIGTERM must not interrupt the cleanup the first one started (SIGKILL
    # still ends everything: the children notice a dead parent, demo/orphan.py).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def _run(once: bool, as_json: bool, port: int) -> None:
    from lightfence.demo.report import device_reports, wait_settled
    from lightfence.demo.world import DemoWorld

    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="lightfence-demo-") as tmp:
        started = time.monotonic()
        with console.status("starting") as status:

            def step(text: str) -> None:
                console.log(text)
                status.update(text)

            try:
                world = DemoWorld(Path(tmp), port, step).__enter__()
            except OSError as exc:
                raise fail(f"cannot start the demo on port {port}: {exc}") from None
            try:
                step("measuring: every agent against every landmark, through its relays")
                results = world.measure_round()
                step("waiting for the verifier's verdicts and alerts")
                missing = wait_settled(world, results)
            except BaseException:
                world.close()
                raise
        try:
            reports = device_reports(world)
            emulation = world.relays.lateness() if world.relays else {}
            if as_json:
                doc = {
                    "devices": [r.to_json_dict() for r in reports],
                    "emulation_lateness": emulation,
                    "incomplete": missing,
                }
                typer.echo(json.dumps(doc, indent=2))
            else:
                _print_table(console, reports)
                console.print(
                    f"round done in {time.monotonic() - started:.1f} s; emulation lateness "
                    f"median {emulation.get('median_ms', 0):.3f} ms, "
                    f"p99 {emulation.get('p99_ms', 0):.3f} ms over "
                    f"{emulation.get('datagrams', 0)} datagrams "
                    f"(relay scheduling: {emulation.get('scheduling', '?')})"
                )
            for problem in missing:
                console.print(f"[yellow]warning:[/] {problem}")
            if not once:
                _serve(console, world, reports)
        finally:
            world.close()


def _print_table(console: Console, reports: list[DeviceReport]) -> None:
    table = Table(title="lightfence demo: verdicts", show_lines=False)
    for col in ("device", "scenario", "claim", "verdict", "locates", "reason", "estimate"):
        table.add_column(col, overflow="fold")
    for r in reports:
        style = VERDICT_STYLE.get(r.verdict, "")
        table.add_row(
            r.name,
            r.scenario,
            r.claim,
            f"[{style}]{r.verdict}[/]" if style else r.verdict,
            r.locates
            if r.by_locates is None
            else f"{r.locates} (" + ", ".join(f"{k}: {v}" for k, v in r.by_locates.items()) + ")",
            r.reason,
            r.estimate,
        )
    out = Console()
    out.width = max(out.width, TABLE_WIDTH)
    out.print(table)


def _serve(console: Console, world: DemoWorld, reports: list[DeviceReport]) -> None:
    from lightfence.demo.gate import gate_examples

    token = world.tokens["auditor"]
    url = f"{world.base_url}/dashboard/"
    console.print(f"\ndashboard: [bold]{url}[/]")
    console.print(f"read-only auditor token: [bold]{token}[/]")
    console.print(f"(or open {url}#token={token})")
    examples = gate_examples(world, reports)
    if not examples:
        console.print("no device is VERIFIED yet: no `lightfence gate check` example to show")
    for ex in examples:
        console.print(f"\ngate, {ex.expect} ({ex.why}):")
        # Plain, not through rich (no wrapping, markup or emoji codes): it pastes as it is.
        typer.echo(ex.command, err=True)
    console.print(f"measuring again every {ROUND_INTERVAL_S:.0f} s; Ctrl-C to stop")
    # Ctrl-C and SIGTERM set a flag instead of raising wherever the main thread happens to be
    # (inside a round's event loop, an interrupt would leave agent threads and sockets half torn
    # down); the caller's `finally` then stops the world, verifier process included.
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (SIGINT, SIGTERM)}
    try:
        while not stop.wait(ROUND_INTERVAL_S):
            world.measure_round()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print("stopping")
