"""When to renegotiate: reneg-sec after the primary key became active, or the packet-id wrap.

Either peer may start a renegotiation (a SOFT_RESET on the next key_id); one runs at a time.
Stock servers subtract up to 10 % jitter from reneg-sec so that they, not thousands of clients
at once, start it (ssl.c: tls_session_init).
"""

from __future__ import annotations

import random

__all__ = ["RekeySchedule", "next_key_id"]


def next_key_id(key_id: int) -> int:
    """key_id 0 is the initial key; renegotiations count 1..7 and wrap to 1 (ssl.c)."""
    return 1 if key_id >= 7 else key_id + 1


class RekeySchedule:
    __slots__ = ("at", "jitter", "reneg_sec")

    def __init__(self, reneg_sec: float, *, jitter: bool) -> None:
        self.reneg_sec = reneg_sec
        self.jitter = jitter
        self.at: float | None = None  # when the next renegotiation is due

    def clear(self) -> None:
        """No renegotiation planned (none possible now, or one just started)."""
        self.at = None

    def due(self, activated_at: float | None, now: float, wrap_near: bool) -> bool:
        """True when the primary key (active since `activated_at`) should be replaced now."""
        if self.reneg_sec > 0 and self.at is None:
            assert activated_at is not None
            period = self.reneg_sec
            if self.jitter:
                period -= random.uniform(0, period / 10)
            self.at = activated_at + period
        return wrap_near or (self.at is not None and now >= self.at)
