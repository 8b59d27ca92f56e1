"""State rows bound to the audit chain: every write of a registry or verdict row is recorded, as
a digest of its content, in an audit entry; `audit verify` recomputes each row's digest and
compares it with the latest one the chain recorded for that row.

So a row edited, inserted or deleted with SQL, outside the verifier, no longer matches the
chain; and editing the chain to match breaks its hashes, or (re-hashed throughout) the signed
checkpoints kept outside the database (verifier.checkpoint).

Covered: what a verdict or a permission depends on. Bookkeeping that the verifier rewrites on
its own (a device's `needs_verdict`, a landmark's blame counters) is left out: it is derived,
and recomputing it cannot make a verdict wrong.

Rows written through the ORM are recorded by a `before_flush` hook (one `state.write` entry per
flush that changes covered columns), so no call site can forget; the one Core insert of covered
rows (verdicts) passes its digests to `audit.append` itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Float, Integer, Numeric, event, inspect, select
from sqlalchemy.orm import Session

from lightfence.verifier.models import ApiTokenRow, Base, DeviceRow, LandmarkRow, VerdictRow

STATE_KEY = "state"
"""The audit payload key holding [[table, row key, digest or null], ...]."""


@dataclass(frozen=True)
class Covered:
    model: type[Base]
    key: str
    """The column naming a row in the audit log (stable and unique)."""
    columns: tuple[str, ...]


COVERED: dict[str, Covered] = {
    "devices": Covered(
        DeviceRow,
        "id",
        (
            "operator",
            "provider",
            "trust_level",
            "public_key",
            "key_id",
            "attributes",
            "attestation",
            "gpu_uuid",
            "policy",
            "bound",
            "declared_country",
            "site_lat",
            "site_lon",
            "checkin_interval_s",
            "enrolled_ns",
            # Since migration 0010: the licence's GPU and what a VERIFIED must locate, and
            # retirement (an edited gpu_id let another chip's rounds verify the device).
            "gpu_id",
            "require_locates",
            "retired_ns",
        ),
    ),
    "landmarks": Covered(
        LandmarkRow,
        "id",
        (
            "lat",
            "lon",
            "position_error_km",
            "public_key",
            "key_id",
            "operator",
            "status",
            "status_reason",
            "position_since_ns",
            "blame_since_ns",
            "created_ns",
        ),
    ),
    "api_tokens": Covered(
        ApiTokenRow, "name", ("name", "role", "owner", "token_hash", "created_ns", "revoked_ns")
    ),
    "verdicts": Covered(
        VerdictRow,
        "id",
        (
            "device_id",
            "kind",
            "reason_code",
            "reason",
            "policy",
            "bound",
            "claimed",
            "as_of_ns",
            "computed_ns",
            "inputs",
            "liars",
            "tolerated_liars",
            "implicated",
            # Since migration 0010: what the verdict locates (a token says it to gates), and
            # the GPU verdict beside the key one.
            "locates",
            "key_kind",
            "gpu_kind",
            "gpu_inputs",
            "alert",
        ),
    ),
}
_BY_MODEL = {c.model: name for name, c in COVERED.items()}


def _normal(model: type[Base], column: str, value: Any) -> Any:
    """The value as the database gives it back (an int given to a float column reads 50.0)."""
    if value is None:
        return None
    kind = model.__table__.c[column].type
    if isinstance(kind, Float | Numeric):
        return float(value)
    if isinstance(kind, Boolean):
        return bool(value)
    if isinstance(kind, Integer):
        return int(value)
    if isinstance(value, str):
        return value
    return json.loads(json.dumps(value))


def digest(
    table: str, values: Mapping[str, Any], covered: Mapping[str, Covered] | None = None
) -> str:
    """The row's digest over `covered`'s columns (COVERED's; a migration passes the lists it
    replaces, to check rows against digests recorded under them)."""
    c = (covered or COVERED)[table]
    body = [table, str(values[c.key])] + [_normal(c.model, col, values[col]) for col in c.columns]
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def row_ref(table: str, values: Mapping[str, Any]) -> list[str | None]:
    return [table, str(values[COVERED[table].key]), digest(table, values)]


def _values(obj: Any, table: str, *, new: bool = False) -> dict[str, Any]:
    """Covered values of an ORM object; for a new one, a column left unset takes its scalar
    default, as the INSERT will."""
    c = COVERED[table]
    out = {col: getattr(obj, col) for col in (c.key, *c.columns)}
    if new:
        columns = c.model.__table__.c
        for col, value in out.items():
            default = columns[col].default
            if value is None and default is not None and default.is_scalar:
                out[col] = default.arg
    return out


def _changed(obj: Any, table: str) -> bool:
    state = inspect(obj)
    return any(state.attrs[col].history.has_changes() for col in COVERED[table].columns)


def install(session_factory: Any) -> None:
    """Record covered ORM writes of every session the factory makes."""
    event.listen(session_factory, "before_flush", _before_flush)


def _before_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    from lightfence.verifier import audit

    refs: list[list[str | None]] = []
    with session.no_autoflush:
        for obj in list(session.new) + list(session.dirty):
            table = _BY_MODEL.get(type(obj))
            if table is None:
                continue
            new = obj in session.new
            if not new and not _changed(obj, table):
                continue
            refs.append(row_ref(table, _values(obj, table, new=new)))
        for obj in session.deleted:
            table = _BY_MODEL.get(type(obj))
            if table is not None:
                refs.append([table, str(getattr(obj, COVERED[table].key)), None])
    if refs:
        audit.append(
            session,
            actor=str(session.info.get("actor", "system")),
            action="state.write",
            subject=f"{len(refs)} row(s)",
            payload={},
            now_ns=int(session.info.get("now_ns", 0)) or _now_ns(),
            state=refs,
        )


def _now_ns() -> int:
    from lightfence.verifier.clock import now_ns

    return now_ns()


def table_values(session: Session, table: str) -> Iterable[dict[str, Any]]:
    """Every row of a covered table: its key and covered columns."""
    c = COVERED[table]
    mapper = inspect(c.model)
    cols = [mapper.columns[n] for n in (c.key, *c.columns)]
    names = [c.key, *c.columns]
    order = mapper.columns[c.key]
    for row in session.execute(select(*cols).order_by(order)).yield_per(5000):
        yield dict(zip(names, row, strict=True))


def table_refs(session: Session, table: str) -> Iterable[list[str | None]]:
    for values in table_values(session, table):
        yield row_ref(table, values)


def append_baseline(
    session: Session,
    payload: Mapping[str, Any] | None = None,
    keep: Callable[[str, Mapping[str, Any]], bool] | None = None,
) -> None:
    """One audit entry recording every covered row as it is now (the migrations that change
    what is covered run this, so rows written before them are checked from then on), with
    `payload` beside; with `keep`, only the rows it keeps (the others stay as the chain last
    recorded them, and reported as they were)."""
    from lightfence.verifier import audit

    refs: list[list[str | None]] = []
    for table in COVERED:
        refs.extend(
            row_ref(table, values)
            for values in table_values(session, table)
            if keep is None or keep(table, values)
        )
    if refs:
        audit.append(
            session,
            actor="system",
            action="state.baseline",
            subject=f"{len(refs)} row(s)",
            payload=dict(payload or {}),
            now_ns=_now_ns(),
            state=refs,
        )


def check_state(
    session: Session, recorded: Mapping[tuple[str, str], str | None], max_problems: int = 20
) -> list[str]:
    """Compare every covered row with the digest the chain last recorded for it."""
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for table in COVERED:
        for _, key_, now in table_refs(session, table):
            key = str(key_)
            seen.add((table, key))
            if (table, key) not in recorded or recorded[(table, key)] is None:
                problems.append(
                    f"{table} row {key} has no audit entry: inserted outside the verifier"
                )
            elif recorded[(table, key)] != now:
                problems.append(
                    f"{table} row {key} differs from its last audit entry: edited outside the "
                    "verifier"
                )
            if len(problems) >= max_problems:
                return problems
    for (table, key), last in recorded.items():
        if last is not None and (table, key) not in seen:
            problems.append(
                f"{table} row {key} is in the audit log but missing: deleted outside the verifier"
            )
            if len(problems) >= max_problems:
                break
    return problems
