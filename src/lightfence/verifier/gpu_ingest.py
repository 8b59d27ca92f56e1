"""GPU-signed round ingestion: check each landmark-signed GPU round, store it once, or keep it
as a rejection, by the same rules as key records (verifier.ingest) plus the GPU's own checks.

Order of checks for one round (the first failure is the reason):
1. permission (no write at all), as for records;
2. already stored (same signed bytes): acknowledged again, nothing written;
3. landmark known, active, and its registered key the one the record names (`unknown_landmark`,
   `flagged_landmark`);
4. device enrolled (`unknown_device`);
5. landmark signature valid (`bad_signature`);
6. measured within `max_record_age_s`, not in the future beyond the clock skew (`stale`);
7. no other round with the same landmark, session and round number (`replayed`);
8. the evidence is the one the landmark timed and appraises afresh under the verifier's own GPU
   root (`bad_evidence`: protocol.gpu_round.verify_gpu_round, the check `lightfence verify`
   makes);
9. the GPU is the device's enrolled GPU (`wrong_gpu`; a device with no enrolled GPU accepts no
   GPU round: a GPU verdict must locate *its* GPU).

A stored round marks its device for a verdict recompute in the same transaction, and counts as
its check-in (`last_record_ns`).

The appraisal (an ECDSA P-384 check per report, a chain check per new GPU) is made before the
write lock by `pre_appraise`, with the landmark keys registered at that moment; under the lock
its result counts only if the landmark's key read there is the very key it was made with
(otherwise the round is appraised again in line): as for records' signatures (verifier.precheck).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from lightfence.attestation import Appraisal, AppraisalPolicy
from lightfence.core.freshness import age_problem
from lightfence.crypto.keys import verify_signature
from lightfence.evidence.calibration import Calibration
from lightfence.protocol.gpu_round import (
    GpuEvidence,
    GpuRoundError,
    GpuRoundRecord,
    verify_gpu_round,
)
from lightfence.verifier import audit
from lightfence.verifier.ingest import Ingestor, Outcome, RejectReason, _authorise, _Reject
from lightfence.verifier.models import GpuRoundRow, LandmarkRow

GpuRound = tuple[GpuRoundRecord, GpuEvidence]


def gpu_round_hash(record: GpuRoundRecord) -> str:
    return hashlib.sha256(record.signed_bytes()).hexdigest()


@dataclass(frozen=True)
class GpuChecker:
    """The verifier's GPU trust: the root evidence must chain to and the S_floor calibration."""

    policy: AppraisalPolicy
    calibration: Calibration


def floor_ns_of(calibration: Calibration, appraisal: Appraisal, rtt_ns: int) -> int:
    """The S_floor subtracted from a round's RTT: the calibration's for the appraised GPU model
    and firmware, 0 when it lists neither."""
    assert appraisal.gpu is not None
    floor_ns = round(calibration.floor_ms(appraisal.gpu.hwmodel, appraisal.vbios_version) * 1e6)
    # A floor above the RTT is no lower bound: the calibration is suspect.
    return 0 if floor_ns >= rtt_ns else floor_ns


@dataclass(frozen=True)
class PreAppraised:
    """verify_gpu_round's outcome for one round, made outside the write lock."""

    landmark_key: bytes
    appraisal: Appraisal | None
    error: str | None


def _appraise(
    rec: GpuRoundRecord, evidence: GpuEvidence, key: bytes, gpu: GpuChecker, now_ns: int
) -> PreAppraised:
    try:
        return PreAppraised(
            key, verify_gpu_round(rec, evidence, key, gpu.policy, now_ns / 1e9), None
        )
    except GpuRoundError as exc:
        return PreAppraised(key, None, str(exc))


def pre_appraise(
    session: Session, rounds: Sequence[GpuRound], gpu: GpuChecker, now_ns: int
) -> dict[int, PreAppraised]:
    """Appraise each round whose landmark is registered, by index, in a read transaction."""
    lids = {r.landmark_id for r, _ in rounds}
    keys = dict(
        session.execute(
            select(LandmarkRow.id, LandmarkRow.public_key).where(LandmarkRow.id.in_(lids))
        ).all()
    )
    return {
        i: _appraise(rec, ev, bytes.fromhex(keys[rec.landmark_id]), gpu, now_ns)
        for i, (rec, ev) in enumerate(rounds)
        if rec.landmark_id in keys
    }


class GpuIngestor(Ingestor):
    """Ingests a batch of GPU rounds in the caller's write transaction (serial: the audit head
    lock), sharing the record ingestor's registry cache, rejection aggregation and alerts."""

    def ingest_gpu(
        self,
        rounds: Sequence[GpuRound],
        gpu: GpuChecker,
        appraised: dict[int, PreAppraised] | None = None,
    ) -> list[Outcome]:
        """Store or reject each round. `appraised` (pre_appraise of the same batch) may come from
        before the write lock."""
        records = [r for r, _ in rounds]
        _authorise(self.who, records, self.session)
        hashes = [gpu_round_hash(r) for r in records]
        known = dict(
            self.session.execute(
                select(GpuRoundRow.record_hash, GpuRoundRow.id).where(
                    GpuRoundRow.record_hash.in_(hashes)
                )
            ).all()
        )
        self._prefetch(records)
        out: list[Outcome] = []
        stored: list[tuple[int, str]] = []
        with self.session.no_autoflush:
            for i, ((rec, evidence), digest) in enumerate(zip(rounds, hashes, strict=True)):
                if digest in known:
                    out.append(Outcome("duplicate", digest, record_id=known[digest]))
                    continue
                try:
                    pre = (appraised or {}).get(i)
                    row = self._store_gpu(rec, evidence, digest, gpu, pre)
                except _Reject as exc:
                    self._keep_rejection(rec, digest, exc)
                    out.append(Outcome("rejected", digest, reason=exc.reason, detail=exc.detail))
                    continue
                new_id = self._insert_gpu(row)
                known[digest] = new_id
                stored.append((new_id, digest))
                out.append(Outcome("stored", digest, record_id=new_id))
        self._marks.write(self.session)
        if stored:
            audit.append(
                self.session,
                actor=self.who.actor,
                action="gpu_round.store",
                subject=f"{len(stored)} GPU round(s)",
                payload={"stored": [list(s) for s in stored]},
                now_ns=self.now_ns,
            )
        self.audit_rejections()
        return out

    def _insert_gpu(self, row: dict[str, Any]) -> int:
        stmt = insert(GpuRoundRow).returning(GpuRoundRow.id)
        return int(self.session.execute(stmt, row).scalar_one())

    def _store_gpu(
        self,
        rec: GpuRoundRecord,
        evidence: GpuEvidence,
        digest: str,
        gpu: GpuChecker,
        pre: PreAppraised | None = None,
    ) -> dict[str, Any]:
        lm, landmark_key = self._registered_landmark(rec)
        dev = self._device(rec.device_id)
        if dev is None:
            raise _Reject(RejectReason.UNKNOWN_DEVICE, f"device {rec.device_id} is not enrolled")
        if dev.retired_ns is not None:
            raise _Reject(RejectReason.UNKNOWN_DEVICE, f"device {rec.device_id} is retired")
        if not verify_signature(landmark_key, rec.landmark_signature, rec.signed_bytes()):
            raise _Reject(
                RejectReason.BAD_SIGNATURE,
                f"landmark signature of {rec.landmark_id} does not verify",
            )
        stale = age_problem(
            rec.measured_at_unix_ns,
            self.now_ns,
            self.config.max_record_age_s,
            self.config.max_clock_skew_s,
        )
        if stale is not None:
            raise _Reject(RejectReason.STALE, stale)
        session_hex = rec.session_id.hex()
        taken = self.session.execute(
            select(GpuRoundRow.id).where(
                GpuRoundRow.landmark_id == rec.landmark_id,
                GpuRoundRow.session_id == session_hex,
                GpuRoundRow.round_no == rec.round_no,
            )
        ).first()
        if taken is not None:
            raise _Reject(
                RejectReason.REPLAYED,
                f"landmark {rec.landmark_id} session {session_hex} round {rec.round_no} is "
                "already recorded with different content",
            )
        if pre is None or pre.landmark_key != landmark_key:  # none, or made with another key
            pre = _appraise(rec, evidence, landmark_key, gpu, self.now_ns)
        appraisal = pre.appraisal
        if appraisal is None or appraisal.gpu is None:
            raise _Reject(RejectReason.BAD_EVIDENCE, pre.error or "GPU evidence does not appraise")
        if dev.gpu_id is None:
            raise _Reject(
                RejectReason.WRONG_GPU,
                f"device {rec.device_id} has no enrolled GPU (licence gpu_id); GPU {rec.gpu_id} "
                "cannot be attributed to it",
            )
        if rec.gpu_id != dev.gpu_id:
            raise _Reject(
                RejectReason.WRONG_GPU,
                f"GPU {rec.gpu_id} is not the enrolled GPU {dev.gpu_id} (GPU swapped?)",
            )
        floor_ns = floor_ns_of(gpu.calibration, appraisal, rec.rtt_ns)
        # A GPU round is a check-in too. The key verdict's window and movement allowance then
        # run from it: key caps only grow, so that stays sound.
        self._marks.add(dev.id, rec.measured_at_unix_ns)
        return {
            "record_hash": digest,
            "device_id": rec.device_id,
            "landmark_id": lm.id,
            "session_id": session_hex,
            "round_no": rec.round_no,
            "gpu_id": rec.gpu_id,
            "rtt_ns": rec.rtt_ns,
            "floor_ns": floor_ns,
            "measured_ns": rec.measured_at_unix_ns,
            "received_ns": self.now_ns,
            "submitted_by": self.who.actor,
            "body": rec.to_json_dict(),
            "evidence": evidence.to_json_dict(),
        }
