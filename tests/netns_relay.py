"""The delaying relay of tests/netns_lab.py, run in the router namespace (user-space netem).

Usage: python netns_relay.py '[["10.77.11.2", 7800, 7.6], ...]'  (landmark address, UDP port,
path RTT in ms). Binds each landmark's own address transparently, forwards every datagram after
half the RTT (sim.emulate.RelayHub, with its small non-negative jitter), prints "relays ready",
and runs until SIGTERM; then prints how late it sent datagrams (the emulation's own error).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading

from lightfence.sim.emulate import RelayHub


def main(argv: list[str]) -> int:
    paths = [(str(a), int(p), float(rtt)) for a, p, rtt in json.loads(argv[1])]
    # A late relay is emulation error: preempt ordinary work where the OS lets us.
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    hub = RelayHub(seed=0)
    for addr, port, rtt_ms in paths:
        hub.add_path((addr, port), rtt_ms, front_addr=(addr, port), transparent=True)
        print(f"relay {addr}:{port} rtt {rtt_ms:.2f} ms", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    hub.start()
    print("relays ready", flush=True)
    stop.wait()
    hub.close()
    print(f"lateness: {json.dumps(hub.lateness.summary())}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
