"""What a compliance report says, read from the verifier's database: no rendering, no files.

One operator (the `devices.operator` field: the tenant a device is enrolled for, the same name
an operator token's `owner` carries) and one time window [since, until). Everything here is
read in one read transaction; the bundles come back as bytes for the caller to write.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lightfence.verifier.audit_verify import verify_chain
from lightfence.verifier.auth import Role
from lightfence.verifier.checkpoint import check as check_checkpoints
from lightfence.verifier.evidence import registry_document, verdict_bundle
from lightfence.verifier.models import (
    AlertRow,
    ApiTokenRow,
    AuditHeadRow,
    DeviceRow,
    GpuRoundRow,
    RecordRow,
    RejectionRow,
    VerdictRow,
)
from lightfence.verifier.sqlin import one_of

Progress = Callable[[str], None]

NO_VERDICT = "NO VERDICT"
"""A device enrolled by the end of the window with no verdict computed before it."""
VERDICT_ORDER = ("VERIFIED", "UNVERIFIED", "REFUTED", "INCONSISTENT", NO_VERDICT)
EVIDENCE_DIR = "evidence"
REGISTRY_FILE = "landmark-registry.json"
RECHECK_SLACK_HOURS = 24
"""Added to the oldest record's age in the re-check command: a day to run it in."""
HISTORY_BATCH_ROWS = 1000


class UnknownOperator(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name, self.known = name, known
        listed = ", ".join(repr(k) for k in known) if known else "none: the registry is empty"
        super().__init__(f"no operator {name!r} in the registry; operators: {listed}")


@dataclass(frozen=True)
class VerdictChange:
    """A run of consecutive verdicts of one device with the same kind and `locates`."""

    verdict_id: int
    """The run's first verdict."""
    at_ns: int
    kind: str
    locates: str
    reason: str
    repeats: int = 1
    """Verdicts in the run (a recompute per record repeats the verdict: one row here)."""
    last_ns: int = 0
    carried: bool = False
    """In force at the window's start (decided before it)."""


@dataclass(frozen=True)
class DeviceEntry:
    device_id: str
    name: str
    """The host attribute when the identity has one (what the dashboard shows), else the id."""
    trust_level: str
    policy: str
    declared_country: str | None
    require_locates: str
    enrolled_ns: int
    last_record_ns: int | None
    verdict: str
    """The verdict in force at the window's end, or NO_VERDICT."""
    locates: str | None
    reason: str | None
    history: tuple[VerdictChange, ...]
    rejected: dict[str, int] = field(default_factory=dict)
    """Rejected records naming this device in the window, by reason."""


@dataclass(frozen=True)
class AlertEntry:
    id: int
    kind: str
    device_id: str
    device_name: str
    message: str
    count: int
    created_ns: int
    last_ns: int
    acknowledged_ns: int | None
    acknowledged_by: str | None
    cleared_ns: int | None
    """When the condition behind it cleared (derived, not stored: see `cleared_by`)."""
    cleared_by: str | None

    @property
    def status(self) -> str:
        if self.cleared_ns is not None:
            return "resolved"
        return "acknowledged" if self.acknowledged_ns is not None else "open"


@dataclass(frozen=True)
class CheckpointState:
    files: tuple[str, ...]
    checked: int
    newest_seq: int
    newest_head_hash: str | None
    newest_at_ns: int | None
    key_ids: tuple[str, ...]
    problems: tuple[str, ...]


@dataclass(frozen=True)
class AuditState:
    entries: int
    head_seq: int
    head_hash: str
    problems: tuple[str, ...]
    checkpoint: CheckpointState | None
    checked: bool = True
    """False when the source could not walk the chain (a remote verifier, an operator token)."""


@dataclass(frozen=True)
class BundleFile:
    device_id: str
    device_name: str
    verdict_id: int
    verdict: str
    locates: str
    path: str
    """Relative to the report's folder."""
    content: bytes
    has_gpu_rounds: bool
    command: str
    """The exact `lightfence verify` command, run in the report's folder."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class BundleProblem:
    """A device whose bundle could not be built (its stored identity or records no longer
    parse: changed outside the verifier)."""

    device_id: str
    device_name: str
    problem: str


@dataclass(frozen=True)
class ReportData:
    operator: str
    since_ns: int
    until_ns: int
    generated_ns: int
    source: str
    devices: tuple[DeviceEntry, ...]
    alerts: tuple[AlertEntry, ...]
    records_in_window: int
    gpu_rounds_in_window: int
    rejections_in_window: dict[str, int]
    audit: AuditState
    bundles: tuple[BundleFile, ...]
    registry: bytes
    """The verifier's active landmarks as a registry file, for `--landmark-keys`."""
    bundle_problems: tuple[BundleProblem, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def verdict_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(VERDICT_ORDER, 0)
        for d in self.devices:
            counts[d.verdict] = counts.get(d.verdict, 0) + 1
        return counts

    @property
    def locates_counts(self) -> dict[tuple[str, str], int]:
        """(verdict, locates) -> devices, for the devices with a verdict."""
        out: dict[tuple[str, str], int] = {}
        for d in self.devices:
            if d.locates is not None:
                out[(d.verdict, d.locates)] = out.get((d.verdict, d.locates), 0) + 1
        return out

    @property
    def axis_start_ns(self) -> int:
        """Where the timelines start: the window's start, or the first enrolment if later
        (a window of a month with a device enrolled on its last day still shows its history)."""
        enrolled = [d.enrolled_ns for d in self.devices]
        return max(self.since_ns, min(enrolled, default=self.since_ns))

    @property
    def changes_in_window(self) -> int:
        return sum(1 for d in self.devices for c in d.history if not c.carried)

    @property
    def empty(self) -> bool:
        """Nothing happened in the window: no verdict, no alert raised or acknowledged in it
        (one raised before and still open is listed, but is no event), no record, no rejection."""
        lo, hi = self.since_ns, self.until_ns
        alert_events = any(
            a.created_ns >= lo or (a.acknowledged_ns is not None and lo <= a.acknowledged_ns < hi)
            for a in self.alerts
        )
        return not (
            self.changes_in_window
            or alert_events
            or self.records_in_window
            or self.gpu_rounds_in_window
            or self.rejections_in_window
        )


def known_operators(session: Session) -> list[str]:
    """Operators the registry knows: of enrolled devices, and owners of operator tokens."""
    names = set(session.execute(select(DeviceRow.operator).distinct()).scalars())
    names |= {
        o
        for o in session.execute(
            select(ApiTokenRow.owner).where(ApiTokenRow.role == Role.OPERATOR.value)
        ).scalars()
        if o
    }
    return sorted(names)


def device_name(row: DeviceRow) -> str:
    host = (row.attributes or {}).get("host")
    return str(host) if host else row.id


def gather(
    session: Session,
    *,
    operator: str,
    since_ns: int,
    until_ns: int,
    now_ns: int,
    checkpoint_docs: Iterable[dict[str, Any]] = (),
    checkpoint_files: tuple[str, ...] = (),
    checkpoint_key: str | None = None,
    source: str = "",
    progress: Progress = lambda _: None,
) -> ReportData:
    """Everything the report states about `operator` in [since_ns, until_ns)."""
    if since_ns >= until_ns:
        raise ValueError("the window is empty: --since must be before --until")
    known = known_operators(session)
    if operator not in known:
        raise UnknownOperator(operator, known)
    rows = (
        session.execute(
            select(DeviceRow)
            .where(DeviceRow.operator == operator, DeviceRow.enrolled_ns < until_ns)
            .order_by(DeviceRow.id)
        )
        .scalars()
        .all()
    )
    ids = [r.id for r in rows]
    rejections = _rejections(session, ids, since_ns, until_ns)
    progress(f"{len(rows)} device(s) of {operator}: reading verdict histories")
    devices = []
    for n, row in enumerate(rows, 1):
        devices.append(_device(session, row, since_ns, until_ns, rejections.get(row.id, {})))
        if n % 100 == 0:
            progress(f"  {n} of {len(rows)} devices")
    names = {d.device_id: d.name for d in devices}
    progress("reading alerts")
    alert_entries = _alerts(session, names, since_ns, until_ns)
    records = _count_in(session, RecordRow, ids, since_ns, until_ns)
    rounds = _count_in(session, GpuRoundRow, ids, since_ns, until_ns)
    rejected: dict[str, int] = {}
    for per_device in rejections.values():
        for reason, count in per_device.items():
            rejected[reason] = rejected.get(reason, 0) + count
    progress("walking the audit chain (every entry is re-hashed)")
    audit_state = _audit(session, list(checkpoint_docs), checkpoint_files, checkpoint_key)
    progress("building evidence bundles")
    bundles, bundle_problems = _bundles(session, rows, devices, until_ns, now_ns)
    registry = json_bytes(registry_document(session))
    return ReportData(
        operator=operator,
        since_ns=since_ns,
        until_ns=until_ns,
        generated_ns=now_ns,
        source=source,
        devices=tuple(devices),
        alerts=tuple(alert_entries),
        records_in_window=records,
        gpu_rounds_in_window=rounds,
        rejections_in_window=rejected,
        audit=audit_state,
        bundles=tuple(bundles),
        bundle_problems=tuple(bundle_problems),
        registry=registry,
    )


_HISTORY_COLUMNS = (
    VerdictRow.id,
    VerdictRow.computed_ns,
    VerdictRow.kind,
    VerdictRow.locates,
    VerdictRow.reason,
)
"""What a history row needs: never the JSON columns (measurements), which cost most to read."""


def _device(
    session: Session, row: DeviceRow, since_ns: int, until_ns: int, rejected: dict[str, int]
) -> DeviceEntry:
    history: list[VerdictChange] = []
    before = session.execute(
        select(*_HISTORY_COLUMNS)
        .where(VerdictRow.device_id == row.id, VerdictRow.computed_ns < since_ns)
        .order_by(VerdictRow.id.desc())
        .limit(1)
    ).first()
    if before is not None:
        history.append(_change(*before, carried=True))
    in_window = session.execute(
        select(*_HISTORY_COLUMNS)
        .where(
            VerdictRow.device_id == row.id,
            VerdictRow.computed_ns >= since_ns,
            VerdictRow.computed_ns < until_ns,
        )
        .order_by(VerdictRow.id)
        .execution_options(yield_per=HISTORY_BATCH_ROWS)
    )
    last_reason: str | None = None if before is None else before.reason
    for vid, computed_ns, kind, locates, reason in in_window:
        prev = history[-1] if history else None
        if prev is not None and (prev.kind, prev.locates) == (kind, locates or "key"):
            history[-1] = VerdictChange(
                prev.verdict_id,
                prev.at_ns,
                prev.kind,
                prev.locates,
                prev.reason,
                prev.repeats + 1,
                computed_ns,
                prev.carried,
            )
        else:
            history.append(_change(vid, computed_ns, kind, locates, reason))
        last_reason = reason
    latest = history[-1] if history else None
    return DeviceEntry(
        device_id=row.id,
        name=device_name(row),
        trust_level=row.trust_level,
        policy=row.policy,
        declared_country=row.declared_country,
        require_locates=row.require_locates,
        enrolled_ns=row.enrolled_ns,
        last_record_ns=row.last_record_ns,
        verdict=NO_VERDICT if latest is None else latest.kind,
        locates=None if latest is None else latest.locates,
        reason=last_reason,
        history=tuple(history),
        rejected=rejected,
    )


def _change(
    vid: int,
    computed_ns: int,
    kind: str,
    locates: str | None,
    reason: str,
    *,
    carried: bool = False,
) -> VerdictChange:
    return VerdictChange(vid, computed_ns, kind, locates or "key", reason, 1, computed_ns, carried)


CLEARED_BY_VERDICT = frozenset(
    {"refuted", "inconsistent", "rejected_evidence", "identity_change", "key-gpu-mismatch"}
)
"""Alert kinds whose condition a later VERIFIED verdict of the device clears."""


def _alerts(
    session: Session, names: dict[str, str], since_ns: int, until_ns: int
) -> list[AlertEntry]:
    """The operator's device alerts that were open at some time in the window."""
    if not names:
        return []
    rows = session.execute(
        select(AlertRow)
        .where(
            one_of(AlertRow.device_id, list(names)),
            AlertRow.created_ns < until_ns,
            (AlertRow.acknowledged_ns.is_(None)) | (AlertRow.acknowledged_ns >= since_ns),
        )
        .order_by(AlertRow.created_ns, AlertRow.id)
    ).scalars()
    out = []
    for a in rows:
        device_id = str(a.device_id)
        last = a.last_ns or a.created_ns
        cleared_ns, cleared_by = _cleared(session, a.kind, device_id, last, until_ns)
        out.append(
            AlertEntry(
                id=a.id,
                kind=a.kind,
                device_id=device_id,
                device_name=names[device_id],
                message=a.message,
                count=a.count or 1,
                created_ns=a.created_ns,
                last_ns=last,
                acknowledged_ns=a.acknowledged_ns,
                acknowledged_by=a.acknowledged_by,
                cleared_ns=cleared_ns,
                cleared_by=cleared_by,
            )
        )
    return out


def _cleared(
    session: Session, kind: str, device_id: str, after_ns: int, until_ns: int
) -> tuple[int | None, str | None]:
    """When the alert's condition ended before `until_ns`, and what ended it. The verifier
    stores only acknowledgements; this is read from the verdicts and records after it."""
    if kind == "missed_checkin":
        at = session.execute(
            select(func.min(RecordRow.received_ns)).where(
                RecordRow.device_id == device_id,
                RecordRow.received_ns > after_ns,
                RecordRow.received_ns < until_ns,
            )
        ).scalar_one_or_none()
        return (None, None) if at is None else (int(at), "a fresh measurement arrived")
    if kind in CLEARED_BY_VERDICT:
        at = session.execute(
            select(func.min(VerdictRow.computed_ns)).where(
                VerdictRow.device_id == device_id,
                VerdictRow.kind == "VERIFIED",
                VerdictRow.computed_ns > after_ns,
                VerdictRow.computed_ns < until_ns,
            )
        ).scalar_one_or_none()
        return (None, None) if at is None else (int(at), "a later verdict was VERIFIED")
    return None, None


def _count_in(
    session: Session, table: type[RecordRow] | type[GpuRoundRow], ids: list[str], lo: int, hi: int
) -> int:
    if not ids:
        return 0
    return int(
        session.execute(
            select(func.count())
            .select_from(table)
            .where(one_of(table.device_id, ids), table.received_ns >= lo, table.received_ns < hi)
        ).scalar_one()
    )


def _rejections(session: Session, ids: list[str], lo: int, hi: int) -> dict[str, dict[str, int]]:
    """device -> reason -> rejected records naming it, for rows whose occurrences overlap the
    window (rows are aggregated per token, landmark, device and reason, with a count)."""
    if not ids:
        return {}
    rows = session.execute(
        select(RejectionRow.device_id, RejectionRow.reason, func.sum(RejectionRow.count))
        .where(
            one_of(RejectionRow.device_id, ids),
            RejectionRow.received_ns >= lo,
            func.coalesce(RejectionRow.first_received_ns, RejectionRow.received_ns) < hi,
        )
        .group_by(RejectionRow.device_id, RejectionRow.reason)
    )
    out: dict[str, dict[str, int]] = {}
    for device_id, reason, n in rows:
        out.setdefault(str(device_id), {})[reason] = int(n)  # PostgreSQL sums BIGINT as NUMERIC
    return out


def _audit(
    session: Session,
    docs: list[dict[str, Any]],
    files: tuple[str, ...],
    trusted_key: str | None,
) -> AuditState:
    report = verify_chain(session)
    head = session.get(AuditHeadRow, 1)
    checkpoint = None
    if docs:
        signed = check_checkpoints(session, docs, trusted_key)
        # The newest checkpoint whose signature verified (check() counts only those).
        newest: dict[str, Any] = next(
            (d for d in docs if signed.newest_seq and d.get("seq") == signed.newest_seq), {}
        )
        at = newest.get("at_unix_ns")
        checkpoint = CheckpointState(
            files=files,
            checked=signed.checked,
            newest_seq=signed.newest_seq,
            newest_head_hash=str(newest["head_hash"]) if "head_hash" in newest else None,
            newest_at_ns=at if isinstance(at, int) and not isinstance(at, bool) else None,
            key_ids=signed.key_ids,
            problems=tuple(signed.problems),
        )
    return AuditState(
        entries=report.entries,
        head_seq=0 if head is None else head.seq,
        head_hash=report.head_hash,
        problems=tuple(report.problems),
        checkpoint=checkpoint,
    )


def _bundles(
    session: Session,
    rows: Sequence[DeviceRow],
    devices: list[DeviceEntry],
    until_ns: int,
    now_ns: int,
) -> tuple[list[BundleFile], list[BundleProblem]]:
    """One bundle per device with a verdict: the verdict in force at the window's end; and the
    devices whose bundle could not be built, with why."""
    out: list[BundleFile] = []
    problems: list[BundleProblem] = []
    for row, entry in zip(rows, devices, strict=True):
        if not entry.history:
            continue
        verdict_id = _last_verdict_id(session, row.id, until_ns)
        verdict = None if verdict_id is None else session.get(VerdictRow, verdict_id)
        if verdict is None:
            continue
        try:
            doc = verdict_bundle(session, row, verdict, now_ns)
        except (ValueError, KeyError, TypeError) as exc:  # a stored row no longer parses
            problems.append(BundleProblem(row.id, entry.name, str(exc)))
            continue
        path = f"{EVIDENCE_DIR}/{safe_file_stem(row.id)}.json"
        oldest = oldest_measurement_ns(doc, now_ns)
        out.append(
            BundleFile(
                device_id=row.id,
                device_name=entry.name,
                verdict_id=verdict.id,
                verdict=verdict.kind,
                locates=verdict.locates or "key",
                path=path,
                content=json_bytes(doc),
                has_gpu_rounds=bool(doc.get("gpu_rounds")),
                command=recheck_command(
                    path,
                    policy=verdict.policy,
                    bound=verdict.bound,
                    claimed=verdict.claimed,
                    liars=verdict.liars,
                    require=row.require_locates,
                    enrolled_gpu=row.gpu_id if verdict.gpu_inputs else None,
                    oldest_ns=oldest,
                    now_ns=now_ns,
                ),
            )
        )
    return out, problems


def safe_file_stem(device_id: str) -> str:
    """The device id when it is the usual hex, else a digest of it: an id edited in the
    database can never name a file outside the report's folder."""
    if re.fullmatch(r"[0-9a-f]{1,64}", device_id):
        return device_id
    return "id-" + hashlib.sha256(device_id.encode()).hexdigest()[:32]


def _last_verdict_id(session: Session, device_id: str, until_ns: int) -> int | None:
    found = session.execute(
        select(func.max(VerdictRow.id)).where(
            VerdictRow.device_id == device_id, VerdictRow.computed_ns < until_ns
        )
    ).scalar_one()
    return None if found is None else int(found)


def recheck_command(
    path: str,
    *,
    policy: str,
    bound: str,
    claimed: str | None,
    liars: str | None,
    require: str,
    enrolled_gpu: str | None,
    oldest_ns: int,
    now_ns: int,
) -> str:
    """`lightfence verify` with the policy the verifier decided under, run in the report's
    folder. Records older than --max-age-hours are refused as stale, so it covers the oldest
    record's age now plus RECHECK_SLACK_HOURS."""
    age_h = max(0, now_ns - oldest_ns) / 3.6e12
    args = ["lightfence", "verify", path, "--landmark-keys", REGISTRY_FILE]
    args += ["--policy", policy, "--bound", bound]
    if claimed:
        args += ["--claimed", claimed]
    if liars:
        args += ["--liars", liars]
    args += ["--require", require or "key"]
    if enrolled_gpu:
        args += ["--enrolled-gpu", enrolled_gpu]
    args += ["--max-age-hours", str(math.ceil(age_h) + RECHECK_SLACK_HOURS)]
    return shlex.join(args)


def oldest_measurement_ns(doc: dict[str, Any], default: int) -> int:
    """The oldest record's or GPU round's measurement time in a bundle document."""
    return min(
        [int(r["measured_at_unix_ns"]) for r in doc.get("records", [])]
        + [int(g["record"]["measured_at_unix_ns"]) for g in doc.get("gpu_rounds", [])],
        default=default,
    )


def json_bytes(doc: dict[str, Any]) -> bytes:
    # Compact: json's C encoder (an indented dump runs in Python, 5x slower on big fleets).
    return (json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
