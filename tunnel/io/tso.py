"""TSO reads: a TCP super-packet read from the TUN, cut into the segments it stands for.

With `TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)` the kernel hands a TUN reader what
it would hand a NIC with segmentation offload: up to 64 KB of one TCP flow as one packet
(`gso_type` TCPV4/TCPV6, `gso_size` = the MSS), and packets whose transport checksum is left
for the device to complete (`NEEDS_CSUM`: the field holds the pseudo-header sum,
`csum_start`/`csum_offset` say where). The sender's stack then runs once per 64 KB instead of
once per segment, and the reader makes one read instead of ~45. wireguard-go does the same
(`tun/offload_linux.go: gsoSplit`).

The segments must leave complete, for any peer: every one gets its own IPv4 total length, id
(counted up, as the kernel's `inet_gso_segment`) and header checksum, or IPv6 payload length;
its sequence number; FIN/PSH only on the last, CWR only on the first; and its TCP checksum.
The checksum is the cost (a Python loop over 1.4 KB per segment is ~2 us): the payload sums of
ALL full segments are computed in one vectorised numpy reduction (the payload viewed as 16-bit
words, one row per segment), so what is left per segment is a handful of int operations.
Words are summed in host order and the folded sum swapped once (RFC 1071: the ones'-complement
sum is byte-order independent).
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import Final

from tunnel.io.offload import VNET_HDR, VNET_HDR_SIZE
from tunnel.protocol.checksum import fold, internet_sum

__all__ = ["GSO_TCPV6", "TsoSegmenter"]

GSO_TCPV4: Final = 1
GSO_TCPV6: Final = 4
_GSO_ECN: Final = 0x80
_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")
_IP_FIELDS: Final = struct.Struct("!HH")  # IPv4 total length, id
_TCP: Final = socket.IPPROTO_TCP
_FIN_PSH: Final = 0x09
_CWR: Final = 0x80
_LITTLE: Final = sys.byteorder == "little"


class TsoSegmenter:
    """Holds one super-packet and writes its segments out one at a time.

    `load(frame, size)`: a frame as read (virtio-net header + packet, `size` bytes of packet);
    False when it is not a TCP GSO packet we can cut (the caller drops it). It computes what
    is the same for every segment once (the header sums without the fields that change) and
    the payload sums of all segments in one numpy reduction. Then `next_into(room, offset)`
    writes the next segment to `room[offset:]` (its header is written in place into the
    super-packet, over bytes already sent, so one copy moves header and payload) and returns
    its length, 0 when none is left. The frame's bytes must stay put until then.
    """

    __slots__ = (
        "_count",
        "_flags",
        "_hlen",
        "_index",
        "_ip_base",
        "_ip_id",
        "_mss",
        "_packet",
        "_seq",
        "_sizes",
        "_sums",
        "_tcp_base",
        "_thoff",
        "_v4",
        "segments",
        "supers",
    )

    def __init__(self) -> None:
        self._count = self._index = 0
        self._packet = memoryview(bytearray())
        self._sums: list[int] = []
        self._sizes = (0, 0)
        self._v4 = True
        self._hlen = self._thoff = self._mss = self._flags = 0
        self._ip_base = self._ip_id = self._tcp_base = self._seq = 0
        self.supers = 0  # super-packets cut
        self.segments = 0  # segments written

    @property
    def pending(self) -> int:
        return self._count - self._index

    def drop(self) -> None:
        """Forget the rest of the super-packet."""
        self._index = self._count

    def load(self, frame: memoryview, size: int) -> bool:
        _flags, gso_type, _hdr_len, mss, csum_start, _csum_offset = VNET_HDR.unpack_from(frame)
        gso_type &= ~_GSO_ECN
        packet = frame[VNET_HDR_SIZE : VNET_HDR_SIZE + size]
        version = packet[0] >> 4
        if gso_type == GSO_TCPV4 and version == 4:
            v4 = True
            if packet[9] != _TCP:
                return False
        elif gso_type == GSO_TCPV6 and version == 6:
            v4 = False
            if packet[6] != _TCP:
                return False  # extension headers: not cut here (the kernel rarely sends them)
        else:
            return False
        thoff = csum_start
        if thoff < 20 or thoff + 20 > size or not mss:
            return False
        hlen = thoff + (packet[thoff + 12] >> 4) * 4
        body = size - hlen
        if body <= 0 or hlen > mss:
            return False  # (a header longer than a segment could not be written in place)
        count = -(-body // mss)
        # The IPv4 header's sum without total length, id and checksum; the TCP header's
        # without sequence number, flags word and checksum, the pseudo-header's addresses and
        # protocol with it: what each segment adds is its own words.
        if v4:
            (self._ip_id,) = _U16.unpack_from(packet, 4)
            ip = internet_sum(packet[:thoff])
            for at in (2, 4, 10):
                ip = fold(ip + (~_U16.unpack_from(packet, at)[0] & 0xFFFF))
            self._ip_base = ip
            pseudo = internet_sum(packet[12:20]) + _TCP
        else:
            pseudo = internet_sum(packet[8:40]) + _TCP
        tcp = internet_sum(packet[thoff:hlen])
        for at in (4, 6, 12, 16):
            tcp = fold(tcp + (~_U16.unpack_from(packet, thoff + at)[0] & 0xFFFF))
        self._tcp_base = fold(pseudo + tcp) + (packet[thoff + 12] << 8)
        self._flags = packet[thoff + 13]
        (self._seq,) = _U32.unpack_from(packet, thoff + 4)
        self._sums = _payload_sums(packet[hlen:size], mss, count)
        self._sizes = (hlen + mss, size - (count - 1) * mss)
        self._packet = packet
        self._v4 = v4
        self._hlen, self._thoff, self._mss = hlen, thoff, mss
        self._count, self._index = count, 0
        self.supers += 1
        return True

    def next_into(self, room: memoryview, offset: int) -> int:
        index = self._index
        count = self._count
        if index >= count:
            return 0
        self._index = index + 1
        last = index + 1 == count
        size = self._sizes[last]
        if offset + size > len(room):
            return 0  # cannot happen with a frame sized for the MTU; the rest is dropped
        packet = self._packet
        hlen = self._hlen
        mss = self._mss
        start = index * mss  # where this segment's header goes: hlen before its payload
        if index:
            packet[start : start + hlen] = packet[:hlen]
        thoff = start + self._thoff
        if self._v4:
            ip_id = (self._ip_id + index) & 0xFFFF
            _IP_FIELDS.pack_into(packet, start + 2, size, ip_id)
            _U16.pack_into(packet, start + 10, ~fold(self._ip_base + size + ip_id) & 0xFFFF)
        else:
            _U16.pack_into(packet, start + 4, size - 40)
        seq = (self._seq + start) & 0xFFFFFFFF
        flags = self._flags
        if not last:
            flags &= ~_FIN_PSH
        if index:
            flags &= ~_CWR
        check = ~fold(
            self._tcp_base + size - self._thoff + (seq >> 16) + (seq & 0xFFFF) + flags
            + self._sums[index]
        ) & 0xFFFF
        _U32.pack_into(packet, thoff + 4, seq)
        packet[thoff + 13] = flags
        _U16.pack_into(packet, thoff + 16, check)
        room[offset : offset + size] = packet[start : start + size]
        self.segments += 1
        return size


def _payload_sums(payload: memoryview, mss: int, count: int) -> list[int]:
    """Each segment's folded payload sum; the full ones in one numpy reduction."""
    import numpy as np  # (imported where used: only TSO readers need it)

    full = len(payload) // mss
    if mss & 1 or full == 0:
        return [internet_sum(payload[i * mss : (i + 1) * mss]) for i in range(count)]
    words = np.frombuffer(payload[: full * mss], dtype=np.uint16).reshape(full, mss // 2)
    totals = words.sum(axis=1, dtype=np.uint32)  # < 2**32: at most 32767 words a row
    totals = (totals & 0xFFFF) + (totals >> 16)
    totals = (totals & 0xFFFF) + (totals >> 16)
    if _LITTLE:
        totals = ((totals & 0xFF) << 8) | (totals >> 8)
    sums: list[int] = totals.tolist()
    if full < count:
        sums.append(internet_sum(payload[full * mss :]))
    return sums
