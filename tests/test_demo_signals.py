"""`lightfence demo` stopped by a signal leaves no verifier process behind.

The real CLI in a real subprocess: once its verifier child is up, the demo is sent SIGTERM or
SIGINT (it must stop the child itself) or SIGKILL (it can do nothing; the child must notice on
its own).
Linux only: children are found through /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

START_TIMEOUT_S = 60.0
GONE_TIMEOUT_S = 20.0


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while listed
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_demo() -> tuple[subprocess.Popen[bytes], int]:
    """The demo, and its verifier's pid once that verifier listens."""
    demo = subprocess.Popen(
        [sys.executable, "-m", "lightfence", "demo", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert demo.stderr is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    for line in iter(demo.stderr.readline, b""):
        if b"landmarks, each with its own key" in line:  # logged once the verifier answered
            break
        assert time.monotonic() < deadline, "the demo did not start its verifier in time"
    else:
        pytest.fail(f"the demo exited early ({demo.wait()})")
    verifiers = [c for c in _children(demo.pid) if "spawn_main" in _cmdline(c)]
    assert len(verifiers) == 1, [_cmdline(c) for c in _children(demo.pid)]
    return demo, verifiers[0]


def _wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + GONE_TIMEOUT_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _alive(pid)


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["term", "int", "kill"]
)
def test_signal_leaves_no_verifier(sig: signal.Signals) -> None:
    demo, verifier = _start_demo()
    try:
        demo.send_signal(sig)
        code = demo.wait(GONE_TIMEOUT_S)
        assert _wait_gone(verifier), f"verifier {verifier} outlived the demo ({sig.name})"
        expected = {signal.SIGTERM: 128 + signal.SIGTERM, signal.SIGINT: 130, signal.SIGKILL: -9}
        assert code == expected[sig]
    finally:
        if demo.poll() is None:
            demo.kill()
        if _alive(verifier):
            os.kill(verifier, signal.SIGKILL)


ORPHAN = """
import os, sys, time
from lightfence.demo.orphan import die_with_parent
if os.fork() == 0:
    die_with_parent(os.getppid(), kernel_signal=False)  # the pid poll alone
    print(os.getpid(), flush=True)
    time.sleep(60)
    sys.exit(0)
time.sleep(60)
"""


def test_the_pid_poll_alone_notices_a_killed_parent() -> None:
    # Where the kernel's signal is not asked for (another OS, a parent thread that may end).
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert _alive(child)
        parent.kill()
        parent.wait(GONE_TIMEOUT_S)
        assert _wait_gone(child), "the orphan outlived its parent"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
