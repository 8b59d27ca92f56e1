"""docs/deploy.md, run verbatim: each host its own network namespace, the GPU host's round trips
to the landmarks delayed to the real city pairs' (tests/netns_lab.py). Ends with the device
VERIFIED, the gate allowing the licence's policy and denying a stronger one, saying why."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy_doc import DocError, Step, read_steps, steps, write_standins
from lightfence.evidence.bundle import load_bundle
from lightfence.rttdata import load_dataset
from lightfence.sim.emulate import path_rtt_ms, site_of
from netns_lab import Lab, require_netns

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "deploy.md"
HOSTS = {
    "verifier": 1,
    "landmark-fra": 11,
    "landmark-lon": 12,
    "landmark-sto": 13,
    "landmark-iad": 14,
    "gpu-host": 20,
    "gate": 30,
}
"""Host name -> the index of its address 10.77.<index>.2 (the table at the top of the page)."""
DEVICE_SITE = "wn-210"
"""Munich: where the GPU host stands, a host of the shipped RTT data set."""
LANDMARK_SITES = {
    "landmark-fra": "wn-29",
    "landmark-lon": "wn-11",
    "landmark-sto": "wn-10",
    "landmark-iad": "wn-16",
}
LANDMARK_PORT = 7800
STEP_TIMEOUT_S = 180.0
"""Generous: CI runs this beside another test worker on 2 cores."""
READY_TIMEOUT_S = 180.0


# --- the page parses, and says what the emulation assumes ---------------------------------------


def test_every_block_names_a_known_host() -> None:
    found = read_steps(DOC)
    assert {s.host for s in found} == set(HOSTS)
    assert any(s.background for s in found)
    assert any(s.exit_code == 1 for s in found)


def test_landmark_positions_on_the_page_are_the_emulated_cities() -> None:
    """The page's `landmark init --lat --lon` must be where the relay's delays say they are."""
    dataset = load_dataset()
    inits = [s for s in read_steps(DOC) if "landmark init" in s.script]
    assert {s.host for s in inits} == set(LANDMARK_SITES)
    for s in inits:
        m = re.search(r"--lat (\S+) --lon (\S+)", s.script)
        assert m is not None, s.script
        host = dataset.hosts[LANDMARK_SITES[s.host]]
        assert (float(m.group(1)), float(m.group(2))) == (host.lat, host.lon), s.host
    for name, index in HOSTS.items():  # the address table matches the lab's addressing
        assert f"| `{name}`" in DOC.read_text()
        assert f"10.77.{index}.2" in DOC.read_text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("```sh\nls\n```\n", "must start with `# on: HOST`"),
        ("```sh\n# on: a (background)\nx\n```\n", "needs `ready: TEXT`"),
        ("```sh\n# on: a (exit: x)\nx\n```\n", "exit status must be a number"),
        ("```sh\n# on: a (loud)\nx\n```\n", "unknown block option"),
        ("```sh\n# on: a\nx\n", "never closed"),
    ],
)
def test_bad_blocks_are_refused(text: str, message: str) -> None:
    with pytest.raises(DocError, match=re.escape(message)):
        steps(text)


def test_options_are_read() -> None:
    (s,) = steps("```sh\n# on: v (background, ready: up and running)\nserve\n```\n")
    assert (s.host, s.background, s.ready, s.exit_code) == ("v", True, "up and running", 0)
    (s,) = steps("```sh\n# on: g (exit: 1)\ncheck\n```\n```console\nnot run\n```\n")
    assert (s.exit_code, s.script) == (1, "# on: g (exit: 1)\ncheck\n")


# --- the page, run ---------------------------------------------------------------------------


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    require_netns()
    hosts_root = tmp_path / "hosts"
    bin_dir = tmp_path / "bin"
    write_standins(bin_dir, hosts_root, sys.executable)
    env = {
        "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": str(REPO / "src"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    hosts_root.mkdir()
    the_lab = Lab(hosts_root, env)
    try:
        yield the_lab
    finally:
        the_lab.close()


def _build(lab: Lab) -> None:
    for name, index in HOSTS.items():
        lab.add_host(name, index)
    dataset = load_dataset()
    device = site_of(dataset, DEVICE_SITE)
    for name, site in LANDMARK_SITES.items():
        rtt_ms = path_rtt_ms(dataset, device, site_of(dataset, site))
        lab.delay(lab.hosts["gpu-host"], lab.hosts[name], LANDMARK_PORT, rtt_ms)
    lab.start_relays()


def _run(lab: Lab, step: Step, n: int) -> str:
    host = lab.hosts[step.host]
    where = f"docs/deploy.md line {step.line} (on {step.host})"
    if step.background:
        label = f"{n:02d}-{step.host}"
        lab.spawn(host, step.script, label)
        try:
            lab.wait_for(label, step.ready or "", READY_TIMEOUT_S)
        except RuntimeError as exc:
            pytest.fail(f"{where}: {exc}\n{lab.logs()}")
        return lab.log(label)
    try:
        done = lab.run(host, step.script, timeout_s=STEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{where} ran past {STEP_TIMEOUT_S:g} s\n{step.script}\n{lab.logs()}")
    if done.returncode != step.exit_code:
        pytest.fail(
            f"{where} exited {done.returncode}, the page expects {step.exit_code}\n"
            f"--- script ---\n{step.script}--- stdout ---\n{done.stdout}\n"
            f"--- stderr ---\n{done.stderr}\n{lab.logs()}"
        )
    return done.stdout + done.stderr


def test_deploy_md_verbatim_across_namespaces(lab: Lab) -> None:
    _build(lab)
    outputs: list[tuple[Step, str]] = []
    for n, step in enumerate(read_steps(DOC)):
        outputs.append((step, _run(lab, step, n)))

    # Every step's output, kept beside the hosts' directories for whoever debugs a failure.
    (lab.root / "outputs.txt").write_text("".join(f"{s.script}{out}\n" for s, out in outputs))
    verdicts = [out for s, out in outputs if "device list" in s.script]
    assert verdicts and "VERIFIED" in verdicts[-1], verdicts

    gates = [(s, out) for s, out in outputs if "gate check" in s.script]
    assert [s.exit_code for s, _ in gates] == [0, 1]
    allowed = json.loads(gates[0][1].strip().splitlines()[-1])
    denied = json.loads(gates[1][1].strip().splitlines()[-1])
    assert (allowed["answer"], allowed["exit_code"]) == ("allowed", 0), allowed
    assert (denied["answer"], denied["exit_code"]) == ("denied", 1), denied
    assert "lying landmark" in denied["detail"], denied  # the reason says what differs
    # The excerpt the page shows is what the gate printed.
    page = DOC.read_text()
    assert f'"policy": "{allowed["policy"]}"' in page, allowed["policy"]
    assert f'"reason": "{denied["reason"]}", "detail": "{denied["detail"]}"' in page, denied

    # The round trips the landmarks measured (in the bundle the agent wrote) are the emulated
    # city pairs' or a little longer, never shorter: real delays, only ever added.
    bundle = load_bundle(lab.hosts["gpu-host"].directory / "evidence.json")
    measured = {r.landmark_id: r.min_rtt_ms for r in bundle.records}
    dataset = load_dataset()
    device = site_of(dataset, DEVICE_SITE)
    for name, site in LANDMARK_SITES.items():
        emulated_ms = path_rtt_ms(dataset, device, site_of(dataset, site))
        assert measured[name.removeprefix("landmark-")] >= emulated_ms, (name, measured)

    # Mistakes a new user makes on this network: one `error:` line, a non-zero exit, no traceback.
    gate = lab.hosts["gate"]
    for script, says in (
        (
            "lightfence status --verifier http://10.77.1.2:9 --token-file operator.token",
            "10.77.1.2:9",
        ),
        (
            "echo wrong > wrong.token; lightfence status --verifier http://10.77.1.2:8080 "
            "--token-file wrong.token",
            "token",
        ),
        (
            "lightfence device list --verifier http://10.77.1.2:8080 --token-file operator.token "
            "| wc -l",
            None,
        ),
    ):
        done = lab.run(gate, script, timeout_s=STEP_TIMEOUT_S)
        if says is None:  # the operator token sees its one device
            assert done.returncode == 0 and done.stdout.strip() == "1", done
            continue
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1, done
        assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
