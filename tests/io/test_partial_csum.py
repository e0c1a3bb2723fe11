"""PartialChecksums (the TUN reader's checksum completion) against the reference forms:
`internet_sum` (offload.py) and `complete_checksum` (tso.py), on random packets of every
length around both paths' edge, odd starts and ends, all-zero data and sums that are 0 mod
0xFFFF."""

from __future__ import annotations

import os
import random
import struct

import pytest

from tunnel.io.offload import internet_sum
from tunnel.io.partial_csum import _NUMPY_MIN, PartialChecksums
from tunnel.io.tso import complete_checksum

_BASE = 10  # where the TUN reader's packet starts (behind the virtio-net header)


def _buffer() -> bytearray:
    return bytearray(_BASE + 0x10000)


@pytest.mark.parametrize("seed", range(4))
def test_sum_matches_internet_sum_on_random_data(seed: int) -> None:
    rng = random.Random(seed)
    buffer = _buffer()
    csums = PartialChecksums(buffer)
    lengths = [*range(0, 80), *range(_NUMPY_MIN - 8, _NUMPY_MIN + 8), 1399, 1400, 1401, 9001,
               65535 - 40, 65535]
    for length in lengths:
        start = rng.choice((0, 1, 30, 31, _BASE + 20))
        length = min(length, len(buffer) - start)
        buffer[start : start + length] = rng.randbytes(length)
        assert csums.sum(start, start + length) == internet_sum(
            buffer[start : start + length]), (start, length)


def test_sum_of_zeros_is_zero_and_a_zero_residue_is_all_ones() -> None:
    buffer = _buffer()
    csums = PartialChecksums(buffer)
    for length in (0, 1, 2, 63, 64, _NUMPY_MIN, _NUMPY_MIN + 1, 1400):
        assert csums.sum(_BASE, _BASE + length) == 0
    # Words that add up to a multiple of 0xFFFF: ones'-complement gives 0xFFFF, never 0.
    for length in (4, 64, 1400, 1401):
        buffer[_BASE : _BASE + length] = bytes(length)
        buffer[_BASE : _BASE + 4] = b"\x80\x00\x7f\xff"
        assert internet_sum(buffer[_BASE : _BASE + length]) == 0xFFFF
        assert csums.sum(_BASE, _BASE + length) == 0xFFFF
        buffer[_BASE : _BASE + 4] = b"\xff\xff\x00\x00"
        assert csums.sum(_BASE, _BASE + length) == 0xFFFF


@pytest.mark.parametrize("proto", [6, 17])
@pytest.mark.parametrize("v6", [False, True])
def test_complete_matches_complete_checksum(proto: int, v6: bool) -> None:
    rng = random.Random(proto * 2 + v6)
    buffer = _buffer()
    csums = PartialChecksums(buffer)
    hlen = 40 if v6 else 20
    field = 16 if proto == 6 else 6
    for size in [*range(field + 2, 70), 511, 640, 641, 1371, 1372, 1400, 1401, 9000]:
        packet = bytearray(os.urandom(hlen + size))
        packet[0] = 0x60 if v6 else 0x45
        packet[6 if v6 else 9] = proto
        struct.pack_into("!H", packet, hlen + field, rng.randrange(0x10000))
        if rng.random() < 0.2:  # a UDP sum that completes to 0: sent as 0xFFFF
            struct.pack_into("!H", packet, hlen + field, 0)
            fix = internet_sum(packet[hlen:])
            struct.pack_into("!H", packet, hlen + field, ~fix & 0xFFFF)
        expect = bytearray(packet)
        assert complete_checksum(memoryview(expect), hlen, field)
        end = _BASE + len(packet)
        buffer[_BASE:end] = packet
        assert csums.complete(_BASE, end, hlen, field)
        assert buffer[_BASE:end] == expect, size
    assert not csums.complete(_BASE, _BASE + hlen + field + 1, hlen, field)  # past the end
    assert not csums.complete(_BASE, end, 8, field)  # inside the IP header
