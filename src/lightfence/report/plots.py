"""Inline SVG plots for the report: no script, no external file, readable without colour.

Colours are the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies);
every bar and segment also carries its verdict in words (a label, or a letter and a <title>),
so nothing is told by colour alone.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lightfence.report.gather import NO_VERDICT, VerdictChange
from lightfence.report.html import Html, fmt, join, tag

VERDICT_COLOUR = {
    "VERIFIED": "#009E73",
    "UNVERIFIED": "#E69F00",
    "REFUTED": "#D55E00",
    "INCONSISTENT": "#CC79A7",
    NO_VERDICT: "#999999",
}
VERDICT_LETTER = {
    "VERIFIED": "V",
    "UNVERIFIED": "U",
    "REFUTED": "R",
    "INCONSISTENT": "I",
    NO_VERDICT: "-",
}
BAR_WIDTH_PX = 420
TIMELINE_WIDTH_PX = 640
TIMELINE_HEIGHT_PX = 22
LETTER_MIN_PX = 14
"""A segment narrower than this shows no letter (its <title> still names the verdict)."""


def colour(kind: str) -> str:
    return VERDICT_COLOUR.get(kind, "#999999")


def verdict_bars(counts: dict[str, int]) -> Html:
    """Devices by verdict: one labelled horizontal bar per verdict."""
    rows = [(k, n) for k, n in counts.items()]
    top = max([n for _, n in rows] + [1])
    label_w, row_h = 130, 24
    height = row_h * len(rows) + 4
    width = label_w + BAR_WIDTH_PX + 60
    parts = []
    for i, (kind, n) in enumerate(rows):
        y = i * row_h + 2
        w = round(BAR_WIDTH_PX * n / top) if n else 0
        parts.append(
            fmt(
                '<text x="{lx}" y="{ty}" text-anchor="end">{kind}</text>'
                '<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}">'
                "<title>{kind}: {n}</title></rect>"
                '<text x="{nx}" y="{ty}">{n}</text>',
                lx=label_w - 8,
                ty=y + 15,
                kind=kind,
                x=label_w,
                y=y,
                w=w,
                h=row_h - 6,
                fill=colour(kind),
                n=n,
                nx=label_w + w + 6,
            )
        )
    return _svg(width, height, "Devices by verdict at the end of the window", join(parts))


def timeline(history: tuple[VerdictChange, ...], since_ns: int, until_ns: int) -> Html:
    """A device's verdicts over the window: one segment per change, up to the next one."""
    span = max(1, until_ns - since_ns)
    w, h = TIMELINE_WIDTH_PX, TIMELINE_HEIGHT_PX
    parts = [fmt('<rect x="0" y="0" width="{w}" height="{h}" fill="#f2f2f2"/>', w=w, h=h)]
    for i, change in enumerate(history):
        start = max(change.at_ns, since_ns)
        end = history[i + 1].at_ns if i + 1 < len(history) else until_ns
        x0 = round(w * (start - since_ns) / span, 1)
        x1 = round(w * (min(end, until_ns) - since_ns) / span, 1)
        seg_w = max(1.0, x1 - x0)
        letter = (
            fmt(
                '<text x="{x}" y="{y}" text-anchor="middle" fill="#000">{t}</text>',
                x=round(x0 + seg_w / 2, 1),
                y=h - 6,
                t=VERDICT_LETTER.get(change.kind, "?"),
            )
            if seg_w >= LETTER_MIN_PX
            else Html("")
        )
        parts.append(
            fmt(
                '<rect x="{x}" y="0" width="{sw}" height="{h}" fill="{fill}">'
                "<title>{kind} (locates {loc})</title></rect>{letter}",
                x=x0,
                sw=round(seg_w, 1),
                h=h,
                fill=colour(change.kind),
                kind=change.kind,
                loc=change.locates,
                letter=letter,
            )
        )
    axis_y = h + 14
    parts.append(
        fmt(
            '<text x="0" y="{y}">{a}</text><text x="{w}" y="{y}" text-anchor="end">{b}</text>',
            y=axis_y,
            w=w,
            a=_short(since_ns),
            b=_short(until_ns),
        )
    )
    return _svg(w, axis_y + 4, "Verdict timeline over the window", join(parts))


def _short(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def legend() -> Html:
    items = [
        fmt(
            '<span class="key"><svg width="12" height="12" aria-hidden="true">'
            '<rect width="12" height="12" fill="{fill}"/></svg> {letter} = {kind}</span>',
            fill=colour(kind),
            letter=VERDICT_LETTER[kind],
            kind=kind,
        )
        for kind in VERDICT_COLOUR
    ]
    return tag("p", join(items, " "), class_="legend")


def _svg(width: int, height: int, title: str, body: Html) -> Html:
    return fmt(
        '<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        'viewBox="0 0 {w} {h}" role="img" aria-label="{t}" class="plot">'
        "<title>{t}</title>{body}</svg>",
        w=width,
        h=height,
        t=title,
        body=body,
    )
