"""What the protocol tells the I/O layer to do with a received buffer.

`Session.decrypt`, `Server.receive` and `Client.receive` return one of these. They are an
`IntEnum`, so a verdict prints with its name, but the hot loops compare against the module-level
names below (`verdict == TO_TUN`): a global lookup and an int compare, as fast as the bare ints
they replace (`Verdict.TO_TUN` would add an attribute lookup per packet).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

__all__ = ["CONSUMED", "DROPPED", "TO_TUN", "Verdict"]


class Verdict(IntEnum):
    DROPPED = -1  # malformed, unauthenticated, replayed or unexpected: counted
    CONSUMED = 0  # a ping, OCC or control packet: nothing more to do
    TO_TUN = 1  # an IP packet: write buf.data to the device


TO_TUN: Final = Verdict.TO_TUN
CONSUMED: Final = Verdict.CONSUMED
DROPPED: Final = Verdict.DROPPED
