"""What GPU-signed rounds cost a verifier, each figure against the key-only path in the same run.

1. Appraisal of one report (parse, nonce, chain of 4 P-384 signatures to NVIDIA's root, report
   signature, FWID): NVIDIA's real Hopper sample and the stand-in, vs checking one key record
   (`protocol.record.verify`: two Ed25519 checks).
2. Offline check of one GPU round (landmark signature, digests, appraisal) vs one key record.
3. Verdicts from a bundle, end to end (check every record, decide): 5 key records + 5 GPU rounds
   (`device_verdict`: key verdict, gpu verdict, mismatch test) vs the same 5 key records alone
   (`bundle_verdict`), as verdicts per second.

    python -m bench.gpu_rounds [--n N]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from lightfence.attestation import (
    AppraisalPolicy,
    ChainCache,
    appraise,
    default_policy,
    pem_chain_to_der,
)
from lightfence.crypto.keys import SigningKey
from lightfence.evidence.bundle import EvidenceBundle, check_bundle
from lightfence.evidence.verdict import bundle_verdict, device_verdict
from lightfence.identity.device import software_identity
from lightfence.model.registry import LandmarkEntry
from lightfence.model.trust import TrustLevel
from lightfence.protocol.challenge import challenge_signing_bytes
from lightfence.protocol.gpu_round import verify_gpu_round
from lightfence.protocol.record import MeasurementRecord, TimestampSource, verify
from lightfence.sim.gpu import GpuStandIn, GpuTestRoot, emulate_gpu_round

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "nvidia"
NOW_NS = 1_764_000_000_000_000_000
SITES = {
    "sin": (1.2897, 103.8501),
    "kul": (3.1390, 101.6869),
    "hkg": (22.3193, 114.1694),
    "tyo": (35.6762, 139.6503),
    "fra": (50.1109, 8.6821),
}
POLICY_TEXT = "outside:CN,HK,MO"


def seeded_key(label: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(label.encode()).digest())


def make_signed_record(
    landmark_key: SigningKey, device_key: SigningKey, *, landmark_id: str, rtt_ns: int
) -> MeasurementRecord:
    """A real key record (as tests/record_factory.py makes them), one round."""
    ident = software_identity(device_key)
    session = hashlib.sha256(landmark_id.encode()).digest()[:16]
    nonce = hashlib.sha256(session).digest()
    sig = device_key.sign(challenge_signing_bytes(nonce, landmark_id, ident.device_id, session, 0))
    return MeasurementRecord(
        landmark_id=landmark_id,
        landmark_key_id=landmark_key.key_id,
        device_id=ident.device_id,
        device_key_id=device_key.key_id,
        trust_level=TrustLevel.SOFTWARE,
        session_id=session,
        rounds_sent=1,
        rtts_ns=(rtt_ns,),
        fastest_round=0,
        fastest_nonce=nonce,
        device_signature=sig,
        timestamp_source=TimestampSource.KERNEL,
        measured_at_unix_ns=NOW_NS,
    ).signed_by(landmark_key)


def _median_us(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t)
    return statistics.median(times) / 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="repetitions per measure")
    n = parser.parse_args(argv).n

    report = bytes.fromhex((DATA / "hopper_report.hex").read_text().strip())
    chain = pem_chain_to_der((DATA / "hopper_cert_chain.pem").read_bytes())
    nvidia = default_policy()
    now_s = time.time()
    root = GpuTestRoot.create()
    test_policy = AppraisalPolicy((root.cert,))
    gpu = GpuStandIn(root)
    nonce = bytes(32)
    standin_report = gpu.report(nonce)

    dev = seeded_key("bench-device")
    keys = {lid: seeded_key(f"bench-{lid}") for lid in SITES}
    entries = {
        lid: LandmarkEntry(lid, keys[lid].public_bytes, lat, lon, 1.0, "127.0.0.1:7800")
        for lid, (lat, lon) in SITES.items()
    }
    ident = software_identity(dev)
    records = tuple(
        make_signed_record(keys[lid], dev, landmark_id=lid, rtt_ns=5_000_000 + 1000 * i)
        for i, lid in enumerate(SITES)
    )
    rng = random.Random(1)
    rounds = []
    for lid in SITES:
        r = emulate_gpu_round(
            landmark_id=lid,
            landmark_key=keys[lid],
            device_id=ident.device_id,
            gpu=gpu,
            path_rtt_ms=30.0,
            policy=test_policy,
            rng=rng,
            utc_ns=NOW_NS,
        )
        assert r.record is not None, r.appraisal.reason
        rounds.append((r.record, r.evidence))
    key_only = EvidenceBundle(ident, records, tuple(entries.values()), NOW_NS)
    with_gpu = EvidenceBundle(ident, records, tuple(entries.values()), NOW_NS, tuple(rounds))

    record_us = _median_us(
        lambda: verify(records[0], keys["sin"].public_bytes, dev.public_bytes), n
    )
    hopper_us = _median_us(lambda: appraise(report, chain, report[4:36], nvidia, now_s), n)
    standin_us = _median_us(
        lambda: appraise(standin_report, gpu.chain_der, nonce, test_policy, now_s), n
    )
    rec0, ev0 = rounds[0]
    round_us = _median_us(
        lambda: verify_gpu_round(rec0, ev0, keys["sin"].public_bytes, test_policy, NOW_NS / 1e9), n
    )

    cached_policy = AppraisalPolicy(nvidia.roots, chain_cache=ChainCache())
    hopper_cached_us = _median_us(
        lambda: appraise(report, chain, report[4:36], cached_policy, now_s), n
    )
    cached_test_policy = AppraisalPolicy((root.cert,), chain_cache=ChainCache())

    def gpu_verdict_cached() -> object:
        check = check_bundle(with_gpu, entries, now_unix_ns=NOW_NS, gpu_policy=cached_test_policy)
        return device_verdict(check, POLICY_TEXT)

    def key_verdict() -> object:
        check = check_bundle(key_only, entries, now_unix_ns=NOW_NS)
        return bundle_verdict(check, POLICY_TEXT)

    def gpu_verdict() -> object:
        check = check_bundle(with_gpu, entries, now_unix_ns=NOW_NS, gpu_policy=test_policy)
        return device_verdict(check, POLICY_TEXT)

    key_verdict(), gpu_verdict()  # load regions once, outside the timing
    m = max(10, n // 10)
    key_v_us = _median_us(key_verdict, m)
    gpu_v_us = _median_us(gpu_verdict, m)
    gpu_vc_us = _median_us(gpu_verdict_cached, m)

    print("| measure | time | vs key-only baseline |")
    print("| --- | --- | --- |")
    print(f"| check one key record (baseline) | {record_us:.1f} µs | ×1 |")
    print(
        f"| appraise NVIDIA's Hopper sample | {hopper_us:.1f} µs | ×{hopper_us / record_us:.1f} |"
    )
    print(
        f"| appraise NVIDIA's Hopper sample, chain cached | {hopper_cached_us:.1f} µs "
        f"| ×{hopper_cached_us / record_us:.1f} |"
    )
    print(f"| appraise a stand-in report | {standin_us:.1f} µs | ×{standin_us / record_us:.1f} |")
    print(f"| check one GPU round offline | {round_us:.1f} µs | ×{round_us / record_us:.1f} |")
    print(
        f"| bundle verdict, 5 key records (baseline) | {key_v_us / 1000:.2f} ms "
        f"({1e6 / key_v_us:.0f} verdicts/s) | ×1 |"
    )
    print(
        f"| device verdict, 5 key records + 5 GPU rounds | {gpu_v_us / 1000:.2f} ms "
        f"({1e6 / gpu_v_us:.0f} verdicts/s) | ×{gpu_v_us / key_v_us:.2f} time, "
        f"×{key_v_us / gpu_v_us:.2f} throughput |"
    )
    print(
        f"| the same, chains cached | {gpu_vc_us / 1000:.2f} ms "
        f"({1e6 / gpu_vc_us:.0f} verdicts/s) | ×{gpu_vc_us / key_v_us:.2f} time, "
        f"×{key_v_us / gpu_vc_us:.2f} throughput |"
    )


if __name__ == "__main__":
    main()
