"""The report's facts read from a running verifier over its HTTP API, with a token.

The same ReportData as `gather`, from what the API gives a token (docs/verifier.md), with three
limits that the report states in its notes: each device's history is its newest
`remote.MAX_PAGE` verdicts, the bundle is the device's latest verdict (the API serves no other),
and alerts are "resolved" by what the history and the last check-in show. An operator token sees
only its own devices and no audit chain (GET /audit/verify is for admin and auditor tokens).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx

from lightfence.report.gather import (
    CLEARED_BY_VERDICT,
    EVIDENCE_DIR,
    NO_VERDICT,
    AlertEntry,
    AuditState,
    BundleFile,
    BundleProblem,
    DeviceEntry,
    Progress,
    ReportData,
    UnknownOperator,
    VerdictChange,
    oldest_measurement_ns,
    recheck_command,
    safe_file_stem,
)

MAX_PAGE = 1000
"""The API's largest page (verifier.queries.MAX_PAGE)."""


class RemoteError(RuntimeError):
    """The verifier refused or failed a request; the message says which and why."""


def iso_ns(text: str | None) -> int | None:
    if not text:
        return None
    value = datetime.fromisoformat(text)
    return int(value.timestamp()) * 10**9 + value.microsecond * 1000


def _get(client: httpx.Client, path: str, **params: Any) -> Any:
    try:
        reply = client.get(path, params=params or None)
    except httpx.HTTPError as exc:
        raise RemoteError(f"GET {path}: {exc}") from None
    if reply.status_code >= 400:
        try:
            detail = reply.json().get("detail", reply.text)
        except ValueError:
            detail = reply.text[:200]
        raise RemoteError(f"GET {path}: HTTP {reply.status_code}: {detail}")
    return reply


def gather_remote(
    client: httpx.Client,
    *,
    operator: str,
    since_ns: int,
    until_ns: int,
    now_ns: int,
    source: str = "",
    progress: Progress = lambda _: None,
) -> ReportData:
    """`client` carries the verifier's base URL and the token (Authorization header)."""
    if since_ns >= until_ns:
        raise ValueError("the window is empty: --since must be before --until")
    listed = _get(client, "/devices").json()
    known = sorted({d["operator"] for d in listed})
    if operator not in known:
        raise UnknownOperator(operator, known)
    mine = [
        d
        for d in sorted(listed, key=lambda d: d["device_id"])
        if d["operator"] == operator and (iso_ns(d["enrolled_at"]) or 0) < until_ns
    ]
    progress(f"{len(mine)} device(s) of {operator}: reading verdict histories")
    devices: list[DeviceEntry] = []
    truncated = 0
    rejected_all: dict[str, int] = {}
    records = 0
    for d in mine:
        dev_id = d["device_id"]
        page = _get(client, f"/devices/{dev_id}/verdicts", limit=MAX_PAGE, geojson="none").json()
        verdicts = list(reversed(page["verdicts"]))  # oldest first
        truncated += len(verdicts) == MAX_PAGE
        rej = _rejections(client, dev_id, since_ns, until_ns)
        for reason, n in rej.items():
            rejected_all[reason] = rejected_all.get(reason, 0) + n
        recs = _get(client, f"/devices/{dev_id}/records", limit=MAX_PAGE).json()["records"]
        records += sum(1 for r in recs if since_ns <= (iso_ns(r["received_at"]) or 0) < until_ns)
        devices.append(_device(d, verdicts, since_ns, until_ns, rej))
    names = {d.device_id: d.name for d in devices}
    progress("reading alerts")
    alerts = _alerts(client, names, devices, since_ns, until_ns)
    progress("reading the audit chain")
    audit, audit_note = _audit(client)
    progress("downloading evidence bundles")
    bundles, problems = _bundles(client, devices, mine, now_ns)
    registry = _get(client, "/landmarks/registry.json").content
    notes = [
        "Read from a running verifier over its API: each device's history is its newest "
        f"{MAX_PAGE} verdicts, records are counted among its newest {MAX_PAGE}, GPU-signed "
        "rounds are not counted, the bundles are of each device's latest verdict (as the "
        "verifier served them, hashed byte for byte), and a missed check-in is resolved by "
        "the device's last check-in time."
    ]
    if truncated:
        notes.append(f"{truncated} device(s) have more verdicts than the API returns at once.")
    if audit_note:
        notes.append(audit_note)
    return ReportData(
        operator=operator,
        since_ns=since_ns,
        until_ns=until_ns,
        generated_ns=now_ns,
        source=source,
        devices=tuple(devices),
        alerts=tuple(alerts),
        records_in_window=records,
        gpu_rounds_in_window=0,
        rejections_in_window=rejected_all,
        audit=audit,
        bundles=tuple(bundles),
        bundle_problems=tuple(problems),
        registry=registry,
        notes=tuple(notes),
    )


def _device(
    d: dict[str, Any],
    verdicts: list[dict[str, Any]],
    since_ns: int,
    until_ns: int,
    rejected: dict[str, int],
) -> DeviceEntry:
    history: list[VerdictChange] = []
    reason: str | None = None
    for v in verdicts:
        at = iso_ns(v["computed_at"]) or 0
        if at >= until_ns:
            break
        change = VerdictChange(
            v["id"], at, v["verdict"], v.get("locates") or "key", v["reason"], 1, at, at < since_ns
        )
        prev = history[-1] if history else None
        if prev is not None and at < since_ns:
            history[-1] = change  # only the one in force at the start is kept
        elif prev is not None and (prev.kind, prev.locates) == (change.kind, change.locates):
            history[-1] = VerdictChange(
                prev.verdict_id,
                prev.at_ns,
                prev.kind,
                prev.locates,
                prev.reason,
                prev.repeats + 1,
                at,
                prev.carried,
            )
        else:
            history.append(change)
        reason = v["reason"]
    latest = history[-1] if history else None
    licence = d.get("licence") or {}
    host = (d.get("attributes") or {}).get("host")
    return DeviceEntry(
        device_id=d["device_id"],
        name=str(host) if host else d["device_id"],
        trust_level=d["trust_level"],
        policy=licence.get("policy", "?"),
        declared_country=licence.get("declared_country"),
        require_locates=licence.get("require_locates") or "key",
        enrolled_ns=iso_ns(d["enrolled_at"]) or 0,
        last_record_ns=iso_ns(d.get("last_record_at")),
        verdict=NO_VERDICT if latest is None else latest.kind,
        locates=None if latest is None else latest.locates,
        reason=reason,
        history=tuple(history),
        rejected=rejected,
    )


def _rejections(client: httpx.Client, device_id: str, lo: int, hi: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in _get(client, "/rejections", device_id=device_id, limit=MAX_PAGE).json():
        last = iso_ns(r["received_at"]) or 0
        first = iso_ns(r.get("first_received_at")) or last
        if last >= lo and first < hi:
            out[r["reason"]] = out.get(r["reason"], 0) + int(r.get("count") or 1)
    return out


def _alerts(
    client: httpx.Client,
    names: dict[str, str],
    devices: list[DeviceEntry],
    lo: int,
    hi: int,
) -> list[AlertEntry]:
    by_id = {d.device_id: d for d in devices}
    out = []
    for a in sorted(_get(client, "/alerts", limit=MAX_PAGE).json(), key=lambda a: a["id"]):
        device_id = a.get("device_id")
        created = iso_ns(a["created_at"]) or 0
        acked = iso_ns(a.get("acknowledged_at"))
        if device_id not in names or created >= hi or (acked is not None and acked < lo):
            continue
        last = iso_ns(a.get("last_seen_at")) or created
        device = by_id[device_id]
        cleared_ns, cleared_by = None, None
        if a["kind"] == "missed_checkin":
            seen = device.last_record_ns
            if seen is not None and last < seen < hi:
                cleared_ns, cleared_by = seen, "a fresh measurement arrived (by this time)"
        elif a["kind"] in CLEARED_BY_VERDICT:
            for c in device.history:
                if c.kind == "VERIFIED" and c.at_ns > last:
                    cleared_ns, cleared_by = c.at_ns, "a later verdict was VERIFIED"
                    break
        out.append(
            AlertEntry(
                id=a["id"],
                kind=a["kind"],
                device_id=device_id,
                device_name=names[device_id],
                message=a["message"],
                count=int(a.get("count") or 1),
                created_ns=created,
                last_ns=last,
                acknowledged_ns=acked,
                acknowledged_by=a.get("acknowledged_by"),
                cleared_ns=cleared_ns,
                cleared_by=cleared_by,
            )
        )
    return out


def _audit(client: httpx.Client) -> tuple[AuditState, str | None]:
    try:
        report = _get(client, "/audit/verify").json()
    except RemoteError as exc:
        note = f"The audit chain was not checked: {exc} (an admin or auditor token can)."
        return AuditState(0, 0, "", (), None, checked=False), note
    entries = int(report["entries"])
    state = AuditState(entries, entries, report["head_hash"], tuple(report["problems"]), None)
    return state, None


def _bundles(
    client: httpx.Client,
    devices: list[DeviceEntry],
    listed: list[dict[str, Any]],
    now_ns: int,
) -> tuple[list[BundleFile], list[BundleProblem]]:
    out: list[BundleFile] = []
    problems: list[BundleProblem] = []
    for entry, d in zip(devices, listed, strict=True):
        if not entry.history:
            continue
        try:
            content = _get(client, f"/devices/{entry.device_id}/evidence").content
            doc = json.loads(content)
            verdict = doc["verdict"]
            policy = doc["policy"]
        except (RemoteError, ValueError, KeyError) as exc:
            problems.append(BundleProblem(entry.device_id, entry.name, str(exc)))
            continue
        path = f"{EVIDENCE_DIR}/{safe_file_stem(entry.device_id)}.json"
        gpu = (d.get("licence") or {}).get("gpu_id")
        out.append(
            BundleFile(
                device_id=entry.device_id,
                device_name=entry.name,
                verdict_id=int(verdict["id"]),
                verdict=verdict["verdict"],
                locates=verdict.get("locates") or "key",
                path=path,
                content=content,
                has_gpu_rounds=bool(doc.get("gpu_rounds")),
                command=recheck_command(
                    path,
                    policy=policy["policy"],
                    bound=policy["bound"],
                    claimed=policy.get("claimed"),
                    liars=policy.get("liars"),
                    require=entry.require_locates,
                    enrolled_gpu=gpu if doc.get("gpu_rounds") else None,
                    oldest_ns=oldest_measurement_ns(doc, now_ns),
                    now_ns=now_ns,
                ),
            )
        )
    return out, problems
