"""The Internet checksum (RFC 1071) as the data path needs it: sums, folding, incremental updates.

One place for the ones'-complement arithmetic that mssfix (a changed MSS option), the TUN
coalescer (a merged run's IPv4 total length and pseudo-header sum), the TSO segmenter (each
segment's headers) and the TUN reader (`NEEDS_CSUM` completion) share. Sums are plain ints; a
16-bit word is read big-endian.

`internet_sum` is the one sum over bytes, two ways by length:

  - short data (below `_NUMPY_MIN`): `int.from_bytes(data, "big") % 0xFFFF` (2**16 = 1 mod
    0xFFFF, so the big int reduced mod 0xFFFF is the sum of its 16-bit words mod 0xFFFF);
  - longer: `np.add.reduce` over the bytes viewed as native-order uint16 words, into a uint64.
    The sum of native-order words is the byte-swapped ones'-complement sum (RFC 1071: byte
    order independent), reduced mod 0xFFFF and swapped back. (Above ~600 bytes the big-int
    conversion and division cost more than numpy's call.)

A sum of data that is not all zero is never 0 in ones'-complement (it is 0xFFFF): a result 0
mod 0xFFFF of a non-zero sum is mapped to 0xFFFF.
"""

from __future__ import annotations

import sys
from typing import Any, Final

__all__ = ["adjust", "fold", "internet_sum", "pseudo_header_sum"]

_LITTLE: Final = sys.byteorder == "little"
# Below this many bytes the big-int reduction is cheaper than a numpy call (measured: 40 B
# 0.5 us against 2.5; 1400 B 3.7 us against 2.5).
_NUMPY_MIN: Final = 640
# numpy's reduce, frombuffer and the two dtypes, bound on the first long sum: numpy takes
# ~0.15 s to import (a process that only sums short headers never pays it), and looking them
# up on every call cost ~0.7 us of a 1400-byte sum.
_numpy: tuple[Any, Any, Any, Any] | None = None


def _bind_numpy() -> tuple[Any, Any, Any, Any]:
    global _numpy
    import numpy as np

    _numpy = (np.add.reduce, np.frombuffer, np.dtype(np.uint16), np.dtype(np.uint64))
    return _numpy


def internet_sum(data: bytes | bytearray | memoryview) -> int:
    """The folded ones'-complement sum of `data` as 16-bit big-endian words (an odd end padded
    with zero): in 1..0xFFFF, 0 only if all of it is zero."""
    size = len(data)
    if size < _NUMPY_MIN:
        value = int.from_bytes(data, "big")
        if size & 1:
            value <<= 8  # the last byte is the high half of its word
        total = value % 0xFFFF
    else:
        add, frombuffer, u16, u64 = _numpy or _bind_numpy()
        even = size & ~1
        value = int(add(frombuffer(data, u16, even >> 1), dtype=u64))
        if even != size:
            # The odd last byte is its word's high half: in native little-endian order that
            # is the low byte of the swapped word.
            value += data[even] if _LITTLE else data[even] << 8
        total = value % 0xFFFF
        if _LITTLE:
            total = ((total & 0xFF) << 8) | (total >> 8)
    return total if total or not value else 0xFFFF


def fold(total: int) -> int:
    """A sum of 16-bit words (up to 32 bits) folded to 16 bits, carries added back (not
    complemented). Two rounds suffice for any sum below 2**32."""
    total = (total & 0xFFFF) + (total >> 16)
    return (total & 0xFFFF) + (total >> 16)


def adjust(checksum: int, old: int, new: int) -> int:
    """The checksum after one 16-bit word changed from `old` to `new` (RFC 1624, eqn. 3)."""
    return ~fold((~checksum & 0xFFFF) + (~old & 0xFFFF) + new) & 0xFFFF


def pseudo_header_sum(addrs: int, proto: int, length: int) -> int:
    """The folded sum of the IPv4 pseudo-header: `addrs` is source and destination as one
    64-bit big-endian int (bytes 12..20 of the IPv4 header), `length` the transport length."""
    return fold(
        (addrs >> 48) + ((addrs >> 32) & 0xFFFF) + ((addrs >> 16) & 0xFFFF) + (addrs & 0xFFFF)
        + proto + length
    )
