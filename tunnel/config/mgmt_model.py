"""What the `management*` options (and our `metrics-listen`) ask for, as parsed.

Kept apart from model.py so the management interface's settings are one value on
TunnelConfig (`cfg.management`, None without a `management` line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunnel.config.model import TunnelConfig

__all__ = ["ManagementOptions", "check_management"]


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


def check_management(cfg: TunnelConfig) -> None:
    m = cfg.management
    if m is None:
        return
    if not m.listens:
        raise cfg.error(
            "management-hold" if "management-hold" in cfg.option_lines else "management",
            "--management is not specified, however one or more options which modify the "
            "behavior of --management were specified",
        )
    if m.client_auth and cfg.role != "server":
        raise cfg.error("management-client-auth", "--management-client-auth requires "
                        "--mode server")
    if (m.client_user or m.client_group) and m.unix_path is None:
        option = "management-client-user" if m.client_user else "management-client-group"
        raise cfg.error(option, f"--{option} needs 'management PATH unix' (it checks the "
                        "user of a unix socket's peer)")
