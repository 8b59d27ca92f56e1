"""The report as one self-contained HTML page: inline CSS and SVG, no script, no external file.

Every value from the database goes through `lightfence.report.html` (escaped unless it is markup
built here), so a hostile device name or alert message is shown as text.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from lightfence import __version__
from lightfence.report import plots
from lightfence.report.gather import (
    NO_VERDICT,
    REGISTRY_FILE,
    AlertEntry,
    AuditState,
    BundleFile,
    DeviceEntry,
    ReportData,
    VerdictChange,
)
from lightfence.report.html import Html, fmt, join, tag

LOCATES_TEXT = {
    "key": "the device's Ed25519 key file (rounds answered by the key; a copied or moved key "
    "is located, not the GPU)",
    "gpu": "the GPU itself (rounds signed by the GPU's hardware attestation key)",
}
VERDICT_TEXT = {
    "VERIFIED": "every position consistent with the measurements is inside the allowed region",
    "UNVERIFIED": "not enough evidence either way (too few or too distant landmarks, slow paths)",
    "REFUTED": "the device is provably not in the country it declared",
    "INCONSISTENT": "the measurements contradict each other: a lying landmark or an attack",
    NO_VERDICT: "no verdict was computed (no accepted measurement)",
}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#111;
 max-width:1100px;margin:24px auto;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid #333}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;width:100%;margin:6px 0 12px}
th,td{border:1px solid #bbb;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#eee}td.num{text-align:right}
code,.hash{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;
 word-break:break-all}
pre{white-space:pre-wrap;word-break:break-all;background:#f5f5f5;padding:6px;margin:4px 0}
.meta{color:#444}.ok{font-weight:bold}.bad{font-weight:bold;text-decoration:underline}
.banner{border:2px solid #333;padding:8px 12px;margin:12px 0;background:#fafafa}
.bad-banner{border:4px double #000;background:#fff3e0}
.legend .key{margin-right:14px;white-space:nowrap}.plot{max-width:100%;height:auto}
.plot text{font-size:12px}td.why{width:42%}
.id{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:10px;color:#444;
 word-break:break-all}.device{break-inside:avoid;page-break-inside:avoid}
@media (max-width:700px){body{margin:8px auto;padding:0 8px}
 table{display:block;overflow-x:auto}td.why{width:auto}}
@page{size:A4;margin:14mm}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}}
"""


def when(ns: int | None) -> str:
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def sentence(text: str) -> str:
    """A stored reason (lower case, no stop) as one plain sentence."""
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def render(data: ReportData) -> str:
    title = f"lightfence compliance report: {data.operator}"
    body = join(
        [
            tag("h1", title),
            fmt(
                '<p class="meta">Window {since} to {until} (the end excluded). Generated {gen} '
                "by lightfence {ver} from {src}.</p>",
                since=when(data.since_ns),
                until=when(data.until_ns),
                gen=when(data.generated_ns),
                ver=__version__,
                src=data.source or "the verifier database",
            ),
            _notes(data.notes),
            _integrity_banner(data.audit),
            _summary(data),
            _devices(data),
            _alerts(data.alerts),
            _audit(data.audit),
            _evidence(data),
            _method(),
        ]
    )
    page = fmt(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>{title}</title><style>{css}</style></head><body>{body}</body></html>\n",
        title=title,
        css=Html(CSS),
        body=body,
    )
    return str(page)


def _integrity_banner(audit: AuditState) -> Html:
    """Up front: figures from a database changed outside the verifier are not evidence."""
    problems = [*audit.problems, *(audit.checkpoint.problems if audit.checkpoint else ())]
    if not problems:
        return Html("")
    return tag(
        "div",
        join(
            [
                tag("b", "The audit chain does not check out."),
                f" {len(problems)} problem(s) found (listed under Audit chain): the database "
                "was changed outside the verifier, so the figures below may not be what the "
                "verifier decided. Rely on the evidence bundles, which carry their own "
                "signatures, and investigate before using this report.",
            ]
        ),
        class_="banner bad-banner",
    )


def _summary(data: ReportData) -> Html:
    counts = data.verdict_counts
    parts: list[object] = [tag("h2", "Fleet summary")]
    if data.empty:
        parts.append(
            tag(
                "p",
                "Nothing happened in this window: no verdict was computed, no alert was raised or "
                "acknowledged, no measurement arrived and none was rejected. The devices below "
                "are listed with the verdict in force, and alerts still open from before.",
                class_="banner",
            )
        )
    status = {"open": 0, "acknowledged": 0, "resolved": 0}
    for a in data.alerts:
        status[a.status] += 1
    rejected = sum(data.rejections_in_window.values())
    facts = [
        ("Devices of this operator", len(data.devices)),
        ("Verdict changes in the window", data.changes_in_window),
        ("Measurement records received", data.records_in_window),
        ("GPU-signed rounds received", data.gpu_rounds_in_window),
        ("Records rejected (signature, freshness, identity)", rejected),
        (
            "Alerts open during the window",
            f"{len(data.alerts)} ({status['open']} open, {status['acknowledged']} "
            f"acknowledged, {status['resolved']} resolved)",
        ),
    ]
    parts.append(
        tag(
            "table",
            join(tag("tr", join([tag("th", k), tag("td", v)])) for k, v in facts),
        )
    )
    parts.append(tag("h3", "Devices by verdict at the end of the window"))
    parts.append(plots.verdict_bars(counts))
    loc = data.locates_counts
    rows = [
        tag(
            "tr",
            join(
                [
                    tag("td", kind),
                    tag("td", n, class_="num"),
                    tag("td", loc.get((kind, "key"), 0), class_="num"),
                    tag("td", loc.get((kind, "gpu"), 0), class_="num"),
                    tag("td", VERDICT_TEXT.get(kind, "")),
                ]
            ),
        )
        for kind, n in counts.items()
    ]
    head = tag(
        "tr",
        join(
            tag("th", h)
            for h in ("verdict", "devices", "locates key", "locates GPU", "what it means")
        ),
    )
    parts.append(tag("table", join([head, *rows])))
    parts.append(
        tag(
            "p",
            join(
                [
                    "What a verdict locates: ",
                    tag("b", "key"),
                    " = ",
                    LOCATES_TEXT["key"],
                    "; ",
                    tag("b", "GPU"),
                    " = ",
                    LOCATES_TEXT["gpu"],
                    ".",
                ]
            ),
        )
    )
    if data.rejections_in_window:
        parts.append(
            tag(
                "p",
                "Rejections by reason: "
                + ", ".join(f"{k} {v}" for k, v in sorted(data.rejections_in_window.items())),
            )
        )
    return join(parts)


def _devices(data: ReportData) -> Html:
    parts: list[object] = [tag("h2", "Devices and their verdict history")]
    if not data.devices:
        parts.append(tag("p", "This operator has no device enrolled before the window's end."))
        return join(parts)
    head = tag(
        "tr",
        join(
            tag("th", h)
            for h in ("device", "trust level", "licence", "verdict (locates)", "why not VERIFIED")
        ),
    )
    rows = [
        tag(
            "tr",
            join(
                [
                    tag("td", join([d.name, Html("<br>"), tag("span", d.device_id, class_="id")])),
                    tag("td", d.trust_level),
                    tag("td", _licence(d)),
                    tag("td", join([tag("b", d.verdict), f" ({d.locates or '-'})"])),
                    tag("td", "" if d.verdict == "VERIFIED" else why_not(d), class_="why"),
                ]
            ),
        )
        for d in data.devices
    ]
    parts.append(tag("table", join([head, *rows])))
    parts.append(plots.legend())
    parts.extend(_device_history(d, data) for d in data.devices)
    return join(parts)


def _licence(d: DeviceEntry) -> str:
    declared = f", declared {d.declared_country}" if d.declared_country else ""
    return f"{d.policy}{declared}; must locate {d.require_locates}"


def _device_history(d: DeviceEntry, data: ReportData) -> Html:
    parts: list[object] = [
        tag("h3", f"{d.name}: {d.verdict}"),
        fmt(
            '<p class="meta">Device <code>{id}</code>, enrolled {enrolled}, last measurement '
            "{last}.</p>",
            id=d.device_id,
            enrolled=when(d.enrolled_ns),
            last=when(d.last_record_ns),
        ),
    ]
    if d.verdict != "VERIFIED":
        parts.append(fmt("<p><b>Why not VERIFIED:</b> {why}</p>", why=why_not(d)))
    if d.history:
        parts.append(plots.timeline(d.history, data.axis_start_ns, data.until_ns))
        parts.append(_history_table(d.history))
    else:
        parts.append(tag("p", "No verdict before the window's end."))
    return tag("div", join(parts), class_="device")


def why_not(d: DeviceEntry) -> str:
    """One plain sentence: why the device's verdict at the window's end is not VERIFIED."""
    if d.verdict != NO_VERDICT:
        return sentence(d.reason or "")
    if d.rejected:
        counts = ", ".join(f"{reason} {n}" for reason, n in sorted(d.rejected.items()))
        return f"No verdict: every measurement naming it was rejected ({counts})."
    if d.last_record_ns is None:
        return (
            f"No verdict: no measurement has arrived since it was enrolled ({when(d.enrolled_ns)})."
        )
    return sentence(VERDICT_TEXT[NO_VERDICT])


def _history_table(history: tuple[VerdictChange, ...]) -> Html:
    head = tag(
        "tr", join(tag("th", h) for h in ("from", "verdict", "locates", "repeats", "reason"))
    )
    rows = []
    for c in history:
        start = f"{when(c.at_ns)} (in force at the start)" if c.carried else when(c.at_ns)
        reason = "" if c.kind == "VERIFIED" else sentence(c.reason)
        repeats = f"{c.repeats}, last {when(c.last_ns)}" if c.repeats > 1 else "1"
        rows.append(
            tag(
                "tr",
                join(
                    [
                        tag("td", start),
                        tag("td", c.kind),
                        tag("td", c.locates),
                        tag("td", repeats),
                        tag("td", reason),
                    ]
                ),
            )
        )
    return tag("table", join([head, *rows]))


def _alerts(alerts: tuple[AlertEntry, ...]) -> Html:
    parts: list[object] = [tag("h2", "Alerts and how they ended")]
    if not alerts:
        parts.append(tag("p", "No alert about this operator's devices was open in the window."))
        return join(parts)
    head = tag(
        "tr",
        join(
            tag("th", h)
            for h in ("device", "kind", "what happened", "times", "raised", "status", "ended")
        ),
    )
    rows = []
    for a in alerts:
        ended = []
        if a.acknowledged_ns is not None:
            ended.append(f"acknowledged {when(a.acknowledged_ns)} by {a.acknowledged_by or '?'}")
        if a.cleared_ns is not None:
            ended.append(f"resolved {when(a.cleared_ns)}: {a.cleared_by}")
        raised = when(a.created_ns)
        if a.count > 1:
            raised += f"; last {when(a.last_ns)}"
        rows.append(
            tag(
                "tr",
                join(
                    [
                        tag("td", a.device_name),
                        tag("td", a.kind),
                        tag("td", sentence(a.message)),
                        tag("td", a.count, class_="num"),
                        tag("td", raised),
                        tag("td", tag("b", a.status)),
                        tag("td", "; ".join(ended) or "still open at the window's end"),
                    ]
                ),
            )
        )
    parts.append(tag("table", join([head, *rows])))
    return join(parts)


def _notes(notes: tuple[str, ...]) -> Html:
    if not notes:
        return Html("")
    return tag("div", join([tag("b", "About the source: "), " ".join(notes)]), class_="banner")


def _audit(audit: AuditState) -> Html:
    parts: list[object] = [tag("h2", "Audit chain")]
    if not audit.checked:
        parts.append(tag("p", "Not checked for this report (see About the source above)."))
        return join(parts)
    state = (
        tag("span", "intact", class_="ok")
        if not audit.problems
        else tag("span", "BROKEN", class_="bad")
    )
    facts: list[tuple[str, object]] = [
        ("Chain", join([state, f": {audit.entries} entries re-hashed when this report was made"])),
        ("Head entry", audit.head_seq),
        ("Head hash", tag("span", audit.head_hash, class_="hash")),
    ]
    cp = audit.checkpoint
    if cp is None:
        facts.append(
            (
                "Signed checkpoint",
                "none given (--checkpoint FILE): a rewound or re-hashed chain would look "
                "intact without one",
            )
        )
    else:
        facts += [
            ("Checkpoint file(s)", ", ".join(cp.files)),
            ("Checkpoints checked", cp.checked),
            ("Latest signed checkpoint", f"entry {cp.newest_seq}, signed {when(cp.newest_at_ns)}"),
            ("Its head hash", tag("span", cp.newest_head_hash or "-", class_="hash")),
            ("Signed by key", ", ".join(cp.key_ids) or "-"),
            (
                "Matches the chain",
                tag("span", "yes", class_="ok")
                if not cp.problems
                else tag("span", "NO", class_="bad"),
            ),
        ]
    parts.append(
        tag("table", join(tag("tr", join([tag("th", k), tag("td", v)])) for k, v in facts))
    )
    problems = [*audit.problems, *(cp.problems if cp else ())]
    if problems:
        parts.append(tag("ul", join(tag("li", p) for p in problems)))
    parts.append(
        fmt(
            "<p>Re-check against the live database: <code>{cmd}</code> (prints the same head "
            "hash while no write has happened since).</p>",
            cmd="lightfence audit verify --db URL --checkpoint FILE",
        )
    )
    return join(parts)


def _evidence(data: ReportData) -> Html:
    parts: list[object] = [tag("h2", "Evidence bundles")]
    if not data.bundles and not data.bundle_problems:
        parts.append(tag("p", "No device had a verdict by the window's end: no bundle."))
        return join(parts)
    registry_hash = _sha256(data.registry)
    parts.append(
        fmt(
            "<p>Each bundle holds the signed measurement records (and GPU-signed rounds) of the "
            "verdict in force at the window's end, with the device's identity; it is written "
            "beside this report under the path shown. Check a file's SHA-256 "
            "(<code>sha256sum PATH</code>), then re-check every signature and recompute the "
            "verdict offline with the command shown, in this report's folder. "
            "<code>{reg}</code> (SHA-256 <span class=hash>{rh}</span>) is the verifier's "
            "landmark registry: prefer one you obtained independently. A re-check more than a "
            "day after {gen} needs a larger <code>--max-age-hours</code> (older records are "
            "refused as stale); a bundle with GPU rounds needs <code>--gpu-root</code> when the "
            "verifier trusted another root than NVIDIA's.</p>",
            reg=REGISTRY_FILE,
            rh=registry_hash,
            gen=when(data.generated_ns),
        )
    )
    parts.extend(_bundle(b) for b in data.bundles)
    if data.bundle_problems:
        parts.append(tag("h3", "Devices without a bundle"))
        parts.append(
            tag(
                "ul",
                join(
                    tag("li", f"{p.device_name} ({p.device_id}): no bundle: {p.problem}")
                    for p in data.bundle_problems
                ),
            )
        )
    return join(parts)


def _bundle(b: BundleFile) -> Html:
    return tag(
        "div",
        join(
            [
                tag("h3", f"{b.device_name}: {b.verdict} (locates {b.locates})"),
                tag(
                    "table",
                    join(
                        [
                            tag("tr", join([tag("th", "file"), tag("td", tag("code", b.path))])),
                            tag(
                                "tr",
                                join([tag("th", "SHA-256"), tag("td", b.sha256, class_="hash")]),
                            ),
                            tag(
                                "tr",
                                join([tag("th", "re-check"), tag("td", tag("pre", b.command))]),
                            ),
                        ]
                    ),
                ),
            ]
        ),
        class_="device",
    )


def _method() -> Html:
    return join(
        [
            tag("h2", "How to read this report"),
            tag(
                "ul",
                join(
                    tag("li", t)
                    for t in (
                        "History shows changes, not repeats: consecutive verdicts with the same "
                        "verdict and the same locates are one row, with their count.",
                        "An alert is acknowledged when a person acknowledged it in the "
                        "verifier (stored, with who and when). It is resolved when its "
                        "condition cleared: a later VERIFIED verdict of the device, or for a "
                        "missed check-in a fresh measurement (read from the verdicts and "
                        "records, not stored on the alert).",
                        "A VERIFIED verdict is never wrong by construction (speed-of-light "
                        "bound); every approximation errs towards not verified.",
                    )
                ),
            ),
        ]
    )


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
