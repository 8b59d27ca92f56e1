"""A small network of Linux network namespaces for end-to-end tests: one per role, real sockets.

Topology: a router namespace is every host's default gateway. Host number i gets a veth pair,
`eth0` = 10.77.i.2/24 on its side, 10.77.i.1/24 on the router's, and the router forwards
between them, so every packet from one role to another crosses the kernel twice.

Delay: this kernel has no `sch_netem`, so `tc qdisc ... netem` cannot delay a link. Instead the
router's policy routing delivers the device's packets for a landmark's own address locally, to a
relay process in the router namespace (tests/netns_relay.py, the sim.emulate.RelayHub scheduler)
that holds each datagram for the path's one-way delay and forwards it to the landmark from the
router's address; replies come back the same way. The relay binds the landmark's address
transparently (IP_TRANSPARENT), so the device sends to and hears from the landmark's real
address, and nothing in the deployment (registry, configs, commands) knows about the relay.
Everything the device sends to a landmark's address reaches the router's own stack: UDP to the
landmark port is relayed with the delay, anything else is refused there (the deployment sends
nothing else). Other hosts' traffic, and the device's HTTP to the verifier, is routed directly.
The relay only ever adds delay, so it can only widen a cap, never make a verdict unsound.

Names are unique per run (`lf<pid>x<4 hex>-<host>`), so parallel pytest workers never collide,
and `Lab.close` deletes every namespace it made and stops every process it started, by its id.
A run killed before its cleanup leaves namespaces whose pid is gone; the next Lab removes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REQUIRE_ENV = "LIGHTFENCE_REQUIRE_NETNS"
"""Set to 1 (CI sets CI=true) and a missing capability fails the test instead of skipping it."""
SUBNET = "10.77"
ROUTER_TABLE = 100
"""Policy-routing table that turns a delayed landmark address into a local one on the router."""
RELAY_SCRIPT = Path(__file__).with_name("netns_relay.py")
READY_TIMEOUT_S = 20.0


def required() -> bool:
    """True where a missing namespace capability must fail, not skip (CI, or asked for)."""
    return os.environ.get(REQUIRE_ENV) == "1" or os.environ.get("CI", "").lower() in {"1", "true"}


def missing_capability() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"lfprobe-{os.getpid()}-{secrets.token_hex(2)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip() or made.returncode}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def require_netns() -> None:
    """Skip loudly where namespaces cannot be made; fail instead in CI or when required."""
    reason = missing_capability()
    if reason is None:
        return
    message = (
        f"NETWORK-NAMESPACE END-TO-END TEST NOT RUN: {reason}. Run as root on Linux "
        f"(CI does; {REQUIRE_ENV}=1 or CI=true turns this skip into a failure)."
    )
    if required():
        pytest.fail(message)
    pytest.skip(message)


LEFTOVER = re.compile(r"^lf(?P<pid>\d+)x[0-9a-f]{4}-\S+")


def sweep_leftovers() -> list[str]:
    """Delete namespaces a killed run left behind (its creating process is gone), stopping the
    processes still running in them by their ids. Returns the names deleted."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    gone = []
    for line in listed.splitlines():
        m = LEFTOVER.match(line)
        if m is None or Path(f"/proc/{m.group('pid')}").exists():
            continue
        ns = m.group(0)
        _kill_all_in(ns)
        _ip("netns", "del", ns, check=False)
        gone.append(ns)
    return gone


def _kill_all_in(ns: str) -> None:
    """SIGKILL every process still in namespace `ns` (one this module made), by its id."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    for pid in pids.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _ip(*args: str, check: bool = True) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class Host:
    name: str
    index: int
    ns: str
    directory: Path
    """The host's own disk: its commands run here, with HOME set to it."""

    @property
    def address(self) -> str:
        return f"{SUBNET}.{self.index}.2"


@dataclass
class Lab:
    root: Path
    """Every host's directory lives under here."""
    env: dict[str, str]
    """Environment every command gets (PATH with a `lightfence` on it, PYTHONPATH)."""
    run_id: str = field(default_factory=lambda: f"{os.getpid()}x{secrets.token_hex(2)}")
    """In every namespace name: the creating process's id, so a later run can tell a namespace
    left by a killed run (its process is gone) from one a parallel worker is using."""
    hosts: dict[str, Host] = field(default_factory=dict)
    _namespaces: list[str] = field(default_factory=list)
    _procs: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)
    _paths: list[tuple[str, int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        sweep_leftovers()
        self.router = self._namespace("router")
        _ip("netns", "exec", self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def _namespace(self, name: str) -> str:
        ns = f"lf{self.run_id}-{name}"[:32]
        _ip("netns", "add", ns)
        self._namespaces.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def add_host(self, name: str, index: int) -> Host:
        """A host namespace wired to the router as 10.77.<index>.2."""
        if not 1 <= index <= 254 or any(h.index == index for h in self.hosts.values()):
            raise ValueError(f"host index {index} is out of range or taken")
        ns = self._namespace(name)
        port = f"v{index}"
        _ip("-n", self.router, "link", "add", port, "type", "veth", "peer", "name", "eth0",
            "netns", ns)  # fmt: skip
        _ip("-n", self.router, "addr", "add", f"{SUBNET}.{index}.1/24", "dev", port)
        _ip("-n", self.router, "link", "set", port, "up")
        _ip("-n", ns, "addr", "add", f"{SUBNET}.{index}.2/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "route", "add", "default", "via", f"{SUBNET}.{index}.1")
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        host = Host(name, index, ns, directory)
        self.hosts[name] = host
        return host

    def delay(self, device: Host, landmark: Host, port: int, rtt_ms: float) -> None:
        """Make the device's UDP to `landmark.address:port` take `rtt_ms` there and back."""
        if not self._paths or all(p[0] != landmark.address for p in self._paths):
            _ip("-n", self.router, "route", "add", "local", f"{landmark.address}/32", "dev",
                "lo", "table", str(ROUTER_TABLE))  # fmt: skip
        _ip("-n", self.router, "rule", "add", "from", f"{device.address}/32", "to",
            f"{landmark.address}/32", "lookup", str(ROUTER_TABLE))  # fmt: skip
        self._paths.append((landmark.address, port, rtt_ms))

    def start_relays(self) -> None:
        """Start the delaying relay for every path added with `delay` (call once, after them)."""
        cmd = ["ip", "netns", "exec", self.router, sys.executable, str(RELAY_SCRIPT)]
        proc = self._popen("router-relay", [*cmd, json.dumps(self._paths)])
        self.wait_for("router-relay", "relays ready", READY_TIMEOUT_S)
        del proc

    def _popen(
        self, label: str, argv: list[str], cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        log = self.root / f"{label}.log"
        with log.open("wb") as out:
            # A session of its own: close() stops it and whatever it started by its process group.
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd or self.root,
                env=self.env | {"HOME": str(cwd or self.root)},
                start_new_session=True,
            )
        self._procs.append((label, proc, log))
        return proc

    def _argv(self, host: Host, script: str) -> list[str]:
        return ["ip", "netns", "exec", host.ns, "bash", "-euo", "pipefail", "-c", script]

    def run(
        self, host: Host, script: str, timeout_s: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell script on `host` (its namespace, its directory) and wait for it; past
        `timeout_s` the script and everything it started are killed and TimeoutExpired raised."""
        argv = self._argv(host, script)
        with subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=host.directory,
            env=self.env | {"HOME": str(host.directory)},
            start_new_session=True,  # its own process group, so a timeout kills all of it
        ) as proc:
            try:
                out, err = proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                raise
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def spawn(self, host: Host, script: str, label: str) -> subprocess.Popen[bytes]:
        """Start a long-running script on `host`; its output goes to <root>/<label>.log."""
        return self._popen(label, self._argv(host, script), cwd=host.directory)

    def log(self, label: str) -> str:
        path = self.root / f"{label}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for(self, label: str, text: str, timeout_s: float) -> None:
        """Wait until the background process `label` prints `text`; fail if it exits first."""
        proc = next(p for lab, p, _ in self._procs if lab == label)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log(label):
                return
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{label} exited ({proc.returncode}) before printing {text!r}:\n"
                    + self.log(label)[-3000:]
                )
            time.sleep(0.05)
        raise RuntimeError(f"{label} did not print {text!r} in {timeout_s} s:\n" + self.log(label))

    def logs(self) -> str:
        """Every background process's output, for a failure message."""
        return "\n".join(f"--- {lab} ---\n{self.log(lab)[-2000:]}" for lab, _, _ in self._procs)

    def close(self) -> None:
        """Stop every process this lab started (SIGTERM, then SIGKILL), delete its namespaces."""
        for _, proc, _ in reversed(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for _, proc, _ in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        for ns in reversed(self._namespaces):
            _kill_all_in(ns)  # anything that left its process group: the namespace is ours
            _ip("netns", "del", ns, check=False)
        self._namespaces.clear()
