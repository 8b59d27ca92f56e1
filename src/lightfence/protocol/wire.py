"""Big-endian binary fields with strict bounds: the reader never reads past its buffer.

Every decode error is a DecodeError (the peer sent something malformed), so a receive loop
catches one exception type and counts it; nothing else escapes from bad bytes.
"""

from __future__ import annotations

import struct

MAX_STR_BYTES = 255
"""Longest UTF-8 string field (ids, names); keeps every message far under one datagram."""


class DecodeError(ValueError):
    """Bytes from the peer are not a well-formed message (remote protocol error)."""


class Writer:
    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, v: int) -> Writer:
        self._parts.append(struct.pack(">B", v))
        return self

    def u16(self, v: int) -> Writer:
        self._parts.append(struct.pack(">H", v))
        return self

    def u32(self, v: int) -> Writer:
        self._parts.append(struct.pack(">I", v))
        return self

    def u64(self, v: int) -> Writer:
        self._parts.append(struct.pack(">Q", v))
        return self

    def u64s(self, values: tuple[int, ...]) -> Writer:
        """Several u64 fields in a row (one pack call: records carry up to 64 RTTs)."""
        self._parts.append(struct.pack(f">{len(values)}Q", *values))
        return self

    def fixed(self, data: bytes, length: int) -> Writer:
        if len(data) != length:
            raise ValueError(f"field must be {length} bytes, got {len(data)}")
        self._parts.append(data)
        return self

    def text(self, s: str) -> Writer:
        raw = s.encode()
        if len(raw) > MAX_STR_BYTES:
            raise ValueError(f"string field longer than {MAX_STR_BYTES} bytes: {s[:40]!r}")
        self._parts.append(struct.pack(">B", len(raw)) + raw)
        return self

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise DecodeError(f"truncated: need {n} bytes at offset {self._pos}")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def u8(self) -> int:
        return int(self._take(1)[0])

    def u16(self) -> int:
        return int(struct.unpack(">H", self._take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self._take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self._take(8))[0])

    def fixed(self, length: int) -> bytes:
        return self._take(length)

    def text(self) -> str:
        raw = self._take(self.u8())
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise DecodeError("string field is not valid UTF-8") from None

    def end(self) -> None:
        """Require that every byte was consumed: trailing bytes are an error, not padding."""
        if self._pos != len(self._data):
            raise DecodeError(f"{len(self._data) - self._pos} trailing bytes")
