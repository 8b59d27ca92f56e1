"""The verifier as one object: database, settings, metrics and webhook, with its write scopes.

The API, the CLI and the benchmarks all go through here, so a write always lands in the audit
log, new alerts always reach metrics and the webhook, and verdicts always come from the core.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from lightfence.attestation import DEFAULT_ROOT_PATH, AppraisalPolicy, ChainCache, ChainError
from lightfence.attestation.certs import load_roots
from lightfence.core.kinds import VerdictKind
from lightfence.crypto.keys import SigningKey, load_or_create, parse_public_key_hex
from lightfence.evidence.calibration import NO_CALIBRATION, CalibrationError, load_calibration
from lightfence.protocol.record import MeasurementRecord
from lightfence.verifier import alerts, audit, blame, checkpoint, db, gpu_verdicts, verdicts
from lightfence.verifier.auth import Principal
from lightfence.verifier.clock import now_ns
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.errors import ServiceError
from lightfence.verifier.gpu_ingest import GpuChecker, GpuIngestor, GpuRound, pre_appraise
from lightfence.verifier.ingest import Ingestor, Outcome, record_hash
from lightfence.verifier.logs import log
from lightfence.verifier.metrics import Metrics
from lightfence.verifier.precheck import precheck
from lightfence.verifier.ratelimit import Budget, WriteLimits
from lightfence.verifier.webhook import Webhook


def gpu_checker(config: VerifierConfig) -> GpuChecker:
    """The root GPU evidence must chain to and the trusted S_floor calibration, loaded once.

    Raises ValueError (bad file, bad key) so that `serve` fails at start, not per round.
    """
    try:
        root = Path(config.gpu_root_file) if config.gpu_root_file else DEFAULT_ROOT_PATH
        policy = AppraisalPolicy(load_roots(root), chain_cache=ChainCache())
        keys = {parse_public_key_hex(k) for k in config.gpu_calibration_keys}
        calibration = (
            NO_CALIBRATION
            if config.gpu_calibration_file is None
            else load_calibration(Path(config.gpu_calibration_file), keys)
        )
    except (ChainError, CalibrationError) as exc:
        raise ValueError(f"GPU settings: {exc}") from None
    return GpuChecker(policy, calibration)


class Service:
    def __init__(self, config: VerifierConfig, *, migrate: bool = True) -> None:
        self.config = config
        self.db = db.Database(config.db_url)
        if migrate:
            db.upgrade(self.db)
        self.metrics = Metrics()
        self.webhook = (
            Webhook(config.webhook_url, config.webhook_timeout_s) if config.webhook_url else None
        )
        self.limits = WriteLimits(
            Budget("write requests", config.write_requests_per_s, config.write_requests_burst),
            Budget("records", config.records_per_s, config.records_burst),
            Budget("rejected records", config.rejections_per_s, config.rejections_burst),
        )
        self.gpu = gpu_checker(config)
        self.signing_key: SigningKey | None = None
        if config.signing_key_path is not None:
            self.signing_key, _ = load_or_create(Path(config.signing_key_path))
        if config.checkpoint_path is not None and self.signing_key is None:
            raise ValueError("audit checkpoints are signed: give a signing key with them")
        self.checkpoint_hook = (
            Webhook(config.checkpoint_webhook_url, config.webhook_timeout_s, wrap="checkpoint")
            if config.checkpoint_webhook_url
            else None
        )
        self._checkpointed: tuple[Any, ...] = ()
        self._checkpoint_lock = threading.Lock()  # the worker and a shutdown may overlap

    def close(self) -> None:
        for hook in (self.webhook, self.checkpoint_hook):
            if hook is not None:
                hook.close()
        self.db.dispose()

    @contextmanager
    def write(self, chains: Sequence[int] = ()) -> Iterator[Session]:
        """A write transaction; alerts it raised are published only once it has committed.

        Without `chains` it starts by locking the main audit chain's head, so these writes run
        one at a time on every database: checks such as "is this record stored already?" see
        every earlier commit. With `chains` (stream chains open for the caller's partitions) it
        runs beside writes on other stream chains (verifier.audit); what they could both write
        is kept apart by unique keys and device row locks, and it may not change the registry.
        """
        refused: ServiceError | None = None
        with self.db.write() as session:
            asked = time.perf_counter()
            if chains:
                audit.lock_stream(session, chains)
            else:
                audit.lock_head(session)
            waited = time.perf_counter() - asked
            self.metrics.audit_lock_wait_seconds.labels("stream" if chains else "main").observe(
                waited
            )
            try:
                yield session
            except ServiceError as exc:
                if not exc.keep_writes:
                    raise
                refused = exc  # commit what was written (its alert), then refuse
            new = session.info.pop(alerts.NEW_ALERTS_KEY, [])
        for alert in new:
            self.metrics.alerts.labels(alert["kind"]).inc()
            log("alert", logging.WARNING, **alert)
            if self.webhook is not None:
                self.webhook.send(alert)
        if refused is not None:
            raise refused

    def read(self) -> AbstractContextManager[Session]:
        return self.db.read()

    def ingest(
        self,
        records: Sequence[MeasurementRecord],
        who: Principal,
        *,
        before_commit: Callable[[], None] | None = None,
        chains: Sequence[int] = (),
    ) -> list[Outcome]:
        """Check, store or reject `records` in one write transaction (POST /records and the
        stream workers both come here; `chains`: see `write`). `before_commit` runs inside that
        transaction, after the batch is written: the stream worker's crash tests kill the
        process there."""
        hashes = [record_hash(r) for r in records]
        with self.read() as session:  # signatures checked outside the write lock: see precheck
            prechecked = precheck(session, records, hashes, self.config.verify_threads)
        locked = time.perf_counter()
        with self.write(chains) as session:
            ingestor = Ingestor(session, self.config, who, now_ns())
            outcomes = ingestor.ingest(records, hashes, prechecked)
            if before_commit is not None:
                session.flush()
                before_commit()
        self.metrics.ingest_write_seconds.observe(time.perf_counter() - locked)
        self._count(outcomes, who, "record.rejected")
        return outcomes

    def ingest_gpu(self, rounds: Sequence[GpuRound], who: Principal) -> list[Outcome]:
        """GPU-signed rounds (verifier.gpu_ingest): checked, appraised, stored or rejected."""
        with self.read() as session:  # appraised outside the write lock (P-384 checks)
            appraised = pre_appraise(session, rounds, self.gpu, now_ns())
        with self.write() as session:
            ingestor = GpuIngestor(session, self.config, who, now_ns())
            outcomes = ingestor.ingest_gpu(rounds, self.gpu, appraised)
        self._count(outcomes, who, "gpu_round.rejected")
        return outcomes

    def _count(self, outcomes: Sequence[Outcome], who: Principal, rejected_event: str) -> None:
        """Metrics for each outcome, and a log line for each rejection."""
        # One increment per kind, not per record: each takes the metric's lock.
        statuses = [o.status for o in outcomes]
        if stored := statuses.count("stored"):
            self.metrics.records_in.inc(stored)
        if duplicates := statuses.count("duplicate"):
            self.metrics.records_duplicate.inc(duplicates)
        for o in outcomes:
            if o.status in ("stored", "duplicate"):
                continue
            if o.reason is not None:
                self.metrics.records_rejected.labels(o.reason.value).inc()
                log(
                    rejected_event,
                    logging.WARNING,
                    reason=o.reason.value,
                    detail=o.detail,
                    record_hash=o.record_hash,
                    by=who.actor,
                )

    def recompute(
        self,
        limit: int = 2000,
        devices_of: Collection[str] | None = None,
        chains: Sequence[int] = (),
    ) -> int:
        """One recompute pass over devices with new inputs (only `devices_of`, if given).
        Returns verdicts stored. With `chains` (see `write`) the verdicts and landmark blame
        counters go to a stream chain; flagging a landmark, a registry change, to the main one."""
        started = time.perf_counter()
        with self.db.read() as session:
            pending = verdicts.read_pending(session, self.config, limit, devices_of)
            pending = gpu_verdicts.attach_gpu_inputs(session, self.config, pending)
        if not pending:
            return 0
        decided = gpu_verdicts.refine(verdicts.decide_pending(pending), self.config)
        inconsistent = VerdictKind.INCONSISTENT.value
        due: list[str] = []
        with self.write(chains) as session:
            stored = verdicts.store_decided(session, decided, now_ns())
            kinds = [row.kind for row in stored]
            if any(inconsistent in (row.kind, row.previous) for row in stored):
                due = blame.score(session, self.config, now_ns(), flag=not chains)
        if due and chains:
            # Flagging changes the registry: a main-chain write, which waits for every
            # stream write in flight, so only when a landmark is due (rare), not per pass.
            # Its own retries: the caller's would find the verdicts stored and nothing due.
            db.again_if_rolled_back(self.rescore_blame)
        for kind in kinds:
            self.metrics.verdicts.labels(kind).inc()
        self.metrics.recompute_seconds.observe(time.perf_counter() - started)
        return len(kinds)

    def rescore_blame(self) -> list[str]:
        """Rescore landmark blame and flag those due, in a main-chain write. A stream worker
        runs it when it starts: a worker that died between a verdict pass and the flagging
        write after it left a landmark due and unflagged. Returns the newly flagged."""
        with self.write() as session:
            return blame.score(session, self.config, now_ns())

    def recompute_all(
        self,
        max_passes: int = 100,
        devices_of: Collection[str] | None = None,
        chains: Sequence[int] = (),
    ) -> int:
        total = 0
        for _ in range(max_passes):
            n = self.recompute(devices_of=devices_of, chains=chains)
            total += n
            if n == 0:
                break
        return total

    def open_chains(self, names: Collection[str], actor: str) -> dict[str, int]:
        """The stream chain of each name (verifier.audit), opened on the main chain if new."""
        with self.write() as session:
            return audit.open_chains(session, names, actor=actor, now_ns=now_ns())

    def sweep_checkins(self) -> int:
        with self.write() as session:
            return alerts.sweep_missed_checkins(session, now_ns())

    def checkpoint(self, *, force: bool = False) -> dict[str, Any] | None:
        """Sign the audit head and export it (file, webhook) unless it did not move since the
        last one. Returns the checkpoint written, or None."""
        if self.signing_key is None or (
            self.config.checkpoint_path is None and self.checkpoint_hook is None
        ):
            return None
        with self._checkpoint_lock:
            with self.read() as session:
                doc = checkpoint.make(session, self.signing_key, now_ns())
            if doc is None or (checkpoint.position(doc) == self._checkpointed and not force):
                return None
            if self.config.checkpoint_path is not None:
                checkpoint.append_to_file(Path(self.config.checkpoint_path), doc)
            if self.checkpoint_hook is not None:
                self.checkpoint_hook.send(doc)
            self._checkpointed = checkpoint.position(doc)
        log("audit.checkpoint", logging.INFO, seq=doc["seq"], head=doc["head_hash"])
        return doc
