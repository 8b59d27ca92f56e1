"""crypto.nonces: bytes from the OS generator, handed out once, and never shared with a fork."""

from __future__ import annotations

import os

import pytest

from lightfence.crypto.nonces import NonceSource


def test_slices_never_repeat_and_cross_block_boundaries() -> None:
    source = NonceSource(block_bytes=100)
    seen = [source(32) for _ in range(50)]  # 1,600 bytes: many refills
    assert all(len(x) == 32 for x in seen)
    assert len(set(seen)) == len(seen)


def test_a_request_larger_than_a_block_is_served_whole() -> None:
    source = NonceSource(block_bytes=16)
    assert len(source(64)) == 64
    assert len(source(8)) == 8


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_draws_fresh_bytes() -> None:
    source = NonceSource()
    source(32)  # fill the block in the parent
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next nonce, then leave without running pytest's teardown
        os.write(write_end, source(32))
        os._exit(0)
    os.close(write_end)
    child_nonce = os.read(read_end, 32)
    os.waitpid(pid, 0)
    os.close(read_end)
    assert child_nonce != source(32)
