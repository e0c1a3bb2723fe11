"""PartialChecksums (the TUN reader's checksum completion): a `NEEDS_CSUM` packet left in the
read buffer is completed as a NIC would, on random packets of every length around the sum's
two ways (checksum.py), IPv4 and IPv6, TCP and UDP (a UDP sum that completes to 0 is sent as
0xFFFF); offsets that do not fit the packet are refused. `complete` both ways: the Python sum
and the extension's loop (tunnel/_csum.c, which the lane uses too)."""

from __future__ import annotations

import ipaddress
import os
import random
import struct

import pytest

from tunnel.io.partial_csum import PartialChecksums
from tunnel.protocol.checksum import internet_sum

_BASE = 10  # where the TUN reader's packet starts (behind the virtio-net header)
SRC4, DST4 = ipaddress.IPv4Address("10.1.0.1"), ipaddress.IPv4Address("10.1.0.2")


# `complete` as the Python sum, and as the extension's loop where it is built (CI builds it).
NATIVE = pytest.mark.parametrize(
    "native", [False, pytest.param(True, marks=pytest.mark.native_aead)], ids=["python", "native"])


def _checksums(buffer: bytearray, native: bool) -> PartialChecksums:
    csums = PartialChecksums(buffer, native=native)
    assert csums.native is native
    return csums


def _buffer() -> bytearray:
    return bytearray(_BASE + 0x10000)


def _completed(packet: bytes, csum_start: int, field: int, udp: bool) -> bytearray:
    """What a NIC writes: the ones'-complement of the sum from `csum_start` (the field holding
    the pseudo-header sum), a UDP 0 sent as all ones."""
    out = bytearray(packet)
    check = ~internet_sum(packet[csum_start:]) & 0xFFFF
    if not check and udp:
        check = 0xFFFF
    struct.pack_into("!H", out, csum_start + field, check)
    return out


@NATIVE
@pytest.mark.parametrize("proto", [6, 17])
@pytest.mark.parametrize("v6", [False, True])
def test_complete_writes_what_a_nic_would(proto: int, v6: bool, native: bool) -> None:
    rng = random.Random(proto * 2 + v6)
    buffer = _buffer()
    csums = _checksums(buffer, native)
    hlen = 40 if v6 else 20
    field = 16 if proto == 6 else 6
    zero_udp = 0
    for size in [*range(field + 2, 70), 511, 640, 641, 1371, 1372, 1400, 1401, 9000]:
        packet = bytearray(os.urandom(hlen + size))
        packet[0] = 0x60 if v6 else 0x45
        packet[6 if v6 else 9] = proto
        struct.pack_into("!H", packet, hlen + field, rng.randrange(0x10000))
        if rng.random() < 0.2:  # a UDP sum that completes to 0: sent as 0xFFFF
            struct.pack_into("!H", packet, hlen + field, 0)
            fix = internet_sum(packet[hlen:])
            struct.pack_into("!H", packet, hlen + field, ~fix & 0xFFFF)
            zero_udp += proto == 17
        expect = _completed(bytes(packet), hlen, field, proto == 17)
        end = _BASE + len(packet)
        buffer[_BASE:end] = packet
        assert csums.complete(_BASE, end, hlen, field)
        assert buffer[_BASE:end] == expect, size
    assert zero_udp or proto == 6  # the UDP all-ones case was exercised
    assert not csums.complete(_BASE, _BASE + hlen + field + 1, hlen, field)  # past the end
    assert not csums.complete(_BASE, end, 8, field)  # inside the IP header


@NATIVE
@pytest.mark.parametrize("proto,size", [(6, 32), (6, 1400), (17, 64), (17, 1401)])
def test_a_partial_checksum_is_completed(proto: int, size: int, native: bool) -> None:
    """The kernel's form exactly: the field holds the pseudo-header sum; once completed the
    transport checksum verifies over pseudo-header + segment."""
    body = bytearray(os.urandom(size))
    at = 16 if proto == 6 else 6
    total = 20 + size
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, proto, 0, SRC4.packed,
                     DST4.packed)
    pseudo = SRC4.packed + DST4.packed + struct.pack("!BBH", 0, proto, size)
    body[at : at + 2] = b"\0\0"
    partial = internet_sum(pseudo)  # what the kernel leaves: the pseudo-header sum
    struct.pack_into("!H", body, at, partial)
    packet = bytearray(ip) + body
    buffer = _buffer()
    buffer[_BASE : _BASE + total] = packet
    csums = _checksums(buffer, native)
    assert csums.complete(_BASE, _BASE + total, 20, at)
    assert internet_sum(pseudo + buffer[_BASE + 20 : _BASE + total]) == 0xFFFF
    assert not csums.complete(_BASE, _BASE + total, 20, size)  # the field past the end


def test_complete_many_writes_what_complete_writes() -> None:
    """A read-ahead's packets completed in one reduction: byte for byte what `complete` writes
    one at a time, for TCP and UDP, IPv4 and IPv6, odd and even lengths, short and long, the
    UDP all-ones case included; the bytes between the packets are left alone."""
    rng = random.Random(7)
    for round_ in range(40):
        one, many = _buffer() + bytearray(0x10000), _buffer() + bytearray(0x10000)
        spans: list[int] = []
        udp: list[bool] = []
        expect = PartialChecksums(one)
        pos = 0
        for _ in range(rng.randrange(1, 12)):
            v6, proto = rng.random() < 0.3, rng.choice((6, 17))
            hlen, field = (40 if v6 else 20), (16 if proto == 6 else 6)
            packet = bytearray(os.urandom(hlen + rng.choice((field + 2, 33, 64, 639, 1400, 1401))))
            packet[0] = 0x60 if v6 else 0x45
            packet[6 if v6 else 9] = proto
            if proto == 17 and rng.random() < 0.3:  # completes to 0: sent as 0xFFFF
                struct.pack_into("!H", packet, hlen + field, 0)
                fix = internet_sum(packet[hlen:])
                struct.pack_into("!H", packet, hlen + field, ~fix & 0xFFFF)
            base = pos + _BASE
            end = base + len(packet)
            header = os.urandom(_BASE)  # what stands between packets: the sums leave it
            for buffer in (one, many):
                buffer[pos:base] = header
                buffer[base:end] = packet
            assert expect.complete(base, end, hlen, field)
            spans += (base + hlen, end, base + hlen + field)
            udp.append(proto == 17)
            pos = (end + 16) & ~15
        bounds: list[int] = []
        for i in range(0, len(spans), 3):
            if spans[i + 1] & 1:  # the odd end's pad byte: the caller zeroes it
                many[spans[i + 1]] = 0
                one[spans[i + 1]] = 0
            bounds += (spans[i] >> 1, (spans[i + 1] + 1) >> 1)
        PartialChecksums(many).complete_many(bounds, [f >> 1 for f in spans[2::3]], udp)
        assert many == one, round_
