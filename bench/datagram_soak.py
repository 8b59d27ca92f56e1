"""Soak: a landmark server fed at least a million hostile datagrams over UDP.

The mix: random bytes of every length up to beyond the datagram limit; valid headers with
random or truncated bodies; responses for sessions that do not exist; valid hellos whose
challenges are then answered with forged signatures (right session and round, wrong key);
replays of those forgeries; other protocol versions. Genuine agent sessions run throughout.

Checked at the end: the landmark process is alive and still measures; it issued records only
for the genuine sessions (no forged round ever became a measurement); every genuine record
verifies; its memory stayed bounded (RSS before/after) and no session was left behind.

    python -m bench.datagram_soak [--datagrams N]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import socket
import time

from bench.landmark_process import bench_key, start_landmark
from lightfence.agent.measure import RetryPolicy, measure_landmark
from lightfence.identity.device import software_identity
from lightfence.model.trust import TrustLevel
from lightfence.protocol import messages as m
from lightfence.protocol.record import verify

BATCH = 2000


def hostile(rng: random.Random, seen: list[bytes]) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 1400))
    if kind == 1:  # right framing, wrong everything else
        return b"LF\x02" + bytes([rng.randrange(0, 9)]) + rng.randbytes(rng.randrange(0, 120))
    if kind == 2:  # a response for a session that does not exist
        return m.encode(m.Response(rng.randbytes(16), rng.randrange(64), rng.randbytes(64)))
    if kind == 3:  # another protocol version
        return b"LF" + bytes([rng.randrange(2, 256), 4]) + rng.randbytes(81)
    if kind == 4 and seen:  # replay of an earlier forgery
        return rng.choice(seen)
    if kind == 5:  # truncated valid hello
        hello = m.Hello(
            rng.randbytes(8), rng.randbytes(16).hex(), bytes(32), TrustLevel.SOFTWARE, 10
        )
        data = m.encode(hello)
        return data[: rng.randrange(len(data))]
    if kind == 6:  # oversized
        return rng.randbytes(rng.randrange(1201, 2000))
    return rng.randbytes(85)  # the size of a response, random content


def forge_answers(
    sock: socket.socket, rng: random.Random, seen: list[bytes], hellos: dict[bytes, m.Hello]
) -> int:
    """Echo the cookie of every RETRY for one of `hellos` (the soak's socket receives at its
    address, so its sessions open), and answer every challenge that came back with a forged
    signature. Returns how many answers were forged."""
    forged = 0
    while True:
        try:
            data, addr = sock.recvfrom(2048)
        except BlockingIOError:
            return forged
        if len(data) > 3 and data[3] == m.MessageType.RETRY:
            retry = m.decode(data)
            assert isinstance(retry, m.Retry)
            hello = hellos.pop(retry.hello_id, None)
            if hello is not None:
                sock.sendto(m.encode(dataclasses.replace(hello, cookie=retry.cookie)), addr)
            continue
        if len(data) == m.CHALLENGE_LEN and data[:4] == m.header(m.MessageType.CHALLENGE):
            resp = data[:4].replace(b"\x03", b"\x04") + data[4:21] + rng.randbytes(64)
            sock.sendto(resp, addr)
            forged += 1
            if len(seen) < 1000:
                seen.append(resp)


async def soak(total: int) -> dict[str, object]:
    lm = start_landmark(
        "soak",
        hello_rate_per_s=1e6,
        hello_burst=10**6,
        max_sessions=2048,
        round_timeout_ns=200_000_000,
    )
    rng = random.Random(1)
    dev = bench_key("soak-device")
    ident = software_identity(dev)
    retry = RetryPolicy(attempts=5, attempt_timeout_s=5.0, backoff_s=0.05)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    target = lm.entry.host_port()
    seen: list[bytes] = []
    hellos: dict[bytes, m.Hello] = {}
    sent = forged = genuine = 0
    rss_start = lm.rss_kib()
    t0 = time.monotonic()
    records = []
    while True:
        stats = lm.stats()
        if stats["datagrams_received"] >= total:
            break
        for _ in range(BATCH):
            try:
                sock.sendto(hostile(rng, seen), target)
                sent += 1
            except BlockingIOError:
                await asyncio.sleep(0.001)
        hello = m.Hello(
            os.urandom(8), rng.randbytes(16).hex(), rng.randbytes(32), TrustLevel.SOFTWARE, 10
        )
        hellos[hello.hello_id] = hello
        sock.sendto(m.encode(hello), target)
        await asyncio.sleep(0.002)  # let the landmark drain its queue and send a RETRY
        forged += forge_answers(sock, rng, seen, hellos)
        await asyncio.sleep(0.002)  # ... and the challenges, once the cookie is back
        forged += forge_answers(sock, rng, seen, hellos)
        if sent // BATCH % 50 == 0:
            result = await measure_landmark(lm.entry, dev, ident, 10, retry)
            genuine += 1
            if result.record is not None:
                verify(result.record, lm.entry.public_key, dev.public_bytes)
                records.append(result.record)
    await asyncio.sleep(0.5)  # let forged sessions time out
    result = await measure_landmark(lm.entry, dev, ident, 10, retry)
    genuine += 1
    if result.record is not None:
        verify(result.record, lm.entry.public_key, dev.public_bytes)
        records.append(result.record)
    rss_end = lm.rss_kib()
    wall = time.monotonic() - t0
    final = lm.stop()
    sock.close()
    ok = final["records_issued"] == len(records) and result.record is not None
    return {
        "datagrams_sent": sent,
        "datagrams_received_by_landmark": final["datagrams_received"],
        "forged_answers_sent": forged,
        "genuine_sessions": genuine,
        "genuine_records_verified": len(records),
        "records_issued_by_landmark": final["records_issued"],
        "sessions_without_record": final["sessions_without_record"],
        "rejected": final["rejected"],
        "landmark_rss_kib_start_end": (rss_start, rss_end),
        "wall_s": round(wall, 1),
        "verdict": "PASS" if ok else "FAIL",
    }


def run(total: int = 1_000_000) -> dict[str, object]:
    return asyncio.run(soak(total))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datagrams", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    result = run(args.datagrams)
    print("datagram soak")
    for k, v in result.items():
        print(f"  {k:32s} {v}")
    if result["verdict"] != "PASS":
        raise SystemExit(1)


if __name__ == "__main__":
    main()
