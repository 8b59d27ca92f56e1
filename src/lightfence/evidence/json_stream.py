"""Read one JSON object from a file a member at a time, its big arrays an element at a time,
with bounded memory and no way for hostile input to raise anything but JsonStreamError.

Bounds: the file's size (`max_bytes`), each value's size (`max_value_bytes`: a member, or one
element of a streamed array, is parsed whole), nesting (deeper than `MAX_DEPTH` is refused
before parsing), integers of more than `MAX_INT_DIGITS` digits, NaN and Infinity, duplicate
top-level keys and trailing data. Parsing is the standard library's C decoder (`raw_decode`)
on a sliding buffer: memory is the buffer (a chunk plus the value being read), not the file.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from typing import IO, Any

CHUNK_BYTES = 1 << 20
MAX_DEPTH = 64
"""No bundle field nests deeper than a few levels; the C decoder itself would recurse."""
MAX_INT_DIGITS = 40
"""Every integer in a bundle fits in 64 bits (20 digits); beyond 4,300 Python refuses anyway."""
_WS = " \t\n\r"


class JsonStreamError(ValueError):
    """The input is not a JSON object within the bounds (message says which and where)."""


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonStreamError(f"integer of {len(text)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _float(text: str) -> float:
    if len(text) > 2 * MAX_INT_DIGITS:
        raise JsonStreamError(f"number of {len(text)} characters")
    return float(text)


def _constant(name: str) -> Any:
    raise JsonStreamError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_int=_int, parse_float=_float, parse_constant=_constant)


def _depth_problem(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] (one JSON value) nests deeper than MAX_DEPTH, outside strings."""
    if text.count("[", start, end) + text.count("{", start, end) <= MAX_DEPTH:
        return False  # C-speed answer for every real bundle value: too few brackets to nest
    depth = 0
    i = start
    find = text.find
    while i < end:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while True:
                j = find('"', j, end)
                if j < 0:
                    return False  # unterminated: the decoder reports it
                k = j - 1
                while text[k] == "\\":
                    k -= 1
                if (j - 1 - k) % 2 == 0:  # an even run of backslashes: the quote closes
                    break
                j += 1
            i = j + 1
            continue
        if ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif ch in "]}":
            depth -= 1
        i += 1
    return False


class JsonObjectStream:
    """Members of the top-level object of `raw` (a binary file), in file order."""

    def __init__(self, raw: IO[bytes], max_bytes: int, max_value_bytes: int) -> None:
        self._raw = raw
        self._decode = codecs.getincrementaldecoder("utf-8")("strict")
        self._max_bytes = max_bytes
        self._max_value = max_value_bytes
        self._buf = ""
        self._pos = 0
        self._read = 0
        self._eof = False

    # --- buffer ------------------------------------------------------------------------------

    def _fill(self) -> None:
        chunk = self._raw.read(CHUNK_BYTES)
        self._read += len(chunk)
        if self._read > self._max_bytes:
            raise JsonStreamError(f"larger than the {self._max_bytes:,}-byte cap")
        try:
            text = self._decode.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            at = self._read - len(chunk)
            raise JsonStreamError(f"not UTF-8 near byte {at}: {exc.reason}") from None
        self._eof = not chunk
        self._buf = self._buf[self._pos :] + text
        self._pos = 0

    def _peek(self) -> str:
        """The next non-space character ('' at the end of the file)."""
        while True:
            buf, pos = self._buf, self._pos
            while pos < len(buf) and buf[pos] in _WS:
                pos += 1
            self._pos = pos
            if pos < len(buf):
                return buf[pos]
            if self._eof:
                return ""
            self._fill()

    def _expect(self, chars: str, where: str) -> str:
        ch = self._peek()
        if not ch or ch not in chars:
            found = repr(ch) if ch else "the end of the file"
            raise JsonStreamError(f"expected one of {chars!r} {where}, found {found}")
        self._pos += 1
        return ch

    def _value(self, what: str) -> Any:
        self._peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                if self._eof:
                    raise JsonStreamError(f"{what}: invalid JSON: {exc.msg}") from None
                if len(self._buf) - self._pos > self._max_value:
                    if _depth_problem(self._buf, self._pos, len(self._buf)):
                        raise JsonStreamError(
                            f"{what}: nested deeper than {MAX_DEPTH} levels"
                        ) from None
                    raise JsonStreamError(
                        f"{what}: a value larger than {self._max_value:,} bytes, or invalid "
                        f"JSON ({exc.msg})"
                    ) from None
                self._fill()
                continue
            except RecursionError:
                raise JsonStreamError(f"{what}: nested deeper than {MAX_DEPTH} levels") from None
            except JsonStreamError as exc:
                raise JsonStreamError(f"{what}: {exc}") from None
            except ValueError as exc:  # e.g. an integer past Python's digit limit
                raise JsonStreamError(f"{what}: {exc}") from None
            if end == len(self._buf) and not self._eof:
                self._fill()  # a number may go on in the next chunk: read it whole
                continue
            if _depth_problem(self._buf, self._pos, end):
                raise JsonStreamError(f"{what}: nested deeper than {MAX_DEPTH} levels")
            self._pos = end
            return value

    # --- structure ---------------------------------------------------------------------------

    def members(
        self, streamed: frozenset[str], seen: set[str] | None = None
    ) -> Iterator[tuple[str, Any, bool]]:
        """(key, value, False) for each member, except that a member whose key is in
        `streamed` gives (key, element, True) for each element of its array instead. `seen`,
        if given, collects every key as it is read."""
        self._expect("{", "at the start (a JSON object)")
        seen = set() if seen is None else seen
        if self._peek() == "}":
            self._pos += 1
        else:
            while True:
                key = self._value("a key")
                if not isinstance(key, str):
                    raise JsonStreamError("an object key is not a string")
                if key in seen:
                    raise JsonStreamError(f"duplicate key {key!r}")
                seen.add(key)
                self._expect(":", f"after key {key!r}")
                if key in streamed:
                    yield from self._elements(key)
                else:
                    yield key, self._value(f"{key!r}"), False
                if self._expect(",}", f"after the value of {key!r}") == "}":
                    break
        if self._peek():
            raise JsonStreamError("data after the end of the top-level object")

    def _elements(self, key: str) -> Iterator[tuple[str, Any, bool]]:
        self._expect("[", f"as {key!r} (a list)")
        if self._peek() == "]":
            self._pos += 1
            return
        index = 0
        while True:
            yield key, self._value(f"{key}[{index}]"), True
            index += 1
            if self._expect(",]", f"after {key}[{index - 1}]") == "]":
                return
