"""`lightfence verify` on a big bundle: wall time and peak memory, this tree against a git
revision (default `main`) in the same run, each `verify` its own process.

The bundle: `--records` properly signed, fresh records of one device from 10 landmarks around
Frankfurt (real Ed25519 signatures), written as `agent measure --out` writes one. Both trees
check it against the same trusted registry with `--policy within:50.11,8.68,500`, human output
to /dev/null; this tree with `--max-bytes` raised to fit (its default cap refuses such a file,
which is the point of the cap). Peak memory is the child's maximum RSS (wait4).

    python -m bench.verify_bundle [--records 100000] [--base main]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lightfence.crypto.keys import SigningKey
from lightfence.evidence.bundle import EvidenceBundle, save_bundle
from lightfence.identity.device import software_identity
from lightfence.model.registry import LandmarkEntry, registry_json
from lightfence.protocol.challenge import challenge_signing_bytes
from lightfence.protocol.record import MeasurementRecord, TimestampSource

REPO = Path(__file__).resolve().parent.parent
LANDMARKS = 10
_RUN = """
import atexit, sys
def peak():  # VmHWM: this process's own peak RSS (ru_maxrss of a forked child is inherited)
    status = open("/proc/self/status").read()
    print("VmHWM", status.split("VmHWM:")[1].split()[0], file=sys.stderr)
atexit.register(peak)
from lightfence.cli import main
sys.argv[0] = "lightfence"
main()
"""
_MAKE = "import sys; from bench.verify_bundle import make_bundle; from pathlib import Path; "
_MAKE += "make_bundle(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))"


def key(label: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(label.encode()).digest())


def make_bundle(path: Path, registry: Path, n: int) -> None:
    device = key("bench-device")
    ident = software_identity(device)
    entries = [
        LandmarkEntry(
            f"lm{i}", key(f"lm{i}").public_bytes, 50.11 + i * 0.01, 8.68, 0.5, "127.0.0.1:7800"
        )
        for i in range(LANDMARKS)
    ]
    now = time.time_ns()
    records = []
    for j in range(n):
        lid = f"lm{j % LANDMARKS}"
        session = hashlib.sha256(j.to_bytes(8, "big")).digest()[:16]
        nonce = hashlib.sha256(session).digest()
        signed = challenge_signing_bytes(nonce, lid, ident.device_id, session, 0)
        records.append(
            MeasurementRecord(
                landmark_id=lid,
                landmark_key_id=key(lid).key_id,
                device_id=ident.device_id,
                device_key_id=device.key_id,
                trust_level=ident.trust_level,
                session_id=session,
                rounds_sent=1,
                rtts_ns=(500_000 + j % 1000,),
                fastest_round=0,
                fastest_nonce=nonce,
                device_signature=device.sign(signed),
                timestamp_source=TimestampSource.KERNEL,
                measured_at_unix_ns=now - (n - j) * 1_000,
            ).signed_by(key(lid))
        )
    save_bundle(EvidenceBundle(ident, tuple(records), tuple(entries), now), path)
    registry.write_text(json.dumps(registry_json(entries)))


def run_verify(src: Path, *args: str) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in KiB, exit code) of `lightfence verify ARGS` from tree `src`."""
    env = dict(os.environ, PYTHONPATH=str(src), COLUMNS="120")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, "verify", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    peak_kib = -1
    for line in proc.stderr.splitlines():
        if line.startswith("VmHWM "):
            peak_kib = int(line.split()[1])
        elif line.strip():
            print(f"    stderr: {line[:300]}")
    return wall, peak_kib, proc.returncode


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--base", default="main", help="git revision to compare with ('' none)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lightfence-verify-") as tmp:
        bundle, registry = Path(tmp) / "bundle.json", Path(tmp) / "registry.json"
        t0 = time.perf_counter()
        env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}")
        subprocess.run(
            [sys.executable, "-c", _MAKE, str(bundle), str(registry), str(args.records)],
            env=env,
            check=True,
        )
        size = bundle.stat().st_size
        print(
            f"bundle: {args.records:,} signed records, {size / 2**20:,.1f} MiB "
            f"(made in {time.perf_counter() - t0:.1f} s)"
        )
        common = [str(bundle), "--landmark-keys", str(registry)]
        common += ["--policy", "within:50.11,8.68,500"]
        runs = []
        if args.base:
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", args.base, "src"],
                check=True,
                capture_output=True,
            ).stdout
            base = Path(tmp) / "base"
            base.mkdir()
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
            runs.append((f"base {args.base}", base / "src", common))
        runs.append(("this tree", REPO / "src", [*common, "--max-bytes", str(size + 1)]))
        runs.append(("this tree, default cap", REPO / "src", common))
        results = {}
        for name, src, verify_args in runs:
            wall, rss_kib, code = run_verify(src, *verify_args)
            results[name] = (wall, rss_kib)
            print(f"  {name}: {wall:.1f} s, peak RSS {rss_kib / 1024:,.0f} MiB, exit {code}")
        if args.base:
            (bw, bm), (tw, tm) = results[f"base {args.base}"], results["this tree"]
            print(f"  this tree / base: time x{tw / bw:.2f}, peak memory x{tm / bm:.2f}")


if __name__ == "__main__":
    main()
