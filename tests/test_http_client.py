"""The one HTTP client (httpx) for submissions and the one retry delay, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import random
import socket

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from http_stub import stub_verifier
from lightfence.backoff import JITTER_FRACTION, backoff_delay_s
from lightfence.evidence.submit import SubmitError, post_json, post_json_async


def test_post_json_sends_token_and_body() -> None:
    with stub_verifier(201) as (url, received):
        body = post_json(url + "/records", {"records": [1]}, token="tok")
    assert body == b'{"status": "stored"}'
    assert received == [("/records", "Bearer tok", {"records": [1]})]


@pytest.mark.parametrize(
    ("status", "refused"), [(401, True), (422, True), (429, False), (408, False), (503, False)]
)
def test_error_statuses_are_submit_errors(status: int, refused: bool) -> None:
    with stub_verifier(201, failures=[status]) as (url, _), pytest.raises(SubmitError) as info:
        post_json(url + "/records", {})
    assert info.value.status == status and info.value.refused is refused
    assert isinstance(info.value, OSError)


def test_unreachable_verifier_is_a_submit_error_without_status() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        with pytest.raises(SubmitError) as info:
            post_json(f"http://127.0.0.1:{port}/records", {}, timeout_s=2)
    assert info.value.status is None and not info.value.refused


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x/records", "127.0.0.1:80/records"])
def test_only_http_urls_are_posted_to(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        post_json(url, {})


def test_async_post_uses_the_callers_client() -> None:
    async def main() -> bytes:
        async with httpx.AsyncClient(timeout=5) as client:
            return await post_json_async(client, url + "/records", {"a": 1}, "t")

    with stub_verifier(200) as (url, received):
        assert asyncio.run(main()) == b'{"status": "stored"}'
    assert received == [("/records", "Bearer t", {"a": 1})]


@settings(max_examples=300, deadline=None)
@given(
    attempt=st.integers(0, 200),
    first_s=st.floats(0, 100, allow_nan=False),
    max_s=st.floats(0, 1000, allow_nan=False),
    seed=st.integers(0, 2**32),
)
def test_backoff_doubles_up_to_the_cap_with_bounded_jitter(
    attempt: int, first_s: float, max_s: float, seed: int
) -> None:
    base = min(max_s, first_s * 2.0**attempt)
    delay = backoff_delay_s(attempt, first_s, max_s, random.Random(seed))
    assert base <= delay <= base * (1 + JITTER_FRACTION)


def test_backoff_is_jittered() -> None:
    rng = random.Random(1)
    delays = {backoff_delay_s(3, 0.5, 30.0, rng) for _ in range(20)}
    assert len(delays) == 20


def test_backoff_refuses_negative_input() -> None:
    with pytest.raises(ValueError):
        backoff_delay_s(-1, 0.5, 1.0)
