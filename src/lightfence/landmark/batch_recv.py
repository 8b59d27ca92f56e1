"""Batched receives for the landmark: Linux `recvmmsg` through ctypes, one system call a batch.

Python's socket module takes one system call per datagram and builds a tuple, a data object,
a list of ancillary tuples and an address string for each. At a landmark's rate (two receives
per round: the answer, and the challenge's transmit stamp from the error queue) that is a large
share of its CPU. `recvmmsg` fills up to `slots` datagrams per call into buffers allocated once;
this module reads them back with precompiled structs and caches the address strings.

Only receives are batched. Sends stay one `sendto` per datagram, so each challenge keeps its own
pre- and post-send clock reads, and a kernel transmit stamp can be checked against the window of
exactly one datagram (protocol.round_timing).

`BatchReceiver.open` returns None where `recvmmsg` is not available (not Linux, or no such
symbol in the C library); the server then uses the plain per-datagram path.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import sys
from collections.abc import Iterator

from lightfence.landmark.timestamping import (
    IP_RECVERR,
    IPV6_RECVERR,
    SCM_TIMESPEC,
    SO_EE_ORIGIN_TIMESTAMPING,
    SO_TIMESTAMPING,
    SOCK_EXTENDED_ERR,
)
from lightfence.protocol.landmark_types import Addr

SLOTS = 64
"""Datagrams per system call at most."""
DATA_CONTROL_BYTES = 128
"""Ancillary space per datagram: one struct scm_timestamping (64 bytes with its header)."""
ERRQUEUE_CONTROL_BYTES = 256
"""Ancillary space per transmit stamp: scm_timestamping plus sock_extended_err and address."""
NAME_BYTES = 128
"""sizeof(struct sockaddr_storage)."""
MAX_CACHED_ADDRESSES = 65536
_MSG_DONTWAIT = int(socket.MSG_DONTWAIT)
_ERRQUEUE_FLAGS = int(socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
_MSG_CTRUNC = int(socket.MSG_CTRUNC)
_SOL_SOCKET = socket.SOL_SOCKET
_RETRY_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR})


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_MMSG_BYTES = ctypes.sizeof(_MMsgHdr)
_MMSG = struct.Struct("PIPNPNi4xI4x")
"""struct mmsghdr, read back whole: name, namelen, iov, iovlen, control, controllen, flags, len."""
_LAYOUT_OK = _MMSG.size == _MMSG_BYTES and _MMsgHdr.msg_len.offset == 56
_U32 = struct.Struct("=I")
_CMSG_HDR = struct.Struct("Nii")  # native struct cmsghdr: len, level, type
_CMSG_ALIGN = ctypes.sizeof(ctypes.c_size_t)
_STAMP_CMSG = struct.Struct("Niiqq")
"""The ancillary data of a received datagram as the kernel lays it out with SO_TIMESTAMPING on:
one cmsghdr and the first timespec of its scm_timestamping (the software stamp)."""
_STAMP_CMSG_LEN = _CMSG_HDR.size + 3 * SCM_TIMESPEC.size
_TX_CMSGS = struct.Struct("Niiqq32xNiiIBBBBII")
"""A transmit stamp's ancillary data as laid out: the scm_timestamping cmsg, then the
IP(V6)_RECVERR cmsg's header and struct sock_extended_err."""
_PORT = struct.Struct("!H")


def _recvmmsg() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.recvmmsg
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


_RECVMMSG = _recvmmsg()


class _Slots:
    """`count` receive slots: the mmsghdr array and the payload, ancillary and name buffers it
    points into, all owned here so no pointer outlives its buffer."""

    def __init__(self, count: int, payload_bytes: int, control_bytes: int, name_bytes: int):
        self.count = count
        self.payload_bytes = payload_bytes
        self.control_bytes = control_bytes
        self.name_bytes = name_bytes
        self.headers = (_MMsgHdr * count)()
        self.iovecs = (_IoVec * count)()
        self.payload = ctypes.create_string_buffer(max(count * payload_bytes, 1))
        self.control = ctypes.create_string_buffer(count * control_bytes)
        self.names = ctypes.create_string_buffer(max(count * name_bytes, 1))
        payload_at = ctypes.addressof(self.payload)
        control_at = ctypes.addressof(self.control)
        names_at = ctypes.addressof(self.names)
        for i in range(count):
            self.iovecs[i].iov_base = payload_at + i * payload_bytes
            self.iovecs[i].iov_len = payload_bytes
            hdr = self.headers[i].msg_hdr
            hdr.msg_iov = ctypes.addressof(self.iovecs[i])
            hdr.msg_iovlen = 1
            hdr.msg_control = control_at + i * control_bytes
            hdr.msg_controllen = control_bytes
            if name_bytes:
                hdr.msg_name = names_at + i * name_bytes
                hdr.msg_namelen = name_bytes
        self.address = ctypes.addressof(self.headers)
        self.header_view = memoryview(self.headers).cast("B")
        self.pristine = bytes(self.header_view)
        """The headers as set up: each call's value-result lengths are restored from this."""
        self.payload_view = memoryview(self.payload)
        self.control_view = memoryview(self.control)
        self.names_view = memoryview(self.names)
        self.dirty = 0
        """Slots the last call filled."""

    def receive(self, fd: int, flags: int) -> int:
        """Fill up to `count` slots; return how many. Raises OSError except on 'nothing now'."""
        if self.dirty:
            end = self.dirty * _MMSG_BYTES
            self.header_view[:end] = self.pristine[:end]
        assert _RECVMMSG is not None
        n: int = _RECVMMSG(fd, self.address, self.count, flags, None)
        if n < 0:
            self.dirty = 0
            err = ctypes.get_errno()
            if err in _RETRY_ERRNOS:
                return 0
            raise OSError(err, os.strerror(err))
        self.dirty = n
        return n

    def filled(self, n: int) -> Iterator[tuple[int, int, int, int, int, int, int, int]]:
        """The first n headers as the call left them (see _MMSG)."""
        return _MMSG.iter_unpack(self.header_view[: n * _MMSG_BYTES])

    def walk_control(self, i: int, length: int) -> tuple[int, int | None]:
        """Slot i's software timestamp (CLOCK_REALTIME ns, 0 if none) and, for an error-queue
        message, the send id (OPT_ID) of a timestamping notification (else None), from any
        layout of its `length` bytes of ancillary data (the slow path)."""
        view, base = self.control_view, i * self.control_bytes
        end = base + min(length, self.control_bytes)
        off = base
        stamp, send_id = 0, None
        while off + _CMSG_HDR.size <= end:
            cmsg_len, level, kind = _CMSG_HDR.unpack_from(view, off)
            if cmsg_len < _CMSG_HDR.size or off + cmsg_len > end:
                break
            data_at = off + _CMSG_HDR.size
            data_len = cmsg_len - _CMSG_HDR.size
            if level == _SOL_SOCKET and kind == SO_TIMESTAMPING and data_len >= SCM_TIMESPEC.size:
                sec, nsec = SCM_TIMESPEC.unpack_from(view, data_at)
                stamp = sec * 1_000_000_000 + nsec
            elif kind in (IP_RECVERR, IPV6_RECVERR) and data_len >= SOCK_EXTENDED_ERR.size:
                err = SOCK_EXTENDED_ERR.unpack_from(view, data_at)
                if err[1] == SO_EE_ORIGIN_TIMESTAMPING:
                    send_id = err[6]
            off += (cmsg_len + _CMSG_ALIGN - 1) & ~(_CMSG_ALIGN - 1)
        return stamp, send_id


class BatchReceiver:
    """Batched receives on one UDP socket with SO_TIMESTAMPING on."""

    def __init__(self, sock: socket.socket, max_payload_bytes: int, slots: int = SLOTS) -> None:
        self._sock = sock
        self._family = sock.family
        self._data = _Slots(slots, max_payload_bytes, DATA_CONTROL_BYTES, NAME_BYTES)
        self._errors = _Slots(slots, 0, ERRQUEUE_CONTROL_BYTES, 0)
        self._addresses: dict[bytes, Addr] = {}
        self.slots = slots

    @staticmethod
    def available() -> bool:
        """Whether recvmmsg can be used here (Linux, found in the C library, known layout)."""
        return _LAYOUT_OK and _RECVMMSG is not None

    @classmethod
    def open(cls, sock: socket.socket, max_payload_bytes: int) -> BatchReceiver | None:
        """A receiver for `sock`, or None where recvmmsg is unavailable or the family is not
        IPv4 or IPv6."""
        if not cls.available():
            return None
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        return cls(sock, max_payload_bytes)

    def datagrams(self) -> list[tuple[bytes, Addr, int]]:
        """Datagrams waiting now, up to `slots`: (payload, source, kernel RX stamp in
        CLOCK_REALTIME ns or 0 when absent). A payload longer than `max_payload_bytes` comes
        back cut to that length (as with recvmsg). Raises OSError on a socket error."""
        slots = self._data
        n = slots.receive(self._sock.fileno(), _MSG_DONTWAIT)
        if not n:
            return []
        out: list[tuple[bytes, Addr, int]] = []
        payload, names, control = slots.payload_view, slots.names_view, slots.control_view
        size, name_size, control_size = slots.payload_bytes, slots.name_bytes, slots.control_bytes
        addresses = self._addresses
        for i, (_, namelen, _, _, _, ctl_len, flags, length) in enumerate(slots.filled(n)):
            at = i * name_size
            name = bytes(names[at : at + min(namelen, name_size)])
            addr = addresses.get(name) or self._address(name)
            stamp = 0
            if flags & _MSG_CTRUNC:
                pass  # ancillary data cut short: no stamp
            elif ctl_len == _STAMP_CMSG_LEN:
                cmsg_len, level, kind, sec, nsec = _STAMP_CMSG.unpack_from(
                    control, i * control_size
                )
                if cmsg_len == _STAMP_CMSG_LEN and level == _SOL_SOCKET and kind == SO_TIMESTAMPING:
                    stamp = sec * 1_000_000_000 + nsec
            elif ctl_len:
                stamp, _ = slots.walk_control(i, ctl_len)
            out.append((bytes(payload[i * size : i * size + length]), addr, stamp))
        return out

    def tx_stamps(self) -> list[tuple[int, int]]:
        """Every transmit stamp waiting on the error queue: (send id, CLOCK_REALTIME ns). Other
        error-queue messages (a queued ICMP error, say) are consumed and skipped."""
        slots = self._errors
        out: list[tuple[int, int]] = []
        fd, control, control_size = self._sock.fileno(), slots.control_view, slots.control_bytes
        while True:
            try:
                n = slots.receive(fd, _ERRQUEUE_FLAGS)
            except OSError:
                return out
            for i, (_, _, _, _, _, ctl_len, flags, _) in enumerate(slots.filled(n)):
                if flags & _MSG_CTRUNC:
                    continue
                stamp: int = 0
                send_id: int | None = None
                if ctl_len >= _TX_CMSGS.size:
                    f = _TX_CMSGS.unpack_from(control, i * control_size)
                    if (
                        f[0] == _STAMP_CMSG_LEN
                        and f[1] == _SOL_SOCKET
                        and f[2] == SO_TIMESTAMPING
                        and f[7] in (IP_RECVERR, IPV6_RECVERR)
                        and f[5] >= _CMSG_HDR.size + SOCK_EXTENDED_ERR.size
                        and f[9] == SO_EE_ORIGIN_TIMESTAMPING
                    ):
                        stamp, send_id = f[3] * 1_000_000_000 + f[4], f[14]
                if send_id is None:
                    stamp, send_id = slots.walk_control(i, ctl_len)
                if stamp and send_id is not None:
                    out.append((send_id, stamp))
            if n < slots.count:
                return out

    def _address(self, name: bytes) -> Addr:
        # The same (host, port) pair as the socket module's recvmsg gives (IPv6: flow info and
        # scope dropped, as the server does), so both paths name a source alike.
        if self._family == socket.AF_INET6:
            host = socket.inet_ntop(socket.AF_INET6, name[8:24])
            scope = _U32.unpack_from(name, 24)[0] if len(name) >= 28 else 0
            if scope:  # link-local: the reply needs the interface, as recvmsg's host gives it
                try:
                    host = f"{host}%{socket.if_indextoname(scope)}"
                except OSError:
                    host = f"{host}%{scope}"
            addr = (host, _PORT.unpack_from(name, 2)[0])
        else:
            addr = (socket.inet_ntop(socket.AF_INET, name[4:8]), _PORT.unpack_from(name, 2)[0])
        if len(self._addresses) >= MAX_CACHED_ADDRESSES:
            self._addresses.clear()
        self._addresses[name] = addr
        return addr
