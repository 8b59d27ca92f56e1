"""Unpredictable bytes for nonces and session ids, drawn from the OS in blocks.

A landmark needs 32 fresh bytes for every challenge. One `os.urandom` call per challenge is a
system call on the timed path's critical loop; drawing a block of 4 KiB at a time and handing it
out in slices gives the same bytes (the OS generator's output, never reused) at a fraction of
the cost. The block is discarded in a forked child, so two processes never hand out the same
bytes.
"""

from __future__ import annotations

import os
import weakref

BLOCK_BYTES = 4096

_live: weakref.WeakSet[NonceSource] = weakref.WeakSet()


class NonceSource:
    """`source(n)` returns n bytes from the OS generator, each handed out once."""

    def __init__(self, block_bytes: int = BLOCK_BYTES) -> None:
        self._block_bytes = block_bytes
        self._buf = b""
        self._pos = 0
        _live.add(self)

    def __call__(self, n: int) -> bytes:
        pos = self._pos
        end = pos + n
        if end > len(self._buf):
            self._buf = os.urandom(max(self._block_bytes, n))
            pos, end = 0, n
        self._pos = end
        return self._buf[pos:end]

    def _forget(self) -> None:
        self._buf = b""
        self._pos = 0


def _after_fork_in_child() -> None:
    for source in list(_live):
        source._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
