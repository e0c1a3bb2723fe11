"""Partial checksums completed where the TUN reader's buffer lies.

With `TUNSETOFFLOAD(TUN_F_CSUM ...)` the kernel leaves the transport checksum of EVERY
locally sent packet for the device (`NEEDS_CSUM`: the field holds the pseudo-header sum,
`csum_start`/`csum_offset` say where), UDP included, so each one costs a ones'-complement sum
over its payload here: one `checksum.internet_sum` call over a slice of a view of the read
buffer made once (a big-int reduction for short packets, one numpy reduction for long ones).
"""

from __future__ import annotations

import socket
import struct
from typing import Final

from tunnel.protocol.checksum import internet_sum

__all__ = ["PartialChecksums"]

_U16: Final = struct.Struct("!H")
_UDP: Final = socket.IPPROTO_UDP


class PartialChecksums:
    """Completes `NEEDS_CSUM` packets lying in one fixed buffer (the TUN reader's)."""

    __slots__ = ("_buffer",)

    def __init__(self, buffer: bytearray) -> None:
        self._buffer = memoryview(buffer)

    def complete(self, base: int, end: int, csum_start: int, csum_offset: int) -> bool:
        """Finish the `NEEDS_CSUM` packet at `buffer[base:end]` in place: the sum from
        `csum_start` to the end (the field holds the pseudo-header sum) complemented into the
        field. False if the offsets do not fit the packet (then it is dropped)."""
        start = base + csum_start
        at = start + csum_offset
        if at + 2 > end or csum_start < 20:
            return False
        buffer = self._buffer
        check = ~internet_sum(buffer[start:end]) & 0xFFFF
        if not check and buffer[base + (9 if buffer[base] >> 4 == 4 else 6)] == _UDP:
            check = 0xFFFF  # UDP: a computed 0 is sent as all ones (0 means "none")
        _U16.pack_into(buffer, at, check)
        return True
