"""Escaping by construction: every value put into markup is escaped unless it is `Html` already.

The report has no template engine dependency (jinja2 is not one of lightfence's), so this is its
autoescape: `tag` and `fmt` escape each argument, and only markup they built themselves (or a
constant written here) is `Html`. Tenant-provided text (device names, attributes, alert
messages, operator names) can therefore only ever reach the page as text.
"""

from __future__ import annotations

import html
from collections.abc import Iterable


class Html(str):
    """Markup that is safe to emit as it is."""

    __slots__ = ()


def esc(value: object) -> Html:
    """`value` as text in markup (attribute values included): Html passes through."""
    if isinstance(value, Html):
        return value
    return Html(html.escape(str(value), quote=True))


def fmt(template: str, /, **values: object) -> Html:
    """`template` (a constant) with each `{name}` replaced by its escaped value."""
    return Html(template.format(**{k: esc(v) for k, v in values.items()}))


def join(parts: Iterable[object], sep: str = "") -> Html:
    return Html(sep.join(esc(p) for p in parts))


def tag(name: str, content: object = "", /, **attrs: object) -> Html:
    """<name attrs>content</name>; `class_` is written `class`, `None` attributes are left out."""
    text = "".join(
        f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items() if v is not None
    )
    return Html(f"<{name}{text}>{esc(content)}</{name}>")
