"""The namespace lab itself: routing between hosts, and the relay's delay on the device's path."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netns_lab import Lab, require_netns, sweep_leftovers

ECHO = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 7800))\n"
    "print('echo ready', flush=True)\n"
    "while True:\n"
    "    d, a = s.recvfrom(2048); s.sendto(d + a[0].encode(), a)\n"
)
PING = (
    "import socket, sys, time\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)\n"
    "best = 1e9\n"
    "for _ in range(5):\n"
    "    t = time.monotonic(); s.sendto(b'x', (sys.argv[1], 7800)); d, a = s.recvfrom(2048)\n"
    "    best = min(best, (time.monotonic() - t) * 1000)\n"
    "print(a[0], d[1:].decode(), f'{best:.3f}')\n"
)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    require_netns()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": ":".join(sys.path)}
    the_lab = Lab(tmp_path, env)
    try:
        yield the_lab
    finally:
        the_lab.close()


def test_delayed_path_and_direct_path(lab: Lab) -> None:
    device = lab.add_host("device", 20)
    landmark = lab.add_host("lm", 11)
    other = lab.add_host("other", 12)
    rtt_ms = 40.0
    lab.delay(device, landmark, 7800, rtt_ms)
    lab.start_relays()
    lab.spawn(landmark, f"exec {sys.executable} -c {_q(ECHO)}", "echo")
    lab.wait_for("echo", "echo ready", 10)
    (lab.root / "ping.py").write_text(PING)
    ping = f"{sys.executable} {lab.root / 'ping.py'} {landmark.address}"

    delayed = lab.run(device, ping)
    assert delayed.returncode == 0, delayed.stderr + lab.logs()
    source, seen_as, best_ms = delayed.stdout.split()
    # The device hears the landmark's own address; the landmark sees the router's.
    assert source == landmark.address
    assert seen_as == "10.77.11.1"
    assert float(best_ms) >= rtt_ms  # the relay never shortens a path

    direct = lab.run(other, ping)
    assert direct.returncode == 0, direct.stderr
    source, seen_as, best_ms = direct.stdout.split()
    assert (source, seen_as) == (landmark.address, other.address)  # routed, not relayed
    assert float(best_ms) < rtt_ms


def test_close_removes_namespaces(tmp_path: Path) -> None:
    require_netns()
    lab = Lab(tmp_path, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    lab.add_host("a", 1)
    lab.spawn(lab.hosts["a"], "sleep 600", "sleeper")
    names = [lab.router, lab.hosts["a"].ns]
    lab.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(n in listed for n in names)


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def test_leftovers_of_a_killed_run_are_swept() -> None:
    require_netns()
    dead_pid = 9_999_999  # above any pid_max: no such process
    ns = f"lf{dead_pid}x{os.getpid() % 0xFFFF:04x}-left"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    sleeper = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "600"], start_new_session=True)
    try:
        assert ns in sweep_leftovers()
        assert sleeper.wait(timeout=10) != 0  # killed
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert ns not in listed
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_without_root_it_skips_loudly_or_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    import netns_lab

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "needs root" in (netns_lab.missing_capability() or "")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(netns_lab.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="NOT RUN: creating network namespaces"):
        netns_lab.require_netns()
    for name, value in (("CI", "true"), (netns_lab.REQUIRE_ENV, "1")):
        with monkeypatch.context() as m:
            m.setenv(name, value)
            with pytest.raises(pytest.fail.Exception, match="NOT RUN"):
                netns_lab.require_netns()


def test_a_step_past_its_timeout_is_killed_whole(lab: Lab) -> None:
    host = lab.add_host("slow", 5)
    marker = lab.root / "still-running"
    with pytest.raises(subprocess.TimeoutExpired):
        lab.run(host, f"(sleep 2; touch {marker}) & sleep 60", timeout_s=0.5)
    time.sleep(3)
    assert not marker.exists()  # the background child died with the step


def test_close_kills_what_left_its_process_group(tmp_path: Path) -> None:
    require_netns()
    lab = Lab(tmp_path, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    host = lab.add_host("a", 1)
    lab.run(host, "setsid sleep 600 > /dev/null 2>&1 < /dev/null &")
    pids = subprocess.run(["ip", "netns", "pids", host.ns], capture_output=True, text=True)
    escaped = [int(p) for p in pids.stdout.split()]
    assert escaped  # a daemon in a session of its own
    lab.close()
    time.sleep(0.5)
    assert not any(_alive(p) for p in escaped)


def _alive(pid: int) -> bool:
    """Running (a killed orphan may stay a zombie until init reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
