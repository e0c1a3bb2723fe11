"""Exceptions inside readiness callbacks: logged with their traceback, counted, survived.

An exception escaping the protocol while it handles one packet is a bug, but it must never
stop the tunnel: whatever arrives from the network, the process keeps running. The driver
catches it around each packet (and each timer or control round), drops that packet and goes
on; this class is where it is counted and logged.

Logging is rate-limited so a peer that can trigger the bug with every datagram cannot flood
the log: at most `burst` tracebacks per `period` seconds, then one line per period saying
how many more were suppressed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["CallbackFaults"]


class CallbackFaults:
    """Counts and logs (rate-limited) exceptions caught inside the driver's callbacks."""

    def __init__(
        self,
        log: logging.Logger,
        *,
        burst: int = 5,
        period: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.burst = burst
        self.period = period
        self.clock = clock
        self.count = 0  # every exception caught, logged or not
        self.logged = 0
        self.suppressed = 0  # not logged since the last summary line
        self._window_start = -period
        self._in_window = 0

    def record(self, where: str, exc: BaseException) -> None:
        self.count += 1
        now = self.clock()
        if now - self._window_start >= self.period:
            if self.suppressed:
                self.log.error("internal error: %d more suppressed in the last %.0f s",
                               self.suppressed, self.period)
                self.suppressed = 0
            self._window_start = now
            self._in_window = 0
        if self._in_window >= self.burst:
            self.suppressed += 1
            return
        self._in_window += 1
        self.logged += 1
        self.log.error("internal error in %s (%s: %s); the packet is dropped, the tunnel "
                       "keeps running", where, type(exc).__name__, exc,
                       exc_info=(type(exc), exc, exc.__traceback__))
