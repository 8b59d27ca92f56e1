"""Text a stranger may have shaped, made fit for one log line or one error message."""

from __future__ import annotations


def one_line(text: str, max_chars: int) -> str:
    """`text` on one printable line (control characters and newlines escaped), cut to
    `max_chars` with an ellipsis: a quoted field cannot forge log lines or fill them."""
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text
