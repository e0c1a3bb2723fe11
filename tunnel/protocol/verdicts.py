"""What the protocol tells the I/O layer to do with a received buffer.

`Session.decrypt`, `Server.receive` and `Client.receive` return one of these. They are an
`IntEnum`, so a verdict prints with its name, but the hot loops compare against the module-level
names below (`verdict == TO_TUN`): a global lookup and an int compare, as fast as the bare ints
they replace (`Verdict.TO_TUN` would add an attribute lookup per packet).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

__all__ = ["CONSUMED", "DROPPED", "KEEPALIVE", "TO_TUN", "Verdict"]


class Verdict(IntEnum):
    DROPPED = -1  # malformed, unauthenticated, replayed or unexpected: counted
    CONSUMED = 0  # an OCC or control packet: the control step may have something to send
    TO_TUN = 1  # an IP packet: write buf.data to the device
    # A keepalive ping: nothing to send, nothing to tell, no control step. The deadline it
    # pushes back (ping-restart) only moves later, so the timer re-reads it when it fires.
    # (An idle server's input is mostly these: the control step after each one was ~11 % of
    # its busy time at N = 500, docs/PERFORMANCE.md.)
    KEEPALIVE = 2


TO_TUN: Final = Verdict.TO_TUN
CONSUMED: Final = Verdict.CONSUMED
DROPPED: Final = Verdict.DROPPED
KEEPALIVE: Final = Verdict.KEEPALIVE
