"""The agent's GPU sessions over UDP: a blocking socket per landmark, the GPU signing in line.

The GPU signer is called the moment a challenge arrives (its time is part of the RTT, which is
the point); the answer goes out first, the evidence fragments after the last round.
"""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass

from lightfence.identity.gpu_signer import GpuSigner, GpuSignerUnavailable
from lightfence.protocol.gpu_round import GpuEvidence, GpuRoundRecord
from lightfence.protocol.gpu_session import GpuAgentSession

EVIDENCE_GAP_S = 0.0005
"""Pause between evidence fragments so a burst does not overrun the landmark's socket buffer."""


@dataclass(frozen=True)
class GpuRoundResult:
    landmark_id: str
    record: GpuRoundRecord | None
    evidence: GpuEvidence | None
    error: str | None


def run_gpu_session(
    host: str, port: int, landmark_id: str, device_id: str, signer: GpuSigner, *,
    rounds: int = 3, timeout_s: float = 15.0,
) -> GpuRoundResult:  # fmt: skip
    """One GPU session against one landmark; returns its record and the evidence it covers."""

    def sign(nonce: bytes) -> GpuEvidence:
        out = signer(nonce)
        return GpuEvidence(out.report, out.chain_der)

    session = GpuAgentSession(device_id, rounds, sign, secrets.token_bytes(8))
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    deadline = time.monotonic() + timeout_s
    evidence_sent = False
    with socket.socket(family, kind, proto) as sock:
        sock.connect(addr)
        sock.send(session.start())
        while not session.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                session.error = session.error or f"no GPU record within {timeout_s:g} s"
                break
            sock.settimeout(min(remaining, 1.5))
            try:
                data = sock.recv(2048)
            except TimeoutError:
                if session.evidence and not evidence_sent:  # the last challenge was lost
                    for d in session.evidence_datagrams():
                        sock.send(d)
                        time.sleep(EVIDENCE_GAP_S)
                    evidence_sent = True
                continue
            except OSError as exc:
                session.error = f"socket error: {exc}"
                break
            try:
                replies = session.receive_datagram(data)
            except GpuSignerUnavailable as exc:
                session.error = f"the GPU did not sign: {exc}"
                break
            for i, reply in enumerate(replies):
                sock.send(reply)
                if i:
                    evidence_sent = True
                    time.sleep(EVIDENCE_GAP_S)
    rec = session.record
    if rec is not None and rec.landmark_id != landmark_id:
        return GpuRoundResult(landmark_id, None, None, f"record names {rec.landmark_id}")
    ev = None if rec is None else session.evidence.get(rec.round_no)
    return GpuRoundResult(landmark_id, rec, ev, session.error if rec is None else None)
