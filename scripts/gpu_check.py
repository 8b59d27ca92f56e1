"""Measure the GPU's signing time S on a GPU host, or say exactly why it cannot be measured.

    PYTHONPATH=src python scripts/gpu_check.py [--reports 200] [--gpu 0] [--json]
        [--root ROOT.pem] [--calibration-out cal.json --signing-key calibrator.key]

For GPU-signed rounds (docs/trust.md) every timed round includes S, the time the GPU takes to
sign an SPDM report over a fresh nonce. This asks the GPU for `--reports` reports through the
first collector that works (NVML in CC mode, else nvattest), times each one (wall clock around
the collector call, as the agent would see it inside a timed round), appraises each one against
NVIDIA's device root, and prints min, p50, p99 and max of S.

With --calibration-out and --signing-key it writes a signed calibration entry for this GPU model
and firmware whose S_floor is 90 % of the smallest S seen: a lower bound with a margin, never the
minimum itself (a floor above the true minimum would make caps unsound).

It only reads: it never changes a GPU setting (CC mode, clocks, persistence). Exit codes:
0 measured, 3 no collector available here (the reasons are printed), 1 reports failed appraisal.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

from lightfence.attestation import AppraisalPolicy, appraise, load_roots
from lightfence.attestation.certs import DEFAULT_ROOT_PATH
from lightfence.crypto.keys import SigningKey
from lightfence.evidence.calibration import sign_calibration
from lightfence.identity.gpu_signer import GpuSignerUnavailable, probe_gpu_signer

EXIT_OK, EXIT_INVALID, EXIT_UNAVAILABLE = 0, 1, 3
FLOOR_FRACTION = 0.9


def _percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=int, default=200)
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT_PATH)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--calibration-out", type=Path)
    ap.add_argument("--signing-key", type=Path)
    args = ap.parse_args(argv)
    if args.reports < 1:
        ap.error("--reports must be >= 1")
    if (args.calibration_out is None) != (args.signing_key is None):
        ap.error("--calibration-out and --signing-key go together")

    signer, collector, why = probe_gpu_signer(args.gpu)
    if signer is None:
        doc = {"available": False, "why": why}
        if args.json:
            print(json.dumps(doc, indent=2))
        else:
            print("GPU signing time cannot be measured on this host:")
            for line in why:
                print(f"  {line}")
            print("Nothing was changed on this host.")
        return EXIT_UNAVAILABLE

    policy = AppraisalPolicy(load_roots(args.root))
    times_ms: list[float] = []
    invalid: list[str] = []
    model = firmware = driver = ""
    for _ in range(args.reports):
        nonce = secrets.token_bytes(32)
        t0 = time.perf_counter_ns()
        try:
            out = signer(nonce)
        except GpuSignerUnavailable as exc:
            invalid.append(f"collector failed: {exc}")
            continue
        times_ms.append((time.perf_counter_ns() - t0) / 1e6)
        a = appraise(out.report, out.chain_der, nonce, policy, time.time())
        if not a.ok or a.gpu is None:
            invalid.append(a.reason)
            continue
        model, firmware, driver = a.gpu.hwmodel, a.vbios_version, a.driver_version
    if not times_ms:
        print(json.dumps({"available": True, "collector": collector, "errors": invalid[:5]}))
        return EXIT_INVALID
    s = sorted(times_ms)
    doc = {
        "available": True,
        "collector": collector,
        "gpu_model": model,
        "vbios_version": firmware,
        "driver_version": driver,
        "reports": len(s),
        "invalid_reports": len(invalid),
        "first_invalid_reason": invalid[0] if invalid else None,
        "s_ms": {
            "min": s[0],
            "p50": statistics.median(s),
            "p99": _percentile(s, 0.99),
            "max": s[-1],
        },
        "km_per_ms_vacuum": 149.896,
    }
    if args.calibration_out is not None and model and not invalid:
        key = SigningKey.load(args.signing_key)
        entry = {
            "hwmodel": model,
            "vbios_version": firmware,
            "s_floor_ns": int(s[0] * FLOOR_FRACTION * 1e6),
            "reports": len(s),
        }
        tmp = args.calibration_out.with_name(args.calibration_out.name + ".tmp")
        tmp.write_text(json.dumps(sign_calibration([entry], key), indent=2) + "\n")
        os.replace(tmp, args.calibration_out)
        doc["calibration"] = str(args.calibration_out)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        st = doc["s_ms"]
        assert isinstance(st, dict)
        print(f"{collector}: {model} VBIOS {firmware} driver {driver}, {len(s)} reports")
        print(
            f"S ms: min {st['min']:.3f}  p50 {st['p50']:.3f}  p99 {st['p99']:.3f}  "
            f"max {st['max']:.3f}  ({len(invalid)} failed appraisal)"
        )
    return EXIT_INVALID if invalid else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
