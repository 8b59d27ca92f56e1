"""The emulated geography's own error: how much longer than asked a relayed round trip takes.

A UDP echo server on 127.0.0.1 answers pings; the baseline is the direct loopback RTT, measured
in the same run. Each case then pings through a `sim.emulate.RelayProcess` path (jitter off) set
to a round trip of R ms, `--concurrency` paths at once (each with its own pinging thread, as in
the demo where dozens of sessions share the relay process). Reported per case: the extra RTT
beyond R + baseline (median, p90, p99, max) and the relay's own lateness against its due times.

    python -m bench.emulation [--pings 200] [--concurrency 1 16]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time

from lightfence.sim.emulate import RelayProcess

RTTS_MS = (0.0, 1.0, 10.0, 100.0)


def _echo(sock: socket.socket, stop: threading.Event) -> None:
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            data, addr = sock.recvfrom(2048)
        except TimeoutError:
            continue
        sock.sendto(data, addr)


def _ping(addr: tuple[str, int], n: int, out: list[float]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5.0)
        s.connect(addr)
        for i in range(n):
            t0 = time.perf_counter_ns()
            s.send(i.to_bytes(4, "big"))
            s.recv(2048)
            out.append((time.perf_counter_ns() - t0) / 1e6)
            time.sleep(0.002)


def _q(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pings", type=int, default=200, help="pings per path")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = ap.parse_args(argv)
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    stop = threading.Event()
    server = threading.Thread(target=_echo, args=(echo, stop), daemon=True)
    server.start()
    target = echo.getsockname()
    try:
        base: list[float] = []
        _ping(target, args.pings, base)
        baseline = statistics.median(base)
        print(f"baseline: direct loopback RTT median {baseline:.3f} ms ({len(base)} pings)")
        print("| RTT asked ms | paths | extra median ms | p90 | p99 | max | relay late p99 ms |")
        print("|---|---|---|---|---|---|---|")
        for conc in args.concurrency:
            for rtt in RTTS_MS:
                relays = RelayProcess([(target, rtt)] * conc, jitter_fraction=0.0)
                try:
                    results: list[list[float]] = [[] for _ in range(conc)]
                    threads = [
                        threading.Thread(target=_ping, args=(a, args.pings, r))
                        for a, r in zip(relays.addresses, results, strict=True)
                    ]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    late = relays.lateness()
                finally:
                    relays.close()
                extra = [x - rtt - baseline for r in results for x in r]
                print(
                    f"| {rtt:g} | {conc} | {statistics.median(extra):.3f} | "
                    f"{_q(extra, 0.9):.3f} | {_q(extra, 0.99):.3f} | {max(extra):.3f} | "
                    f"{late.get('p99_ms', float('nan')):.3f} |"
                )
    finally:
        stop.set()
        server.join(timeout=2)
        echo.close()


if __name__ == "__main__":
    main()
