"""The one timer a driver keeps for its endpoint, re-armed only when the deadline moved."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["EndpointTimer"]


class EndpointTimer:
    """`arm(deadline)` after every input: a no-op when the deadline is the one already armed
    (the common case: a data batch pushes nothing), else the old handle is cancelled and one
    `call_at` made. `fired()` is called first thing by the callback; `cancel()` on stop."""

    __slots__ = ("_callback", "_handle", "_loop", "at")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self.at: float | None = None  # the armed deadline (loop time), or None

    def arm(self, deadline: float | None) -> None:
        if deadline == self.at and (deadline is None or self._handle is not None):
            return
        self.cancel()
        self.at = deadline
        if deadline is not None:
            self._handle = self._loop.call_at(deadline, self._callback)

    def fired(self) -> None:
        self._handle = None
        self.at = None

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.at = None

    @property
    def armed(self) -> bool:
        return self._handle is not None
