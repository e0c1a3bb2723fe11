"""Dropped input, counted by cause, reported as rate-limited `PacketDropped` events.

Every datagram the protocol refuses is one more in `DropLog.counts[cause]` (the status file
shows them) and, while the cause's budget allows, one `PacketDropped` event for the log; once
the budget of a cause is spent its drops are only counted, and the next event that is let
through carries how many were not reported (`count`). The budget keeps a flood from turning
into a flood of events, log lines and allocations; `mute` and `mute-replay-warnings` then
shape the log as in stock.

Causes:
    auth failure        the data packet's tag (or a control packet's wrap/cookie) did not verify
    replay              authentic, refused by the replay window (checked after authentication)
    malformed           too short, unparsable, wrong opcode for its state, empty
    rate limit          connect-freq-initial, the half-open bound, max-clients
    no session          data for a peer-id/key nobody has, control for a session we do not know
    bad source address  an authentic packet whose inner source is not the client's address
"""

from __future__ import annotations

from collections import deque

from tunnel.protocol.events import Event, PacketDropped

__all__ = [
    "AUTH_FAILED",
    "BAD_SOURCE",
    "CAUSES",
    "DATA_DROP_TEXT",
    "MALFORMED",
    "NO_SESSION",
    "RATE_LIMITED",
    "REPLAY",
    "DropLog",
]

Address = tuple[str, int]

AUTH_FAILED = "auth failure"
REPLAY = "replay"
MALFORMED = "malformed"
RATE_LIMITED = "rate limit"
NO_SESSION = "no session"
BAD_SOURCE = "bad source address"
CAUSES = (AUTH_FAILED, REPLAY, MALFORMED, RATE_LIMITED, NO_SESSION, BAD_SOURCE)

# What the log says for a data packet a session refused, by cause (stock's wording).
DATA_DROP_TEXT = {
    AUTH_FAILED: "AEAD Decrypt error: cipher final failed",
    REPLAY: "AEAD Decrypt error: bad packet ID (may be a replay)",
    MALFORMED: "data packet too short or not for its key",
    NO_SESSION: "data packet for a key_id without a data key (keys out of sync)",
}


# Events per cause per period; the rest are counted into the next event that goes out.
EVENT_BURST = 10
EVENT_PERIOD = 10.0


class DropLog:
    """Counters by cause; `drop()` is called once per refused datagram."""

    __slots__ = ("_budget", "_events", "_suppressed", "_window", "counts")

    def __init__(self, events: deque[Event] | None = None) -> None:
        self.counts: dict[str, int] = dict.fromkeys(CAUSES, 0)
        self._events = events
        self._window: dict[str, float] = {}
        self._budget: dict[str, int] = {}
        self._suppressed: dict[str, int] = {}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def drop(self, cause: str, addr: Address, reason: str, now: float) -> None:
        self.counts[cause] += 1
        events = self._events
        if events is None:
            return
        start = self._window.get(cause)
        if start is None or now - start >= EVENT_PERIOD:
            self._window[cause] = now
            self._budget[cause] = EVENT_BURST
        if self._budget[cause] <= 0:
            self._suppressed[cause] = self._suppressed.get(cause, 0) + 1
            return
        self._budget[cause] -= 1
        count = 1 + self._suppressed.pop(cause, 0)
        events.append(PacketDropped(addr, reason, count, cause))
