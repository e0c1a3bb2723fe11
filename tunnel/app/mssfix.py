"""`mssfix`: lower the MSS option of TCP SYNs crossing the tunnel, as OpenVPN's mss.c does.

Without it a TCP connection inside the tunnel sends full-MTU segments, each of which becomes a
UDP datagram larger than the path MTU that the kernel must fragment. Clamping the MSS in the
SYN/SYN-ACK makes both ends send segments that fit. Both directions are clamped (packets read
from TUN before sealing, packets written to TUN after opening), so it works whichever peer has
mssfix set.

The cost on the data path is two byte comparisons per packet that is not a TCP SYN.
"""

from __future__ import annotations

import struct

from core import Frame

__all__ = ["MssClamp", "mss_limits"]

_U16 = struct.Struct("!H")
_IPV4_UDP = 28
_IPV6_UDP = 48
_TCP_IP4 = 40  # IPv4 header (20) + TCP header (20), as mss.c counts
_TCP_IP6 = 60  # IPv6 header (40) + TCP header (20)
_TCP = 6
_SYN = 0x02
_OPT_END, _OPT_NOP, _OPT_MSS = 0, 1, 2


def mss_limits(mssfix: int, mode: str, frame: Frame, *, ipv6_link: bool) -> tuple[int, int]:
    """(max MSS for IPv4 inside, for IPv6 inside) from `mssfix N [mtu|fixed]`.

    mtu: N is the whole outer IP datagram; payload (plain `mssfix N`): N is the UDP payload
    (our packet incl. the data-channel overhead); fixed: N is the inner IP packet.
    """
    if mode == "fixed":
        inner = mssfix
    else:
        outer = (_IPV6_UDP if ipv6_link else _IPV4_UDP) if mode == "mtu" else 0
        inner = mssfix - outer - frame.overhead
    return inner - _TCP_IP4, inner - _TCP_IP6


class MssClamp:
    """Clamp the MSS option of a TCP SYN in place (checksum updated incrementally)."""

    __slots__ = ("clamped", "max_v4", "max_v6")

    def __init__(self, max_v4: int, max_v6: int) -> None:
        if max_v4 < 1 or max_v6 < 1:
            raise ValueError(f"mssfix leaves no room for TCP data (MSS {max_v4}/{max_v6})")
        self.max_v4 = max_v4
        self.max_v6 = max_v6
        self.clamped = 0

    def __call__(self, packet: memoryview) -> None:
        size = len(packet)
        if size < 40:
            return
        version = packet[0] >> 4
        if version == 4:
            if packet[9] != _TCP or (packet[6] & 0x1F) or packet[7]:  # not TCP, or a fragment
                return
            tcp = (packet[0] & 0x0F) * 4
            limit = self.max_v4
        elif version == 6:
            if packet[6] != _TCP or size < 60:  # extension headers: left alone, as mss.c does
                return
            tcp = 40
            limit = self.max_v6
        else:
            return
        if size < tcp + 20 or not packet[tcp + 13] & _SYN:
            return
        self._clamp(packet, tcp, limit)

    def _clamp(self, packet: memoryview, tcp: int, limit: int) -> None:
        end = min(tcp + (packet[tcp + 12] >> 4) * 4, len(packet))
        at = tcp + 20
        while at < end:
            kind = packet[at]
            if kind == _OPT_END:
                return
            if kind == _OPT_NOP:
                at += 1
                continue
            if at + 1 >= end:
                return
            length = packet[at + 1]
            if length < 2 or at + length > end:
                return  # malformed options: leave the packet as it is
            if kind == _OPT_MSS and length == 4:
                (old,) = _U16.unpack_from(packet, at + 2)
                if old > limit:
                    _U16.pack_into(packet, at + 2, limit)
                    if (at - tcp) & 1:
                        # After an odd number of NOPs the value straddles two checksum words;
                        # the ones'-complement sum is byte-order independent (RFC 1071), so
                        # the update works on the byte-swapped values.
                        old, limit = _swap(old), _swap(limit)
                    _adjust_checksum(packet, tcp + 16, old, limit)
                    self.clamped += 1
                return
            at += length


def _swap(value: int) -> int:
    return ((value & 0xFF) << 8) | (value >> 8)


def _adjust_checksum(packet: memoryview, offset: int, old: int, new: int) -> None:
    """RFC 1624 incremental update: HC' = ~(~HC + ~m + m')."""
    (check,) = _U16.unpack_from(packet, offset)
    total = (~check & 0xFFFF) + (~old & 0xFFFF) + new
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    _U16.pack_into(packet, offset, ~total & 0xFFFF)
