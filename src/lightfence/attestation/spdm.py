"""SPDM 1.1 GET_MEASUREMENTS request and MEASUREMENTS response, as NVIDIA GPUs report them.

An NVIDIA attestation report is the 37-byte request the driver sent followed by the GPU's
response; the GPU signs (ECDSA P-384, SHA-384) the request and the response up to its
signature. Layouts (DMTF DSP0274 1.1, little-endian lengths; NVIDIA's `verifier/attestation`):

    request:  version 1 | code 0xE0 1 | param1 1 | param2 1 | nonce 32 | slot 1
    response: version 1 | code 0x60 1 | param1 1 | param2 1 | blocks 1 | record length 3
              | record (blocks x [index 1 | spec 1 | size 2 | type 1 | value size 2 | value])
              | responder nonce 32 | opaque length 2 | opaque (type 2 | size 2 | data)* | sig 96

Parsing is strict: every length must add up exactly, nothing may trail. Pure; raises
`SpdmError` (a message naming the bad field) and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

SPDM_VERSION_1_1 = 0x11
GET_MEASUREMENTS = 0xE0
MEASUREMENTS = 0x60
REQUEST_LEN = 37
NONCE_LEN = 32
SIGNATURE_LEN = 96
"""ECDSA P-384 raw r || s."""
MAX_REPORT_BYTES = 64 * 1024
"""A Hopper report is about 4 KiB; anything this large is refused before parsing."""
DMTF_SPEC = 0x01
SIGNATURE_REQUESTED = 0x01
"""Request param1 bit 0: the requester asked for a signed response."""

OPAQUE_DRIVER_VERSION = 3
OPAQUE_VBIOS_VERSION = 6
OPAQUE_FWID = 20


class SpdmError(ValueError):
    """The bytes are not a well-formed NVIDIA SPDM measurement report; says which field."""


@dataclass(frozen=True)
class Measurement:
    """One DMTF measurement block."""

    index: int
    value_type: int
    value: bytes


@dataclass(frozen=True)
class SpdmReport:
    """A parsed report. `signed_bytes` is what the GPU's signature covers."""

    request_nonce: bytes
    """The verifier's nonce: what binds the report to one challenge."""
    responder_nonce: bytes
    measurements: tuple[Measurement, ...]
    opaque: tuple[tuple[int, bytes], ...]
    """Opaque data fields in order: (type, data)."""
    signed_bytes: bytes
    signature: bytes
    """96 bytes: r (48) || s (48), big-endian."""

    def opaque_field(self, field_type: int) -> bytes | None:
        for t, data in self.opaque:
            if t == field_type:
                return data
        return None

    @property
    def driver_version(self) -> str:
        raw = self.opaque_field(OPAQUE_DRIVER_VERSION)
        return "" if raw is None else raw.split(b"\x00", 1)[0].decode("ascii", "replace")

    @property
    def vbios_version(self) -> str:
        """As NVIDIA formats it: the little-endian value's upper half, then a byte of the lower."""
        raw = self.opaque_field(OPAQUE_VBIOS_VERSION)
        return "" if not raw else self.format_vbios(raw)

    @staticmethod
    def format_vbios(raw: bytes) -> str:
        h = raw[::-1].hex()
        half = len(h) // 2
        temp = h[half:] + h[half - 2 : half]
        return ".".join(temp[i : i + 2] for i in range(0, len(temp), 2))


class _Cursor:
    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int, field: str) -> bytes:
        if self.pos + n > len(self.data):
            raise SpdmError(f"{self.what} truncated in {field}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u(self, n: int, field: str) -> int:
        return int.from_bytes(self.take(n, field), "little")

    def end(self) -> None:
        if self.pos != len(self.data):
            raise SpdmError(f"{self.what} has {len(self.data) - self.pos} trailing bytes")


def _parse_request(req: bytes) -> bytes:
    c = _Cursor(req, "request")
    if c.u(1, "version") != SPDM_VERSION_1_1:
        raise SpdmError("request is not SPDM 1.1")
    if c.u(1, "code") != GET_MEASUREMENTS:
        raise SpdmError("request is not GET_MEASUREMENTS")
    if not c.u(1, "param1") & SIGNATURE_REQUESTED:
        raise SpdmError("request did not ask for a signature")
    c.take(1, "param2")
    nonce = c.take(NONCE_LEN, "nonce")
    c.take(1, "slot")
    c.end()
    return nonce


def _parse_record(record: bytes, blocks: int) -> tuple[Measurement, ...]:
    c = _Cursor(record, "measurement record")
    out: list[Measurement] = []
    seen: set[int] = set()
    for _ in range(blocks):
        index = c.u(1, "block index")
        if index in seen:
            raise SpdmError(f"measurement block {index} appears twice")
        seen.add(index)
        if c.u(1, "measurement specification") != DMTF_SPEC:
            raise SpdmError(f"measurement block {index} is not a DMTF measurement")
        size = c.u(2, "measurement size")
        block = _Cursor(c.take(size, "measurement"), f"measurement block {index}")
        value_type = block.u(1, "value type")
        value = block.take(block.u(2, "value size"), "value")
        block.end()
        out.append(Measurement(index, value_type, value))
    c.end()
    return tuple(out)


def _parse_opaque(data: bytes) -> tuple[tuple[int, bytes], ...]:
    c = _Cursor(data, "opaque data")
    out: list[tuple[int, bytes]] = []
    while c.pos < len(data):
        t = c.u(2, "opaque type")
        out.append((t, c.take(c.u(2, "opaque size"), f"opaque field {t}")))
    return tuple(out)


def parse_report(report: bytes) -> SpdmReport:
    """Parse request + response; raises SpdmError naming the first malformed field."""
    if len(report) > MAX_REPORT_BYTES:
        raise SpdmError(f"report of {len(report)} bytes exceeds {MAX_REPORT_BYTES}")
    if len(report) < REQUEST_LEN + 8 + NONCE_LEN + 2 + SIGNATURE_LEN:
        raise SpdmError(f"report of {len(report)} bytes is too short")
    nonce = _parse_request(report[:REQUEST_LEN])
    c = _Cursor(report[REQUEST_LEN:], "response")
    if c.u(1, "version") != SPDM_VERSION_1_1:
        raise SpdmError("response is not SPDM 1.1")
    if c.u(1, "code") != MEASUREMENTS:
        raise SpdmError("response is not MEASUREMENTS")
    c.take(2, "params")
    blocks = c.u(1, "number of blocks")
    if blocks == 0:
        raise SpdmError("response has no measurement blocks")
    record = c.take(c.u(3, "record length"), "measurement record")
    measurements = _parse_record(record, blocks)
    responder_nonce = c.take(NONCE_LEN, "responder nonce")
    opaque = _parse_opaque(c.take(c.u(2, "opaque length"), "opaque data"))
    signed_end = REQUEST_LEN + c.pos
    signature = c.take(SIGNATURE_LEN, "signature")
    c.end()
    return SpdmReport(
        request_nonce=nonce,
        responder_nonce=responder_nonce,
        measurements=measurements,
        opaque=opaque,
        signed_bytes=report[:signed_end],
        signature=signature,
    )


def build_report(
    nonce: bytes,
    responder_nonce: bytes,
    measurements: tuple[Measurement, ...],
    opaque: tuple[tuple[int, bytes], ...],
) -> bytes:
    """The bytes a GPU signs (request + response without its signature): for the stand-in."""
    if len(nonce) != NONCE_LEN or len(responder_nonce) != NONCE_LEN:
        raise ValueError(f"nonces must be {NONCE_LEN} bytes")
    request = bytes([SPDM_VERSION_1_1, GET_MEASUREMENTS, SIGNATURE_REQUESTED, 0xFF]) + nonce
    request += b"\x00"
    record = b"".join(
        bytes([m.index, DMTF_SPEC])
        + (3 + len(m.value)).to_bytes(2, "little")
        + bytes([m.value_type])
        + len(m.value).to_bytes(2, "little")
        + m.value
        for m in measurements
    )
    opaque_bytes = b"".join(
        t.to_bytes(2, "little") + len(d).to_bytes(2, "little") + d for t, d in opaque
    )
    response = bytes([SPDM_VERSION_1_1, MEASUREMENTS, 0, 0, len(measurements)])
    response += len(record).to_bytes(3, "little") + record + responder_nonce
    response += len(opaque_bytes).to_bytes(2, "little") + opaque_bytes
    return request + response
