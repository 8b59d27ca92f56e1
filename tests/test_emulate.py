"""sim.emulate: path RTTs from the data set or the model, and relays that forward both ways and
never shorten a path (the one timing property that holds on any machine: a datagram is sent no
earlier than it is due)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from lightfence.geo.sphere import great_circle_km
from lightfence.rttdata import load_dataset
from lightfence.sim.emulate import (
    MODEL_QUANTILE,
    LatenessStats,
    RelayHub,
    RelayProcess,
    Site,
    path_rtt_ms,
    site_of,
)
from lightfence.sim.latency import shipped_latency_model


def test_measured_pair_uses_the_data_set() -> None:
    ds = load_dataset()
    a, b = site_of(ds, "wn-29"), site_of(ds, "wn-210")
    measured = ds.rtt_ms("wn-29", "wn-210")
    assert measured is not None
    assert path_rtt_ms(ds, a, b) == measured == path_rtt_ms(ds, b, a)


def test_unmeasured_pair_uses_the_model_at_the_stated_quantile() -> None:
    ds = load_dataset()
    a, b = site_of(ds, "ra-6149"), site_of(ds, "wn-84")  # RIPE anchor and WonderNetwork host
    assert ds.rtt_ms("ra-6149", "wn-84") is None
    d_km = float(great_circle_km(a.lat, a.lon, b.lat, b.lon))
    expected = float(shipped_latency_model().rtt_ms(d_km, MODEL_QUANTILE))
    assert path_rtt_ms(ds, a, b) == pytest.approx(expected)
    free = Site(a.lat, a.lon)  # a position that is no data-set host: always modelled
    assert path_rtt_ms(ds, free, b) == pytest.approx(expected)


def test_modelled_rtt_is_never_faster_than_light_in_fibre() -> None:
    ds = load_dataset()
    here = Site(1.35, 103.82)
    for lat, lon in ((1.36, 103.87), (35.7, 139.8), (-33.9, 151.2), (50.1, 8.7)):
        there = Site(lat, lon)
        d_km = float(great_circle_km(here.lat, here.lon, lat, lon))
        assert path_rtt_ms(ds, here, there) >= 2 * d_km / (2 / 3 * 299.792458) - 1e-9


def _echo_server() -> tuple[socket.socket, threading.Event, threading.Thread]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(2048)
            except TimeoutError:
                continue
            sock.sendto(b"echo:" + data, addr)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return sock, stop, t


def _pings(addr: tuple[str, int], n: int) -> list[tuple[bytes, float]]:
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.connect(addr)
        for i in range(n):
            t0 = time.monotonic_ns()
            s.send(b"%d" % i)
            data = s.recv(2048)
            out.append((data, (time.monotonic_ns() - t0) / 1e6))
    return out


def test_relay_forwards_both_ways_and_never_shortens_a_path() -> None:
    echo, stop, thread = _echo_server()
    hub = RelayHub(seed=3)
    try:
        rtt_ms = 4.0
        addr = hub.add_path(echo.getsockname(), rtt_ms)
        hub.start()
        replies = _pings(addr, 20)
        assert [d for d, _ in replies] == [b"echo:%d" % i for i in range(20)]
        assert min(t for _, t in replies) >= rtt_ms
        summary = hub.lateness.summary()
        assert summary["datagrams"] >= 39  # the last reply may be read before it is counted
        assert summary["median_ms"] >= 0
    finally:
        hub.close()
        stop.set()
        thread.join()
        echo.close()


def test_relay_process_serves_many_paths() -> None:
    echo, stop, thread = _echo_server()
    relays = RelayProcess([(echo.getsockname(), 1.0), (echo.getsockname(), 2.0)], seed=1)
    try:
        assert len(relays.addresses) == 2
        for addr, rtt_ms in zip(relays.addresses, (1.0, 2.0), strict=True):
            replies = _pings(addr, 3)
            assert all(d == b"echo:%d" % i for i, (d, _) in enumerate(replies))
            assert min(t for _, t in replies) >= rtt_ms
        assert relays.lateness()["datagrams"] >= 11
    finally:
        relays.close()
        stop.set()
        thread.join()
        echo.close()


def test_bad_inputs_are_refused() -> None:
    hub = RelayHub()
    try:
        with pytest.raises(ValueError, match="RTT"):
            hub.add_path(("127.0.0.1", 9), -1.0)
    finally:
        hub.close()
    with pytest.raises(ValueError, match="jitter"):
        RelayHub(jitter_fraction=-0.1)
    assert LatenessStats().summary() == {"datagrams": 0}
