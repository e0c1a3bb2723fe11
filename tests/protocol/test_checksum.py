"""`internet_sum` (checksum.py, the one ones'-complement sum over bytes) against a plain
word-by-word reference, on random data of every length around both ways' edge (big int below
`_NUMPY_MIN`, numpy above), odd starts and ends, every input type, all-zero data and sums that
are 0 mod 0xFFFF."""

from __future__ import annotations

import random
import struct

import pytest

from tunnel.protocol.checksum import _NUMPY_MIN, internet_sum


def reference_sum(data: bytes) -> int:
    """RFC 1071 as written: big-endian words (an odd end padded with zero), carries folded."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


@pytest.mark.parametrize("seed", range(4))
def test_sum_matches_the_reference_on_random_data(seed: int) -> None:
    rng = random.Random(seed)
    buffer = bytearray(10 + 0x10000)
    view = memoryview(buffer)
    lengths = [*range(0, 80), *range(_NUMPY_MIN - 8, _NUMPY_MIN + 8), 1399, 1400, 1401, 9001,
               65535 - 40, 65535]
    for length in lengths:
        start = rng.choice((0, 1, 30, 31))
        length = min(length, len(buffer) - start)
        buffer[start : start + length] = rng.randbytes(length)
        data = bytes(buffer[start : start + length])
        expect = reference_sum(data)
        assert internet_sum(view[start : start + length]) == expect, (start, length)
        assert internet_sum(data) == expect, length
        assert internet_sum(bytearray(data)) == expect, length


def test_sum_of_zeros_is_zero_and_a_zero_residue_is_all_ones() -> None:
    for length in (0, 1, 2, 63, 64, _NUMPY_MIN, _NUMPY_MIN + 1, 1400):
        assert internet_sum(bytes(length)) == 0
    # Words that add up to a multiple of 0xFFFF: ones'-complement gives 0xFFFF, never 0.
    for length in (4, 64, 1400, 1401):
        data = bytearray(length)
        data[:4] = b"\x80\x00\x7f\xff"
        assert internet_sum(data) == 0xFFFF == reference_sum(bytes(data))
        assert internet_sum(memoryview(data)[:length]) == 0xFFFF
        data[:4] = b"\xff\xff\x00\x00"
        assert internet_sum(data) == 0xFFFF
