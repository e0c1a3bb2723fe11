"""`connect-freq-initial N SECS`: how many stateless reset answers the server sends per period.

Stock 2.6 (`reflect_filter.c`), rule for rule: the counter restarts when `now` is past the
period's start plus its length (strictly); every valid HARD_RESET_CLIENT counts, and one over
`max_per_period` is dropped; a client that completes the three-way handshake (echoes the
cookie, so a session is created) is refunded (`reflect_filter_rate_limit_decrease`), so the
limit bounds only answers to sources that never answer back: reflection and amplification.
The first drop of a period yields stock's warning text (logged at the default level), and the
next period's start says how many were dropped.
"""

from __future__ import annotations

__all__ = ["InitialRateLimit"]


class InitialRateLimit:
    __slots__ = ("curr", "last_reset", "max_per_period", "period", "warned")

    def __init__(self, max_per_period: int = 100, period: int = 10) -> None:
        self.max_per_period = max_per_period
        self.period = period
        self.curr = 0
        self.last_reset: float | None = None  # stock: 0, i.e. the first packet resets it
        self.warned = False

    def check(self, now: float) -> tuple[bool, str | None]:
        """(answer it?, a note to log). Counts this reset."""
        note = None
        if self.last_reset is None or now > self.last_reset + self.period:
            dropped = self.curr - self.max_per_period
            if dropped > 0:
                note = (f"Dropped {dropped} initial handshake packets due to "
                        f"--connect-freq-initial {self.max_per_period} {self.period}")
            self.last_reset = now
            self.curr = 0
            self.warned = False
        self.curr += 1
        if self.curr <= self.max_per_period:
            return True, note
        if not self.warned:
            self.warned = True
            left = int(self.last_reset + self.period - now)
            note = (f"Note: --connect-freq-initial {self.max_per_period} {self.period} rate "
                    f"limit exceeded, dropping initial handshake packets for the next {left} "
                    "seconds")
        return False, note

    def refund(self) -> None:
        """A three-way handshake completed: it counts against connect-freq only (stock)."""
        if self.curr > 0:
            self.curr -= 1
