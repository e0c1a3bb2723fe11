"""Partial checksums completed where the TUN reader's buffer lies.

With `TUNSETOFFLOAD(TUN_F_CSUM ...)` the kernel leaves the transport checksum of EVERY
locally sent packet for the device (`NEEDS_CSUM`: the field holds the pseudo-header sum,
`csum_start`/`csum_offset` say where), UDP included, so each one costs a ones'-complement sum
over its payload here: one `checksum.internet_sum` call over a slice of a view of the read
buffer made once (a big-int reduction for short packets, one numpy reduction for long ones),
or, for the packets of one read-ahead (`complete_many`), one `np.add.reduceat` over all their
spans at once: per packet that is a few array elements instead of a cold call of its own (a
lone 1400-byte UDP packet's completion costs 6.5-8 us after a read(2), measured). Where the
extension is built, `complete` is its loop (tunnel/_csum.c, the one the lane uses), which
costs less than either for one packet.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Final

from tunnel.protocol.checksum import internet_sum

_native_complete: Callable[[bytearray, int, int, int, int], bool] | None
try:
    from tunnel._aead import complete_partial as _native_complete
except ImportError:  # the extension is optional (setup.py): the Python sum then
    _native_complete = None

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["PartialChecksums"]

_U16: Final = struct.Struct("!H")
_UDP: Final = socket.IPPROTO_UDP


class PartialChecksums:
    """Completes `NEEDS_CSUM` packets lying in one fixed buffer (the TUN reader's)."""

    __slots__ = ("_buffer", "_words", "complete", "native")

    def __init__(self, buffer: bytearray, native: bool = True) -> None:
        """`buffer`: even-sized; `complete_many` wants its spans at even offsets. `native`:
        `complete` is the extension's where it is built (False: the Python sum, for tests)."""
        self._buffer = memoryview(buffer)
        self._words: npt.NDArray[np.uint16] | None = None  # the buffer as uint16, on first use
        loop = _native_complete if native else None
        self.native = loop is not None
        # The same checks and result as `_complete`, bound once over this buffer.
        self.complete: Callable[[int, int, int, int], bool] = (
            self._complete if loop is None else partial(loop, buffer))

    def _complete(self, base: int, end: int, csum_start: int, csum_offset: int) -> bool:
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

    def complete_many(self, bounds: list[int], fields: list[int], udp: list[bool]) -> None:
        """Finish several `NEEDS_CSUM` packets of the buffer at once, in 16-bit words:
        `bounds` holds where each packet's sum starts and where it ends (in buffer order, not
        overlapping; an odd end's pad byte already zero), `fields` each checksum field, all
        checked against their packets by the caller (`complete`'s checks); `udp[i]`: packet i
        is UDP."""
        import numpy as np

        words = self._words
        if words is None:
            words = self._words = np.frombuffer(self._buffer, np.uint16)
        # One reduction over [start, end) of every packet and the gaps between them (every
        # other result); the view ends where the last packet does, so its segment is exact.
        # Below 2**32 words per packet, nothing overflows the uint64 sums.
        sums = np.add.reduceat(words[: bounds[-1]], np.array(bounds[:-1], np.intp),
                               dtype=np.uint64)[::2]
        # The ones'-complement sum is the sum mod 0xFFFF (0 standing for 0xFFFF: the data is
        # never all zero); its complement, a computed 0xFFFF sum giving 0.
        checks = ((0xFFFF - sums % 0xFFFF) % 0xFFFF).astype(np.uint16)
        for zero in np.flatnonzero(checks == 0):
            if udp[zero]:
                checks[zero] = 0xFFFF  # UDP: a computed 0 is sent as all ones (0 means "none")
        words[np.array(fields, np.intp)] = checks
