"""TUN offloads: the virtio-net header, and coalescing packets before they enter the kernel.

With `IFF_VNET_HDR` every packet read from or written to a TUN device is preceded by a
`struct virtio_net_hdr` (10 bytes). On writes it lets us hand the kernel one large packet that
stands for many (`gso_type` TCPV4 or UDP_L4, `gso_size` = the segment size), exactly what the
kernel's own GRO would have built: the receiving peer's kernel then runs its input path once
per run instead of once per packet, which is where most of a receiving peer's CPU went (the
write's system call runs the whole inner receive path, TCP included). The header says the
checksum is still to be completed (`NEEDS_CSUM`, the checksum field holds the pseudo-header
sum), which a locally delivered packet never pays for; a forwarded one gets it computed by the
kernel on its way out, segment by segment. wireguard-go does the same
(`tun/offload_linux.go`: `tcpGRO`, `udpGRO`).

TCP: only what Linux GRO itself would merge is merged (`tcp_gro_receive`): IPv4 without
options and not fragmented, the same addresses, ports, TOS, TTL, DF bit, ACK number, TCP
header length and options; consecutive sequence numbers; flags ACK (PSH allowed on the last
segment); every segment the size of the first except the last, which may be shorter.
UDP (`udp_gro_receive`, kernel 6.2+ for TUN): the same flow, TOS, TTL and DF bit, every
datagram the size of the first except the last, which may be shorter. Datagram boundaries
survive: the kernel cuts the run at `gso_size` again before any socket sees it.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from core import Buffer, Frame, FrameBuilder, RunPool
from tunnel.protocol.checksum import adjust, internet_sum, pseudo_header_sum

_native_train: Callable[..., bool] | None
try:
    from tunnel._aead import tcp_train as _native_train
except ImportError:  # the extension is optional (setup.py): `_train`'s numpy form then
    _native_train = None

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "COALESCE_RUN_SIZE",
    "GSO_NONE",
    "GSO_TCPV4",
    "GSO_UDP_L4",
    "VNET_F_NEEDS_CSUM",
    "VNET_HDR",
    "VNET_HDR_SIZE",
    "ZERO_VNET_HDR",
    "TunCoalescer",
    "check_device_headroom",
    "kernel_has_tun_udp_gso",
    "register_vnet_header",
]

# <linux/virtio_net.h>: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset (host order)
VNET_HDR: Final = struct.Struct("=BBHHHH")
VNET_HDR_SIZE: Final = VNET_HDR.size
VNET_F_NEEDS_CSUM: Final = 1
GSO_NONE: Final = 0
GSO_TCPV4: Final = 1
GSO_UDP_L4: Final = 5
ZERO_VNET_HDR: Final = bytes(VNET_HDR_SIZE)

# The IPv4 (no options: 20 bytes) + TCP fields the merge rules look at: tos, total length,
# frag (flags+offset), ttl, src+dst, ports, seq, ack, data offset, TCP flags.
_TCP4: Final = struct.Struct("!xBH2xHB3xQIIIBB")
# IPv4 + UDP: tos, total length, frag, ttl, src+dst, ports.
_UDP4: Final = struct.Struct("!xBH2xHB3xQI")
_U16: Final = struct.Struct("!H")
_IP4: Final = 20
_TCP_MIN: Final = 20
_UDP_HDR: Final = 8
_TCP: Final = socket.IPPROTO_TCP
_UDP: Final = socket.IPPROTO_UDP
_ACK: Final = 0x10
_PSH: Final = 0x08
_MAX_IP_PACKET: Final = 0xFFFF  # the IPv4 total-length field
_RUN_LIMIT: Final = VNET_HDR_SIZE + _MAX_IP_PACKET
COALESCE_RUN_SIZE: Final = _RUN_LIMIT
"""The bytes a `TunCoalescer` run needs: a virtio-net header and the largest IPv4 packet."""
_MAX_SEGMENTS: Final = 64  # UDP_MAX_SEGMENTS on older kernels; TCP has no such limit
_TCP_CSUM: Final = 16  # checksum offsets from the start of the transport header
_UDP_CSUM: Final = 6
_OPTS: Final = VNET_HDR_SIZE + _IP4 + _TCP_MIN  # where the run's first TCP options are

Writer = Callable[[memoryview], bool]


def register_vnet_header(builder: FrameBuilder) -> None:
    """The virtio-net header as device headroom: read from/written to the TUN just in front of
    the packet, never sent (the driver reads a packet at `headroom - VNET_HDR_SIZE`)."""
    builder.reserve("virtio-net header", device_headroom=VNET_HDR_SIZE)


def check_device_headroom(frame: Frame, read_offset: int) -> None:
    """A device that reads `read_offset` bytes in front of each packet (the TUN's virtio-net
    header) needs them registered with the frame (`offload.register_vnet_header`), so that the
    buffers are sized for them instead of fitting by luck."""
    if read_offset > frame.device_headroom:
        raise ValueError(
            f"the device puts a {read_offset}-byte virtio-net header in front of each packet, "
            f"but the frame registers {frame.device_headroom} bytes of device headroom "
            "(build it with register_vnet_header)"
        )


def kernel_has_tun_udp_gso() -> bool:
    """UDP_L4 in a TUN write's virtio-net header is understood from Linux 6.2 on."""
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (6, 2)


class TunCoalescer:
    """Merges consecutive TCP segments, or UDP datagrams, of one flow into one GSO packet.

    `write(buf)` takes one cleartext IP packet (with at least VNET_HDR_SIZE bytes of headroom,
    which every decrypted packet has) and either appends it to the run being built (a copy of
    its payload) or writes what was pending and then this packet; `flush()` writes the pending
    run. The caller flushes at the end of each batch, so nothing waits for a later event.
    Packets leave in the order they came.
    """

    __slots__ = (
        "_ack",
        "_addrs",
        "_array",
        "_cols",
        "_count",
        "_frag",
        "_mss",
        "_next_seq",
        "_orig_len",
        "_ports",
        "_pos",
        "_proto",
        "_thl",
        "_tos",
        "_ttl",
        "_view",
        "_write",
        "coalesced",
        "dropped",
        "packets",
        "run",
        "udp",
        "writes",
    )

    def __init__(
        self, write: Writer, *, udp: bool | None = None, run: Buffer | None = None
    ) -> None:
        """`write` hands one frame (virtio-net header + packet) to the device; False = dropped.

        `udp`: merge UDP datagrams too (default: when the kernel is new enough). A run the
        device refuses turns it off, as the kernel's TUN then does not understand UDP_L4.
        `run`: the buffer runs are built in, from a `RunPool` (at least COALESCE_RUN_SIZE);
        without it, a one-run pool of its own.
        """
        self._write = write
        self.udp = kernel_has_tun_udp_gso() if udp is None else udp
        self.run = run if run is not None else RunPool(_RUN_LIMIT, 1).acquire()
        self._view = self.run.tailroom_view()[:_RUN_LIMIT]
        if len(self._view) < _RUN_LIMIT:
            raise ValueError(f"a coalescing run needs {_RUN_LIMIT} bytes, got {len(self._view)}")
        self._array: npt.NDArray[np.uint8] | None = None  # the run as numpy (write_rows)
        self._cols: dict[int, npt.NDArray[np.intp]] = {}  # by header length (`_train`)
        self._count = 0  # packets in the pending run (0: none)
        self._pos = 0  # end of the pending run in _view
        self._proto = 0
        self._addrs = self._ports = self._next_seq = self._ack = 0
        self._tos = self._ttl = self._frag = self._thl = self._mss = self._orig_len = 0
        self.packets = 0  # packets taken
        self.writes = 0  # frames written
        self.coalesced = 0  # packets that went out as part of a merged frame
        self.dropped = 0  # packets in frames the device refused

    def write(self, buf: Buffer) -> None:
        data = buf.data
        size = len(data)
        self.packets += 1
        if size > _IP4 + _UDP_HDR and data[0] == 0x45:
            proto = data[9]
            if proto == _TCP and size > _IP4 + _TCP_MIN:
                if self._tcp(data, size):
                    return
            elif proto == _UDP and self.udp and self._udp(data, size):
                return
        if self._count:
            self.flush()
        # Not mergeable: out on its own, behind whatever was pending.
        buf.prepend(ZERO_VNET_HDR)
        self.writes += 1
        if not self._write(buf.data):
            self.dropped += 1

    def write_row(self, data: memoryview, frame: memoryview) -> None:
        """`write` for a packet that is not in a Buffer (a row of a GRO run opened in batch:
        tunnel/io/gro_rows.py): `data` the packet, `frame` the same bytes with VNET_HDR_SIZE
        bytes of room in front (written over when it goes out on its own)."""
        size = len(data)
        self.packets += 1
        if size > _IP4 + _UDP_HDR and data[0] == 0x45:
            proto = data[9]
            if proto == _TCP and size > _IP4 + _TCP_MIN:
                if self._tcp(data, size):
                    return
            elif proto == _UDP and self.udp and self._udp(data, size):
                return
        if self._count:
            self.flush()
        frame[:VNET_HDR_SIZE] = ZERO_VNET_HDR
        self.writes += 1
        if not self._write(frame):
            self.dropped += 1

    def write_rows(self, rows: npt.NDArray[np.uint8], count: int, at: int, size: int) -> bool:
        """`write` for `count` TCP segments of `size` bytes each, in rows of a 2D array (the
        packet at column `at`: a GRO run opened in batch), all at once: the merge rules checked
        for all rows together, the payloads appended in one copy. False, with nothing done,
        when they are not one mergeable train (the caller then writes them one by one)."""
        r = rows[:count, at : at + size]
        head = r[0]
        if size <= _IP4 + _TCP_MIN or head[0] != 0x45 or head[9] != _TCP:
            return False
        thl = (int(head[32]) >> 4) * 4
        hlen = _IP4 + thl
        payload = size - hlen
        if thl < _TCP_MIN or payload <= 0:
            return False
        if _native_train is not None and rows.flags.c_contiguous:
            # The same rules in one native pass (tunnel/_tso.c): ~15 array operations of a
            # few microseconds each were ~0.5 us a segment.
            if not _native_train(rows, rows.strides[0], count, at, size, hlen):
                return False
        elif not self._train(r, count, size, hlen):
            return False
        seq0 = int.from_bytes(head[24:28].tobytes(), "big")
        # The first row goes the per-packet way (it may continue the pending run or start
        # one); the others follow it if the run it left pending is theirs.
        first = memoryview(head.data)  # (a view of the row: no copy)
        self.packets += 1
        if not self._tcp(first, size):
            if self._count:
                self.flush()
            self.packets -= 1
            return False  # (a PSH on a lone first row: cannot happen with count >= 2)
        # The rest in bulk, as many as the pending run holds, then a new run from the next row
        # (the per-packet way, which flushes the full one) and so on: a GRO run of ~44
        # segments rarely fits whole behind what a run already holds.
        done = 1
        while done < count:
            room = (_RUN_LIMIT - self._pos) // payload
            if (
                not self._count
                or self._proto != _TCP
                or self._mss != payload
                or self._next_seq != (seq0 + done * payload) & 0xFFFFFFFF
                or room <= 0
            ):
                row = memoryview(rows[done].data)
                self.write_row(row[at : at + size], row[at - VNET_HDR_SIZE : at + size])
                done += 1
                continue
            take = min(room, count - done)
            pos = self._pos
            end = pos + take * payload
            self._run_np()[pos:end].reshape(take, payload)[:] = r[done : done + take, hlen:]
            self._pos = end
            self._count += take
            self.packets += take
            done += take
            self._next_seq = (seq0 + done * payload) & 0xFFFFFFFF
        if r[count - 1, 33] & _PSH and self._count:
            self._view[VNET_HDR_SIZE + 33] |= _PSH  # the run keeps the last PSH
            self.flush()
        return True

    def _train(self, r: npt.NDArray[np.uint8], count: int, size: int, hlen: int) -> bool:
        """`write_rows`' merge rules in numpy (where the extension is not built): every row's
        total length `size`, no fragment, ACK (PSH only on the last), sequence numbers one
        payload apart, and the fields that must equal the first row's."""
        import numpy as np

        head = r[0]
        payload = size - hlen
        cols = self._cols.get(hlen)
        if cols is None:
            # What must equal the first row's: version/ihl and tos, DF/fragment, ttl and
            # protocol, addresses and ports, ack number, data offset, the TCP options.
            cols = np.r_[0:2, 6:10, 12:24, 28:33, 40:hlen]
            self._cols[hlen] = cols
        be = r.view(">u2")
        flags = r[:, 33]
        seq = be[:, 12].astype(np.uint32) << 16 | be[:, 13]
        steps = np.arange(count, dtype=np.uint32) * payload + seq[0]
        return bool(
            (be[:, 1] == size).all()
            and not (be[:, 3] & 0x3FFF).any()
            and ((flags | _PSH) == (_ACK | _PSH)).all()
            and not (flags[:-1] & _PSH).any()
            and (seq == steps).all()
            and (r[:, cols] == head[cols]).all()
        )

    def _run_np(self) -> npt.NDArray[np.uint8]:
        array = self._array
        if array is None:
            import numpy as np

            array = self._array = np.frombuffer(self._view, np.uint8)
        return array

    def write_alone(self, buf: Buffer) -> None:
        """One packet out on its own frame, now: the lone packet of a wakeup (nothing to merge
        it with), which `write` would copy into a run only to write that run at the flush."""
        if self._count:
            self.flush()
        self.packets += 1
        buf.prepend(ZERO_VNET_HDR)
        self.writes += 1
        if not self._write(buf.data):
            self.dropped += 1

    def _tcp(self, data: memoryview, size: int) -> bool:
        """Append a TCP segment to the run, or start a run with it; False: write it alone."""
        tos, total, frag, ttl, addrs, ports, seq, ack, doff, flags = _TCP4.unpack_from(data)
        thl = (doff >> 4) * 4
        hlen = _IP4 + thl
        payload = size - hlen
        if (
            total != size
            or frag & 0x3FFF  # a fragment, or more to come
            or flags & ~_PSH != _ACK
            or payload <= 0
            or thl < _TCP_MIN
        ):
            return False
        if self._count:
            if (
                self._proto == _TCP
                and seq == self._next_seq
                and addrs == self._addrs
                and ports == self._ports
                and ack == self._ack
                and thl == self._thl
                and tos == self._tos
                and ttl == self._ttl
                and frag == self._frag
                and payload <= self._mss
                and self._pos + payload <= _RUN_LIMIT
                # Options (timestamps): against the run's first header, kept in the run.
                and (thl == _TCP_MIN or data[40:hlen] == self._view[_OPTS:_OPTS - 40 + hlen])
            ):
                pos = self._pos
                end = pos + payload
                self._view[pos:end] = data[hlen:size]
                self._pos = end
                self._count += 1
                self._next_seq = (seq + payload) & 0xFFFFFFFF
                if flags & _PSH or payload < self._mss:
                    if flags & _PSH:
                        self._view[VNET_HDR_SIZE + 33] |= _PSH  # the run keeps the last PSH
                    self.flush()  # a short or pushed segment is the last of a run
                return True
            self.flush()
        if flags & _PSH:
            return False  # nothing may follow a PSH segment: no run to start
        self._start(data, size, _TCP, addrs, ports, tos, ttl, frag, payload)
        self._next_seq = (seq + payload) & 0xFFFFFFFF
        self._ack = ack
        self._thl = thl
        return True

    def _udp(self, data: memoryview, size: int) -> bool:
        """Append a UDP datagram to the run, or start a run with it; False: write it alone."""
        tos, total, frag, ttl, addrs, ports = _UDP4.unpack_from(data)
        payload = size - _IP4 - _UDP_HDR
        if total != size or frag & 0x3FFF or payload <= 0:
            return False
        if self._count:
            if (
                self._proto == _UDP
                and addrs == self._addrs
                and ports == self._ports
                and tos == self._tos
                and ttl == self._ttl
                and frag == self._frag
                and payload <= self._mss
                and self._pos + payload <= _RUN_LIMIT
            ):
                pos = self._pos
                end = pos + payload
                self._view[pos:end] = data[_IP4 + _UDP_HDR : size]
                self._pos = end
                self._count += 1
                if payload < self._mss or self._count >= _MAX_SEGMENTS:
                    self.flush()
                return True
            self.flush()
        self._start(data, size, _UDP, addrs, ports, tos, ttl, frag, payload)
        return True

    def _start(
        self, data: memoryview, size: int, proto: int, addrs: int, ports: int, tos: int,
        ttl: int, frag: int, payload: int,
    ) -> None:
        end = VNET_HDR_SIZE + size
        self._view[VNET_HDR_SIZE:end] = data
        self._pos = end
        self._count = 1
        self._proto = proto
        self._addrs, self._ports = addrs, ports
        self._tos, self._ttl, self._frag = tos, ttl, frag
        self._mss = payload
        self._orig_len = size

    def flush(self) -> None:
        """Write the pending run: as it came if it is one packet, else as one GSO frame."""
        count = self._count
        if not count:
            return
        self._count = 0
        view = self._view
        frame = view[: self._pos]
        if count == 1:
            view[:VNET_HDR_SIZE] = ZERO_VNET_HDR
            self.writes += 1
            if not self._write(frame):
                self.dropped += 1
            return
        ip = VNET_HDR_SIZE
        total = self._pos - ip
        # IPv4 total length, and the header checksum updated for it (RFC 1624, eqn. 3).
        _U16.pack_into(view, ip + 2, total)
        (check,) = _U16.unpack_from(view, ip + 10)
        _U16.pack_into(view, ip + 10, adjust(check, self._orig_len, total))
        # NEEDS_CSUM: the checksum field holds the pseudo-header sum, not complemented.
        proto = self._proto
        pseudo = pseudo_header_sum(self._addrs, proto, total - _IP4)
        transport = ip + _IP4
        if proto == _TCP:
            _U16.pack_into(view, transport + _TCP_CSUM, pseudo)
            VNET_HDR.pack_into(
                view, 0, VNET_F_NEEDS_CSUM, GSO_TCPV4, _IP4 + self._thl, self._mss, _IP4,
                _TCP_CSUM,
            )
        else:
            _U16.pack_into(view, transport + 4, total - _IP4)  # the UDP length of the run
            _U16.pack_into(view, transport + _UDP_CSUM, pseudo)
            VNET_HDR.pack_into(
                view, 0, VNET_F_NEEDS_CSUM, GSO_UDP_L4, _IP4 + _UDP_HDR, self._mss, _IP4,
                _UDP_CSUM,
            )
        self.writes += 1
        if self._write(frame):
            self.coalesced += count
            return
        self.dropped += count
        if proto == _UDP:
            self.udp = False  # this kernel's TUN does not take UDP_L4: plain packets from now


def split_gso(frame: memoryview) -> list[bytearray]:
    """What the kernel does with a frame written to a TUN with `IFF_VNET_HDR`: the packets it
    stands for, each complete (IPv4 total length, id and header checksum; TCP sequence number
    and flags, or UDP length; the transport checksum computed where `NEEDS_CSUM` asked for it).
    The reference form (plain Python, a packet at a time) for in-memory devices and tests.
    """
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(frame)
    packet = frame[VNET_HDR_SIZE:]
    if gso_type == GSO_NONE:
        out = bytearray(packet)
        if flags & VNET_F_NEEDS_CSUM:
            at = csum_start + csum_offset
            out[at : at + 2] = (~internet_sum(out[csum_start:]) & 0xFFFF).to_bytes(2, "big")
        return [out]
    ihl = (packet[0] & 0x0F) * 4
    if packet[0] >> 4 != 4 or gso_type not in (GSO_TCPV4, GSO_UDP_L4) or not gso_size:
        raise ValueError(f"cannot split gso_type {gso_type} (IPv4 TCP/UDP only)")
    tcp = gso_type == GSO_TCPV4
    hlen = ihl + ((packet[ihl + 12] >> 4) * 4 if tcp else _UDP_HDR)
    (ip_id,) = _U16.unpack_from(packet, 4)
    seq = int.from_bytes(packet[ihl + 4 : ihl + 8], "big")
    body = packet[hlen:]
    segments: list[bytearray] = []
    for index, start in enumerate(range(0, len(body), gso_size)):
        chunk = body[start : start + gso_size]
        seg = bytearray(packet[:hlen])
        seg += chunk
        size = len(seg)
        last = start + gso_size >= len(body)
        _U16.pack_into(seg, 2, size)
        _U16.pack_into(seg, 4, (ip_id + index) & 0xFFFF)
        _U16.pack_into(seg, 10, 0)
        _U16.pack_into(seg, 10, ~internet_sum(seg[:ihl]) & 0xFFFF)
        pseudo = int.from_bytes(seg[12:20], "big")
        if tcp:
            seg[ihl + 4 : ihl + 8] = ((seq + start) & 0xFFFFFFFF).to_bytes(4, "big")
            if not last:
                seg[ihl + 13] &= ~(0x01 | _PSH) & 0xFF  # FIN and PSH only on the last
            if index:
                seg[ihl + 13] &= ~0x80 & 0xFF  # CWR only on the first
            at = ihl + _TCP_CSUM
        else:
            _U16.pack_into(seg, ihl + 4, size - ihl)
            at = ihl + _UDP_CSUM
        seg[at : at + 2] = b"\0\0"
        total = pseudo_header_sum(pseudo, _TCP if tcp else _UDP, size - ihl)
        total += internet_sum(seg[ihl:])
        check = ~(total % 0xFFFF or 0xFFFF) & 0xFFFF
        seg[at : at + 2] = (check or (0 if tcp else 0xFFFF)).to_bytes(2, "big")
        segments.append(seg)
    return segments
