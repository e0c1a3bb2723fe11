"""The data channel's replay window: which packet ids a receiver may still accept.

OpenVPN's `--replay-window n [t]` (`packet_id.c: packet_id_test()`, `packet_id_add()`,
`packet_id_reap()`), for the short (32-bit, no timestamp) packet-id form used with AEAD ciphers:

* pid 0 is never valid (the send counter starts at 1);
* any pid above the highest seen is accepted and becomes the highest;
* an older pid is accepted only if it lies within `size` of the highest and was not seen before;
* an older pid is refused once the highest was received more than `seconds` ago: a packet that
  late is treated as a replay even if its slot is still free (OpenVPN's "reaping").

`accept()` is called only after the AEAD tag verified, so a forged packet can neither advance the
window nor burn a slot; it records the pid when it accepts it.

The window is one Python int used as a bitmask - bit `i` set means `highest - i` was seen - because
a shift and a mask per packet are far cheaper than a set's hashing and its garbage.
"""

from __future__ import annotations

import math

__all__ = ["ReplayWindow"]

# Bounds of `--replay-window n`: a window must hold at least the highest id itself, and above
# 64 Ki slots the bitmask shifts stop being cheap while no real reordering needs that much.
MIN_WINDOW_SIZE = 1
MAX_WINDOW_SIZE = 65536


class ReplayWindow:
    """Sliding window of received packet ids for one key_id, with OpenVPN's time backtrack."""

    __slots__ = ("_full_mask", "_highest", "_highest_time", "_mask", "accepted", "replays",
                 "seconds", "size")

    def __init__(self, size: int = 64, seconds: float = 15.0) -> None:
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"replay window size must be an int, not {type(size).__name__}")
        if not MIN_WINDOW_SIZE <= size <= MAX_WINDOW_SIZE:
            raise ValueError(
                f"replay window size {size} out of range {MIN_WINDOW_SIZE}..{MAX_WINDOW_SIZE}")
        if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"replay window seconds must be a finite number >= 0, not {seconds!r}")
        self.size = size
        self.seconds = float(seconds)
        self._full_mask = (1 << size) - 1
        self._highest = 0  # 0 = nothing received yet (pid 0 is never valid)
        self._highest_time = 0.0
        self._mask = 0
        self.accepted = 0
        self.replays = 0

    @property
    def highest(self) -> int:
        """The highest packet id accepted so far (0 before the first)."""
        return self._highest

    def accept(self, pid: int, now: float) -> bool:
        """Record `pid` and return True if it is new and in time; count and return False if not.

        Call only for a packet whose authentication tag verified.
        """
        highest = self._highest
        if pid > highest:
            shift = pid - highest
            # A jump past the whole window forgets every old slot; shifting a huge int would
            # only allocate bits that the mask throws away.
            if shift >= self.size:
                self._mask = 1
            else:
                self._mask = ((self._mask << shift) | 1) & self._full_mask
            self._highest = pid
            self._highest_time = now
            self.accepted += 1
            return True
        diff = highest - pid
        if (
            pid <= 0
            or diff >= self.size
            or (self._mask >> diff) & 1
            or now - self._highest_time > self.seconds
        ):
            self.replays += 1
            return False
        self._mask |= 1 << diff
        self.accepted += 1
        return True

    def __repr__(self) -> str:
        return (f"ReplayWindow(size={self.size}, seconds={self.seconds}, highest={self._highest}, "
                f"accepted={self.accepted}, replays={self.replays})")
