"""TUN offloads: the virtio-net header, and coalescing TCP segments before they enter the kernel.

With `IFF_VNET_HDR` every packet read from or written to a TUN device is preceded by a
`struct virtio_net_hdr` (10 bytes). On writes it lets us hand the kernel one large TCP packet
that stands for many segments (`gso_type` TCPV4, `gso_size` = the segment size), exactly what
the kernel's own GRO would have built from them: the receiving TCP stack then runs once per
run of segments instead of once per segment, which is where most of a receiving peer's CPU
went (the write's system call runs the whole inner TCP receive path). The header says the
checksum is still to be completed (`NEEDS_CSUM`, the TCP field holds the pseudo-header sum),
which a locally delivered packet never has to pay for; a forwarded one gets it computed by the
kernel on its way out. wireguard-go does the same (`tun/offload_linux.go`, `tcpGRO`).

Only what Linux GRO itself would merge is merged (`tcp_gro_receive`): IPv4 without options
and not fragmented, the same addresses, ports, TOS, TTL, DF bit, ACK number, TCP header length
and options; consecutive sequence numbers; flags ACK (PSH allowed on the last segment); every
segment the size of the first except the last, which may be shorter.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from core import Buffer

__all__ = [
    "GSO_NONE",
    "GSO_TCPV4",
    "VNET_F_NEEDS_CSUM",
    "VNET_HDR",
    "VNET_HDR_SIZE",
    "TcpCoalescer",
]

# <linux/virtio_net.h>: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset (host order)
VNET_HDR: Final = struct.Struct("=BBHHHH")
VNET_HDR_SIZE: Final = VNET_HDR.size
VNET_F_NEEDS_CSUM: Final = 1
GSO_NONE: Final = 0
GSO_TCPV4: Final = 1
ZERO_VNET_HDR: Final = bytes(VNET_HDR_SIZE)

# The IPv4 + TCP fields the merge rules look at (IPv4 header without options: 20 bytes).
# tos, total length, frag (flags+offset), ttl, protocol, src+dst, ports, seq, ack, data offset,
# TCP flags.
_TCP4: Final = struct.Struct("!xBH2xHBB2xQIIIBB")
_U16: Final = struct.Struct("!H")
_IP4_MIN: Final = 20
_TCP_MIN: Final = 20
_TCP: Final = 6
_ACK: Final = 0x10
_PSH: Final = 0x08
_MAX_IP_PACKET: Final = 0xFFFF  # the IPv4 total-length field
_CSUM_OFFSET: Final = 16  # TCP checksum, from the start of the TCP header

Writer = Callable[[memoryview], bool]


class TcpCoalescer:
    """Merges consecutive TCP segments of one flow into one GSO packet for a TUN device.

    `write(buf)` takes one cleartext IP packet (with at least VNET_HDR_SIZE bytes of headroom,
    which every decrypted packet has) and either appends it to the run being built (a copy of
    its payload) or writes what was pending and then this packet; `flush()` writes the pending
    run. The caller flushes at the end of each batch, so nothing waits for a later event.
    Packets leave in the order they came.
    """

    __slots__ = (
        "_ack",
        "_addrs",
        "_count",
        "_frag",
        "_mss",
        "_next_seq",
        "_opts",
        "_orig_len",
        "_ports",
        "_pos",
        "_thl",
        "_tos",
        "_ttl",
        "_view",
        "_write",
        "coalesced",
        "dropped",
        "packets",
        "writes",
    )

    def __init__(self, write: Writer) -> None:
        """`write` hands one frame (virtio-net header + packet) to the device; False = dropped."""
        self._write = write
        self._view = memoryview(bytearray(VNET_HDR_SIZE + _MAX_IP_PACKET))
        self._count = 0  # segments in the pending run (0: none)
        self._pos = 0  # end of the pending run in _view
        self._addrs = self._ports = self._next_seq = self._ack = 0
        self._tos = self._ttl = self._frag = self._thl = self._mss = self._orig_len = 0
        self._opts = b""
        self.packets = 0  # packets taken
        self.writes = 0  # frames written
        self.coalesced = 0  # packets that went out as part of a merged frame
        self.dropped = 0  # packets in frames the device refused

    def write(self, buf: Buffer) -> None:
        data = buf.data
        size = len(data)
        self.packets += 1
        if size >= _IP4_MIN + _TCP_MIN and data[0] == 0x45 and data[9] == _TCP:
            tos, total, frag, ttl, _proto, addrs, ports, seq, ack, doff, flags = (
                _TCP4.unpack_from(data)
            )
            thl = (doff >> 4) * 4
            hlen = _IP4_MIN + thl
            payload = size - hlen
            if (
                total == size
                and frag & 0x3FFF == 0  # neither a fragment nor more to come
                and flags & ~_PSH == _ACK
                and payload > 0
                and thl >= _TCP_MIN
            ):
                if self._count:
                    if (
                        seq == self._next_seq
                        and addrs == self._addrs
                        and ports == self._ports
                        and ack == self._ack
                        and thl == self._thl
                        and tos == self._tos
                        and ttl == self._ttl
                        and frag == self._frag
                        and payload <= self._mss
                        and self._pos + payload <= VNET_HDR_SIZE + _MAX_IP_PACKET
                        and (thl == _TCP_MIN or data[40:hlen] == self._opts)
                    ):
                        self._append(data, hlen, payload, size, flags)
                        return
                    self.flush()
                if not flags & _PSH:  # a PSH segment ends a run: nothing could follow it
                    self._start(data, size, addrs, ports, seq, ack, thl, tos, ttl, frag, payload)
                    return
        if self._count:
            self.flush()
        # Not mergeable: out on its own, behind whatever was pending.
        buf.prepend(ZERO_VNET_HDR)
        self._emit(buf.data, 1)

    def _start(
        self, data: memoryview, size: int, addrs: int, ports: int, seq: int, ack: int,
        thl: int, tos: int, ttl: int, frag: int, payload: int,
    ) -> None:
        end = VNET_HDR_SIZE + size
        self._view[VNET_HDR_SIZE:end] = data
        self._pos = end
        self._count = 1
        self._addrs, self._ports, self._ack = addrs, ports, ack
        self._next_seq = (seq + payload) & 0xFFFFFFFF
        self._thl, self._tos, self._ttl, self._frag = thl, tos, ttl, frag
        self._mss = payload
        self._orig_len = size
        self._opts = bytes(data[40 : _IP4_MIN + thl]) if thl > _TCP_MIN else b""

    def _append(self, data: memoryview, hlen: int, payload: int, size: int, flags: int) -> None:
        pos = self._pos
        end = pos + payload
        self._view[pos:end] = data[hlen:size]
        self._pos = end
        self._count += 1
        self._next_seq = (self._next_seq + payload) & 0xFFFFFFFF
        if flags & _PSH or payload < self._mss:
            if flags & _PSH:
                self._view[VNET_HDR_SIZE + 33] |= _PSH  # the merged packet keeps the last PSH
            self.flush()  # a short or pushed segment is the last of a run

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
            self._emit(frame, 1)
            return
        ip = VNET_HDR_SIZE
        total = self._pos - ip
        # IPv4 total length, and the header checksum updated for it (RFC 1624, eqn. 3).
        _U16.pack_into(view, ip + 2, total)
        (check,) = _U16.unpack_from(view, ip + 10)
        s = (~check & 0xFFFF) + (~self._orig_len & 0xFFFF) + total
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        _U16.pack_into(view, ip + 10, ~s & 0xFFFF)
        # NEEDS_CSUM: the TCP checksum field holds the pseudo-header sum, not complemented.
        addrs = self._addrs
        s = (
            (addrs >> 48)
            + ((addrs >> 32) & 0xFFFF)
            + ((addrs >> 16) & 0xFFFF)
            + (addrs & 0xFFFF)
            + _TCP
            + total
            - _IP4_MIN
        )
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        _U16.pack_into(view, ip + _IP4_MIN + _CSUM_OFFSET, s)
        VNET_HDR.pack_into(
            view, 0, VNET_F_NEEDS_CSUM, GSO_TCPV4, _IP4_MIN + self._thl, self._mss,
            _IP4_MIN, _CSUM_OFFSET,
        )
        self.coalesced += count
        self._emit(frame, count)

    def _emit(self, frame: memoryview, count: int) -> None:
        self.writes += 1
        if not self._write(frame):
            self.dropped += count
