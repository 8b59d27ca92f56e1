"""A demo child process that stops when its parent is gone, however the parent went.

A parent that exits normally, or on SIGTERM or SIGINT, stops its children itself (the demo's
`finally` blocks and multiprocessing's exit handler). A parent that is SIGKILLed runs nothing:
the child must notice on its own. On Linux the kernel tells it (PR_SET_PDEATHSIG); everywhere
a thread also polls the parent's pid, which covers other systems and the race where the parent
died before the child asked the kernel.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
"""From <linux/prctl.h>."""
POLL_S = 0.5
"""How often the watch thread compares the parent pid: the longest an orphan outlives it."""
GRACE_S = 10.0
"""After asking itself to stop (SIGTERM), how long before the child exits without cleanup."""


def die_with_parent(parent_pid: int, kernel_signal: bool = True) -> None:
    """Stop this process (SIGTERM to itself, then exit) once `parent_pid` is no longer its parent.

    `kernel_signal`: also ask Linux for SIGTERM on the parent's death. The kernel sends it when
    the parent *thread* that started this process ends, so the parent passes False when it was
    not started from the parent's main thread; the pid poll still covers that case.
    """
    if kernel_signal and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no libc prctl here: the poll below still works
    threading.Thread(target=_watch, args=(parent_pid,), name="lf-orphan-watch", daemon=True).start()


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(POLL_S)
    # SIGTERM runs the child's own shutdown (uvicorn's handler); if that hangs, exit anyway.
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(GRACE_S)
    os._exit(1)
