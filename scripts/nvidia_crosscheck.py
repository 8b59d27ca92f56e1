"""Appraise GPU evidence with NVIDIA's own nv-local-gpu-verifier; print the results as JSON.

Runs inside the venv that `make nvverifier-venv` creates (the package pins old dependencies, so it
never enters lightfence's install). tests/test_attestation_crosscheck.py calls it in a
subprocess and compares with lightfence.attestation. Reads one JSON object on stdin:
{"report": hex, "chain_pem": str, "nonce": hex}; checks only what lightfence checks (no RIMs,
no OCSP): nonce, certificate chain to NVIDIA's root as the package configures it, FWID, signature.
"""

import json
import logging
import sys

logging.disable(logging.CRITICAL)

from cryptography.x509.oid import NameOID  # noqa: E402
from OpenSSL import crypto  # noqa: E402
from verifier.attestation import AttestationReport  # noqa: E402
from verifier.cc_admin_utils import CcAdminUtils  # noqa: E402
from verifier.config import BaseSettings, HopperSettings  # noqa: E402
from verifier.nvml.gpu_cert_chains import GpuCertificateChains  # noqa: E402


def check(report: bytes, chain_pem: bytes, nonce: bytes) -> dict[str, object]:
    out: dict[str, object] = {}
    settings = HopperSettings()
    try:
        att = AttestationReport(report, settings)
    except Exception as exc:  # NVIDIA's parser raises anything on garbage
        return {"parsed": False, "error": type(exc).__name__}
    out["parsed"] = True
    out["nonce_match"] = att.get_request_message().get_nonce() == nonce
    chain = GpuCertificateChains.extract_cert_chain(chain_pem)[:-1]
    with open(BaseSettings.DEVICE_ROOT_CERT) as f:
        chain.append(crypto.load_certificate(crypto.FILETYPE_PEM, f.read()))
    fwid = att.get_response_message().get_opaque_data().get_data("OPAQUE_FIELD_ID_FWID").hex()
    try:
        result = CcAdminUtils.verify_gpu_certificate_chain(chain, settings, fwid)
        out["chain_valid"] = bool(result[0]) if isinstance(result, tuple) else bool(result)
    except Exception as exc:
        out["chain_valid"] = False
        out["chain_error"] = type(exc).__name__
    out["fwid_match"] = bool(settings.check_if_gpu_attestation_report_cert_chain_fwid_matched())
    out["signature_valid"] = bool(
        att.verify_signature(chain[0].to_cryptography(), settings.signature_length, settings.HashFunction)
    )
    out["ueid"] = str(chain[0].get_serial_number())
    out["hwmodel"] = (
        chain[1].to_cryptography().subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    )
    return out


def main() -> None:
    req = json.load(sys.stdin)
    cases = req if isinstance(req, list) else [req]
    results = []
    for c in cases:
        try:
            results.append(
                check(bytes.fromhex(c["report"]), c["chain_pem"].encode(), bytes.fromhex(c["nonce"]))
            )
        except Exception as exc:  # NVIDIA's code asserts and raises freely on bad input
            results.append({"parsed": False, "error": f"{type(exc).__name__}: {exc}"[:200]})
    json.dump(results if isinstance(req, list) else results[0], sys.stdout)


if __name__ == "__main__":
    main()
