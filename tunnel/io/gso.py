"""UDP segmentation offload (GSO) and receive offload (GRO): many datagrams per syscall.

Linux (4.18+ for GSO, 5.0+ for GRO) lets one `sendmsg` carry a run of datagrams laid end to
end in one buffer, cut by the kernel at `UDP_SEGMENT` bytes (all equal, the last may be
shorter), and lets one `recvmsg` return a run of datagrams from one sender coalesced the same
way, the segment size in a `UDP_GRO` control message. Between two namespaces over a veth the
run is never cut at all on its way: it leaves as one socket buffer and arrives as one. This is
what wireguard-go does in `conn/bind_std.go` and `conn/gso_linux.go`.

The wire is unchanged: a stock peer without GRO receives the same separate datagrams.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Final

from core import Buffer, RunPool

__all__ = [
    "GRO_BUFFER_SIZE",
    "GsoSender",
    "enable_gro",
    "gro_segment_size",
    "gso_supported",
]

Address = tuple[str, int]

SOL_UDP: Final = 17
UDP_SEGMENT: Final = 103  # <linux/udp.h>
UDP_GRO: Final = 104

# The kernel refuses more segments per send (UDP_MAX_SEGMENTS: 64 before 6.x, 128 after).
GSO_MAX_SEGMENTS: Final = 64
# One UDP payload at most (IPv4: 65535 - 20 - 8), and a run is one payload to the kernel.
GSO_MAX_BYTES: Final = 65507
# A GRO run is one IP packet at most; a buffer this large never truncates one.
GRO_BUFFER_SIZE: Final = 65536
# Room for the UDP_GRO control message (an int) in recvmsg.
GRO_CMSG_SPACE: Final = socket.CMSG_SPACE(4)

_INT: Final = struct.Struct("=i")
_U16: Final = struct.Struct("=H")


def gso_supported(sock: socket.socket) -> bool:
    """True if the kernel knows UDP_SEGMENT (a getsockopt of it succeeds)."""
    try:
        sock.getsockopt(SOL_UDP, UDP_SEGMENT)
    except OSError:
        return False
    return True


def enable_gro(sock: socket.socket) -> bool:
    """Ask for coalesced reads (UDP_GRO); False on kernels without it."""
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


def gro_segment_size(ancdata: list[tuple[int, int, bytes]], size: int) -> int:
    """The segment size of a GRO read: from its control message, else the whole read."""
    for level, kind, data in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(data) >= _INT.size:
            segment: int = _INT.unpack_from(data)[0]
            if segment > 0:
                return segment
    return size


class GsoSender:
    """Queues datagrams into one contiguous run per destination; `flush` sends it in one call.

    `add` copies the datagram into the run (the caller's buffer is free at once). A run ends
    when the address changes, a datagram is larger than the run's segment size, a shorter one
    was added (it can only be the last), or the segment or byte limit is reached.

    Without kernel support (or once the kernel refused a run with EIO: an egress device
    without checksum offload) every datagram goes out with its own `sendto`, immediately.
    """

    __slots__ = (
        "_addr",
        "_cmsgs",
        "_count",
        "_pos",
        "_segment",
        "_sendmsg",
        "_sendto",
        "_view",
        "dropped",
        "enabled",
        "run",
        "runs",
        "sent",
    )

    def __init__(
        self, sock: socket.socket, *, enabled: bool | None = None, run: Buffer | None = None
    ) -> None:
        """`run`: the buffer the run is built in, from a `RunPool` (at least GSO_MAX_BYTES;
        the driver passes one of its pool's); without it, a one-run pool of its own."""
        self._sendmsg = sock.sendmsg
        self._sendto = sock.sendto
        self.enabled = gso_supported(sock) if enabled is None else enabled
        self.run = run if run is not None else RunPool(GSO_MAX_BYTES, 1).acquire()
        self._view = self.run.tailroom_view()[:GSO_MAX_BYTES]
        if len(self._view) < GSO_MAX_BYTES:
            raise ValueError(f"a GSO run needs {GSO_MAX_BYTES} bytes, got {len(self._view)}")
        self._pos = 0
        self._count = 0
        self._segment = 0
        self._addr: Address | None = None
        # The control message per segment size, built once: runs repeat a handful of sizes.
        self._cmsgs: dict[int, list[tuple[int, int, bytes]]] = {}
        self.sent = 0  # datagrams handed to the kernel
        self.dropped = 0  # datagrams the kernel refused (full socket buffer, unreachable, ...)
        self.runs = 0  # sendmsg/sendto calls

    @property
    def pending(self) -> int:
        return self._count

    def add(self, data: memoryview, addr: Address) -> None:
        """Queue one datagram for `addr` (copied); may send the run queued before it."""
        if not self.enabled:
            self._send_one(data, addr)
            return
        size = len(data)
        count = self._count
        if count and (
            size > self._segment
            or (addr is not self._addr and addr != self._addr)
            or self._pos + size > GSO_MAX_BYTES
        ):
            self.flush()
            count = 0
        pos = self._pos
        self._view[pos : pos + size] = data
        self._pos = pos + size
        self._count = count + 1
        if not count:
            self._segment = size
            self._addr = addr
        elif size < self._segment or count + 1 >= GSO_MAX_SEGMENTS:
            self.flush()  # a short datagram ends a run; so does the segment limit

    def send(self, data: memoryview, addr: Address) -> None:
        """One datagram now, with its own `sendto`: the lone packet of a wakeup, which `add`
        would copy into a run only for `flush` to send that run alone. Sends what is queued
        first, so the order holds."""
        if self._count:
            self.flush()
        self.runs += 1  # _send_one inline: a frame less on the interactive path
        try:
            self._sendto(data, addr)
        except OSError:
            self.dropped += 1
            return
        self.sent += 1

    def flush(self) -> None:
        """Send the queued run (one syscall); a refused run counts all its datagrams dropped."""
        count = self._count
        if not count:
            return
        addr = self._addr
        assert addr is not None
        run = self._view[: self._pos]
        self._count = 0
        self._pos = 0
        self.runs += 1
        try:
            if count == 1:
                self._sendto(run, addr)
            else:
                cmsg = self._cmsgs.get(self._segment)
                if cmsg is None:
                    if len(self._cmsgs) > 64:
                        self._cmsgs.clear()
                    cmsg = [(SOL_UDP, UDP_SEGMENT, _U16.pack(self._segment))]
                    self._cmsgs[self._segment] = cmsg
                self._sendmsg((run,), cmsg, 0, addr)
        except OSError as exc:
            if count > 1 and exc.errno == errno.EIO:
                # The egress device cannot checksum for us, so the kernel cannot segment on
                # this path (udp_send_skb): from now on one datagram per call.
                self.enabled = False
                self._resend_separately(run, addr)
                return
            self.dropped += count  # EAGAIN and friends: UDP is lossy, a router would drop
            return
        self.sent += count

    def send_rows(self, datagrams: list[memoryview], segment: int, addr: Address) -> None:
        """Send datagrams that lie apart (the rows of a sealed TSO super-packet: tunnel/io/
        tso_rows.py) as runs of `segment`-byte datagrams (the last may be shorter), the list
        itself the iov: the kernel gathers it, no copy here. What was queued goes first."""
        if self._count:
            self.flush()
        if not self.enabled:
            for datagram in datagrams:
                self._send_one(datagram, addr)
            return
        count = len(datagrams)
        per = min(GSO_MAX_SEGMENTS, GSO_MAX_BYTES // segment)
        runs = -(-count // per)
        per = -(-count // runs)  # even runs: 48 rows go as 24 + 24, not 46 + 2
        cmsg = self._cmsgs.get(segment)
        if cmsg is None:
            if len(self._cmsgs) > 64:
                self._cmsgs.clear()
            cmsg = [(SOL_UDP, UDP_SEGMENT, _U16.pack(segment))]
            self._cmsgs[segment] = cmsg
        sendmsg = self._sendmsg
        for start in range(0, count, per):
            part = datagrams[start : start + per] if runs > 1 else datagrams
            self.runs += 1
            try:
                if len(part) == 1:
                    self._sendto(part[0], addr)
                else:
                    sendmsg(part, cmsg, 0, addr)
            except OSError as exc:
                if len(part) > 1 and exc.errno == errno.EIO:
                    self.enabled = False  # as in flush: one datagram per call from now on
                    for datagram in datagrams[start:]:
                        self._send_one(datagram, addr)
                    return
                self.dropped += len(part)
                continue
            self.sent += len(part)

    def _resend_separately(self, run: memoryview, addr: Address) -> None:
        segment = self._segment
        for start in range(0, len(run), segment):
            self._send_one(run[start : start + segment], addr)

    def _send_one(self, data: memoryview, addr: Address) -> None:
        self.runs += 1
        try:
            self._sendto(data, addr)
        except OSError:
            self.dropped += 1
            return
        self.sent += 1
