"""A CPU quota per benchmark process (Linux cgroups), to give each worker a core of its own.

On a 2-vCPU machine two stream workers, PostgreSQL and the broker cannot each have a core, so
"1 -> 2 workers" measures the machine, not the workers. Capping every worker at a fraction of
a CPU (the kernel's CFS quota) gives each one a slower core of its own while the database and
the broker keep the rest: the ratio then says whether the workers scale, with nothing else
changed. Needs root and the cgroup `cpu` controller (v1 `/sys/fs/cgroup/cpu`, or v2 with `cpu`
enabled at the root); `CpuCap.available()` says whether this machine has them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

PERIOD_US = 100_000
V1_ROOT = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")


class CpuCap:
    """One cgroup holding one process, limited to `fraction` of one CPU."""

    def __init__(self, fraction: float) -> None:
        if not 0 < fraction <= 1:
            raise ValueError("a CPU cap is a fraction of one CPU, in (0, 1]")
        quota_us = int(PERIOD_US * fraction)
        name = f"lightfence-bench-{uuid.uuid4().hex[:8]}"
        if (V1_ROOT / "cpu.cfs_quota_us").exists():
            self.path = V1_ROOT / name
            self.path.mkdir()
            (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota_us))
        else:
            self.path = V2_ROOT / name
            self.path.mkdir()
            (self.path / "cpu.max").write_text(f"{quota_us} {PERIOD_US}")

    @staticmethod
    def available() -> bool:
        if os.geteuid() != 0:
            return False
        if (V1_ROOT / "cpu.cfs_quota_us").exists():
            return os.access(V1_ROOT, os.W_OK)
        controllers = V2_ROOT / "cgroup.subtree_control"
        return controllers.exists() and "cpu" in controllers.read_text().split()

    def enter(self) -> Callable[[], None]:
        """A `preexec_fn` for subprocess.Popen: the child joins this group before it starts."""
        procs = str(self.path / "cgroup.procs")

        def join() -> None:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))

        return join

    def remove(self) -> None:
        """Delete the group (its process must have ended)."""
        # A process still in it: the group stays (empty once it ends) until the next reboot.
        with contextlib.suppress(OSError):
            self.path.rmdir()
