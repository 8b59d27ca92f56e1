"""Timing fidelity on loopback: what the protocol adds to a kernel-timestamped RTT.

Per trial, in the same run and interleaved: (a) a bare UDP echo timed with the same kernel
timestamps the landmark uses (SO_TIMESTAMPING software TX and RX), min of 10 pings; (b) a real
landmark session of 10 rounds with the real agent, min of 10 rounds as the landmark recorded
it. Overhead = (b) - (a): everything the device side adds (decode, sign, encode, wake-up).
The device's answer time (decode, sign, encode) of each trial's fastest round is measured in
line and reported separately, with the overhead net of it; Ed25519 signing alone is timed too.
Targets (issue 3): median overhead <= 10 us and p99 <= 50 us for the min-of-10 estimator, with
device signing reported separately.

    python -m bench.protocol_timing [--trials N]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from bench.landmark_process import (
    AGENT_CPU,
    CTX,
    bench_key,
    pin,
    start_echo,
    start_landmark,
    stop_echo,
)
from lightfence.agent.measure import run_session_blocking
from lightfence.crypto.identity import software_identity
from lightfence.landmark.registry import LandmarkEntry
from lightfence.landmark.timestamping import Timestamper
from lightfence.protocol import messages as m
from lightfence.protocol.agent_session import AgentSession
from lightfence.protocol.challenge import challenge_signing_bytes

ROUNDS = 10
PING = bytes(53)  # the size of a challenge datagram


def echo_min_rtt_ns(sock: socket.socket, ts: Timestamper, port: int, pings: int = ROUNDS) -> int:
    """Min over `pings` of kernel RX - kernel TX for a bare echo (user clock if no kernel)."""
    best = 1 << 62
    for _ in range(pings):
        before = time.monotonic_ns()
        sock.sendto(PING, ("127.0.0.1", port))
        _, anc, _, _ = sock.recvmsg(2048, 512)
        after = time.monotonic_ns()
        rx = ts.rx_kernel(anc)
        stamps = ts.drain_tx(sock)
        rtt = rx.real_ns - stamps[-1][1].real_ns if rx is not None and stamps else after - before
        best = min(best, rtt)
    return best


def percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def signing_time_us(n: int = 2000) -> float:
    key = bench_key("device")
    msg = challenge_signing_bytes(bytes(32), "bench", "00" * 16, bytes(16), 0)
    samples = []
    for _ in range(n):
        t = time.perf_counter_ns()
        key.sign(msg)
        samples.append(time.perf_counter_ns() - t)
    return statistics.median(samples) / 1e3


@dataclass
class ProbeResult:
    overhead_us: list[float] = field(default_factory=list)
    """Per trial: landmark min-of-10 RTT minus echo min-of-10 RTT, microseconds."""
    echo_us: list[float] = field(default_factory=list)
    device_us: list[float] = field(default_factory=list)
    """Per trial: the device's processing time (decode, sign, encode) of the fastest round."""
    kernel_records: int = 0


class TimedSession(AgentSession):
    """The real agent session, with the time each challenge took to answer recorded."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.answer_ns: dict[int, int] = {}

    def receive_datagram(self, data: bytes) -> list[bytes]:
        t0 = time.perf_counter_ns()
        out = super().receive_datagram(data)
        elapsed = time.perf_counter_ns() - t0
        if out and len(data) == m.CHALLENGE_LEN:
            self.answer_ns[data[m.HEADER_LEN + 16]] = elapsed
        return out


async def probe(entry: LandmarkEntry, echo_port: int, trials: int) -> ProbeResult:
    """Interleave echo and landmark measurements `trials` times."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    ts = Timestamper.enable(sock, "auto")
    key = bench_key("device")
    ident = software_identity(key)
    host, port = entry.host_port()
    out = ProbeResult()
    try:
        for _ in range(trials):
            echo = echo_min_rtt_ns(sock, ts, echo_port)
            session = TimedSession(key, ident, entry.id, entry.public_key, ROUNDS)
            await asyncio.to_thread(run_session_blocking, session, host, port, 5.0)
            record = session.record
            if record is None:
                continue
            out.kernel_records += record.timestamp_source.value == "kernel"
            out.echo_us.append(echo / 1e3)
            out.overhead_us.append((record.min_rtt_ns - echo) / 1e3)
            out.device_us.append(session.answer_ns[record.fastest_round] / 1e3)
    finally:
        sock.close()
    return out


def summarize(res: ProbeResult, sign_us: float) -> dict[str, float | str]:
    net = [o - d for o, d in zip(res.overhead_us, res.device_us, strict=True)]
    return {
        "trials": len(res.overhead_us),
        "kernel_timed_records": res.kernel_records,
        "echo_min10_rtt_median_us": statistics.median(res.echo_us),
        "overhead_median_us": statistics.median(res.overhead_us),
        "overhead_p99_us": percentile(res.overhead_us, 99),
        "device_signing_alone_median_us": sign_us,
        "device_answer_fastest_round_median_us": statistics.median(res.device_us),
        "overhead_net_of_device_answer_median_us": statistics.median(net),
        "overhead_net_of_device_answer_p99_us": percentile(net, 99),
    }


def _probe_process(conn: Connection, entry: dict[str, object], trials: int) -> None:
    pin(AGENT_CPU)
    echo_proc, echo_port = start_echo()
    try:
        result = asyncio.run(probe(LandmarkEntry.from_json_dict(entry), echo_port, trials))
    finally:
        stop_echo(echo_proc, echo_port)
    conn.send(result)


def start_probe(entry: LandmarkEntry, trials: int) -> tuple[BaseProcess, Connection]:
    """Run `probe` in its own process (so a load generator cannot delay the agent's answers)."""
    parent, child = CTX.Pipe()
    proc = CTX.Process(target=_probe_process, args=(child, entry.to_json_dict(), trials))
    proc.start()
    return proc, parent


def run(trials: int = 200) -> dict[str, float | str]:
    lm = start_landmark("bench", hello_rate_per_s=1e6, hello_burst=10**6)
    try:
        proc, conn = start_probe(lm.entry, trials)
        result: ProbeResult = conn.recv()
        proc.join(10)
    finally:
        lm.stop()
    return {"timestamps": lm.reason, **summarize(result, signing_time_us())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args(argv)
    result = run(args.trials)
    print("protocol timing fidelity (loopback, min of 10 rounds per trial)")
    for k, v in result.items():
        print(f"  {k:42s} {v:.1f}" if isinstance(v, float) else f"  {k:42s} {v}")
    med = result["overhead_net_of_device_answer_median_us"]
    p99 = result["overhead_net_of_device_answer_p99_us"]
    assert isinstance(med, float) and isinstance(p99, float)
    print(
        f"  target median <= 10 us: {'met' if med <= 10 else 'NOT met'}; "
        f"p99 <= 50 us: {'met' if p99 <= 50 else 'NOT met'} (net of the device's answer time)"
    )


if __name__ == "__main__":
    main()
