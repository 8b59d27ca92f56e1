"""The demo's gate examples: `lightfence gate check` commands that work against the running demo.

`lightfence demo` prints them and tests/test_demo_e2e.py runs them verbatim. Each pins the key
exactly as `GET /verifier/key` serves it (saved to a file), fetches the device's token with its
operator's API token and requires the licence's policy: one allowed (a VERIFIED device under
its own policy), one denied (the same policy asking one more tolerated liar than the verdict
survived), with the reason the gate will give.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lightfence.demo.scenario import DEMO_POLICY

if TYPE_CHECKING:
    from lightfence.demo.report import DeviceReport
    from lightfence.demo.world import DemoWorld

KEY_FILE_NAME = "verifier-key.json"
GATE_STATE_DIR_NAME = "gate"


@dataclass(frozen=True)
class GateExample:
    device_name: str
    command: str
    """A shell command line, to be run as it is while the demo runs."""
    expect: str
    """`allowed` or `denied`: the answer the gate gives (its exit code 0 or 1)."""
    why: str
    """For people: what the example shows."""


def gate_examples(world: DemoWorld, reports: list[DeviceReport]) -> list[GateExample]:
    """An allowed and a denied `gate check` for the first VERIFIED device; [] if none is."""
    verified = next((r for r in reports if r.verdict == "VERIFIED"), None)
    if verified is None:
        return []
    device = next(d for d in world.fleet if d.device_id == verified.id)
    operator = f"operator:{device.spec.operator}"
    key_file = world.workdir / KEY_FILE_NAME
    assert world.http is not None
    served = world.http.get("/verifier/key")
    served.raise_for_status()
    key_file.write_text(served.text)
    tolerated = world.api("GET", f"/devices/{device.device_id}/token", operator)["policy_spec"]
    stronger = int(tolerated["liars"]) + 1

    def command(*extra: str) -> str:
        args = [
            "lightfence", "gate", "check",
            "--verifier", world.base_url,
            "--verifier-key", str(key_file),
            "--device", device.device_id,
            "--policy", DEMO_POLICY,
            *extra,
            "--state-dir", str(world.workdir / GATE_STATE_DIR_NAME),
        ]  # fmt: skip
        env = f"LIGHTFENCE_VERIFIER_TOKEN={shlex.quote(world.tokens[operator])}"
        return f"{env} {shlex.join(args)}"

    return [
        GateExample(
            verified.name, command(), "allowed", f"{verified.name} is VERIFIED under {DEMO_POLICY}"
        ),
        GateExample(
            verified.name,
            command("--liars", str(stronger)),
            "denied",
            f"its verdict tolerates {tolerated['liars']} lying landmark(s); "
            f"this gate requires {stronger}",
        ),
    ]
