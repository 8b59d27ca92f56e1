"""What the compliance gate costs at job start, each figure against a baseline from the same run.

1. verify_token (decode, key lookup, Ed25519 check, time rules) vs a bare Ed25519 verify.
2. decide() with a fresh and a cached token vs verify_token alone.
3. check_device over loopback HTTP (GET, decide, cache, fsynced log line) vs a bare httpx GET of
   the same token from the same server, on a new connection each time as the gate makes it.
4. `lightfence gate check` as a process (what a Slurm prolog pays per GPU) vs `python -c pass`.

    python -m bench.gate_check [--n N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from lightfence.core.kinds import VerdictKind
from lightfence.crypto.keys import SigningKey, verify_signature
from lightfence.gate.client import GateState, check_device, fetch_token
from lightfence.gate.decision import Fetched, GatePolicy, SourceStatus, decide
from lightfence.gate.issuer import token_for_latest_verdict, token_response
from lightfence.gate.token import verify_token
from lightfence.model.policy import parse_policy_spec

DEVICE = "0123456789abcdef0123456789abcdef"
KEY = SigningKey.from_seed(bytes(range(32)))


def _median_us(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t)
    return statistics.median(times) / 1000


def _server(body: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as two writes

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="repetitions of the in-process parts")
    args = parser.parse_args(argv)
    n = args.n
    now = time.time()
    policy_spec = parse_policy_spec("outside:CN", liars=1)
    text = token_for_latest_verdict(DEVICE, VerdictKind.VERIFIED, policy_spec, KEY, now, 300)
    pub = KEY.public_bytes
    msg = b"x" * 300
    sig = KEY.sign(msg)

    bare_us = _median_us(lambda: verify_signature(pub, sig, msg), n)
    token_us = _median_us(lambda: verify_token(text, pub, device_id=DEVICE, now_unix_s=now), n)
    fetched = Fetched(SourceStatus.TOKEN, "bench", token_text=text)
    policy = GatePolicy()
    decide_us = _median_us(
        lambda: decide(
            DEVICE,
            fetched,
            cached_text=text,
            verifier_public_keys=[pub],
            policy=policy,
            now_unix_s=now,
        ),
        n,
    )
    print(f"gate: Ed25519 verify (baseline)       {bare_us:8.1f} us")
    print(f"gate: verify_token                    {token_us:8.1f} us  x{token_us / bare_us:.2f}")
    print(f"gate: decide (fresh + cached token)   {decide_us:8.1f} us  x{decide_us / token_us:.2f}")

    server = _server(json.dumps(token_response(text)).encode())
    url = f"http://127.0.0.1:{server.server_address[1]}"
    m = max(20, n // 20)
    with tempfile.TemporaryDirectory() as tmp:
        state = GateState(Path(tmp))

        def bare_get() -> None:
            with httpx.Client(trust_env=False) as client:  # a new connection, as the gate makes
                client.get(f"{url}/devices/{DEVICE}/token")

        get_us = _median_us(bare_get, m)
        check_us = _median_us(
            lambda: check_device(
                DEVICE,
                lambda: fetch_token(url, DEVICE),
                verifier_public_keys=[pub],
                policy=policy,
                state=state,
            ),
            m,
        )
        print(f"gate: httpx GET (baseline)            {get_us / 1000:8.2f} ms")
        print(
            f"gate: check_device (GET+decide+log)   {check_us / 1000:8.2f} ms  "
            f"x{check_us / get_us:.2f}"
        )

        key_file = Path(tmp) / "verifier.pub"
        key_file.write_text(pub.hex() + "\n")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        cli = [sys.executable, "-c", "from lightfence.cli import main; main()", "gate", "check"]
        cli += ["--device", DEVICE, "--verifier", url, "--verifier-key", str(key_file)]
        cli += ["--state-dir", tmp]
        k = 5
        py_us = _median_us(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), k)
        cli_us = _median_us(
            lambda: subprocess.run(cli, env=env, capture_output=True, check=True), k
        )
        print(f"gate: python -c pass (baseline)       {py_us / 1000:8.1f} ms")
        print(
            f"gate: `lightfence gate check` process {cli_us / 1000:8.1f} ms  x{cli_us / py_us:.1f}"
        )
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
