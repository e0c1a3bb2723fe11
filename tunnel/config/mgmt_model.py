"""What the `management*` options (and our `metrics-listen`) ask for, as parsed.

Kept apart from model.py so the management interface's settings are one value on
TunnelConfig (`cfg.management`, None without a `management` line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ManagementOptions"]


@dataclass(slots=True)
class ManagementOptions:
    host: str | None = None  # TCP: the address to listen on
    port: int | None = None
    unix_path: Path | None = None  # `management PATH unix`
    password_file: Path | None = field(default=None, repr=False)
    client_user: str | None = None  # unix socket: only this user may connect
    client_group: str | None = None
    hold: bool = False  # management-hold: start only after `hold release`
    query_passwords: bool = False
    log_cache: int = 100  # lines of log history kept for `log N|all`
    up_down: bool = False  # >UPDOWN: notifications
    client_auth: bool = False  # server: every client waits for client-auth / client-deny
    forget_disconnect: bool = False  # forget passwords when the connection closes
    signal: bool = False  # management-signal: a closed connection sends SIGUSR1

    @property
    def listens(self) -> bool:
        """A `management` line was given (not only its modifiers)."""
        return self.unix_path is not None or self.port is not None
