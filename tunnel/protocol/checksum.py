"""The Internet checksum (RFC 1071) as the data path needs it: folding and incremental updates.

One place for the ones'-complement arithmetic that mssfix (a changed MSS option), the TUN
coalescer (a merged run's IPv4 total length and pseudo-header sum) and the TSO segmenter (each
segment's headers) share. Sums are plain ints; a 16-bit word is read big-endian.
"""

from __future__ import annotations

__all__ = ["adjust", "fold", "pseudo_header_sum"]


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
