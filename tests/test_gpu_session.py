"""GPU sessions over the wire, in memory with scripted time: agent and landmark endpoints."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from lightfence.attestation import AppraisalPolicy
from lightfence.protocol.gpu_round import GpuEvidence, verify_gpu_round
from lightfence.protocol.gpu_session import (
    GPU_ANSWER_LEN,
    GpuAgentSession,
    GpuLandmarkEndpoint,
    decode_gpu_hello,
    encode_gpu_hello,
)
from lightfence.protocol.messages import MAX_DATAGRAM_BYTES
from lightfence.sim.gpu import GpuStandIn, GpuTestRoot
from record_factory import seeded_key

ROOT = GpuTestRoot.create()
POLICY = AppraisalPolicy((ROOT.cert,))
GPU = GpuStandIn(ROOT)
LM = seeded_key("gpu-landmark")
DEVICE = "0123456789abcdef0123456789abcdef"
AGENT = ("10.0.0.2", 4000)
MS = 1_000_000


def _sign(nonce: bytes) -> GpuEvidence:
    return GpuEvidence(GPU.report(nonce), GPU.chain_der)


def run(
    rounds: int = 3,
    one_way_ms: float = 5.0,
    signing_ms: float = 8.0,
    tamper: object = None,
    drop_round: int | None = None,
) -> tuple[GpuAgentSession, GpuLandmarkEndpoint, list[bytes]]:
    """Drive both ends with scripted time: each datagram takes one_way_ms, the GPU signing_ms."""
    rng = random.Random(5)
    lm = GpuLandmarkEndpoint("sin", LM, POLICY, rng=rng.randbytes)
    agent = GpuAgentSession(DEVICE, rounds, _sign, rng.randbytes(8))
    now = 0
    to_landmark = [(now + int(one_way_ms * MS), agent.start())]
    sent_to_agent: list[bytes] = []
    for _ in range(400):
        to_landmark.sort(key=lambda x: x[0])
        if to_landmark:
            at, data = to_landmark.pop(0)
            now = max(now, at)
            if callable(tamper):
                data = tamper(data)
            lm.receive_datagram(data, AGENT, now)
        else:
            timer = lm.get_timer()
            if timer is None:
                break
            now = max(now, timer)
            lm.handle_timer(now)
        while (ev := lm.next_event()) is not None:
            lm.issue_record(ev.session_id, 1_764_000_000_000_000_000)
        for out in lm.datagrams_to_send():
            if out.tag is not None:
                lm.on_sent(out.tag, now)
                if drop_round is not None and out.tag[1] == drop_round:
                    continue
            sent_to_agent.append(out.data)
            arrive = now + int(one_way_ms * MS)
            replies = agent.receive_datagram(out.data)
            # The GPU signs before the answer leaves; everything after it leaves after it.
            signed = bool(replies) and len(replies[0]) == GPU_ANSWER_LEN
            delay = signing_ms if signed else 0.0
            for i, reply in enumerate(replies):
                to_landmark.append((arrive + int((delay + one_way_ms) * MS) + i, reply))
        if agent.done and not to_landmark:
            break
    return agent, lm, sent_to_agent


def test_gpu_session_issues_a_record_whose_rtt_includes_signing() -> None:
    agent, lm, _ = run()
    assert agent.record is not None, (agent.error, lm.stats)
    rec = agent.record
    assert rec.rtt_ns >= (2 * 5.0 + 8.0) * MS  # the GPU's signing time is inside the RTT
    assert rec.landmark_id == "sin" and rec.device_id == DEVICE
    ev = agent.evidence[rec.round_no]
    assert verify_gpu_round(rec, ev, LM.public_bytes, POLICY, 1_764_000_000.0).ok
    assert lm.stats.records_issued == 1


def test_every_datagram_fits_and_hello_is_padded() -> None:
    agent, _, to_agent = run()
    hello = agent.start()
    assert len(hello) >= 360 and decode_gpu_hello(hello).device_id == DEVICE
    assert all(len(d) <= MAX_DATAGRAM_BYTES for d in to_agent)
    assert all(len(d) <= MAX_DATAGRAM_BYTES for d in agent.evidence_datagrams())


def test_a_lost_challenge_still_gives_a_record() -> None:
    agent, lm, _ = run(rounds=3, drop_round=1)
    assert lm.stats.records_issued == 1
    assert agent.record is not None and agent.record.round_no in (0, 2)


def test_evidence_that_is_not_the_timed_report_is_refused() -> None:
    def swap(data: bytes) -> bytes:
        # Flip one byte of every evidence fragment's payload: the digest no longer matches.
        if data[3] == 10 and len(data) > 40:
            return data[:-1] + bytes([data[-1] ^ 1])
        return data

    agent, lm, _ = run(tamper=swap)
    assert agent.record is None and lm.stats.records_issued == 0
    assert lm.stats.rejected.get("appraisal_failed", 0) >= 1
    assert "evidence_for_unanswered_round" not in lm.stats.rejected

    def swap_report(data: bytes) -> bytes:
        # Flip a byte inside the report (first fragment): its digest is not the timed one.
        if data[3] == 10 and data[21:25] == bytes(4):
            return data[:100] + bytes([data[100] ^ 1]) + data[101:]
        return data

    agent, lm, _ = run(tamper=swap_report)
    assert agent.record is None and lm.stats.rejected.get("evidence_not_timed", 0) >= 1


def test_garbage_and_spoofed_hellos_are_counted_not_raised() -> None:
    lm = GpuLandmarkEndpoint("sin", LM, POLICY)
    for data in (b"", b"LF", b"LF\x02\x08", b"LF\x02\x09" + bytes(49), b"LF\x02\x0a" + bytes(30)):
        lm.receive_datagram(data, AGENT, 0)
    hello = encode_gpu_hello(b"h" * 8, DEVICE, 3)
    lm.receive_datagram(hello, AGENT, 0)
    (retry,) = lm.datagrams_to_send()
    assert len(retry.data) < len(hello)  # no amplification before the cookie
    assert lm.get_timer() is None  # nothing kept for a cookieless HELLO
    assert sum(lm.stats.rejected.values()) == 5


def test_gpu_rounds_over_real_udp_sockets() -> None:
    """The asyncio landmark adapter and the agent's blocking runner on 127.0.0.1."""
    import asyncio
    import threading
    import time

    from lightfence.agent.gpu_measure import run_gpu_session
    from lightfence.identity.gpu_signer import GpuReport
    from lightfence.landmark.gpu_server import serve_gpu_rounds

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    endpoint = GpuLandmarkEndpoint("sin", LM, POLICY)
    transport, proto = asyncio.run_coroutine_threadsafe(
        serve_gpu_rounds(endpoint, "127.0.0.1", 0), loop
    ).result(10)
    port = transport.get_extra_info("sockname")[1]

    def signer(nonce: bytes) -> GpuReport:
        time.sleep(0.005)  # the GPU takes its time; the landmark's RTT must include it
        return GpuReport(GPU.report(nonce), GPU.chain_der)

    try:
        result = run_gpu_session("127.0.0.1", port, "sin", DEVICE, signer, rounds=3)
    finally:
        loop.call_soon_threadsafe(proto.close)
        loop.call_soon_threadsafe(loop.stop)
    assert result.record is not None and result.evidence is not None, result.error
    assert result.record.rtt_ns >= 5 * MS
    now_s = result.record.measured_at_unix_ns / 1e9
    assert verify_gpu_round(result.record, result.evidence, LM.public_bytes, POLICY, now_s).ok


def test_config_and_registry_carry_the_gpu_address(tmp_path: object) -> None:
    from pathlib import Path

    from lightfence.landmark.config import ConfigError, parse_config
    from lightfence.model.registry import LandmarkEntry

    base = {
        "landmark": {
            "id": "sin",
            "latitude": 1.29,
            "longitude": 103.85,
            "key_file": "k",
            "listen": "127.0.0.1:7800",
        },
        "gpu": {"listen": "127.0.0.1:7801", "root_file": "root.pem"},
    }
    cfg = parse_config(base, Path("/etc/lf"))
    assert cfg.gpu_listen == ("127.0.0.1", 7801) and cfg.gpu_root_file == Path("/etc/lf/root.pem")
    entry = cfg.registry_entry(LM.public_bytes)
    assert entry.gpu_address == "127.0.0.1:7801"
    assert LandmarkEntry.from_json_dict(entry.to_json_dict()) == entry
    no_gpu = {"landmark": base["landmark"]}
    assert parse_config(no_gpu, Path(".")).registry_entry(LM.public_bytes).gpu_address is None
    bad = {**base, "gpu": {"listen": "nowhere"}}
    try:
        parse_config(bad, Path("."))
    except ConfigError as exc:
        assert "[gpu] listen" in str(exc)
    else:
        raise AssertionError("a bad [gpu] listen must be refused")


@settings(max_examples=15, deadline=None)
@given(
    one_way_ms=st.floats(0.05, 40.0),
    signing_ms=st.floats(0.5, 30.0),
    rounds=st.integers(1, 4),
)
def test_a_gpu_round_rtt_is_never_below_the_real_round_trip(
    one_way_ms: float, signing_ms: float, rounds: int
) -> None:
    """Whatever the path and signing time, the recorded RTT covers both ways and the signing."""
    agent, lm, _ = run(rounds=rounds, one_way_ms=one_way_ms, signing_ms=signing_ms)
    assert agent.record is not None, (agent.error, lm.stats)
    assert agent.record.rtt_ns >= int((2 * one_way_ms + signing_ms) * MS) - 2
