"""TSO reads: a super-packet cut by `TsoSegmenter` gives exactly the segments the kernel's own
segmentation would (`offload.split_gso`, the plain reference), every checksum valid. (A
`NEEDS_CSUM` packet's completion: test_partial_csum.py.) No root: frames built here."""

from __future__ import annotations

import ipaddress
import os
import random
import struct

import pytest

from tunnel.io.offload import (
    GSO_TCPV4,
    VNET_F_NEEDS_CSUM,
    VNET_HDR,
    VNET_HDR_SIZE,
    split_gso,
)
from tunnel.io.tso import GSO_TCPV6, TsoSegmenter
from tunnel.protocol.checksum import internet_sum

SRC4, DST4 = ipaddress.IPv4Address("10.1.0.1"), ipaddress.IPv4Address("10.1.0.2")
SRC6, DST6 = ipaddress.IPv6Address("fd00::1"), ipaddress.IPv6Address("fd00::2")


def tcp_header(seq: int, flags: int, options: bytes) -> bytes:
    doff = (20 + len(options)) // 4
    # The checksum field holds junk: the kernel's partial sum is never relied on.
    fixed = struct.pack("!HHIIBBHHH", 40000, 5201, seq, 99, doff << 4, flags, 512, 0x1234, 0)
    return fixed + options


def super4(payload: bytes, mss: int, flags: int = 0x18, options: bytes = b"") -> bytearray:
    tcp = tcp_header(0xFFFFFF00, flags, options)  # the sequence number wraps inside
    total = 20 + len(tcp) + len(payload)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, total & 0xFFFF, 0xFFF0, 0x4000, 64, 6,
                               0, SRC4.packed, DST4.packed))
    header = VNET_HDR.pack(VNET_F_NEEDS_CSUM, GSO_TCPV4, 20 + len(tcp), mss, 20, 16)
    return bytearray(header) + ip + tcp + payload


def cut(frame: bytearray) -> list[bytes]:
    seg = TsoSegmenter()
    assert seg.load(memoryview(frame), len(frame) - VNET_HDR_SIZE)
    room = memoryview(bytearray(VNET_HDR_SIZE + 9000))
    out = []
    while size := seg.next_into(room, VNET_HDR_SIZE):
        out.append(bytes(room[VNET_HDR_SIZE : VNET_HDR_SIZE + size]))
    return out


@pytest.mark.parametrize("mss,length", [(1448, 1448 * 45), (1448, 60000), (1388, 1389),
                                        (1000, 999), (1447, 30000), (536, 65000 - 52)])
@pytest.mark.parametrize("options", [b"", bytes([1, 1, 8, 10]) + bytes(8)])
def test_segments_equal_the_kernels_and_checksums_verify(mss: int, length: int,
                                                         options: bytes) -> None:
    payload = random.Random(mss + length).randbytes(length)
    frame = super4(payload, mss, options=options)
    reference = [bytes(p) for p in split_gso(memoryview(frame))]
    ours = cut(frame)  # (writes each segment's header in place into the frame)
    assert ours == reference
    assert b"".join(s[20 + 20 + len(options):] for s in ours) == payload
    for segment in ours:
        assert internet_sum(segment[:20]) == 0xFFFF  # IPv4 header checksum
        pseudo = SRC4.packed + DST4.packed + struct.pack("!BBH", 0, 6, len(segment) - 20)
        assert internet_sum(pseudo + segment[20:]) == 0xFFFF  # TCP checksum
    assert ours[-1][33] & 0x08 and not any(s[33] & 0x08 for s in ours[:-1])  # PSH on the last


def test_ipv6_segments_carry_lengths_and_valid_checksums() -> None:
    payload = os.urandom(10000)
    tcp = tcp_header(5, 0x10, b"")
    ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp) + len(payload), 6, 64, SRC6.packed,
                     DST6.packed)
    frame = bytearray(VNET_HDR.pack(VNET_F_NEEDS_CSUM, GSO_TCPV6, 60, 1220, 40, 16)) + ip + tcp
    frame += payload
    segments = cut(frame)
    assert len(segments) == 9
    for i, segment in enumerate(segments):
        (plen,) = struct.unpack_from("!H", segment, 4)
        assert plen == len(segment) - 40
        assert struct.unpack_from("!I", segment, 44)[0] == 5 + i * 1220
        pseudo = SRC6.packed + DST6.packed + struct.pack("!IxxxB", plen, 6)
        assert internet_sum(pseudo + segment[40:]) == 0xFFFF


def test_what_cannot_be_cut_is_refused() -> None:
    seg = TsoSegmenter()
    frame = super4(b"x" * 3000, 1000)
    frame[VNET_HDR_SIZE + 9] = 17  # not TCP
    assert not seg.load(memoryview(frame), len(frame) - VNET_HDR_SIZE)
    frame = super4(b"x" * 3000, 0)  # no segment size
    assert not seg.load(memoryview(frame), len(frame) - VNET_HDR_SIZE)
    assert seg.pending == 0
